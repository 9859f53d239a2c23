"""Which modules the import hook acts on: the pip package's and a clone's (names only, no imports).

Its own module so that both the finder (``hook``) and what it dispatches to (``yolov5_hooks``)
can read the tables without importing each other.
"""

# The same modules in a git clone of ultralytics/yolov5 (names relative to the clone's root), plus
# the seam that prepares a ``python train.py`` run (``utils.torch_utils.select_device``).
CLONE_WATCHED = (
    "utils.general",
    "utils.downloads",
    "utils.metrics",
    "utils.plots",
    "utils.torch_utils",
    "utils.loss",
    "utils.segment.loss",
    "models.yolo",
)

# Modules whose import triggers a patch; the functions live in ``yolov5_hooks`` (imported lazily).
WATCHED = (
    "yolov5",
    "yolov5.utils.general",
    "yolov5.utils.downloads",
    "yolov5.utils.metrics",
    "yolov5.utils.plots",
    "yolov5.utils.loss",
    "yolov5.utils.segment.loss",
    "yolov5.models.yolo",
    "yolov5.train",
    "yolov5.segment.train",
)
