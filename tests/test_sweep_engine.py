"""The sweep's bookkeeping with a fake trainer: every unit once, resume, dead workers, dedupe, TPE, pruning.

``engine.run_trial`` (one yolov5 subprocess per unit) is replaced by a function that returns
results.csv-like rows at once, so these tests check the Optuna side in seconds. The real training
path is covered by ``test_sweep_run.py``.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

import optuna
import pytest

from yolo_focal_plugin.sweep import engine as eng
from yolo_focal_plugin.sweep.engine import SweepConfig, SweepEngine, prepare_sweep, run_sweep
from yolo_focal_plugin.sweep.space import SweepError, Unit
from yolo_focal_plugin.sweep.study import PLAN_ATTR, Outcome, classify, trial_run, trial_unit, unit_statuses
from yolo_focal_plugin.sweep.trial import EpochRow, TrialResult


@pytest.fixture
def data_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "data.yaml"
    path.write_text("path: .\ntrain: images/train\nval: images/val\nnc: 3\nnames: [a, b, c]\n")
    return path


def metric(hyp: Dict[str, Any], seed: int) -> float:
    """Fake mAP50-95: falls with gamma; seeds add a little noise."""
    return 0.5 - 0.1 * float(hyp.get("fl_gamma", 0.0)) + 0.001 * seed


class FakeTrainer:
    def __init__(self, epochs: int = 1, delay: float = 0.0, interrupt: Optional[str] = None) -> None:
        self.calls: List[str] = []
        self.lock = threading.Lock()
        self.epochs = epochs
        self.delay = delay
        self.interrupt = interrupt  # unit key whose run is "interrupted" (stop requested mid-run)
        self.engine_stop: Optional[threading.Event] = None

    def __call__(self, spec: Any, on_epoch: Any = None, stop: Any = None, on_start: Any = None) -> TrialResult:
        with self.lock:
            self.calls.append(spec.unit_key)
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        if self.delay:
            time.sleep(self.delay)
        if spec.unit_key == self.interrupt and stop is not None:
            stop.set()
            return TrialResult("interrupted", "sweep stopped", seconds=0.01)
        m = metric(spec.hyp, spec.seed)
        rows: List[EpochRow] = []
        for epoch in range(self.epochs):
            value = m * (epoch + 1) / self.epochs
            row = EpochRow(epoch, 0.2, 0.2, value * 1.5, value, {"train/box_loss": 0.1})
            rows.append(row)
            if on_epoch is not None and on_epoch(row):
                return TrialResult("pruned", f"pruned after epoch {epoch}", rows=rows, seconds=0.01)
        return TrialResult("complete", rows=rows, seconds=0.01, returncode=0)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTrainer:
    trainer = FakeTrainer()
    monkeypatch.setattr(eng, "run_trial", trainer)
    return trainer


def config(data: Path, tmp_path: Path, **kw: Any) -> SweepConfig:
    base = dict(data=str(data), cfg="yolov5n.yaml", hyp="hyp.varifocal.yaml", losses="focal", gamma="0,1", alpha="0.25,0.5",
                seeds=2, epochs=1, img=64, batch_size=8, project=str(tmp_path / "runs"), study="t", progress=False,
                heartbeat=1, print_fn=lambda s: None)
    base.update(kw)
    return SweepConfig(**base)


def load(cfg: SweepConfig) -> optuna.Study:
    prepared = prepare_sweep(cfg)
    return prepared.study


def expected_keys(cfg: SweepConfig) -> List[str]:
    return [u.key for u in prepare_sweep(cfg, create=False).space.planned_units()]


def test_grid_trains_every_unit_once_and_a_rerun_trains_nothing(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, n_jobs=3)
    summary = run_sweep(cfg)
    keys = expected_keys(cfg)
    assert len(keys) == 2 + 2 * 2 * 2  # baseline x 2 seeds + gamma(2) x alpha(2) x seeds(2)
    assert sorted(fake.calls) == sorted(keys)
    assert summary.counts == {"complete": len(keys)}
    study = load(cfg)
    assert Counter(classify(t) for t in study.trials) == {Outcome.COMPLETE: len(keys)}
    # the same command again: everything is done, nothing trains
    again = run_sweep(cfg)
    assert len(fake.calls) == len(keys)
    assert again.trained_here == 0
    # the baseline trains stock YOLOv5: no fl_* key but fl_gamma 0
    base = next(t for t in study.trials if trial_unit(t).is_baseline)
    assert base.params == {}
    assert study.best_trial.value == pytest.approx(0.501)  # gamma 0 wins in this fake, seed 1


def test_two_workers_on_one_study_never_train_a_unit_twice(data_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = FakeTrainer(delay=0.05)
    monkeypatch.setattr(eng, "run_trial", trainer)
    cfg = config(data_yaml, tmp_path, gamma="0,0.5,1,1.5", n_jobs=2)
    errors: List[BaseException] = []

    def worker() -> None:
        try:
            run_sweep(cfg)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    keys = expected_keys(cfg)
    assert sorted(trainer.calls) == sorted(keys), Counter(trainer.calls).most_common(3)
    study = load(cfg)
    statuses = unit_statuses(study.trials)
    assert all(st.state == Outcome.COMPLETE for st in statuses.values())
    assert len(statuses) == len(keys)


def test_a_dead_workers_trial_is_run_again_at_once(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1)
    prepared = prepare_sweep(cfg)
    engine = SweepEngine(prepared)
    engine.queue_plan()
    # a worker on this machine claimed the first unit, then died (SIGKILL): its pid is gone
    dead = subprocess.Popen(["true"])
    dead.wait()
    tid = engine._claim_waiting()
    frozen = prepared.storage.get_trial(tid)
    trial = optuna.trial.Trial(prepared.study, tid)
    trial.set_user_attr("run", {"host": engine.host, "boot": engine.boot, "pid": dead.pid, "pid_start": "1", "outcome": None})
    prepared.storage.record_heartbeat(tid)  # fresh heartbeat: only the pid check can see it is dead
    killed_key = trial_unit(frozen).key

    summary = run_sweep(cfg)
    assert summary.counts == {"complete": 2}
    assert sorted(fake.calls) == sorted(expected_keys(cfg))  # the killed unit trained once, here
    study = load(cfg)
    st = unit_statuses(study.trials)[killed_key]
    assert [classify(t) for t in sorted(st.trials, key=lambda t: t.number)] == [Outcome.INTERRUPTED, Outcome.COMPLETE]
    retry = st.final
    assert retry.system_attrs.get("failed_trial") == frozen.number  # Optuna's retry callback made the copy


def test_a_stale_heartbeat_from_another_machine_is_retried(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1, heartbeat=1, grace=2)
    prepared = prepare_sweep(cfg)
    engine = SweepEngine(prepared)
    engine.queue_plan()
    tid = engine._claim_waiting()
    trial = optuna.trial.Trial(prepared.study, tid)
    trial.set_user_attr("run", {"host": "other-machine", "boot": "x", "pid": 4242, "outcome": None})
    prepared.storage.record_heartbeat(tid)
    time.sleep(prepared.storage.grace_period + 1.5)  # no heartbeat for longer than the grace period
    summary = run_sweep(cfg)
    assert summary.counts == {"complete": 2}
    assert len(fake.calls) == 2
    st = unit_statuses(load(cfg).trials)[trial_unit(prepared.storage.get_trial(tid)).key]
    assert [classify(t) for t in sorted(st.trials, key=lambda t: t.number)] == [Outcome.INTERRUPTED, Outcome.COMPLETE]


def test_interrupted_trials_are_queued_again_and_resume(data_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1)
    key = "focal|g=1|a=0.25|s=0"
    trainer = FakeTrainer(interrupt=key)
    monkeypatch.setattr(eng, "run_trial", trainer)
    first = run_sweep(cfg)
    study = load(cfg)
    st = unit_statuses(study.trials)[key]
    assert [classify(t) for t in st.trials] == [Outcome.INTERRUPTED, Outcome.WAITING]
    assert first.counts.get("complete") == 1
    trainer.interrupt = None
    second = run_sweep(cfg)
    assert second.counts == {"complete": 2}
    assert Counter(trainer.calls)[key] == 2  # interrupted once, then trained to the end once
    st = unit_statuses(load(cfg).trials)[key]
    assert st.state == Outcome.COMPLETE


def test_a_unit_queued_twice_is_not_trained_twice(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1)
    run_sweep(cfg)
    assert len(fake.calls) == 2
    study = load(cfg)
    unit = Unit("focal", 1.0, 0.25, 0)
    study.enqueue_trial(unit.params(), user_attrs={"unit": unit.to_json()})  # e.g. a racing re-queue
    run_sweep(cfg)
    assert len(fake.calls) == 2
    outcomes = [classify(t) for t in unit_statuses(load(cfg).trials)[unit.key].trials]
    assert sorted(outcomes) == sorted([Outcome.COMPLETE, Outcome.DUPLICATE])


def test_tpe_sampled_settings_run_every_seed(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, sampler="tpe", trials=3, gamma="0:3", alpha="0:1", seeds=2, sampler_seed=1, n_jobs=2)
    summary = run_sweep(cfg)
    assert summary.counts == {"complete": 2 + 3 * 2}
    study = load(cfg)
    statuses = unit_statuses(study.trials)
    sampled = [st.unit for st in statuses.values() if st.unit.origin == "sampled"]
    settings = Counter(u.setting for u in sampled)
    assert len(settings) == 3 and set(settings.values()) == {2}
    for u in sampled:
        assert 0.0 <= u.gamma <= 3.0 and 0.0 <= u.alpha <= 1.0
    assert len(fake.calls) == len(set(fake.calls)) == 8
    # extending the budget on resume samples only the new settings
    cfg.trials = 4
    more = run_sweep(cfg)
    assert more.counts == {"complete": 2 + 4 * 2}
    assert len(fake.calls) == 10


def test_median_pruner_stops_hopeless_trials(data_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = FakeTrainer(epochs=3)
    monkeypatch.setattr(eng, "run_trial", trainer)
    cfg = config(data_yaml, tmp_path, gamma="0,1,2,3", alpha="0.25", seeds=1, epochs=3, prune="median")
    summary = run_sweep(cfg)
    assert summary.counts.get("pruned", 0) >= 1
    study = load(cfg)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(trial_unit(t).gamma >= 2 for t in pruned)  # the worst settings
    assert all(len(t.intermediate_values) < 3 for t in pruned)


def test_resume_with_another_search_space_is_refused_before_training(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1)
    run_sweep(cfg)
    n = len(load(cfg).trials)
    other = config(data_yaml, tmp_path, gamma="0.5,1", alpha="0.25", seeds=1)
    with pytest.raises(SweepError, match=r"(?s)different search space.*gamma"):
        run_sweep(other)
    longer = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1, epochs=5)
    with pytest.raises(SweepError, match=r"'epochs': study has 1, this command has 5"):
        run_sweep(longer)
    assert len(load(cfg).trials) == n
    assert len(fake.calls) == 2


def test_failed_units_are_results_not_retries(data_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run_trial(spec: Any, on_epoch: Any = None, stop: Any = None, on_start: Any = None) -> TrialResult:
        calls.append(spec.unit_key)
        if spec.hyp.get("fl_gamma") == 1.0:
            return TrialResult("failed", "RuntimeError: boom", seconds=0.01, returncode=1)
        return FakeTrainer()(spec, on_epoch)

    calls: List[str] = []
    monkeypatch.setattr(eng, "run_trial", run_trial)
    cfg = config(data_yaml, tmp_path, gamma="0,1", alpha="0.25", seeds=1)
    summary = run_sweep(cfg)
    assert summary.counts == {"complete": 2, "failed": 1}
    run_sweep(cfg)
    assert len(calls) == 3
    failed = [t for t in load(cfg).trials if classify(t) == Outcome.FAILED]
    assert trial_run(failed[0])["reason"] == "RuntimeError: boom"


def test_another_machine_may_keep_the_dataset_elsewhere_but_not_change_it(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1)
    run_sweep(cfg)
    elsewhere = tmp_path / "elsewhere" / "data.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(data_yaml.read_text())  # same dataset, another path: same study
    moved = config(elsewhere, tmp_path, gamma="1", alpha="0.25", seeds=1)
    assert run_sweep(moved).trained_here == 0
    other = tmp_path / "other.yaml"
    other.write_text("path: .\ntrain: images/train\nval: images/val\nnc: 2\nnames: [a, b]\n")
    with pytest.raises(SweepError, match=r"'dataset'"):
        run_sweep(config(other, tmp_path, gamma="1", alpha="0.25", seeds=1))


def test_ctrl_c_stops_the_trial_process_and_queues_the_unit_again(data_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real runner subprocess (hanging on purpose) and a real SIGINT while it runs."""
    import json
    import os
    import signal

    from yolo_focal_plugin.sweep.trial import run_trial as real_run_trial

    monkeypatch.setenv("YOLO_FOCAL_SWEEP_FAULTS", json.dumps({"baseline|s=0": "hang"}))
    children: List[int] = []

    def run_trial(spec: Any, on_epoch: Any = None, stop: Any = None, on_start: Any = None) -> TrialResult:
        def started(proc: Any) -> None:
            children.append(proc.pid)
            on_start(proc)

            def press_ctrl_c() -> None:
                # Ctrl-C while it trains; pressed again (as a user would) while the trial still runs,
                # since a SIGINT landing inside a library call that swallows it must not hang the test
                for _ in range(10):
                    time.sleep(2.0)
                    if proc.poll() is not None:
                        return
                    os.kill(os.getpid(), signal.SIGINT)

            threading.Thread(target=press_ctrl_c, daemon=True).start()

        return real_run_trial(spec, on_epoch=on_epoch, stop=stop, on_start=started)

    monkeypatch.setattr(eng, "run_trial", run_trial)
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1)
    # A process started in the background by a non-interactive shell (as CI runs us) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler: give it the one a
    # terminal user has.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        summary = run_sweep(cfg)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert summary.interrupted
    assert [t.name for t in threading.enumerate() if t.name.startswith("yolo-focal-worker")] == []
    with pytest.raises(ProcessLookupError):
        os.kill(children[0], 0)  # the training process was stopped (and reaped)
    st = unit_statuses(load(cfg).trials)["baseline|s=0"]
    assert sorted(classify(t) for t in st.trials) == [Outcome.INTERRUPTED, Outcome.WAITING]
    assert trial_run(next(t for t in st.trials if classify(t) == Outcome.INTERRUPTED))["outcome"] == "interrupted"


