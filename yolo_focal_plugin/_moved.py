"""Old import paths of modules that moved when the package was given its present layout.

``import yolo_focal_plugin.synth`` (and the other names below) keeps working: the finder hands
out the module at its new path under the old name, so both names are the same module object.
Imported at start-up with the package, so it imports nothing itself; importlib is loaded only
when an old name is actually asked for.
"""
from __future__ import annotations

import sys

MOVED = {
    "yolo_focal_plugin.synth": "yolo_focal_plugin.experiments.synth",
    "yolo_focal_plugin.demo": "yolo_focal_plugin.experiments.demo",
    "yolo_focal_plugin.evidence": "yolo_focal_plugin.experiments.evidence",
    "yolo_focal_plugin.compare": "yolo_focal_plugin.experiments.compare",
    "yolo_focal_plugin.assign_stats": "yolo_focal_plugin.experiments.assign_stats",
    "yolo_focal_plugin.patch_cli": "yolo_focal_plugin.cli.patch",
    "yolo_focal_plugin.vendor": "yolo_focal_plugin.sourcepatch",
    "yolo_focal_plugin.vendor.apply": "yolo_focal_plugin.sourcepatch.apply",
    "yolo_focal_plugin.vendor.edits": "yolo_focal_plugin.sourcepatch.edits",
    "yolo_focal_plugin.vendor.generate": "yolo_focal_plugin.sourcepatch.generate",
    "yolo_focal_plugin.vendor.unidiff": "yolo_focal_plugin.sourcepatch.unidiff",
    "yolo_focal_plugin.sweep.demo": "yolo_focal_plugin.sweep.small_sweep",
}


class _AliasLoader:
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: object) -> object:
        import importlib

        return importlib.import_module(self.target)

    def exec_module(self, module: object) -> None:
        """The target module executed when it was imported under its own name."""


class MovedModuleFinder:
    """Resolves an old module path to the module at its new path."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        new = MOVED.get(fullname)
        if new is None:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def register() -> None:
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
