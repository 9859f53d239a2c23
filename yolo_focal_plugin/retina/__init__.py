"""RetinaNet-style anchors, IoU matcher, box coder and smooth L1 loss.

Pure torch (+ nothing from yolov5), so it can be used and tested on its own::

    from yolo_focal_plugin.retina import anchors_for_image, RetinaMatcher, BoxCoder, smooth_l1_loss

    anchors = anchors_for_image(640, 640)              # [76725, 4] xyxy float32, P3-P7
    matches, labels = RetinaMatcher()(anchors, gts)    # int64 [A], int8 [A] in {1, 0, -1}
    deltas = BoxCoder().encode(gts[matches[labels == 1]], anchors[labels == 1])

See ``docs/retina.md`` for the matching rule and how it differs from torchvision, detectron2
and mmdetection.
"""
from .anchors import (
    DEFAULT_ASPECT_RATIOS,
    DEFAULT_BASE_SIZES,
    DEFAULT_SCALES,
    DEFAULT_STRIDES,
    anchors_for_image,
    anchors_per_level,
    cell_anchors,
    grid_anchor_boxes,
    grid_sizes_for_image,
    num_anchors,
)
from .coder import BoxCoder, smooth_l1_loss
from .matcher import RetinaMatcher, positives_per_gt

__all__ = [
    "anchors_for_image",
    "anchors_per_level",
    "cell_anchors",
    "grid_sizes_for_image",
    "grid_anchor_boxes",
    "num_anchors",
    "DEFAULT_STRIDES",
    "DEFAULT_BASE_SIZES",
    "DEFAULT_SCALES",
    "DEFAULT_ASPECT_RATIOS",
    "RetinaMatcher",
    "positives_per_gt",
    "BoxCoder",
    "smooth_l1_loss",
]
