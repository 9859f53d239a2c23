"""Offline and current-stack shims for the pinned ``yolov5==7.0.14`` and for clones of ultralytics/yolov5.

Each shim is feature-detected (applied only when the fault it fixes is present: the library
lacks the old API *and* the module's own source still uses it), recorded in the
:data:`~.patching.LEDGER` so it can be undone, and listed in :data:`APPLIED` for the run log.
References are to ``../shared/YOLOV5-AUDIT.md``.
"""
from __future__ import annotations

import functools
import inspect
import os
import shutil
import textwrap
import types
from pathlib import Path
from typing import Any, Callable, List, Optional

from .patching import LEDGER

APPLIED: List[str] = []

# Read by ultralytics at import (general.py imports it): no DNS probes, no pip auto-install.
OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS": "1",
    "YOLO_AUTOINSTALL": "false",
    "YOLOv5_AUTOINSTALL": "false",  # a v7.0 clone's check_requirements would try `pip install` otherwise
}


def source_calls(source: Any, text: str) -> bool:
    """True if the source of ``source`` (a module or a file path) contains ``text``.

    How a shim tells that the code it would fix still uses the removed API (upstream clones
    fixed some of them, e.g. ``np.trapz`` and ``getsize``, in later commits).
    """
    try:
        if isinstance(source, types.ModuleType):
            return text in inspect.getsource(source)
        return text in Path(source).read_text(encoding="utf-8", errors="ignore")
    except (OSError, TypeError):
        return True  # cannot tell: keep the shim, which is harmless where the API is unused


def _note(text: str) -> None:
    if text not in APPLIED:
        APPLIED.append(text)


def set_offline_environment() -> None:
    """Audit 2c/2d. ``setdefault``: a user who sets these explicitly keeps their value."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    _note("offline environment: " + ", ".join(f"{k}={os.environ[k]}" for k in OFFLINE_ENV))


def _bundled_font() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def seed_font_if_missing(font: Any, config_dir: Any) -> None:
    """Audit 2a: put matplotlib's DejaVuSans where ``check_font`` would download ``font`` to.

    Called by the ``check_font`` wrapper below and by the source patches (``patches/``).
    """
    font_path = Path(font)
    target = Path(config_dir) / font_path.name
    if not font_path.exists() and not target.exists() and font_path.suffix.lower() == ".ttf":
        source = _bundled_font()
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            _note(f"{target.name}: seeded from matplotlib's DejaVuSans.ttf instead of downloaded")


def patch_check_font(general: types.ModuleType) -> None:
    """Audit 2a: ``check_font`` downloads Arial.ttf; seed it from matplotlib's DejaVuSans instead."""
    original = general.check_font

    @functools.wraps(original)
    def check_font(font: Any = general.FONT, progress: bool = False) -> Any:
        seed_font_if_missing(font, general.CONFIG_DIR)
        return original(font, progress)

    LEDGER.set(general, "check_font", check_font, "yolov5.utils.general.check_font")


def resolve_bundled_file(file: Any) -> Optional[str]:
    """The plugin's bundled hyp for a bare name that is not a local file (``hyp.focal.yaml``), else None.

    Called by the ``check_file`` wrapper below and by the source patches (``patches/``).
    """
    if isinstance(file, (str, Path)) and str(file) and not os.path.isfile(str(file)):
        from ..hyp import resolve_hyp_path

        bundled = resolve_hyp_path(file)
        if bundled is not None:
            return str(bundled)
    return None


def patch_check_file(general: types.ModuleType) -> None:
    """Bare hyp names (``--hyp hyp.focal.yaml``) resolve to the plugin's bundled hyps from any directory."""
    original = general.check_file

    @functools.wraps(original)
    def check_file(file: Any, suffix: Any = "") -> Any:
        bundled = resolve_bundled_file(file)
        return bundled if bundled is not None else original(file, suffix)

    LEDGER.set(general, "check_file", check_file, "yolov5.utils.general.check_file")


def guarded_hub_download(download: Any, repo_id: Any, *args: Any, **kwargs: Any) -> Any:
    """Audit 2b: ``download(repo_id, ...)`` (yolov5's hub look-up), skipped for local paths and offline.

    Called by the ``attempt_download_from_hub`` wrapper below and by the source patches (``patches/``).
    """
    if Path(str(repo_id)).exists():
        return None
    try:
        return download(repo_id, *args, **kwargs)
    except Exception as exc:  # requests.ConnectionError, OfflineModeIsEnabled, timeouts ...
        if type(exc).__name__ in ("ConnectionError", "OfflineModeIsEnabled", "Timeout", "ConnectTimeout") or isinstance(exc, OSError):
            return None
        raise


def patch_hub_download(downloads: types.ModuleType) -> None:
    """Audit 2b: a local ``--weights best.pt`` must not query Hugging Face first (fatal offline)."""
    original = downloads.attempt_download_from_hub

    @functools.wraps(original)
    def attempt_download_from_hub(repo_id: Any, *args: Any, **kwargs: Any) -> Any:
        return guarded_hub_download(original, repo_id, *args, **kwargs)

    LEDGER.set(downloads, "attempt_download_from_hub", attempt_download_from_hub,
               "yolov5.utils.downloads.attempt_download_from_hub")
    _note("Hugging Face look-up skipped for local --weights paths and when offline")


class _NumpyWithTrapz(types.ModuleType):
    """numpy as seen by yolov5.utils.metrics only, plus the ``trapz`` numpy 2 removed."""

    def __init__(self, numpy: types.ModuleType) -> None:
        super().__init__("numpy")
        self._numpy = numpy
        self.trapz = numpy.trapezoid

    def __getattr__(self, name: str) -> Any:
        return getattr(self._numpy, name)


