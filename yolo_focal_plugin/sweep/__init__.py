"""Hyperparameter sweeps on Optuna: ``yolo-focal sweep`` and ``yolo-focal report``.

A sweep trains every combination of losses, ``fl_gamma`` and ``fl_alpha`` values and any other
hyp key given with ``--set KEY=V1,V2`` (``fl_*`` or YOLOv5's own, e.g. ``obj``), several seeds
each, each setting against BCE with the same non-``fl_*`` values (its matched baseline), stock
YOLOv5 beside it.

* :mod:`.space`        lists/ranges, losses, ``--set`` keys, seeds -> units (pure Python)
* :mod:`.study`        Optuna storage (SQLite default, PostgreSQL for several machines), plan checks
* :mod:`._validation`  :func:`prepare_sweep`: every option checked, study created or loaded
* :mod:`._liveness`    which worker process is alive; the SQLite claim lock
* :mod:`.engine`       claiming, heartbeats, resume, ``--n-jobs`` threads, progress bar
* :mod:`.trial`        one unit = one ``yolov5`` training subprocess, watched through ``results.csv``
* :mod:`.runner`       the subprocess entry point (``python -m yolo_focal_plugin.sweep.runner``)
* :mod:`.stats`        mean, std, Welch's t-test
* :mod:`.report`       table (markdown/CSV/JSON), Welch t-test vs baseline, heatmap, best hyp
* :mod:`.command`      the ``yolo-focal sweep`` command line
* :mod:`.small_sweep`  :func:`run_small_sweep`: a small sweep on generated imbalanced data

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
