"""yolo-focal-plugin: focal-loss training for YOLOv5 that you can trust.

Importing this package is cheap (no torch, no yolov5): it is imported at interpreter start-up
by the ``.pth`` hook. Heavy modules load on first use.
"""
from __future__ import annotations

from . import _moved

__version__ = "0.1.0"

_moved.register()

__all__ = ["__version__", "install", "uninstall", "installed", "patched"]


def install(force: bool = False) -> None:
    """Patch the imported (or soon imported) yolov5 in place. Idempotent."""
    from .integration import install as _install

    _install(force=force)


def uninstall() -> None:
    """Restore every yolov5 object the plugin patched, exactly."""
    from .integration import uninstall as _uninstall

    _uninstall()


def installed() -> bool:
    from .integration import installed as _installed

    return _installed()


def patched():
    """Context manager: ``with yolo_focal_plugin.patched(): ...`` installs, then restores."""
    from .integration import patched as _patched

    return _patched()