# --------------------------------------------------------------------------- --set KEY=V1,V2,...


class HypRecorder(FakeTrainer):
    """A fake trainer that also keeps each unit's hyp and run directory."""

    def __init__(self) -> None:
        super().__init__()
        self.hyps: Dict[str, Dict[str, Any]] = {}
        self.dirs: Dict[str, Path] = {}

    def __call__(self, spec: Any, on_epoch: Any = None, stop: Any = None, on_start: Any = None) -> TrialResult:
        self.hyps[spec.unit_key] = dict(spec.hyp)
        self.dirs[spec.unit_key] = spec.run_dir
        return super().__call__(spec, on_epoch, stop, on_start)


def test_set_values_are_trained_with_matched_baselines_and_stock_beside(data_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = HypRecorder()
    monkeypatch.setattr(eng, "run_trial", trainer)
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1, sets=["obj=1,2", "fl_apply=obj,both"])
    summary = run_sweep(cfg)
    assert summary.counts == {"complete": 2 + 1 + 4}  # a baseline per obj value, stock (obj=2 is not stock), the grid
    assert sorted(trainer.calls) == sorted(expected_keys(cfg))
    for obj in (1, 2):  # BCE at the unit's own obj (matched), no fl_apply: fl_* keys make no other baseline
        base = trainer.hyps[f"baseline|obj={obj}|s=0"]
        assert base["obj"] == float(obj) and base["fl_gamma"] == 0.0
        assert not [k for k in base if k.startswith("fl_") and k != "fl_gamma"]
    stock = trainer.hyps["stock|s=0"]  # YOLOv5's own hyp.scratch-low.yaml values
    assert (stock["obj"], stock["cls"], stock["fl_gamma"]) == (1.0, 0.5, 0.0) and not [k for k in stock if k.startswith("fl_") and k != "fl_gamma"]
    hyp = trainer.hyps["focal|g=1|a=0.25|obj=2|fl_apply=both|s=0"]
    assert (hyp["obj"], hyp["fl_apply"], hyp["fl_gamma"], hyp["fl_alpha"]) == (2.0, "both", 1.0, 0.25)
    assert type(hyp["obj"]) is float  # as in the hyp file
    assert trainer.hyps["focal|g=1|a=0.25|obj=1|fl_apply=obj|s=0"]["fl_apply"] == "obj"
    assert trainer.dirs["focal|g=1|a=0.25|obj=2|fl_apply=both|s=0"].name.endswith("-focal-g1-a0.25-obj=2-fl_apply=both-s0")
    study = load(cfg)
    trial = next(t for t in study.trials if trial_unit(t).key == "focal|g=1|a=0.25|obj=2|fl_apply=both|s=0")
    assert trial.params == {"fl_loss": "focal", "fl_gamma": 1.0, "fl_alpha": 0.25, "obj": 2.0, "fl_apply": "both"}
    assert run_sweep(cfg).trained_here == 0  # resumed with the same --set: nothing to do


