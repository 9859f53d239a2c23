"""What happens to each yolov5 module as it is imported (see ``hook.py``), and the version guard.

The only place, together with the modules it calls, where the plugin touches yolov5. Each
function patches just the module it is given: importing another yolov5 module from here breaks
yolov5's circular star-imports.

Two layouts, one integration: this module holds what both share (the per-process state, the
version guard, the ``ComputeLoss`` patch, ``before_train``) and the pip package's own actions
(``AFTER_EXEC``); ``clone_hooks`` holds a clone's, and ``dispatch`` picks between them.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set

from ..env import FORCE as FORCE_ENV
from ..env import flag
from ..hyp import FocalHyp, parse_focal_hyp
from ..yolo_yaml import dataset_classes, load_hyp
from . import compat
from .patching import LEDGER

SUPPORTED_YOLOV5_VERSIONS = ("7.0.14",)
SETUP_FILE = "focal_setup.yaml"


class UnsupportedYolov5Version(RuntimeError):
    """The imported yolov5 is not a version the patches were verified against."""


class UnrecognisedComputeLoss(RuntimeError):
    """A clone's ``ComputeLoss`` lacks the shape the plugin patches, while the hyp asks for the plugin."""


@dataclass
class PluginState:
    enabled: Optional[bool] = None  # None until the yolov5 version has been checked
    version: Optional[str] = None
    applied: Set[str] = field(default_factory=set)
    save_dir: Optional[Path] = None
    evolve: bool = False
    clock: Any = None
    announced: bool = False
    source_patched: Optional[str] = None  # yolov5 directory patched from patches/: the hook stands aside
    layout: Optional[str] = None  # "pip package" or "clone"
    clone_root: Optional[Path] = None
    logger: Optional[logging.Logger] = None  # yolov5's own (the ultralytics one in newer clones)
    unrecognised_loss: Dict[str, List[str]] = field(default_factory=dict)  # file -> what did not match
    clone_evolving: bool = False  # the recompiled main of a clone's --evolve is running


STATE = PluginState()


def yolov5_logger() -> logging.Logger:
    """YOLOv5's own logger, so the plugin's lines land in the same run log."""
    return STATE.logger or logging.getLogger("yolov5")


def read_yolov5_version(package_init: Optional[str]) -> Optional[str]:
    """``__version__`` from yolov5's ``__init__.py`` text, without importing it."""
    if not package_init or not os.path.isfile(package_init):
        return None
    with open(package_init, encoding="utf-8", errors="ignore") as f:
        match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", f.read(), re.M)
    return match.group(1) if match else None


def check_version(version: Optional[str], force: bool = False) -> bool:
    """True if the plugin may patch this yolov5. Unsupported: raise, unless forced (then warn)."""
    if version in SUPPORTED_YOLOV5_VERSIONS:
        return True
    message = (
        f"yolo-focal-plugin was verified against yolov5 {', '.join(SUPPORTED_YOLOV5_VERSIONS)} "
        f"but found yolov5 {version or 'of unknown version'}; its ComputeLoss and train() may differ. "
        f"Install yolov5==7.0.14, or set {FORCE_ENV}=1 to patch anyway at your own risk."
    )
    if force or flag(FORCE_ENV):
        print(f"WARNING: {message} ({FORCE_ENV} is set: patching anyway)", file=sys.stderr)
        return True
    raise UnsupportedYolov5Version(message)


# Written into utils/loss.py by patches/yolov5-*/ (``yolo-focal patch apply``): that source calls the
# plugin itself, so the import hook and install() must not wrap or shim it a second time.
SOURCE_PATCH_MARKER = re.compile(r"^YOLO_FOCAL_PATCHED\s*=\s*True\b", re.M)


def source_patched_dir(package_init: Optional[str]) -> Optional[Path]:
    """yolov5's directory if its source carries the patches' marker (``utils/loss.py``), else None."""
    if not package_init:
        return None
    root = Path(package_init).parent
    return root if source_patched_root(root) else None


def source_patched_root(root: Path) -> bool:
    """True if ``root/utils/loss.py`` (a pip package's or a clone's) carries the patches' marker."""
    try:
        text = (root / "utils" / "loss.py").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return SOURCE_PATCH_MARKER.search(text) is not None


def stand_aside_if_source_patched(package_init: Optional[str]) -> bool:
    """True (and the plugin disabled for this process's yolov5) if that yolov5 is source-patched."""
    root = source_patched_dir(package_init)
    STATE.source_patched = str(root) if root is not None else None
    if root is None:
        return False
    STATE.enabled = False
    return True


