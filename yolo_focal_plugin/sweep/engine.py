"""Run a sweep: queue the plan, claim units, train them, recover dead workers' units, until the study is done.

:func:`run_sweep` = :func:`~._validation.prepare_sweep` (options checked, study created or
loaded) + :class:`SweepEngine` (this module). Process liveness and the SQLite claim lock are in
:mod:`._liveness`. The names of both are importable from here, as before the split.

How "resumable, nothing done twice" works (see docs/sweep.md for the long form):

* The study's creator (exactly one process: the storage enforces unique study names) queues every
  planned unit with ``study.enqueue_trial(params, user_attrs={"unit": ...})``: the baseline seeds,
  then the grid, seed-major.
* A worker claims a queued trial with the storage's atomic WAITING -> RUNNING transition (the one
  ``study.ask()`` uses; ``SELECT ... FOR UPDATE`` on PostgreSQL), so two workers never get the same
  queued trial. After claiming it checks that no other trial of the same unit is finished or
  running (a lower trial number wins); if one is, the claim is closed as a ``duplicate`` without
  training. This also covers rare double queueing.
* While a unit trains, its worker records Optuna heartbeats. A worker that dies (SIGKILL, power
  cut, preemption) leaves a RUNNING trial: another worker, or the same command run again, fails it
  and queues the unit again with Optuna's ``RetryHeartbeatStaleTrialCallback`` - at once when the
  dead worker was on this machine (its pid is gone), after the heartbeat grace period otherwise.
* A trial that fails on its own (bad hyp, NaN loss, crash, timeout) is recorded as FAIL with the
  reason and is not re-run: it is a result. Ctrl-C re-queues the trials it interrupted.

Why this module is over 500 lines: it is one class, :class:`SweepEngine`, whose claiming,
recovery and worker loop share one lock and one table of the trials this process trains. The
rules above hold only if those three read the same state the same way, so they stay side by
side rather than in modules that would each reach into the engine's internals.
"""
from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ._liveness import ClaimLock, boot_id, pid_alive, proc_start
from ._validation import FORBIDDEN_TRAIN_FLAGS, Prepared, SweepConfig, prepare_sweep
from .space import Unit
from .study import (
    PLAN_ATTR,
    PLANNED_ATTR,
    STALE_MAX_RETRY,
    Outcome,
    UnitStatus,
    classify,
    normalize_storage_url,
    quiet_optuna,
    redact_url,
    sqlite_path,
    trial_run,
    trial_unit,
    unit_statuses,
)
from .trial import STATUS_FILE, EpochRow, TrialResult, TrialSpec, best_row, read_results, run_trial

__all__ = ["SweepConfig", "SweepSummary", "Prepared", "prepare_sweep", "run_sweep", "FORBIDDEN_TRAIN_FLAGS"]

# Names that were importable from this module before it was split (#13), still importable from here.
from .space import BASELINE, SearchSpace, SweepError, fmt_extra, fmt_value  # noqa: E402,F401
from .study import DEFAULT_HEARTBEAT, Plan, create_or_load_study, default_storage_url, open_storage  # noqa: E402,F401
from ._liveness import ClaimLock as _ClaimLock, boot_id as _boot_id, pid_alive as _pid_alive  # noqa: E402,F401
from ._liveness import proc_start as _proc_start  # noqa: E402,F401
from ._validation import (  # noqa: E402,F401
    _check_train_args,
    _check_train_args_with_yolov5,
    _cpu_count,
    _dataset_identity,
    _identity,
    _known_losses,
    _load_data,
    _load_hyp_dict,
    _resolve_cfg,
    _resolve_hyp,
    _validate_units,
    _yolov5_dir,
)


@dataclass
class SweepSummary:
    study: str
    storage_url: str
    runs_dir: Path
    total: int
    counts: Dict[str, int]
    interrupted: bool = False
    seconds: float = 0.0
    trained_here: int = 0

    def line(self) -> str:
        c = self.counts
        return (
            f"study {self.study}: {c.get('complete', 0)} complete, {c.get('failed', 0)} failed, "
            f"{c.get('pruned', 0)} pruned, {c.get('running', 0)} running, {c.get('waiting', 0) + c.get('missing', 0)} left "
            f"of {self.total} units ({self.trained_here} trained by this process in {self.seconds:.0f} s)"
        )



