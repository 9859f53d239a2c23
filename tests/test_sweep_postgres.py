"""Two worker processes share one study on a real PostgreSQL server and finish the grid together.

The server is Debian's PostgreSQL, started by the ``postgres_url`` fixture on a free loopback
port (``tests/conftest_postgres.py``). Both workers run the same command, as two machines would.
"""
from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from conftest_postgres import postgres_url  # noqa: F401  (fixture)
from yolo_focal_plugin.sweep.study import Outcome, classify, open_storage, trial_run, unit_statuses

BIN = Path(sys.executable).parent


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_finish_a_grid_on_postgresql_without_running_a_trial_twice(
    postgres_url: str, tiny_data: Path, tmp_path: Path  # noqa: F811
) -> None:
    def command(worker: str) -> list:
        return [str(BIN / "yolo-focal"), "sweep", "--data", str(tiny_data), "--hyp", "hyp.varifocal.yaml",
                "--gamma", "0.5,1", "--alpha", "0.25", "--seeds", "1", "--epochs", "1", "--img", "64",
                "--batch-size", "8", "--workers", "0", "--device", "cpu", "--threads", "1",
                "--project", str(tmp_path / worker), "--study", "shared", "--storage", postgres_url,
                "--no-progress", "--no-report", "--noplots", "--noautoanchor"]

    started = time.monotonic()
    procs = [subprocess.Popen(command(w), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for w in ("a", "b")]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]

    storage = open_storage(postgres_url, create_dirs=False)
    trials = optuna.load_study(storage=storage, study_name="shared").get_trials(deepcopy=False)
    statuses = unit_statuses(trials)
    assert set(statuses) == {"baseline|s=0", "focal|g=0.5|a=0.25|s=0", "focal|g=1|a=0.25|s=0"}
    # every unit exactly once, finished; no retries, no duplicate claims
    assert [len(st.trials) for st in statuses.values()] == [1, 1, 1]
    assert Counter(classify(t) for t in trials) == {Outcome.COMPLETE: 3}
    workers = Counter(trial_run(t)["worker"] for t in trials)
    assert len(workers) == 2, workers  # both processes trained
    # each worker trained what it claimed, in its own project directory
    for t in trials:
        run = trial_run(t)
        assert (Path(run["dir"]) / "results.csv").is_file()
    trained = [sum(1 for line in out.splitlines() if " done " in line) for out in outputs]
    assert sorted(trained) == [1, 2], outputs
    print(f"two workers on PostgreSQL: {dict(workers)} in {time.monotonic() - started:.0f} s")