def test_resume_with_another_set_is_refused_before_training(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1, sets=["obj=1,2"])
    run_sweep(cfg)
    n = len(load(cfg).trials)
    for sets, now in ((["obj=1,4"], "--set obj=1,4"), ([], "no --set"), (["obj=1,2", "fl_apply=both"], "--set obj=1,2 --set fl_apply=both")):
        with pytest.raises(SweepError, match=re.escape(f"search space '--set': study has --set obj=1,2, this command has {now}")):
            run_sweep(config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1, sets=sets))
    assert len(load(cfg).trials) == n and len(fake.calls) == 5  # 2 matched baselines, stock, 2 settings
    # a study made without --set (as every study before --set existed) refuses one too, and resumes without
    plain = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1, study="plain")
    run_sweep(plain)
    with pytest.raises(SweepError, match=re.escape("study has no --set, this command has --set obj=2")):
        run_sweep(config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1, study="plain", sets=["obj=2"]))
    assert run_sweep(plain).trained_here == 0


def test_sampled_sweep_with_set_samples_categoricals_and_replicates_them(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, sampler="random", trials=3, gamma="0:3", alpha="0.25", seeds=2, sampler_seed=3,
                 sets=["obj=1,2,4", "fl_gamma_warmup=0,10"])
    summary = run_sweep(cfg)
    assert summary.counts == {"complete": 2 * (3 + 1) + 3 * 2}  # per seed: a baseline per obj value and stock
    study = load(cfg)
    sampled = [t for t in study.trials if trial_unit(t).origin == "sampled" and classify(t) == Outcome.COMPLETE]
    by_setting: Dict[str, List[Unit]] = {}
    for t in sampled:
        unit = trial_unit(t)
        by_setting.setdefault(unit.setting, []).append(unit)
        assert t.distributions["obj"] == optuna.distributions.CategoricalDistribution([1.0, 2.0, 4.0])
        assert t.distributions["fl_gamma_warmup"] == optuna.distributions.CategoricalDistribution([0, 10])
        assert (t.params["obj"], t.params["fl_gamma_warmup"]) == (dict(unit.extras)["obj"], dict(unit.extras)["fl_gamma_warmup"])
    assert len(by_setting) == 3
    for units in by_setting.values():  # every seed of a sampled setting has the same --set values
        assert sorted(u.seed for u in units) == [0, 1] and len({u.extras for u in units}) == 1
    assert len(fake.calls) == len(set(fake.calls)) == 14