@dataclass
class _Active:
    trial_id: int
    number: int
    unit: Unit
    proc: Any = None


class SweepEngine:
    POLL = 3.0

    def __init__(self, prepared: Prepared) -> None:
        import optuna

        self.p = prepared
        self.config = prepared.config
        self.space = prepared.space
        self.study = prepared.study
        self.storage = prepared.storage
        self.study_id = self.storage.get_study_id_from_name(self.config.study)
        db = sqlite_path(normalize_storage_url(prepared.storage_url))
        self.lock = ClaimLock(db.with_name(db.name + ".lock") if db is not None else None)
        self.stop = threading.Event()
        self.active: Dict[int, _Active] = {}
        self.trained = 0
        self.host = socket.gethostname()
        self.boot = boot_id()
        self.pid = os.getpid()
        self.pid_start = proc_start(self.pid)
        self.print = self.config.print_fn or print
        self._bar: Any = None
        self.sampled_exhausted = False
        self.duplicates_in_a_row = 0
        if self.config.prune == "median":
            self.study.pruner = optuna.pruners.MedianPruner(n_startup_trials=max(3, len(self.space.seeds)), n_warmup_steps=1)
        else:
            self.study.pruner = optuna.pruners.NopPruner()
        if self.space.sampler == "tpe":
            self.study.sampler = optuna.samplers.TPESampler(seed=self.config.sampler_seed)
        else:
            self.study.sampler = optuna.samplers.RandomSampler(seed=self.config.sampler_seed)

    # ------------------------------------------------------------------ output

    def say(self, text: str) -> None:
        if self._bar is not None and not self._bar.disable:
            from tqdm import tqdm

            tqdm.write(text)
        else:
            self.print(text)

    # ------------------------------------------------------------------ storage helpers

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def trials(self, states: Optional[Tuple[Any, ...]] = None) -> List[Any]:
        return self.study.get_trials(deepcopy=False, states=states)

    def enqueue(self, unit: Unit) -> None:
        self.study.enqueue_trial(params=unit.params(), user_attrs={"unit": unit.to_json()})

    def queue_plan(self) -> None:
        """Queue every planned unit that has no trial yet (all of them for a new study)."""
        with self.lock:
            statuses = unit_statuses(self.trials())
            for unit in self.space.planned_units():
                if unit.key not in statuses:
                    self.enqueue(unit)
            if not self.study.user_attrs.get(PLANNED_ATTR):
                self.study.set_user_attr(PLANNED_ATTR, True)

    def wait_for_plan(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.study.user_attrs.get(PLANNED_ATTR):
            if self._creator_gone():
                self.say("the study's creator stopped before queueing the whole plan: queueing the missing units here")
                self.queue_plan()
                return
            if time.monotonic() > deadline:
                self.say("the study's creator did not finish queueing the plan: queueing the missing units here")
                self.queue_plan()
                return
            time.sleep(1.0)

    def _creator_gone(self) -> bool:
        """True when the process that created the study ran on this machine and has exited (killed
        while queueing the plan): its units are queued here at once instead of after ``timeout``."""
        created = (self.study.user_attrs.get(PLAN_ATTR) or {}).get("created") or {}
        pid = created.get("pid")
        return created.get("host") == self.host and isinstance(pid, int) and pid != self.pid and not pid_alive(pid)

    # ------------------------------------------------------------------ status

    def statuses(self) -> Dict[str, UnitStatus]:
        return unit_statuses(self.trials())

    def expected_keys(self, statuses: Dict[str, UnitStatus]) -> List[str]:
        if self.space.is_grid:
            return [u.key for u in self.space.planned_units()]
        keys = [u.key for u in self.space.baseline_units()]
        for key, st in statuses.items():
            if st.unit.origin == "sampled":
                keys.append(key)
        return keys

    def sampled_settings(self, statuses: Dict[str, UnitStatus]) -> List[str]:
        return sorted({st.unit.setting for st in statuses.values() if st.unit.origin == "sampled"})

    def counts(self, statuses: Optional[Dict[str, UnitStatus]] = None) -> Dict[str, int]:
        statuses = self.statuses() if statuses is None else statuses
        counts: Dict[str, int] = {}
        for key in self.expected_keys(statuses):
            st = statuses.get(key)
            state = st.state if st is not None else "missing"
            counts[state] = counts.get(state, 0) + 1
        if not self.space.is_grid:
            budget = int(self.space.trials or 0)
            left = max(0, budget - len(self.sampled_settings(statuses))) * len(self.space.seeds)
            if left and not self.sampled_exhausted:
                counts["missing"] = counts.get("missing", 0) + left
        return counts

    def complete(self, statuses: Dict[str, UnitStatus]) -> bool:
        for key in self.expected_keys(statuses):
            st = statuses.get(key)
            if st is None or st.state not in Outcome.FINAL:
                return False
        if not self.space.is_grid and not self.sampled_exhausted:
            return len(self.sampled_settings(statuses)) >= int(self.space.trials or 0)
        return True

    # ------------------------------------------------------------------ claiming

    def _claim_waiting(self) -> Optional[int]:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        for ft in sorted(self.trials((TrialState.WAITING,)), key=lambda t: t.number):
            tid = self.trial_id(ft.number)
            try:
                if self.storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                    return tid
            except UpdateFinishedTrialError:
                continue
            except Exception as exc:  # SQLite "database is locked" under contention: try the next one
                if "locked" in str(exc).lower():
                    time.sleep(0.5)
                    continue
                raise
        return None

    def _duplicate_of(self, unit: Unit, number: int) -> Optional[int]:
        """Another trial that already has (or is running) this unit; lower trial number wins."""
        for t in self.statuses().get(unit.key, UnitStatus(unit)).trials:
            if t.number == number:
                continue
            outcome = classify(t)
            if outcome in Outcome.FINAL or (outcome == Outcome.RUNNING and t.number < number):
                return t.number
        return None

    def claim(self) -> Optional[Tuple[Any, Unit]]:
        """Claim the next unit to train, or None when there is nothing to claim right now."""
        import optuna

        with self.lock:
            while not self.stop.is_set():
                tid = self._claim_waiting()
                fresh = False
                if tid is None and self._may_sample():
                    quiet_optuna()
                    asked = self.study.ask()  # pops a queued trial if one appeared meanwhile
                    tid = self.trial_id(asked.number)
                    fresh = trial_unit(self.storage.get_trial(tid)) is None
                if tid is None:
                    return None
                trial = optuna.trial.Trial(self.study, tid)
                unit = trial_unit(self.storage.get_trial(tid))
                if unit is None and not fresh:
                    self._close(trial, Outcome.DUPLICATE, "queued trial without a sweep unit")
                    continue
                if fresh:
                    unit = self.space.sample_unit(trial, self.space.seeds[0])
                    trial.set_user_attr("unit", unit.to_json())
                else:
                    self.space.fix_params(trial, unit)
                other = self._duplicate_of(unit, trial.number)
                if other is not None:
                    self._close(trial, Outcome.DUPLICATE, f"unit already taken by trial {other}")
                    if fresh:
                        self.duplicates_in_a_row += 1
                        if self.duplicates_in_a_row >= 50:
                            self.sampled_exhausted = True
                            self.say("the sampler keeps proposing settings that were already trained: stopping sampling")
                    continue
                if fresh:
                    self.duplicates_in_a_row = 0
                    for seed in self.space.seeds[1:]:  # the other seeds of a sampled setting
                        self.enqueue(unit.with_seed(seed))
                self.storage.record_heartbeat(tid)
                self.active[tid] = _Active(tid, trial.number, unit)
                return trial, unit
        return None

    def _may_sample(self) -> bool:
        if self.space.is_grid or self.sampled_exhausted:
            return False
        return len(self.sampled_settings(self.statuses())) < int(self.space.trials or 0)

    def _close(self, trial: Any, outcome: str, reason: str) -> None:
        from optuna.trial import TrialState

        run = {"outcome": outcome, "reason": reason, "host": self.host, "pid": self.pid}
        trial.set_user_attr("run", run)
        self.study.tell(trial, state=TrialState.FAIL)

    # ------------------------------------------------------------------ recovery

    def _dead_local(self, run: Dict[str, Any]) -> bool:
        if run.get("host") != self.host or run.get("boot") != self.boot or not run.get("pid"):
            return False
        pid = int(run["pid"])
        if pid == self.pid and run.get("pid_start") == self.pid_start:
            return False  # ours; handled by our threads
        if not pid_alive(pid):
            return True
        start = proc_start(pid)
        return start is not None and run.get("pid_start") is not None and start != run.get("pid_start")

    def _requeue(self, tid: int, max_retry: Optional[int]) -> None:
        import optuna

        frozen = self.storage.get_trial(tid)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(self.study, frozen)

    def _salvage(self, frozen: Any) -> bool:
        """A dead worker's run that finished training anyway: record it instead of re-running it."""
        import json

        run = trial_run(frozen)
        run_dir = Path(run.get("dir") or "")
        status_file = run_dir / STATUS_FILE
        if not run.get("dir") or not status_file.is_file():
            return False
        try:
            status = json.loads(status_file.read_text())
        except ValueError:
            return False
        rows = read_results(run_dir / "results.csv")
        best = best_row(rows)
        if not status.get("ok") or best is None or len(rows) < self.p.plan.settings["epochs"] or not math.isfinite(best.map50_95):
            return False
        import optuna

        result = TrialResult(outcome="complete", rows=rows)
        trial = optuna.trial.Trial(self.study, self.trial_id(frozen.number))
        run.update(outcome=Outcome.COMPLETE, reason="recorded after its worker died", **result.metrics())
        try:
            trial.set_user_attr("run", run)
            self.study.tell(trial, best.map50_95)
        except Exception:
            return False
        self.say(f"[{frozen.number:>4}] {trial_unit(frozen).describe()}: finished before its worker died; recorded")
        return True

    def recover(self) -> int:
        """Fail and re-queue RUNNING trials whose worker is gone. Returns how many were re-queued."""
        import optuna
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        n = 0
        with self.lock:
            now = time.time()
            for ft in self.trials((TrialState.RUNNING,)):
                tid = self.trial_id(ft.number)
                if tid in self.active:
                    continue
                run = trial_run(ft)
                started = ft.datetime_start.timestamp() if ft.datetime_start else now
                # claimed, but the worker died before it recorded itself (and before any heartbeat)
                no_owner = not run.get("pid") and now - started > 2 * (self.storage.grace_period or 60)
                if not (self._dead_local(run) or no_owner):
                    continue
                if self._salvage(ft):
                    continue
                try:
                    if not self.storage.set_trial_state_values(tid, state=TrialState.FAIL):
                        continue
                except UpdateFinishedTrialError:
                    continue  # another worker got there first
                self._requeue(tid, STALE_MAX_RETRY)
                unit = trial_unit(ft)
                self.say(f"[{ft.number:>4}] {unit.describe() if unit else '?'}: its worker (pid {run.get('pid')}) is gone; queued again")
                n += 1
            before = len(self.trials((TrialState.WAITING,)))
            quiet_optuna()
            optuna.storages.fail_stale_trials(self.study)  # other machines: Optuna's heartbeat check
            n += max(0, len(self.trials((TrialState.WAITING,))) - before)
            # units that lost their queue entry (e.g. killed between FAIL and re-queue): queue again
            statuses = self.statuses()
            for key in self.expected_keys(statuses):
                st = statuses.get(key)
                if st is not None and st.state == "missing":
                    self.enqueue(st.unit)
                    n += 1
            if self.space.is_grid:
                for unit in self.space.planned_units():
                    if unit.key not in statuses and self.study.user_attrs.get(PLANNED_ATTR):
                        self.enqueue(unit)
                        n += 1
            else:
                for setting in self.sampled_settings(statuses):
                    template = next(st.unit for st in statuses.values() if st.unit.setting == setting)
                    for seed in self.space.seeds:
                        replica = template.with_seed(seed)
                        if replica.key not in statuses:
                            self.enqueue(replica)
                            n += 1
        return n

    # ------------------------------------------------------------------ running one unit

    def _spec(self, number: int, unit: Unit) -> TrialSpec:
        s = self.p.plan.settings
        return TrialSpec(
            unit_key=unit.key,
            run_dir=self.p.runs_dir / f"t{number:04d}-{unit.slug}",
            hyp=self.p.plan.unit_hyp(unit),
            data=s["data"],
            cfg=s["cfg"],
            weights=s["weights"],
            epochs=int(s["epochs"]),
            img=int(s["img"]),
            batch_size=int(s["batch_size"]),
            seed=unit.seed,
            device=self.config.device,
            workers=self.p.workers,
            threads=self.p.threads,
            extra_args=list(s.get("train_args") or []),
            timeout=self.config.timeout,
        )

    def run_unit(self, trial: Any, unit: Unit) -> None:
        from optuna.trial import TrialState

        tid = self.trial_id(trial.number)
        spec = self._spec(trial.number, unit)
        run: Dict[str, Any] = {
            "host": self.host, "boot": self.boot, "pid": self.pid, "pid_start": self.pid_start,
            "worker": f"{self.host}:{self.pid}", "dir": str(spec.run_dir),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "outcome": None,
        }
        trial.set_user_attr("run", run)

        def on_epoch(row: EpochRow) -> bool:
            if not math.isfinite(row.map50_95):
                return False
            trial.report(row.map50_95, row.epoch)
            return self.config.prune != "none" and trial.should_prune()

        def on_start(proc: Any) -> None:
            self.active[tid].proc = proc
            run["child_pid"] = proc.pid
            trial.set_user_attr("run", run)

        result = run_trial(spec, on_epoch=on_epoch, stop=self.stop, on_start=on_start)
        run.update(outcome=result.outcome, reason=result.reason, returncode=result.returncode, **result.metrics())
        trial.set_user_attr("run", run)
        if result.outcome == "complete":
            self.study.tell(trial, float(result.best.map50_95))  # type: ignore[union-attr]
        elif result.outcome == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
            if result.outcome == "interrupted":
                self._requeue(tid, None)
        self.active.pop(tid, None)
        if result.outcome != "interrupted":
            self.trained += 1
        line = self._line(trial.number, unit, result)
        if self._bar is None or self._bar.disable:
            try:
                c = self.counts()
                line += f"  [{sum(c.get(k, 0) for k in Outcome.FINAL)}/{self.space.total_units()} units finished]"
            except Exception:
                pass
        self.say(line)

    def _line(self, number: int, unit: Unit, result: TrialResult) -> str:
        head = f"[{number:>4}] {unit.describe():<46}"
        if result.outcome == "complete" and result.best is not None:
            b = result.best
            return (f"{head} done    mAP50-95 {b.map50_95:.4g}  mAP50 {b.map50:.4g}  "
                    f"epochs {len(result.rows)}  {result.seconds:.0f}s")
        return f"{head} {result.outcome:<7} {result.reason}  ({result.seconds:.0f}s)"

    # ------------------------------------------------------------------ loops

    def _heartbeat_loop(self) -> None:
        while not self.stop.wait(self.config.heartbeat):
            for tid in list(self.active):
                try:
                    self.storage.record_heartbeat(tid)
                except Exception:  # a transient DB error must not kill the sweep; the next beat retries
                    pass
        # stopping: one last beat so a slow shutdown is not mistaken for a death
        for tid in list(self.active):
            try:
                self.storage.record_heartbeat(tid)
            except Exception:
                pass

    def _worker(self) -> None:
        while not self.stop.is_set():
            claimed = self.claim()
            if claimed is not None:
                self.run_unit(*claimed)
                continue
            if self.recover():
                continue
            statuses = self.statuses()
            if self.complete(statuses):
                return
            busy = bool(self.active) or any(st.state in (Outcome.RUNNING, Outcome.WAITING) for st in statuses.values())
            if not busy:
                return
            self.stop.wait(self.POLL)  # other workers run the last units: wait for them (or for their death)

    def run(self) -> SweepSummary:
        from tqdm import tqdm

        start = time.monotonic()
        if self.p.created:
            self.queue_plan()
        else:
            self.wait_for_plan()
        recovered = self.recover()
        if recovered:
            self.say(f"resuming: {recovered} interrupted unit(s) queued again")
        total = self.space.total_units()
        counts = self.counts()
        done_before = sum(counts.get(k, 0) for k in Outcome.FINAL)
        if done_before:
            self.say(f"resuming study {self.config.study!r}: {done_before} of {total} units already done")
        jobs = self.config.n_jobs
        self.say(
            f"sweep {self.config.study!r}: {total} units ({self.space.describe()}), {jobs} job(s) x {self.p.threads} thread(s); "
            f"storage {redact_url(self.p.storage_url)}; runs in {self.p.runs_dir}"
        )
        import sys

        show = self.config.progress and sys.stderr.isatty()  # in logs, each trial's line carries the count
        self._bar = tqdm(total=total, desc=f"sweep {self.config.study}", unit="unit", disable=not show,
                         dynamic_ncols=True, leave=True)
        heart = threading.Thread(target=self._heartbeat_loop, name="yolo-focal-heartbeat", daemon=True)
        heart.start()
        # Workers report their end through events, and this thread waits with time.sleep, never
        # Thread.join: on CPython 3.11 a Ctrl-C that lands inside join() marks the joined thread as
        # finished while it still runs (bpo-45274's handler releases its tstate lock), and the sweep
        # then exited before the interrupted trials were queued again.
        finished = [threading.Event() for _ in range(jobs)]

        def work(done: threading.Event) -> None:
            try:
                self._worker()
            finally:
                done.set()

        workers = [threading.Thread(target=work, args=(finished[i],), name=f"yolo-focal-worker-{i}", daemon=True)
                   for i in range(jobs)]
        interrupted = False
        previous_sigterm = None
        if threading.current_thread() is threading.main_thread():
            def on_sigterm(signum: int, frame: Any) -> None:
                raise KeyboardInterrupt

            previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            for w in workers:
                w.start()
                time.sleep(0.2)  # stagger the first claims a little
            while not all(done.is_set() for done in finished):
                self._update_bar()
                time.sleep(1.0)
        except KeyboardInterrupt:
            interrupted = True
            self.say("interrupted: stopping the running trials and queueing them again ...")
            self.stop.set()
            while not all(done.is_set() for done in finished):
                try:
                    time.sleep(0.5)
                except KeyboardInterrupt:
                    self.say("still stopping the running trials (they are terminated, then queued again) ...")
        finally:
            self.stop.set()
            heart.join(timeout=5.0)
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
            counts = self.counts()
            self._update_bar(counts)
            self._bar.close()
            self._bar = None
        return SweepSummary(
            study=self.config.study, storage_url=self.p.storage_url, runs_dir=self.p.runs_dir, total=total,
            counts=counts, interrupted=interrupted, seconds=time.monotonic() - start, trained_here=self.trained,
        )

    def _update_bar(self, counts: Optional[Dict[str, int]] = None) -> None:
        if self._bar is None:
            return
        try:
            counts = self.counts() if counts is None else counts
        except Exception:
            return
        finished = sum(counts.get(k, 0) for k in Outcome.FINAL)
        self._bar.n = finished
        self._bar.set_postfix(
            done=counts.get("complete", 0), failed=counts.get("failed", 0), pruned=counts.get("pruned", 0),
            running=counts.get("running", 0), refresh=False,
        )
        self._bar.refresh()


def run_sweep(config: SweepConfig) -> SweepSummary:
    """Validate, create or resume the study, and train until every unit is done (or Ctrl-C)."""
    prepared = prepare_sweep(config)
    return SweepEngine(prepared).run()
