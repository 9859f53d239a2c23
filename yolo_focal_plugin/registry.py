"""Name -> loss wrapper class, for the ``fl_loss`` hyp key.

Built-in names: ``focal`` (:class:`~yolo_focal_plugin.losses.FocalLoss`), ``varifocal``
(:class:`~yolo_focal_plugin.losses.VFLoss`) and ``qfocal`` (:class:`~yolo_focal_plugin.losses.QFocalLoss`).
A registered class is constructed as ``cls(bce, gamma=..., alpha=...)`` around an
``nn.BCEWithLogitsLoss``, like YOLOv5's wrappers.

Adding a loss, in your own code::

    from yolo_focal_plugin.registry import register_loss

    @register_loss("poly_focal")
    class PolyFocal(torch.nn.Module):
        def __init__(self, loss_fcn, gamma=1.5, alpha=0.25): ...

or from an installed package, without importing it up front, through the entry-point group
``yolo_focal_plugin.losses`` (``pyproject.toml``)::

    [project.entry-points."yolo_focal_plugin.losses"]
    poly_focal = "my_pkg.losses:PolyFocal"

Entry points and the built-ins are listed by :func:`available_losses` without being imported
(importing this module imports no torch) and are loaded on the first :func:`get_loss` of their
name. A name registered in-process (the built-ins included) takes precedence over an entry point
of the same name. Names are case-insensitive.
"""
from __future__ import annotations

import sys
import threading
from importlib import metadata
from typing import Callable, Dict, List, Optional, TypeVar, Union, overload

__all__ = [
    "BUILTIN_LOSSES",
    "ENTRY_POINT_GROUP",
    "UnknownLossError",
    "available_losses",
    "get_loss",
    "register_loss",
    "unregister_loss",
]

ENTRY_POINT_GROUP = "yolo_focal_plugin.losses"

# The built-in names and where their classes live. Resolved on first use, so that listing or
# validating names (hyp.py, at start-up and in the sweep's parent process) never imports torch.
BUILTIN_LOSSES: Dict[str, str] = {
    "focal": "yolo_focal_plugin.losses:FocalLoss",
    "varifocal": "yolo_focal_plugin.losses:VFLoss",
    "qfocal": "yolo_focal_plugin.losses:QFocalLoss",
}

T = TypeVar("T", bound=type)

_lock = threading.RLock()
_registry: Dict[str, type] = {}


class UnknownLossError(KeyError, ValueError):
    """Raised by :func:`get_loss` for a name nobody registered.

    It is both a ``KeyError`` (a failed lookup) and a ``ValueError`` (a bad configuration value), so
    ``except KeyError`` and ``except ValueError`` both catch it. ``known`` lists the valid names.
    """

    def __init__(self, name: str, known: List[str]):
        self.name = name
        self.known = known
        message = f"unknown loss {name!r}; known losses: {', '.join(known) if known else '(none)'}"
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError would print the repr of the message, quotes and all
        return self.message


def _normalise(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"loss name must be a non-empty string, got {name!r}")
    return name.strip().lower()


def _entry_points() -> Dict[str, "metadata.EntryPoint"]:
    """Entry points of our group, by normalised name (first one wins on duplicates)."""
    if sys.version_info >= (3, 10):
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    else:  # pragma: no cover - Python 3.9's API returns a dict of groups
        eps = metadata.entry_points().get(ENTRY_POINT_GROUP, ())
    found: Dict[str, metadata.EntryPoint] = {}
    for ep in eps:
        try:
            found.setdefault(_normalise(ep.name), ep)
        except ValueError:
            continue
    return found


def _check_class(name: str, cls: object) -> type:
    if not isinstance(cls, type):
        raise TypeError(f"loss {name!r} must be registered with a class, got {cls!r}")
    return cls


@overload
def register_loss(name: str, cls: None = None, *, override: bool = False) -> Callable[[T], T]: ...


@overload
def register_loss(name: str, cls: T, *, override: bool = False) -> T: ...


def register_loss(name: str, cls: Optional[type] = None, *, override: bool = False) -> Union[type, Callable[[T], T]]:
    """Register ``cls`` under ``name``; usable as ``@register_loss("name")`` or ``register_loss("name", cls)``.

    Registering the same class twice under one name is a no-op. A *different* class under a taken
    name raises ``ValueError`` unless ``override=True``.
    """
    key = _normalise(name)

    def decorate(target: T) -> T:
        _check_class(key, target)
        if key in BUILTIN_LOSSES:
            _load_builtin(key)  # a built-in name is taken even before its class was first used
        with _lock:
            existing = _registry.get(key)
            if existing is not None and existing is not target and not override:
                raise ValueError(
                    f"loss name {key!r} is already registered to {existing.__module__}.{existing.__qualname__}; "
                    f"pass override=True to replace it with {target.__module__}.{target.__qualname__}")
            _registry[key] = target
        return target

    if cls is not None:
        return decorate(cls)  # type: ignore[arg-type]
    return decorate


def unregister_loss(name: str) -> Optional[type]:
    """Remove ``name`` (returns the class that was registered, or None). Mainly for tests."""
    with _lock:
        return _registry.pop(_normalise(name), None)


def available_losses() -> List[str]:
    """Sorted names of registered losses plus installed entry points (entry points are not imported)."""
    with _lock:
        names = set(_registry)
    names.update(BUILTIN_LOSSES)
    names.update(_entry_points())
    return sorted(names)


def get_loss(name: str) -> type:
    """The loss class registered as ``name`` (case-insensitive).

    Raises :class:`UnknownLossError` (a ``KeyError`` and a ``ValueError``) listing the known names.
    An entry point that fails to import raises ``ImportError`` naming the entry point.
    """
    key = _normalise(name)
    with _lock:
        found = _registry.get(key)
    if found is not None:
        return found
    if key in BUILTIN_LOSSES:
        return _load_builtin(key)
    ep = _entry_points().get(key)
    if ep is None:
        raise UnknownLossError(key, available_losses())
    try:
        loaded = ep.load()
    except Exception as exc:  # a broken third-party package: say which one
        raise ImportError(f"loss {key!r}: entry point {ep.value!r} (group {ENTRY_POINT_GROUP!r}) "
                          f"failed to load: {exc!r}") from exc
    with _lock:
        # Another thread, or the loaded module itself via @register_loss, may have registered it.
        return _registry.setdefault(key, _check_class(key, loaded))


def _load_builtin(key: str) -> type:
    """Import a built-in loss class and register it under its name (once)."""
    import importlib

    module_name, _, attribute = BUILTIN_LOSSES[key].partition(":")
    cls = getattr(importlib.import_module(module_name), attribute)
    with _lock:
        return _registry.setdefault(key, cls)
