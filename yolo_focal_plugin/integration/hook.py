"""Import hook: patch each yolov5 module right after it executes, and only that module.

Registered from the ``.pth`` start-up file, so it reaches every process that imports yolov5:
``yolov5 train``, ``python -m yolov5.train``, DDP ranks started by ``torch.distributed.run``,
``yolov5 val`` and sweep subprocesses. Importing this module is cheap (stdlib only); the patch
code is imported the first time a yolov5 module loads.

Two layouts are watched: the pip package (``yolov5.*``, :data:`WATCHED`) and a git clone of
ultralytics/yolov5 (top-level ``utils.*`` / ``models.*``, :data:`CLONE_WATCHED`), whose
modules are wrapped only when the folder they come from has a clone's shape (``clone.py``).

A hook must never import another yolov5 module: yolov5's circular star-imports break when a
module is imported from inside another one's post-load hook (seen with ``yolov5.models.yolo``).
"""
from __future__ import annotations

import _thread
import sys

# Start-up cost (#15): this module is imported in every interpreter, so it imports nothing that
# the interpreter has not loaded already. typing, importlib.abc (which pulls importlib.resources,
# tempfile, shutil, random ...) and threading cost tens of ms together; the names below are for
# annotations only (postponed by the __future__ import), and the classes need no ABC base.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import importlib.machinery
    from typing import Any, Optional

from .watched import CLONE_WATCHED, WATCHED

_lock = _thread.RLock()


def _is_clone_module(fullname: str, spec: importlib.machinery.ModuleSpec) -> bool:
    from .clone import clone_root_of, looks_like_clone

    root = clone_root_of(fullname, spec.origin)
    return root is not None and looks_like_clone(root)


class _PostImportLoader:
    """Delegates to the real loader, then runs the plugin's hook for the module."""

    def __init__(self, loader: Any, fullname: str) -> None:
        self._loader = loader
        self._fullname = fullname

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        from . import dispatch

        dispatch.before_exec(self._fullname, module)
        self._loader.exec_module(module)
        dispatch.after_exec(self._fullname, module)

    def get_code(self, fullname: str) -> Any:
        """Used by runpy (``python -m yolov5.train``), which executes the code as ``__main__`` and
        never calls ``exec_module``: the train modules get one line that patches their namespace
        right before their ``if __name__ == '__main__':`` block runs."""
        from . import dispatch

        code = dispatch.main_code(fullname, self._loader)
        return code if code is not None else self._loader.get_code(fullname)

    def __getattr__(self, name: str) -> Any:
        # get_source, get_filename, is_package ... keep inspect and linecache working
        return getattr(self._loader, name)


class YoloFocalFinder:
    """Finds watched modules through the other finders and wraps their loaders."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in WATCHED and fullname not in CLONE_WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, YoloFocalFinder):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if fullname in CLONE_WATCHED and not _is_clone_module(fullname, spec):
            return None  # another project's top-level `utils` / `models`: never touched
        if spec.loader is not None and not isinstance(spec.loader, _PostImportLoader):
            spec.loader = _PostImportLoader(spec.loader, fullname)
        return spec


def registered() -> bool:
    return any(isinstance(f, YoloFocalFinder) for f in sys.meta_path)


def register() -> None:
    """Put the finder first on ``sys.meta_path`` (idempotent)."""
    with _lock:
        if not registered():
            sys.meta_path.insert(0, YoloFocalFinder())


def unregister() -> None:
    with _lock:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, YoloFocalFinder)]

