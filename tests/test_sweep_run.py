"""Real sweeps (every trial a yolov5 training subprocess): failure isolation and resume after SIGKILL.

Tiny settings (16 train / 8 val images of 64 px, 1 epoch): the point is the bookkeeping around
real training runs, not the mAP.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List

import optuna
import pytest
import yaml

from yolo_focal_plugin.sweep.engine import SweepConfig, run_sweep
from yolo_focal_plugin.sweep.report import report_study
from yolo_focal_plugin.sweep.study import Outcome, classify, open_storage, trial_run, trial_unit, unit_statuses

TINY_TRAIN = ["--noplots", "--noautoanchor"]
BIN = Path(sys.executable).parent


def tiny_config(data: Path, project: Path, **kw) -> SweepConfig:
    base = dict(data=str(data), cfg="yolov5n.yaml", hyp="hyp.varifocal.yaml", losses="focal", gamma="0.5,1", alpha="0.25",
                seeds=1, epochs=1, img=64, batch_size=8, workers=0, device="cpu", project=str(project), study="iso",
                progress=False, train_args=TINY_TRAIN)
    base.update(kw)
    return SweepConfig(**base)


def load_trials(url: str, study: str) -> List[optuna.trial.FrozenTrial]:
    storage = open_storage(url, create_dirs=False)
    return optuna.load_study(storage=storage, study_name=study).get_trials(deepcopy=False)


@pytest.mark.slow
def test_failing_trials_are_recorded_and_the_sweep_goes_on(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # one unit crashes, one diverges (NaN loss); the baseline between them trains normally
    monkeypatch.setenv("YOLO_FOCAL_SWEEP_FAULTS", json.dumps({"focal|g=0.5|a=0.25|s=0": "crash", "focal|g=1|a=0.25|s=0": "nan"}))
    lines: List[str] = []
    cfg = tiny_config(tiny_data, tmp_path / "runs", print_fn=lines.append, n_jobs=2)  # 2 trials side by side
    summary = run_sweep(cfg)
    assert summary.counts == {"complete": 1, "failed": 2}, lines
    trials = load_trials(summary.storage_url, "iso")
    by_key = {trial_unit(t).key: t for t in trials}
    crash = trial_run(by_key["focal|g=0.5|a=0.25|s=0"])
    assert crash["outcome"] == "failed" and "RuntimeError: injected crash" in crash["reason"]
    nan = trial_run(by_key["focal|g=1|a=0.25|s=0"])
    assert nan["outcome"] == "failed" and nan["reason"].startswith("NaN loss in epoch 0"), nan
    base = by_key["baseline|s=0"]
    assert base.state == optuna.trial.TrialState.COMPLETE and math.isfinite(base.value)
    run = trial_run(base)
    assert run["epochs_run"] == 1 and (Path(run["dir"]) / "results.csv").is_file()
    assert yaml.safe_load((Path(run["dir"]) / "sweep_hyp.yaml").read_text())["fl_gamma"] == 0.0
    assert "fl_loss" not in yaml.safe_load((Path(run["dir"]) / "sweep_hyp.yaml").read_text())  # stock baseline
    # one line per trial, with the reason
    assert any("injected crash" in l for l in lines) and any("NaN loss" in l for l in lines)
    # failures are results: the same command trains nothing again
    again = run_sweep(tiny_config(tiny_data, tmp_path / "runs"))
    assert again.trained_here == 0 and len(load_trials(summary.storage_url, "iso")) == 3
    report, files = report_study("iso", summary.storage_url, tmp_path / "report")
    failures = [f for r in report.rows for f in r.failures]
    assert len(failures) == 2 and any("NaN loss" in f for f in failures)
    assert "## Failed runs" in files["markdown"].read_text()


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"sweep exited ({proc.returncode}) before {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(") ")[-1][:1] != "Z"


@pytest.mark.slow
def test_a_sigkilled_sweep_resumes_with_the_same_command(tiny_data: Path, tmp_path: Path) -> None:
    project = tmp_path / "runs"
    cmd = [str(BIN / "yolo-focal"), "sweep", "--data", str(tiny_data), "--hyp", "hyp.varifocal.yaml", "--gamma", "1",
           "--alpha", "0.25", "--seeds", "1", "--epochs", "1", "--img", "64", "--batch-size", "8", "--workers", "0",
           "--device", "cpu", "--project", str(project), "--study", "killed", "--no-progress", "--no-report", *TINY_TRAIN]
    url = f"sqlite:///{project / 'killed.db'}"
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def state() -> Dict[str, List]:
        if not (project / "killed.db").exists():
            return {}
        try:
            trials = load_trials(url, "killed")
        except Exception:
            return {}
        return {"complete": [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE],
                "running": [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and trial_run(t).get("child_pid")]}

    # kill -9 while the second unit trains, after the first one finished
    s = _wait_for(lambda: (lambda s: s if s.get("complete") and s.get("running") else None)(state()), 600, "a finished and a running trial", first)
    done_before = s["complete"][0]
    running = s["running"][0]
    child = trial_run(running)["child_pid"]
    time.sleep(2.0)
    first.send_signal(signal.SIGKILL)
    first.wait()
    log.close()
    assert first.returncode == -signal.SIGKILL
    # the orphaned training notices its parent is gone and stops (no CPU wasted, no second writer)
    _wait_for(lambda: not _alive(child), 30, f"the orphaned trial process {child} to exit")

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "queued again" in second.stdout and "1 of 2 units already done" in second.stdout

    trials = load_trials(url, "killed")
    statuses = unit_statuses(trials)
    assert set(statuses) == {"baseline|s=0", "focal|g=1|a=0.25|s=0"}
    assert all(st.state == Outcome.COMPLETE for st in statuses.values())
    # the finished unit was kept as it was, not trained again
    kept = next(t for t in trials if t.number == done_before.number)
    assert kept.state == optuna.trial.TrialState.COMPLETE and kept.datetime_complete == done_before.datetime_complete
    assert [classify(t) for t in statuses[trial_unit(done_before).key].trials] == [Outcome.COMPLETE]
    # the interrupted unit: one interrupted attempt, then exactly one complete run
    killed = statuses[trial_unit(running).key]
    assert sorted(classify(t) for t in killed.trials) == [Outcome.COMPLETE, Outcome.INTERRUPTED]
    assert Counter(p.name.split("-", 1)[1] for p in (project / "killed").iterdir() if p.is_dir()) == {
        "baseline-s0": 1, "focal-g1-a0.25-s0": 2}  # one run dir per attempt; the baseline's was not re-created
