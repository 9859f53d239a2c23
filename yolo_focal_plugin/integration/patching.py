"""A ledger of every attribute the plugin replaces in yolov5 (or a library), so it can be undone exactly."""
from __future__ import annotations

from typing import Any, Callable, List, Tuple

_MISSING = object()


class PatchLedger:
    """Records patches with their undo functions; :meth:`restore_all` undoes them newest first."""

    def __init__(self) -> None:
        self._entries: List[Tuple[str, Callable[[], None]]] = []

    def set(self, target: Any, name: str, value: Any, label: str) -> None:
        # Read a class's own __dict__ so an inherited attribute is restored by deletion,
        # not by pinning the parent's value onto the child.
        original = target.__dict__.get(name, _MISSING) if isinstance(target, type) else getattr(target, name, _MISSING)

        def undo() -> None:
            if original is _MISSING:
                if name in getattr(target, "__dict__", {}):
                    delattr(target, name)
            else:
                setattr(target, name, original)

        setattr(target, name, value)
        self._entries.append((label, undo))

    def add_undo(self, undo: Callable[[], None], label: str) -> None:
        """Record a change that is not a plain setattr, with the function that reverts it."""
        self._entries.append((label, undo))

    def labels(self) -> List[str]:
        return [label for label, _ in self._entries]

    def restore_all(self) -> None:
        while self._entries:
            _, undo = self._entries.pop()
            undo()


LEDGER = PatchLedger()
