"""Let yolov5's own checkpoints load under torch's ``weights_only=True`` default (torch >= 2.6).

Audit section 3: ``strip_optimizer`` at the end of training, ``yolov5 val --weights best.pt``,
``--resume`` and segment checkpoints fail with "Unsupported global". Instead of switching the
protection off for every ``torch.load`` in the process, the plugin allow-lists exactly what
yolov5 checkpoints pickle: yolov5's module classes, the torch.nn layers they contain, the numpy
scalars the optimizer state holds, and a ``getattr`` that only resolves ``Detect.forward``
(segmentation models pickle ``self.detect = Detect.forward``).
"""
from __future__ import annotations

import builtins
import inspect
import types
from typing import Any, List

from .compat import _note
from .patching import LEDGER


def _module_classes(*modules: types.ModuleType) -> List[type]:
    import torch.nn as nn

    found = []
    for module in modules:
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, nn.Module) and value not in found:
                found.append(value)
    return found


def _numpy_globals() -> List[Any]:
    import numpy as np

    entries: List[Any] = [np.dtype, np.ndarray]
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    entries += [_reconstruct, scalar]
    entries += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return entries


def _restricted_getattr(detect_cls: type) -> Any:
    def getattr_detect_forward_only(obj: Any, name: str, *default: Any) -> Any:
        if isinstance(obj, type) and issubclass(obj, detect_cls) and name == "forward":
            return builtins.getattr(obj, name)
        raise RuntimeError(
            f"yolo-focal-plugin: weights_only load refused getattr({obj!r}, {name!r}); only Detect.forward "
            "is allowed. Load foreign checkpoints with weights_only=False only if you trust them."
        )

    return getattr_detect_forward_only


def register_safe_globals(yolo_module: types.ModuleType) -> None:
    """Called after ``yolov5.models.yolo`` has executed (common and experimental are loaded by then)."""
    import sys

    import torch
    import torch.nn.modules as torch_modules

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4 has no weights_only default to worry about
        return
    yolov5_modules = [sys.modules[name] for name in ("yolov5.models.common", "yolov5.models.experimental") if name in sys.modules]
    classes = _module_classes(yolo_module, *yolov5_modules, torch_modules)
    entries: List[Any] = classes + _numpy_globals()
    detect_cls = getattr(yolo_module, "Detect", None)
    if detect_cls is not None:
        entries.append((_restricted_getattr(detect_cls), "builtins.getattr"))

    before = list(torch.serialization.get_safe_globals())
    add(entries)

    def undo() -> None:
        torch.serialization.clear_safe_globals()
        add(before)

    LEDGER.add_undo(undo, "torch.serialization safe globals")
    _note(f"checkpoints: {len(entries)} yolov5/torch/numpy globals allow-listed for weights_only loads")