# --------------------------------------------------------------------------- ComputeLoss


def _log_setup(cfg: FocalHyp, description: str, nc: int) -> None:
    shims = "; ".join(compat.APPLIED) or "none needed"
    yolov5_logger().info(f"yolo-focal-plugin: {cfg.describe()} | {description}")
    if not STATE.announced:
        if STATE.source_patched:
            yolov5_logger().info(f"yolo-focal-plugin: yolov5 at {STATE.source_patched} is source-patched "
                        "(YOLO_FOCAL_PATCHED); the start-up hook stands aside")
        yolov5_logger().info(f"yolo-focal-plugin: compatibility shims: {shims}")
        STATE.announced = True
    if STATE.save_dir is not None and not STATE.evolve:
        import yaml

        record = {
            "plugin": "yolo-focal-plugin",
            "yolov5_version": STATE.version,
            "yolov5_layout": STATE.layout,
            "yolov5_root": str(STATE.clone_root) if STATE.clone_root else None,
            "stock": cfg.is_stock,
            "setting": cfg.describe(),
            "criteria": description,
            "nc": nc,
            "shims": list(compat.APPLIED),
            "delivery": "source patches" if STATE.source_patched else "import hook",
        }
        STATE.save_dir.mkdir(parents=True, exist_ok=True)
        with open(STATE.save_dir / SETUP_FILE, "w") as f:
            yaml.safe_dump(record, f, sort_keys=False)


def _detect_module(model: Any) -> Any:
    """YOLOv5's Detect (or Segment) head; DDP wraps the model, so look inside ``.module``."""
    core = getattr(model, "module", model)
    return core.model[-1]


def before_compute_loss(model: Any) -> FocalHyp:
    """Runs before YOLOv5's ``ComputeLoss.__init__``: validate once, and supply the ``fl_gamma`` stock requires.

    Returns the parsed settings, which :func:`after_compute_loss` takes: the hyp is parsed once per
    ``ComputeLoss`` (a bad key fails before any work).
    """
    hyp = model.hyp
    head = _detect_module(model)
    cfg = parse_focal_hyp(hyp, nc=int(head.nc), task="segment" if hasattr(head, "nm") else "detect")
    if "fl_gamma" not in hyp:  # stock raises KeyError; 0.0 is what every shipped hyp says
        hyp["fl_gamma"] = 0.0
    return cfg


def after_compute_loss(compute_loss: Any, model: Any, cfg: Optional[FocalHyp] = None) -> None:
    """Runs after YOLOv5's ``ComputeLoss.__init__``: swap ``BCEcls``/``BCEobj`` as the hyp asks.

    ``cfg`` is what :func:`before_compute_loss` returned (source-patched trees generated before it
    was passed along call without it: then the hyp is parsed here). The plugin builds fresh
    ``BCEWithLogitsLoss`` objects as YOLOv5 does rather than unwrapping YOLOv5's: its FocalLoss
    changes the inner loss's ``reduction`` in place.
    Shared by the monkey-patch and by the ``patches/`` for cloned yolov5 copies (one source of truth).
    """
    if cfg is None:
        cfg = before_compute_loss(model)
    if cfg.is_stock:
        _log_setup(cfg, "YOLOv5 criteria kept", compute_loss.nc)
        return
    from .criteria import EpochClock, build_criteria

    if STATE.clock is None:
        STATE.clock = EpochClock()
    core = getattr(model, "module", model)  # DDP wraps the model; class_weights sit on the inner one
    criteria = build_criteria(
        cfg,
        cls_pw=float(model.hyp["cls_pw"]),
        obj_pw=float(model.hyp["obj_pw"]),
        nc=compute_loss.nc,
        device=compute_loss.device,
        class_weights=getattr(core, "class_weights", None),
        clock=STATE.clock,
    )
    compute_loss.BCEcls, compute_loss.BCEobj = criteria.cls, criteria.obj
    compute_loss.focal_hyp = cfg
    description = criteria.describe()
    if cfg.assigner == "retina":
        from .criteria import IgnoreMasked, find_wrapper
        from .retina_assigner import RetinaTargets

        strides = [float(s) for s in _detect_module(model).stride]
        # an instance attribute: the class and every other ComputeLoss keep YOLOv5's assignment
        compute_loss.build_targets = RetinaTargets(compute_loss, strides, find_wrapper(criteria.obj, IgnoreMasked))
        description += f"; targets: {compute_loss.build_targets.matcher!r} on YOLOv5 anchor boxes"
    _log_setup(cfg, description, compute_loss.nc)


