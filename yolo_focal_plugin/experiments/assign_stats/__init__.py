"""``yolo-focal assign-stats``: how YOLOv5's target assignment and a RetinaNet IoU matcher label a dataset.

For every label of a YOLO-format dataset, placed as YOLOv5 places it in a ``--img`` training
input, the analysis counts the positives each assigner gives it, and the positive / negative /
ignored split of all anchor slots (the imbalance focal loss is meant to handle):

``yolov5``
    YOLOv5 7.0 ``ComputeLoss.build_targets`` re-implemented in pure torch (tested against the
    real one): a GT is assigned to anchor ``k`` of level ``l`` if ``max(r, 1/r) < anchor_t`` for
    both ``r = w / w_k`` and ``r = h / h_k``; it then takes its own grid cell plus the (up to) two
    neighbouring cells whose border is within half a cell of its centre. Anchors come from the
    model YAML (strides 8, 16, 32 for P3-P5 models). No slot is ignored: every slot that no GT
    claims is an objectness negative.
``retina``
    :class:`~yolo_focal_plugin.retina.RetinaMatcher` (IoU >= ``pos_iou`` positive, < ``neg_iou``
    negative, in between ignored, every GT gets a positive) on RetinaNet's P3-P7 anchors
    (9 per location, 76,725 at 640x640).
``retina_yolo_anchors``
    The same matcher on the YOLOv5 anchors placed at every grid-cell centre: what
    ``fl_assigner: retina`` trains with.

Geometry: each image is letterboxed into an ``img x img`` canvas as YOLOv5 does without mosaic
(long side resized to ``img``, centred padding); the original image size is read from the
image header (EXIF rotation honoured). Labels without an image (label-only datasets) are
assumed to come from square images. Mosaic and scale augmentation move objects but keep their
size distribution around this one, which is what the assignment depends on. Object sizes
(COCO): small ``area < 32^2``, medium ``< 96^2``, large otherwise, in canvas pixels.

Label files are read as YOLOv5 reads them: exact duplicate rows are removed, polygon rows
(segments) become their bounding box, and a file with coordinates outside [0, 1] or rows that
are not ``cls x y w h`` is skipped as corrupt. Zero-width or zero-height boxes are kept and
counted: YOLOv5 gives them no positive; the IoU matcher drops them (``drop_degenerate``).

Modules, one job each: ``_dataset`` (dataset YAML, label files, letterbox geometry),
``_yolov5`` (model anchors, YOLOv5's assignment and AutoAnchor's recall, each mirroring
yolov5's code), ``_stats`` (counts per assigner and their summary), ``_reports`` (markdown and
PNG), ``_run`` (the analysis end to end), ``_cli`` (the command). Everything public is
re-exported here; ``yolo_focal_plugin.assign_stats`` is the same package under its old name.
"""
from __future__ import annotations

from ._cli import add_arguments, run_from_args
from ._dataset import IMG_FORMATS, LabelFile, dataset_items, image_size, letterbox_boxes, read_label_file
from ._reports import HIST_EDGES, HIST_LABELS, plot_histograms, to_markdown
from ._run import run_assign_stats
from ._stats import ASSIGNERS, DESCRIPTIONS, SIZES, AssignerCounts, size_bucket, summarise
from ._yolov5 import DEFAULT_ANCHOR_T, YoloAssignment, best_possible_recall, load_model_anchors, yolov5_assign

__all__ = [
    "ASSIGNERS",
    "AssignerCounts",
    "DEFAULT_ANCHOR_T",
    "DESCRIPTIONS",
    "HIST_EDGES",
    "HIST_LABELS",
    "IMG_FORMATS",
    "LabelFile",
    "SIZES",
    "YoloAssignment",
    "add_arguments",
    "best_possible_recall",
    "dataset_items",
    "image_size",
    "letterbox_boxes",
    "load_model_anchors",
    "plot_histograms",
    "read_label_file",
    "run_assign_stats",
    "run_from_args",
    "size_bucket",
    "summarise",
    "to_markdown",
    "yolov5_assign",
]
