"""One unit = one real ``yolov5`` training run in a subprocess, watched while it runs.

The watcher tails the run's ``results.csv`` (YOLOv5 appends a row per epoch) and, per new epoch:
reports the epoch's mAP50-95 to a callback (Optuna's ``trial.report`` + pruner), stops the run on a
NaN loss, and stops it on a timeout or a stop request (Ctrl-C). A crashing run ends with the
reason the runner wrote (``sweep_status.json``) or the last error line of its log.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import yaml

from ..env import DISABLE
from ..run_results import MAP50, MAP50_95, PRECISION, RECALL, RESULTS_FILE, best_epoch_index, fitness, read_results_csv

__all__ = ["TrialSpec", "TrialResult", "EpochRow", "read_results", "run_trial", "best_row", "LOG_FILE", "STATUS_FILE", "HYP_FILE"]

LOG_FILE = "sweep_train.log"
STATUS_FILE = "sweep_status.json"
HYP_FILE = "sweep_hyp.yaml"
POLL_SECONDS = 1.0


@dataclass
class EpochRow:
    epoch: int
    precision: float
    recall: float
    map50: float
    map50_95: float
    losses: Dict[str, float]

    @property
    def fitness(self) -> float:
        return fitness(self.precision, self.recall, self.map50, self.map50_95)

    def nan_columns(self) -> List[str]:
        """The training losses that are not finite in this epoch (a diverged run)."""
        return [k for k, v in self.losses.items() if not math.isfinite(v)]


def read_results(path: Path) -> List[EpochRow]:
    """The complete rows of a YOLOv5 ``results.csv``, possibly still being written; [] when there is none yet.

    A last line without its newline, or a row with a different number of cells than the header,
    is not complete yet and is left out.
    """
    try:
        table = read_results_csv(path, drop_unfinished_row=True)
    except OSError:
        return []
    if table is None:
        return []
    precision, recall, map50, map50_95 = (table.index(name) for name in (PRECISION, RECALL, MAP50, MAP50_95))
    losses = [(table.columns[j], j) for j in table.loss_columns()]
    complete = [row for row in table.rows if len(row) == len(table.columns)]
    return [
        EpochRow(
            epoch=int(table.epoch(row, position)),
            precision=table.value(row, precision),
            recall=table.value(row, recall),
            map50=table.value(row, map50),
            map50_95=table.value(row, map50_95),
            losses={name: table.value(row, j) for name, j in losses},
        )
        for position, row in enumerate(complete)
    ]


def best_row(rows: Sequence[EpochRow]) -> Optional[EpochRow]:
    """The best epoch's row (:func:`~yolo_focal_plugin.run_results.best_epoch_index`); None if no fitness is finite."""
    best = best_epoch_index([row.fitness for row in rows])
    return None if best is None else rows[best]


@dataclass
class TrialSpec:
    """Everything needed to start one unit's training."""

    unit_key: str
    run_dir: Path  # <runs root>/<name>; yolov5 writes into it (--exist-ok)
    hyp: Dict[str, Any]
    data: str
    cfg: str
    weights: str
    epochs: int
    img: int
    batch_size: int
    seed: int
    device: str = ""
    workers: Optional[int] = None
    threads: int = 1
    extra_args: Sequence[str] = ()
    timeout: Optional[float] = None
    python: str = sys.executable

    def train_args(self) -> List[str]:
        args = [
            "--data", self.data,
            "--cfg", self.cfg,
            "--weights", self.weights,
            "--hyp", str(self.run_dir / HYP_FILE),
            "--epochs", str(self.epochs),
            "--img", str(self.img),
            "--batch-size", str(self.batch_size),
            "--seed", str(self.seed),
            "--project", str(self.run_dir.parent),
            "--name", self.run_dir.name,
            "--exist-ok",
        ]
        if self.device:
            args += ["--device", self.device]
        if self.workers is not None:
            args += ["--workers", str(self.workers)]
        return args + list(self.extra_args)

    def command(self) -> List[str]:
        return [
            self.python, "-m", "yolo_focal_plugin.sweep.runner",
            "--threads", str(self.threads),
            "--unit-key", self.unit_key,
            "--status-file", str(self.run_dir / STATUS_FILE),
            "--parent", str(os.getpid()),
            "--", *self.train_args(),
        ]


