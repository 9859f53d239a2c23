"""What the plugin does to a git clone of ultralytics/yolov5 as its modules are imported.

A clone is recognised by its shape (``clone.py``); its ``train.py`` runs as ``__main__``, so the
run is prepared at the one call every clone's ``main(opt)`` makes after resolving ``opt.hyp`` and
``opt.save_dir`` and before ``train()`` makes the run directory: ``select_device``. From there the
clone goes through the same ``before_train`` and ``ComputeLoss`` patch as the pip package
(``yolov5_hooks``); a ``ComputeLoss`` out of shape is guarded so that a hyp asking for the plugin
never trains without it.
"""
from __future__ import annotations

import functools
import sys
import types
from typing import Any, Callable, Dict, List

from ..env import FORCE as FORCE_ENV
from ..env import flag
from ..hyp import parse_focal_hyp, plugin_keys
from ..yolo_yaml import load_hyp
from . import compat
from .patching import LEDGER
from .yolov5_hooks import (
    STATE,
    UnrecognisedComputeLoss,
    dataset_nc,
    patch_general,
    yolov5_logger,
    allow_checkpoint_classes,
    before_train,
    patch_compute_loss,
    source_patched_root,
)

__all__ = ["CLONE_AFTER_EXEC", "decide_for_clone", "prepare_clone_run", "patch_select_device"]


def decide_for_clone(fullname: str, module: types.ModuleType) -> None:
    """First module of a clone (the hook checked its shape): patch this clone, or stand aside."""
    if STATE.enabled is not None:
        return
    from .clone import clone_root_of

    root = clone_root_of(fullname, getattr(module, "__file__", None))
    if root is None:
        return
    STATE.layout, STATE.clone_root = "clone", root
    if source_patched_root(root):
        STATE.source_patched = str(root)
        STATE.enabled = False  # its patched source calls the plugin itself
        return
    STATE.enabled = True
    compat.set_offline_environment()


def _refuse_unrecognised_loss(hyp: Dict[str, Any]) -> None:
    keys = plugin_keys(hyp)
    if not keys or not STATE.unrecognised_loss:
        return
    where = "; ".join(f"{file}: {', '.join(missing)} not found" for file, missing in STATE.unrecognised_loss.items())
    raise UnrecognisedComputeLoss(
        f"yolo-focal-plugin: the hyp sets {', '.join(keys)}, but this YOLOv5's ComputeLoss does not have the shape "
        f"the plugin patches ({where}), so the run would not use the loss its hyp names. Update the clone or the "
        f"plugin, train with a hyp that has only fl_gamma (YOLOv5's own FocalLoss), or set {FORCE_ENV}=1 to patch "
        "anyway at your own risk."
    )


def prepare_clone_run(frame: Any) -> None:
    """Called from the clone's ``select_device`` with its caller's frame: prepare a ``python train.py`` run.

    In a clone ``train.py`` runs as ``__main__``, so its ``train()`` cannot be wrapped at import.
    Every clone's ``main(opt)`` selects the device after it has resolved ``opt.hyp`` and
    ``opt.save_dir`` and before ``train()`` makes the run directory: the same checks as
    :func:`before_train` happen there, in every DDP rank too.
    """
    from .clone import is_segment_script, train_main_frame

    if STATE.clone_root is None:
        return
    main = train_main_frame(frame, STATE.clone_root)
    if main is None:
        return  # val.py, detect.py, a user's script: nothing to prepare
    opt = main.f_locals["opt"]
    hyp = load_hyp(opt.hyp)
    _refuse_unrecognised_loss(hyp)
    task = "segment" if is_segment_script(main) else "detect"
    if getattr(opt, "evolve", False) and plugin_keys(hyp) and not STATE.clone_evolving:
        parse_focal_hyp(hyp, nc=dataset_nc(opt), task=task)  # a bad key stops before generation 1
        _evolve_clone(main, plugin_keys(hyp), task)
    before_train(hyp, opt, main.f_locals.get("callbacks"), task=task)


