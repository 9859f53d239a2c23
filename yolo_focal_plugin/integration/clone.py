"""Recognise a git clone of ultralytics/yolov5 by its shape, and the seams the plugin uses in one.

In a clone, users run ``python train.py`` inside the repository: the script runs as ``__main__``
and imports top-level packages ``utils`` and ``models``. Other projects have top-level ``utils``
and ``models`` packages too, so a module is treated as YOLOv5's only when the folder it was
imported from has the shape of a YOLOv5 clone: ``train.py``, ``models/yolo.py`` and a
``utils/loss.py`` that defines ``ComputeLoss``, side by side. Nothing else is ever touched.

The range supported is a shape, not a table of commits: tag v7.0 and the newest upstream commit
are tested, and any commit between them whose ``ComputeLoss`` builds ``BCEcls`` / ``BCEobj``
from ``model.hyp`` the way both do is patched the same way (:func:`compute_loss_mismatches`).

Importing this module is cheap (stdlib only): the import hook calls it for every watched name.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

# Scripts whose ``main(opt)`` the plugin prepares a run from (the select_device seam below).
TRAIN_SCRIPTS = ("train.py", "segment/train.py")

_lock = threading.Lock()
_shape_cache: Dict[Path, bool] = {}


def clone_root_of(fullname: str, origin: Optional[str]) -> Optional[Path]:
    """The folder a top-level-package module was imported from: ``/x/utils/loss.py`` -> ``/x``.

    ``fullname`` is the dotted name (``utils.loss``), ``origin`` the file the import system found.
    """
    if not origin or origin in ("built-in", "frozen"):
        return None
    path = Path(origin)
    depth = fullname.count(".")  # utils.loss: the file sits one folder below the root
    if path.name == "__init__.py":
        depth += 1
    try:
        return path.resolve().parents[depth]
    except IndexError:
        return None


def looks_like_clone(root: Path) -> bool:
    """True if ``root`` holds ``train.py``, ``models/yolo.py`` and a ``utils/loss.py`` with ``ComputeLoss``."""
    with _lock:
        cached = _shape_cache.get(root)
    if cached is not None:
        return cached
    try:
        shaped = (
            (root / "train.py").is_file()
            and (root / "models" / "yolo.py").is_file()
            and "class ComputeLoss" in (root / "utils" / "loss.py").read_text(encoding="utf-8", errors="ignore")
        )
    except OSError:
        shaped = False
    with _lock:
        _shape_cache[root] = shaped
    return shaped


# ComputeLoss's shape: what the plugin relies on when it swaps the criteria after __init__.
# (pattern, what it means for a person reading the refusal)
_INIT_SHAPE = (
    (r"def __init__\(self, model\b", "__init__(self, model, ...)"),
    (r"\bh = model\.hyp\b", "h = model.hyp"),
    (r"""\bh\[['"]fl_gamma['"]\]""", "h['fl_gamma'] read in __init__"),
    (r"\bBCEcls\b[^\n]*BCEWithLogitsLoss\(", "BCEcls = nn.BCEWithLogitsLoss(...)"),
    (r"\bBCEobj\b[^\n]*BCEWithLogitsLoss\(", "BCEobj = nn.BCEWithLogitsLoss(...)"),
    (r"self\.BCEcls, self\.BCEobj\b[^\n]*= BCEcls, BCEobj\b", "self.BCEcls, self.BCEobj, ... = BCEcls, BCEobj, ..."),
)
_CALL_SHAPE = (
    (r"self\.BCEcls\(", "self.BCEcls(...) called in __call__"),
    (r"self\.BCEobj\(", "self.BCEobj(...) called in __call__"),
)


def compute_loss_mismatches(cls: type) -> List[str]:
    """What of the expected ``ComputeLoss`` shape ``cls`` lacks (empty when it matches).

    The plugin lets YOLOv5's ``__init__`` run, then replaces ``self.BCEcls`` / ``self.BCEobj``;
    that is only right when ``__init__`` builds them from ``model.hyp`` and ``__call__`` calls
    them, as in every upstream version from v7.0 to the newest commit.
    """
    import inspect

    try:
        init = inspect.getsource(cls.__init__)
        call = inspect.getsource(cls.__call__)
    except (OSError, TypeError) as exc:
        return [f"source not readable ({exc})"]
    return source_mismatches(init, call)


def source_mismatches(init_source: str, call_source: str) -> List[str]:
    """:func:`compute_loss_mismatches` on the source text of ``__init__`` and ``__call__``."""
    missing = [what for pattern, what in _INIT_SHAPE if not re.search(pattern, init_source)]
    missing += [what for pattern, what in _CALL_SHAPE if not re.search(pattern, call_source)]
    return missing


def train_main_frame(frame: Any, root: Path) -> Optional[Any]:
    """``frame`` if it is ``main(opt, ...)`` of the clone's ``train.py`` or ``segment/train.py``, else None.

    Recognised by shape: a function named ``main`` in one of those files, with a local ``opt``
    that carries ``hyp`` and ``save_dir`` (set by ``main`` before it selects the device).
    """
    if frame is None or frame.f_code.co_name != "main":
        return None
    try:
        filename = Path(frame.f_code.co_filename).resolve()
    except OSError:
        return None
    if filename not in {(root / script).resolve() for script in TRAIN_SCRIPTS}:
        return None
    opt = frame.f_locals.get("opt")
    if opt is None or not hasattr(opt, "hyp") or not hasattr(opt, "save_dir"):
        return None
    return frame


def is_segment_script(frame: Any) -> bool:
    return Path(frame.f_code.co_filename).parent.name == "segment"


def shadowing_clone(package_file: Optional[str], search_path: List[str]) -> Optional[Path]:
    """A clone folder named ``yolov5`` on ``search_path`` that ``import yolov5`` did *not* pick.

    ``python -m yolov5.train`` run from the parent of a clone called ``yolov5/`` imports the pip
    package (a regular package wins over the clone, which has no ``__init__.py``): the user may
    believe they train the clone.
    """
    chosen = Path(package_file).resolve().parent if package_file else None
    for entry in search_path:
        candidate = Path(entry or ".") / "yolov5"
        try:
            candidate = candidate.resolve()
        except OSError:
            continue
        if candidate != chosen and candidate.is_dir() and looks_like_clone(candidate):
            return candidate
    return None