@dataclass
class TrialResult:
    outcome: str  # "complete" | "failed" | "pruned" | "interrupted"
    reason: str = ""
    rows: List[EpochRow] = field(default_factory=list)
    seconds: float = 0.0
    returncode: Optional[int] = None

    @property
    def best(self) -> Optional[EpochRow]:
        return best_row(self.rows)

    def metrics(self) -> Dict[str, Any]:
        best = self.best
        out: Dict[str, Any] = {"epochs_run": len(self.rows), "seconds": round(self.seconds, 1)}
        if best is not None:
            out.update(
                best_epoch=best.epoch,
                map50_95=best.map50_95,
                map50=best.map50,
                precision=best.precision,
                recall=best.recall,
                fitness=best.fitness,
            )
        if self.rows:
            last = self.rows[-1]
            out.update(last_map50_95=last.map50_95, last_map50=last.map50)
        return out


def _last_error_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines[-200:]):
        s = line.strip()
        if s and ("Error" in s or "Exception" in s or s.startswith("error:") or ": error:" in s):
            return s[:500]
    for line in reversed(lines[-50:]):
        if line.strip():
            return line.strip()[:500]
    return ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_trial(
    spec: TrialSpec,
    on_epoch: Optional[Callable[[EpochRow], bool]] = None,
    stop: Optional[threading.Event] = None,
    on_start: Optional[Callable[[subprocess.Popen], None]] = None,
) -> TrialResult:
    """Train one unit; ``on_epoch(row)`` returning True prunes the run. Never raises for a failed run."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    with open(spec.run_dir / HYP_FILE, "w") as f:
        f.write(f"# yolo-focal sweep unit {spec.unit_key}\n")
        yaml.safe_dump(spec.hyp, f, sort_keys=False)
    status_path = spec.run_dir / STATUS_FILE
    if status_path.exists():
        status_path.unlink()
    results_path = spec.run_dir / RESULTS_FILE
    log_path = spec.run_dir / LOG_FILE
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(spec.threads),
        MKL_NUM_THREADS=str(spec.threads),
        OPENBLAS_NUM_THREADS=str(spec.threads),
        PYTHONUNBUFFERED="1",
    )
    env.pop(DISABLE, None)
    start = time.monotonic()
    seen = 0
    rows: List[EpochRow] = []
    outcome: Optional[str] = None
    reason = ""
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(spec.command())}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            spec.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,  # Ctrl-C reaches the sweep, which stops the trials itself
        )
        if on_start is not None:
            on_start(proc)
        try:
            while True:
                finished = proc.poll() is not None
                rows = read_results(results_path)
                for row in rows[seen:]:
                    bad = row.nan_columns()
                    if bad:
                        outcome, reason = "failed", f"NaN loss in epoch {row.epoch} ({', '.join(bad)})"
                        break
                    if on_epoch is not None and on_epoch(row):
                        outcome, reason = "pruned", f"pruned after epoch {row.epoch} (mAP50-95 {row.map50_95:.4g})"
                        break
                seen = len(rows)
                if outcome is not None or finished:
                    break
                if stop is not None and stop.is_set():
                    outcome, reason = "interrupted", "sweep stopped (Ctrl-C or SIGTERM) during the run"
                    break
                if spec.timeout is not None and time.monotonic() - start > spec.timeout:
                    outcome, reason = "failed", f"timeout after {spec.timeout:g} s"
                    break
                time.sleep(POLL_SECONDS)
        finally:
            _stop(proc)
    seconds = time.monotonic() - start
    rc = proc.returncode
    if outcome is None:
        status: Dict[str, Any] = {}
        if status_path.is_file():
            try:
                status = json.loads(status_path.read_text())
            except ValueError:
                status = {}
        if rc == 0 and status.get("ok", True):
            best = best_row(rows)
            if not rows:
                outcome, reason = "failed", "training finished without writing results.csv"
            elif best is None or not math.isfinite(best.map50_95):
                outcome, reason = "failed", "metrics are NaN"
            else:
                outcome = "complete"
        else:
            outcome = "failed"
            reason = status.get("error") or _last_error_line(log_path) or f"exit status {rc}"
            if rc is not None and rc < 0:
                reason = f"killed by signal {-rc}" + (f"; {reason}" if reason else "")
    return TrialResult(outcome=outcome, reason=reason, rows=rows, seconds=seconds, returncode=rc)