# --- issue #15 section 3: a sweep killed at any moment resumes with the same command -------------

def test_a_study_left_bare_by_a_kill_right_after_creation_is_resumed(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    # What a SIGKILL between optuna.create_study and the plan attribute leaves, reproduced without
    # timing: a study with the sweep's name, no attribute, no trial (here even minimising)
    cfg = config(data_yaml, tmp_path)
    storage = eng.default_storage_url(Path(cfg.project), cfg.study)
    Path(cfg.project).mkdir(parents=True)
    optuna.create_study(storage=storage, study_name=cfg.study)
    said: List[str] = []
    summary = run_sweep(config(data_yaml, tmp_path, print_fn=said.append))
    keys = expected_keys(cfg)
    assert sorted(fake.calls) == sorted(keys) and summary.counts == {"complete": len(keys)}
    assert any("had no plan and no trials" in line for line in said), said
    study = load(cfg)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE  # created again, as the sweep creates it


def test_a_foreign_study_with_trials_is_refused_at_once(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path)
    storage = eng.default_storage_url(Path(cfg.project), cfg.study)
    Path(cfg.project).mkdir(parents=True)
    other = optuna.create_study(storage=storage, study_name=cfg.study)
    other.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    start = time.monotonic()
    with pytest.raises(SweepError, match="was not created by yolo-focal sweep"):
        prepare_sweep(cfg)
    assert time.monotonic() - start < 60  # it used to wait 120 s for a plan that never comes
    assert len(optuna.load_study(storage=storage, study_name=cfg.study).trials) == 1  # untouched


def test_a_creator_killed_while_queueing_the_plan_is_not_waited_for(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    # the plan is written but PLANNED is not: the creator (a finished process on this machine) died
    # in queue_plan; the same command queues the rest now instead of waiting two minutes
    cfg = config(data_yaml, tmp_path)
    prepared = prepare_sweep(cfg)
    stored = dict(prepared.study.user_attrs[PLAN_ATTR])
    stored["created"] = {**stored["created"], "pid": 2 ** 22 + 1}  # above pid_max: no such process
    prepared.study.set_user_attr(PLAN_ATTR, stored)
    eng.SweepEngine(prepared).enqueue(prepared.space.planned_units()[0])  # one unit queued before the kill
    said: List[str] = []
    summary = run_sweep(config(data_yaml, tmp_path, print_fn=said.append))
    keys = expected_keys(cfg)
    assert sorted(fake.calls) == sorted(keys) and summary.counts == {"complete": len(keys)}
    assert any("creator stopped before queueing the whole plan" in line for line in said), said


# --- issue #12: matched baselines and the stock reference; studies made before them ----------------

def _as_before_issue_12(cfg: SweepConfig) -> None:
    """Store the study's plan as the sweep stored it before #12: no baseline rule, no stock unit or hyp."""
    study = load(cfg)
    plan = dict(study.user_attrs[PLAN_ATTR])
    plan["space"] = {k: v for k, v in plan["space"].items() if k not in ("baseline", "stock")}
    plan.pop("stock_hyp", None)
    study.set_user_attr(PLAN_ATTR, plan)


def test_a_study_made_before_matched_baselines_is_refused_with_the_reason(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1, sets=["obj=1,2"])
    run_sweep(cfg)
    _as_before_issue_12(cfg)
    calls = len(fake.calls)
    with pytest.raises(SweepError, match=r"search space 'baseline': study has unmatched baselines \(made before matched "
                                         r"baselines, #12: its baseline ignored --set\), this command has matched"):
        run_sweep(cfg)
    assert len(fake.calls) == calls  # nothing trained


def test_an_old_study_resumes_unchanged_where_the_new_rule_adds_nothing(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    # hyp.varifocal.yaml has stock YOLOv5's gains and assigner, and no non-loss --set: same units as before #12
    cfg = config(data_yaml, tmp_path, gamma="1", alpha="0.25", seeds=1, sets=["fl_apply=obj,both"])
    run_sweep(cfg)
    plan = load(cfg).user_attrs[PLAN_ATTR]
    assert "baseline" not in plan["space"] and "stock" not in plan["space"] and "stock_hyp" not in plan
    assert sorted(fake.calls) == ["baseline|s=0", "focal|g=1|a=0.25|fl_apply=both|s=0", "focal|g=1|a=0.25|fl_apply=obj|s=0"]
    _as_before_issue_12(cfg)  # a no-op here: the stored plan is what an old study has
    assert run_sweep(cfg).trained_here == 0


def test_an_old_study_whose_gains_are_not_stock_resumes_with_no_stock(data_yaml: Path, tmp_path: Path, fake: FakeTrainer) -> None:
    cfg = config(data_yaml, tmp_path, hyp="hyp.focal-scaled.yaml", gamma="1", alpha="0.25", seeds=1)
    assert "stock|s=0" in expected_keys(cfg)  # its obj/cls gains are not stock: a stock unit is planned
    run_sweep(cfg)
    _as_before_issue_12(cfg)
    calls = len(fake.calls)
    with pytest.raises(SweepError, match=re.escape("search space 'stock': study has no stock YOLOv5 reference unit, "
                                                   "this command has a stock YOLOv5 reference unit; add --no-stock to resume it")):
        run_sweep(cfg)
    assert run_sweep(config(data_yaml, tmp_path, hyp="hyp.focal-scaled.yaml", gamma="1", alpha="0.25", seeds=1,
                            stock=False)).trained_here == 0
    assert len(fake.calls) == calls
