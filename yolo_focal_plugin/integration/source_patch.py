"""Called by source-patched trees that the start-up hook cannot recognise by a ``yolov5`` package.

A clone of ultralytics/yolov5 runs as ``python train.py`` with top-level ``utils``/``models``:
there is no ``yolov5`` package whose import tells the plugin that the tree carries the source
patches (``YOLO_FOCAL_PATCHED``). The patched ``utils/loss.py`` of a clone (``patches/clone-*``)
calls :func:`declare_clone` instead, so the hook stands aside and the run records
``delivery: source patches`` (one source of truth: the same ``stand_aside_if_source_patched``
the hook uses for the pip layout).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from .yolov5_hooks import stand_aside_if_source_patched


def declare_clone(loss_file: Union[str, Path]) -> bool:
    """``loss_file`` is the clone's ``utils/loss.py`` (its ``__file__``). True if its marker was found.

    ``stand_aside_if_source_patched`` takes the path of a package's ``__init__.py`` and reads
    ``utils/loss.py`` next to it; for a clone that directory is the clone's root.
    """
    root = Path(loss_file).resolve().parents[1]
    return stand_aside_if_source_patched(str(root / "__init__.py"))