def patch_compute_loss(loss_module: types.ModuleType) -> None:
    """Wrap ``ComputeLoss.__init__`` in place (every ``from ... import ComputeLoss`` sees it)."""
    cls = loss_module.ComputeLoss
    original_init = cls.__dict__["__init__"]

    @functools.wraps(original_init)
    def __init__(self: Any, model: Any, *args: Any, **kwargs: Any) -> None:
        cfg = before_compute_loss(model)
        original_init(self, model, *args, **kwargs)
        after_compute_loss(self, model, cfg)

    __init__._yolo_focal = True  # type: ignore[attr-defined]
    LEDGER.set(cls, "__init__", __init__, f"{loss_module.__name__}.ComputeLoss.__init__")


# --------------------------------------------------------------------------- train()


def dataset_nc(opt: Any) -> Optional[int]:
    if getattr(opt, "single_cls", False):
        return 1
    data = getattr(opt, "data", None)
    if not data or not os.path.isfile(str(data)):
        return None
    return dataset_classes(str(data))[0]


def before_train(hyp: Any, opt: Any, callbacks: Any, task: str = "detect") -> Dict[str, Any]:
    """Runs before yolov5's ``train()`` body: validate the fl_* keys before the run directory exists,
    remember where the run writes, and advance the epoch clock that drives ``fl_gamma_warmup``.

    ``task`` is ``segment`` for YOLOv5's segmentation ``train()`` (``hyp.py`` holds the keys it
    cannot honour). Returns the hyp as a dict: the wrapped ``train()`` gets it instead of the path,
    so the file is read once.
    """
    hyp = load_hyp(hyp)
    parse_focal_hyp(hyp, nc=dataset_nc(opt), task=task)
    from .criteria import EpochClock

    STATE.save_dir = Path(opt.save_dir) if getattr(opt, "save_dir", None) else None
    STATE.evolve = bool(getattr(opt, "evolve", False))
    STATE.clock = EpochClock()
    clock = STATE.clock
    if callbacks is not None:

        def advance(*args: Any, epoch: int = 0, **kwargs: Any) -> None:
            clock.epoch = int(epoch) + 1

        callbacks.register_action("on_train_epoch_end", name="yolo_focal_epoch_clock", callback=advance)
    return hyp


def wrap_train(train_module: types.ModuleType, fix_map50s: bool, task: str = "detect") -> None:
    inner: Callable[..., Any] = compat.recompile_train_with_map50s(train_module) if fix_map50s else train_module.train
    original = train_module.train

    @functools.wraps(original)
    def train(hyp: Any, opt: Any, device: Any, callbacks: Any) -> Any:
        return inner(before_train(hyp, opt, callbacks, task=task), opt, device, callbacks)

    train._yolo_focal_inner = inner  # type: ignore[attr-defined]
    LEDGER.set(train_module, "train", train, f"{train_module.__name__}.train")



# --------------------------------------------------------------------------- table


def patch_general(module: types.ModuleType) -> None:
    compat.patch_check_font(module)
    compat.patch_check_file(module)


def _detect_train(module: types.ModuleType) -> None:
    wrap_train(module, fix_map50s=True)
    from .evolve import patch_evolve

    patch_evolve(module)  # --evolve with the fl_* keys (AUDIT section 5)


def _segment_train(module: types.ModuleType) -> None:
    compat.patch_segment_run_cli(module)
    wrap_train(module, fix_map50s=False, task="segment")


def allow_checkpoint_classes(module: types.ModuleType) -> None:
    from .checkpoints import register_safe_globals

    register_safe_globals(module)


AFTER_EXEC: Dict[str, Callable[[types.ModuleType], None]] = {
    "yolov5.utils.general": patch_general,
    "yolov5.utils.downloads": compat.patch_hub_download,
    "yolov5.utils.metrics": compat.patch_numpy_trapz,
    "yolov5.utils.plots": compat.patch_pillow_getsize,
    "yolov5.utils.loss": patch_compute_loss,
    "yolov5.utils.segment.loss": patch_compute_loss,
    "yolov5.models.yolo": allow_checkpoint_classes,
    "yolov5.train": _detect_train,
    "yolov5.segment.train": _segment_train,
}
