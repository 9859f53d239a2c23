"""Gamma/alpha sweeps on Optuna: ``yolo-focal sweep`` and ``yolo-focal report``.

* :mod:`.space`   lists/ranges, losses, seeds -> units (pure Python)
* :mod:`.study`   Optuna storage (SQLite default, PostgreSQL for several machines), plan checks
* :mod:`.trial`   one unit = one ``yolov5`` training subprocess, watched through ``results.csv``
* :mod:`.runner`  the subprocess entry point (``python -m yolo_focal_plugin.sweep.runner``)
* :mod:`.engine`  claiming, heartbeats, resume, ``--n-jobs`` threads, progress bar
* :mod:`.report`  table (markdown/CSV/JSON), Welch t-test vs baseline, heatmap, best hyp
* :mod:`.demo`    :func:`run_small_sweep`: a small sweep on generated imbalanced data

Importing this package is cheap: the heavy modules load on first use.
"""
from __future__ import annotations

from typing import Any

__all__ = ["SweepConfig", "SweepError", "run_sweep", "prepare_sweep", "build_report", "report_study", "run_small_sweep"]


def __getattr__(name: str) -> Any:
    if name in ("SweepConfig", "run_sweep", "prepare_sweep"):
        from . import engine

        return getattr(engine, name)
    if name == "SweepError":
        from .space import SweepError

        return SweepError
    if name in ("build_report", "report_study"):
        from . import report

        return getattr(report, name)
    if name == "run_small_sweep":
        from .small_sweep import run_small_sweep

        return run_small_sweep
    raise AttributeError(name)
