"""YOLOv5 integration: the only package of the plugin that touches yolov5.

``install()`` patches yolov5 modules that are already imported and registers the import hook
for the rest; ``uninstall()`` restores every patched object exactly; ``patched()`` does both
around a ``with`` block. The ``.pth`` start-up hook calls ``hook.register()`` in every
interpreter, so ``yolov5 train``, ``python -m yolov5.train`` and DDP ranks are covered without
an explicit ``install()``.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from . import compat, hook
from .patching import LEDGER
from .yolov5_hooks import (
    STATE,
    SUPPORTED_YOLOV5_VERSIONS,
    UnsupportedYolov5Version,
    after_exec,
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


def install(force: bool = False) -> None:
    """Patch yolov5 now (modules already imported) and on import (the rest). Idempotent.

    Raises :class:`UnsupportedYolov5Version` for a yolov5 the patches were not verified against,
    unless ``force=True`` or ``YOLO_FOCAL_FORCE=1`` (then it warns).
    """
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
    if stand_aside_if_source_patched(origin):
        return  # a yolov5 patched from patches/ calls the plugin itself: no second wrapping
    STATE.enabled = check_version(version, force=force)
    compat.set_offline_environment()
    hook.register()
    for name in hook.WATCHED:  # WATCHED is in dependency order
        module = sys.modules.get(name)
        if module is not None:
            after_exec(name, module)


def uninstall() -> None:
    """Undo every patch and remove the import hook; yolov5 behaves as if the plugin were absent."""
    LEDGER.restore_all()
    hook.unregister()
    STATE.applied.clear()
    STATE.enabled = False  # a later import must not re-patch until install() is called again
    STATE.announced = False
    compat.APPLIED.clear()


def installed() -> bool:
    return bool(STATE.enabled) and hook.registered()


def applied_patches() -> list:
    """Labels of the objects currently patched, oldest first."""
    return LEDGER.labels()


@contextlib.contextmanager
def patched(force: bool = False) -> Iterator[None]:
    """``with patched(): ...`` installs the plugin and restores yolov5 exactly afterwards."""
    was_installed = installed()
    install(force=force)
    try:
        yield
    finally:
        if not was_installed:
            uninstall()