def numpy_with_trapz(np: types.ModuleType) -> types.ModuleType:
    """``np`` itself, or (numpy 2) a view of it that still has ``trapz``; the user's numpy is left as it is.

    Used by :func:`patch_numpy_trapz` and by the source patches (``patches/``).
    """
    if hasattr(np, "trapz") or not hasattr(np, "trapezoid"):
        return np
    _note("numpy 2: np.trapz aliased to np.trapezoid inside YOLOv5's utils.metrics")
    return _NumpyWithTrapz(np)


def patch_numpy_trapz(metrics: types.ModuleType) -> None:
    """Audit 4: numpy 2 removed ``np.trapz``; validation dies as soon as one detection is correct.

    Only ``yolov5.utils.metrics`` sees the alias: the user's numpy is left as it is.
    """
    if not hasattr(metrics, "np") or not source_calls(metrics, "np.trapz("):
        return
    np = numpy_with_trapz(metrics.np)
    if np is not metrics.np:
        LEDGER.set(metrics, "np", np, "yolov5.utils.metrics.np (trapz alias)")


def _getsize(self: Any, text: str, *args: Any, **kwargs: Any) -> tuple:
    # Pillow < 10 returned the right/bottom edge of the text box, offsets included.
    left, top, right, bottom = self.getbbox(text, *args, **kwargs)
    return right, bottom


def patch_pillow_getsize(plots: types.ModuleType) -> None:
    """Audit 4: Pillow >= 10 removed ``getsize``; yolov5 silently drops the batch images."""
    if source_calls(plots, ".getsize("):
        restore_pillow_getsize()


def restore_pillow_getsize() -> None:
    """Add ``getsize`` (via ``getbbox``) back to Pillow's font classes where it is missing.

    Used by :func:`patch_pillow_getsize` and by the source patches (``patches/``).
    """
    from PIL import ImageFont

    added = []
    for cls in (ImageFont.FreeTypeFont, ImageFont.ImageFont):
        if not hasattr(cls, "getsize") and hasattr(cls, "getbbox"):
            LEDGER.set(cls, "getsize", _getsize, f"PIL.ImageFont.{cls.__name__}.getsize")
            added.append(cls.__name__)
    if added:
        _note("Pillow: getsize() restored via getbbox() on " + ", ".join(added))


def patch_segment_run_cli(segment_train: types.ModuleType) -> None:
    """Audit 4: ``yolov5 segment train`` is a silent no-op because ``run_cli`` never calls ``main``.

    The fix swaps the function's code in place, so the name bound in ``yolov5.cli`` is fixed too.
    """
    run_cli = segment_train.run_cli
    source = inspect.getsource(run_cli)
    if "main(" in source:
        return

    def fixed_run_cli(**kwargs: Any) -> None:
        opt = parse_opt(True)  # noqa: F821 (resolved in yolov5.segment.train's globals)
        for k, v in kwargs.items():
            setattr(opt, k, v)
        main(opt)  # noqa: F821

    original_code = run_cli.__code__
    run_cli.__code__ = fixed_run_cli.__code__
    LEDGER.add_undo(lambda: setattr(run_cli, "__code__", original_code), "yolov5.segment.train.run_cli.__code__")
    _note("yolov5 segment train: run_cli now calls main (was a silent no-op)")


MAP50S_ANCHOR = "    maps = np.zeros(nc)  # mAP per class\n"
MAP50S_USE = "list(maps) + list(map50s)"
MAP50S_FIX = "    map50s = np.zeros(nc)  # yolo-focal-plugin: --noval fix\n"  # also inserted by patches/


def recompile_function(original: Any, transform: Callable[[str], Optional[str]]) -> Optional[Any]:
    """``original`` compiled again from its own source after ``transform(source)``, in its module's globals.

    ``transform`` returns the new source, or None to refuse (anchors not found). Leading blank lines
    keep tracebacks on the real line numbers; the globals are the module's, also when it runs as
    ``__main__``. Raises ``OSError``/``TypeError`` when the source is not available.
    """
    lines, first_line = inspect.getsourcelines(original)
    new_source = transform(textwrap.dedent("".join(lines)))
    if new_source is None:
        return None
    filename = inspect.getsourcefile(original) or f"<{original.__module__}>"
    namespace: dict = {}
    exec(compile("\n" * (first_line - 1) + new_source, filename, "exec"), original.__globals__, namespace)
    recompiled = namespace[original.__name__]
    recompiled.__module__ = original.__module__
    return recompiled


def _add_map50s_init(source: str) -> Optional[str]:
    if MAP50S_USE not in source or source.count(MAP50S_ANCHOR) != 1 or "map50s = np.zeros" in source:
        return None
    return source.replace(MAP50S_ANCHOR, MAP50S_ANCHOR + MAP50S_FIX)


def recompile_train_with_map50s(train_module: types.ModuleType) -> Any:
    """Audit 4: with ``--noval`` (and ``--evolve``) ``train()`` reads ``map50s`` before assigning it.

    Returns a ``train`` compiled from yolov5's own source with one line added after the anchor,
    or the original function when the source does not have the bug (another yolov5 version).
    """
    original = train_module.train
    fixed = recompile_function(original, _add_map50s_init)
    if fixed is None:
        return original
    _note("train(): map50s initialised so --noval/--evolve do not crash (UnboundLocalError)")
    return fixed
