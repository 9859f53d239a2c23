"""YOLOv5 integration: the only package of the plugin that touches yolov5.

``install()`` patches yolov5 modules that are already imported and registers the import hook
for the rest; ``uninstall()`` restores every patched object exactly; ``patched()`` does both
around a ``with`` block. The ``.pth`` start-up hook calls ``hook.register()`` in every
interpreter, so ``yolov5 train``, ``python -m yolov5.train`` and DDP ranks are covered without
an explicit ``install()``.

Importing this package must stay cheap: the start-up hook imports it (as the parent of ``hook``)
in every Python process on the machine, most of which never import yolov5. So nothing heavy is
imported here: ``compat``, ``yolov5_hooks`` and ``hyp`` (with ``re``, ``logging``, ``inspect``,
``shutil``, ``pathlib``, ...) load on first use, and the names they define are served by the
module ``__getattr__`` below (PEP 562), so ``from yolo_focal_plugin.integration import
SUPPORTED_YOLOV5_VERSIONS`` keeps working.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: this package is imported at start-up and must stay light
    from pathlib import Path
    from typing import Optional

TYPE_CHECKING = False  # not typing's: importing typing alone costs start-up ~10 ms
if TYPE_CHECKING:  # for type checkers only: importing these at run time is what start-up must avoid
    from contextlib import AbstractContextManager

    from .dispatch import after_exec
    from .patching import LEDGER
    from .yolov5_hooks import (
        STATE,
        SUPPORTED_YOLOV5_VERSIONS,
        UnsupportedYolov5Version,
        check_version,
        read_yolov5_version,
        stand_aside_if_source_patched,
    )

__all__ = [
    "install",
    "uninstall",
    "installed",
    "patched",
    "applied_patches",
    "SUPPORTED_YOLOV5_VERSIONS",
    "UnsupportedYolov5Version",
]

# name -> module that defines it, imported on first access
_LAZY = {
    "LEDGER": "patching",
    "STATE": "yolov5_hooks",
    "SUPPORTED_YOLOV5_VERSIONS": "yolov5_hooks",
    "UnsupportedYolov5Version": "yolov5_hooks",
    "after_exec": "dispatch",
    "check_version": "yolov5_hooks",
    "read_yolov5_version": "yolov5_hooks",
    "stand_aside_if_source_patched": "yolov5_hooks",
}
# submodules that used to be imported eagerly, so ``integration.compat`` worked without an import
_SUBMODULES = ("compat", "hook", "patching", "yolov5_hooks")


def __getattr__(name: str) -> object:
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


def install(force: bool = False) -> None:
    """Patch yolov5 now (modules already imported) and on import (the rest). Idempotent.

    Raises :class:`UnsupportedYolov5Version` for a yolov5 the patches were not verified against,
    unless ``force=True`` or ``YOLO_FOCAL_FORCE=1`` (then it warns).
    """
    from . import compat, hook
    from .dispatch import after_exec
    from .yolov5_hooks import STATE, check_version, read_yolov5_version, stand_aside_if_source_patched

    clone_root = _imported_clone_root()
    if clone_root is not None:
        _install_for_clone(clone_root)
        return
    package = sys.modules.get("yolov5")
    if package is not None:
        origin = getattr(package, "__file__", None)
        version = getattr(package, "__version__", None) or read_yolov5_version(origin)
    else:
        import importlib.util

        spec = importlib.util.find_spec("yolov5")
        origin = spec.origin if spec else None
        version = read_yolov5_version(origin)
    STATE.version = version
    STATE.layout = "pip package"
    if stand_aside_if_source_patched(origin):
        return  # a yolov5 patched from patches/ calls the plugin itself: no second wrapping
    STATE.enabled = check_version(version, force=force)
    compat.set_offline_environment()
    hook.register()
    for name in hook.WATCHED:  # WATCHED is in dependency order
        module = sys.modules.get(name)
        if module is not None:
            after_exec(name, module)


def _imported_clone_root() -> Optional[Path]:
    """The root of a YOLOv5 clone this process has imported modules of, if any (by shape, see ``clone``)."""
    from .clone import clone_root_of, looks_like_clone
    from .watched import CLONE_WATCHED

    for name in CLONE_WATCHED:
        module = sys.modules.get(name)
        root = clone_root_of(name, getattr(module, "__file__", None)) if module is not None else None
        if root is not None and looks_like_clone(root):
            return root
    return None


def _install_for_clone(root: Path) -> None:
    from . import compat, hook
    from .watched import CLONE_WATCHED
    from .dispatch import after_exec
    from .yolov5_hooks import STATE, source_patched_root

    STATE.layout, STATE.clone_root = "clone", root
    if source_patched_root(root):
        STATE.source_patched, STATE.enabled = str(root), False
        return
    STATE.enabled = True
    compat.set_offline_environment()
    hook.register()
    for name in CLONE_WATCHED:  # in dependency order, like WATCHED
        module = sys.modules.get(name)
        if module is not None:
            after_exec(name, module)


def uninstall() -> None:
    """Undo every patch and remove the import hook; yolov5 behaves as if the plugin were absent."""
    from . import compat, hook
    from .patching import LEDGER
    from .yolov5_hooks import STATE

    LEDGER.restore_all()
    hook.unregister()
    STATE.applied.clear()
    STATE.enabled = False  # a later import must not re-patch until install() is called again
    STATE.announced = False
    compat.APPLIED.clear()


def installed() -> bool:
    from . import hook
    from .yolov5_hooks import STATE

    return bool(STATE.enabled) and hook.registered()


def applied_patches() -> list:
    """Labels of the objects currently patched, oldest first."""
    from .patching import LEDGER

    return LEDGER.labels()


def patched(force: bool = False) -> "AbstractContextManager[None]":
    """``with patched(): ...`` installs the plugin and restores yolov5 exactly afterwards."""
    import contextlib

    @contextlib.contextmanager
    def scope():  # type: ignore[no-untyped-def]
        was_installed = installed()
        install(force=force)
        try:
            yield
        finally:
            if not was_installed:
                uninstall()

    return scope()