def _evolve_clone(main: Any, plugin_key_names: List[str], task: str) -> None:
    """``--evolve`` with the plugin's keys in a clone: run the clone's ``main`` recompiled as for the
    pip package (``evolve.py``), then end the process as that ``main`` would have.

    A clone's ``train.py`` runs as ``__main__``, whose ``main`` is already running when the plugin
    sees it (here, at ``select_device``): it cannot be replaced before it starts. So the recompiled
    copy, built from the clone's own source with the evolve anchors, runs the whole evolution from
    this seam, and the original ``main`` never goes past it. A ``main`` without the anchors (the
    newest upstream rewrote its evolution) is refused before generation 1.
    """
    from . import evolve
    from .compat import recompile_function

    keys = ", ".join(plugin_key_names)
    if task == "segment":
        raise evolve.EvolveUnsupported(f"--evolve of segmentation with the plugin's keys ({keys}) is not supported; "
                                       f"{evolve.SWEEP_HINT}")
    original = main.f_globals.get("main")
    patched = None
    if getattr(original, "__code__", None) is main.f_code:
        try:
            patched = recompile_function(original, evolve._patched_source)
        except (OSError, TypeError):
            patched = None
    if patched is None:
        raise evolve.EvolveUnsupported(
            f"--evolve cannot mutate the plugin's keys ({keys}) with this clone: its main() does not have the "
            f"evolve code the plugin extends (tag v7.0's); {evolve.SWEEP_HINT}"
        )
    namespace = main.f_globals
    namespace[evolve.GLOBAL_NAME] = evolve
    LEDGER.add_undo(lambda: namespace.pop(evolve.GLOBAL_NAME, None), f"__main__.{evolve.GLOBAL_NAME}")
    yolov5_logger().info("yolo-focal-plugin: --evolve in a clone: running the clone's main() with the plugin's evolve keys")
    STATE.clone_evolving = True
    try:
        patched(main.f_locals["opt"])
    finally:
        STATE.clone_evolving = False
    raise SystemExit(0)


def patch_select_device(torch_utils: types.ModuleType) -> None:
    """The seam of :func:`prepare_clone_run` (``train.py`` binds the name by from-import after this)."""
    original = torch_utils.select_device

    @functools.wraps(original)
    def select_device(*args: Any, **kwargs: Any) -> Any:
        prepare_clone_run(sys._getframe(1))
        return original(*args, **kwargs)

    LEDGER.set(torch_utils, "select_device", select_device, f"{torch_utils.__name__}.select_device (run preparation)")


def _clone_compute_loss(loss_module: types.ModuleType) -> None:
    """Patch a clone's ``ComputeLoss`` when it has the expected shape; otherwise guard it (never silent)."""
    from .clone import compute_loss_mismatches

    missing = compute_loss_mismatches(loss_module.ComputeLoss)
    if not missing:
        patch_compute_loss(loss_module)
        return
    if flag(FORCE_ENV):
        print(f"WARNING: yolo-focal-plugin: {loss_module.__file__}: ComputeLoss does not match "
              f"({', '.join(missing)}); {FORCE_ENV} is set: patching anyway", file=sys.stderr)
        patch_compute_loss(loss_module)
        return
    STATE.unrecognised_loss[str(loss_module.__file__)] = missing
    cls = loss_module.ComputeLoss
    original_init = cls.__dict__["__init__"]

    @functools.wraps(original_init)
    def __init__(self: Any, model: Any, *args: Any, **kwargs: Any) -> None:
        _refuse_unrecognised_loss(model.hyp)  # reached by scripts that skip the select_device seam
        original_init(self, model, *args, **kwargs)

    LEDGER.set(cls, "__init__", __init__, f"{loss_module.__name__}.ComputeLoss.__init__ (guard)")


def _clone_general(module: types.ModuleType) -> None:
    STATE.logger = getattr(module, "LOGGER", None) or STATE.logger
    patch_general(module)


def _clone_downloads(module: types.ModuleType) -> None:
    if hasattr(module, "attempt_download_from_hub"):  # the pip fork's Hugging Face look-up; upstream has none
        compat.patch_hub_download(module)


def _clone_models_yolo(module: types.ModuleType) -> None:
    # v7.0 loads checkpoints with a bare torch.load (weights_only=True on torch >= 2.6); newer clones
    # load through ultralytics' torch_load and need no allow-list
    if compat.source_calls(STATE.clone_root / "models" / "experimental.py", "torch.load("):
        allow_checkpoint_classes(module)


CLONE_AFTER_EXEC: Dict[str, Callable[[types.ModuleType], None]] = {
    "utils.general": _clone_general,
    "utils.downloads": _clone_downloads,
    "utils.metrics": compat.patch_numpy_trapz,
    "utils.plots": compat.patch_pillow_getsize,
    "utils.torch_utils": patch_select_device,
    "utils.loss": _clone_compute_loss,
    "utils.segment.loss": _clone_compute_loss,
    "models.yolo": _clone_models_yolo,
}
