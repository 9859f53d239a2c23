"""What the import hook runs around each watched module: decide whether to patch, then dispatch.

``before_exec`` decides once per process which YOLOv5 is being patched (the pip package by its
version, a clone by its shape) or whether to stand aside; ``after_exec`` runs the action of the
module that just executed, from the pip package's table (``yolov5_hooks``) or the clone's
(``clone_hooks``). ``main_code`` serves ``python -m yolov5.train``, which runs the module as
``__main__``.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Dict, Optional

from . import compat
from .clone_hooks import CLONE_AFTER_EXEC, decide_for_clone
from .watched import CLONE_WATCHED
from .yolov5_hooks import (
    AFTER_EXEC,
    STATE,
    UnsupportedYolov5Version,
    check_version,
    read_yolov5_version,
    stand_aside_if_source_patched,
)

__all__ = ["before_exec", "after_exec", "main_code", "after_exec_main"]


def before_exec(fullname: str, module: types.ModuleType) -> None:
    if fullname in CLONE_WATCHED:
        decide_for_clone(fullname, module)
        return
    if fullname != "yolov5" or STATE.enabled is not None:
        return
    STATE.layout = "pip package"
    _say_which_yolov5_runs(getattr(module, "__file__", None))
    STATE.version = read_yolov5_version(getattr(module, "__file__", None))
    if stand_aside_if_source_patched(getattr(module, "__file__", None)):
        return  # the patched source calls the plugin itself (and sets the offline environment)
    try:
        STATE.enabled = check_version(STATE.version)
    except UnsupportedYolov5Version as exc:
        # From the start-up hook we must not break yolov5 itself: stand aside, loudly.
        print(f"yolo-focal-plugin: NOT patching yolov5: {exc}", file=sys.stderr)
        STATE.enabled = False
        return
    compat.set_offline_environment()


def _say_which_yolov5_runs(package_file: Optional[str]) -> None:
    """The look-alike trap: a clone named ``yolov5/`` beside the pip package that Python imports."""
    from .clone import shadowing_clone

    clone = shadowing_clone(package_file, sys.path)
    if clone is not None:
        print(
            f"yolo-focal-plugin: `yolov5` is the pip package at {Path(package_file).parent}, NOT the clone at "
            f"{clone}: this process trains the pip package. To train the clone, run `python train.py ...` "
            "inside it.",
            file=sys.stderr,
        )


def after_exec(fullname: str, module: types.ModuleType) -> None:
    if not STATE.enabled or fullname in STATE.applied:
        return
    table = CLONE_AFTER_EXEC if STATE.layout == "clone" else AFTER_EXEC
    action = table.get(fullname)
    if action is None:
        return
    STATE.applied.add(fullname)
    action(module)


MAIN_ENTRY_MODULES = ("yolov5.train", "yolov5.segment.train")
MAIN_ANCHOR = "\nif __name__ == '__main__':"


class _NamespaceModule:
    """Attribute access onto a module's globals dict (``python -m`` runs a module as ``__main__``)."""

    def __init__(self, name: str, namespace: Dict[str, Any]) -> None:
        object.__setattr__(self, "_namespace", namespace)
        object.__setattr__(self, "__name__", name)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._namespace[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self._namespace[key] = value

    def __delattr__(self, key: str) -> None:
        del self._namespace[key]


def main_code(fullname: str, loader: Any) -> Any:
    """Code for ``python -m <train module>`` with the plugin's patch call inserted, or None."""
    if fullname not in MAIN_ENTRY_MODULES or not STATE.enabled:
        return None
    source = loader.get_source(fullname)
    if not source or source.count(MAIN_ANCHOR) != 1:
        print(f"yolo-focal-plugin: {fullname} has an unexpected layout; not patched when run with -m", file=sys.stderr)
        return None
    call = f"__import__('yolo_focal_plugin.integration.dispatch').integration.dispatch.after_exec_main({fullname!r}, globals())"
    patched = source.replace(MAIN_ANCHOR, f"\n{call}{MAIN_ANCHOR}")
    return compile(patched, loader.get_filename(fullname), "exec", dont_inherit=True)


def after_exec_main(fullname: str, namespace: Dict[str, Any]) -> None:
    """Patch a train module executing as ``__main__`` (its globals are not a registered module)."""
    if STATE.enabled:
        AFTER_EXEC[fullname](_NamespaceModule(fullname, namespace))  # type: ignore[arg-type]
