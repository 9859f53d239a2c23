"""Run a sweep: validate everything, create or resume the Optuna study, train units until done.

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
"""
from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .space import BASELINE, SearchSpace, SweepError, Unit, fmt_extra, fmt_value
from .study import (
    PLAN_ATTR,
    PLANNED_ATTR,
    STALE_MAX_RETRY,
    DEFAULT_HEARTBEAT,
    Outcome,
    Plan,
    UnitStatus,
    classify,
    create_or_load_study,
    default_storage_url,
    normalize_storage_url,
    open_storage,
    quiet_optuna,
    redact_url,
    sqlite_path,
    trial_run,
    trial_unit,
    unit_statuses,
)
from .trial import EpochRow, TrialResult, TrialSpec, run_trial

__all__ = ["SweepConfig", "SweepSummary", "Prepared", "prepare_sweep", "run_sweep", "FORBIDDEN_TRAIN_FLAGS"]

# flags the sweep sets itself for every trial; passing them through would break the bookkeeping
FORBIDDEN_TRAIN_FLAGS = {
    "seed": "the sweep sets --seed per trial; use --seeds N",
    "project": "the sweep puts runs under --project/<study>; give --project to the sweep itself",
    "name": "the sweep names each run after its trial",
    "exist-ok": "the sweep manages run directories",
    "evolve": "--evolve is YOLOv5's own search; the sweep is the replacement",
    "resume": "the sweep resumes itself: run the same command again",
    "imgsz": "use the sweep's --img",
    "img-size": "use the sweep's --img",
    "batch": "use the sweep's --batch-size",
    "local_rank": "DDP is not supported inside a sweep",
    "hyp": "use the sweep's --hyp",
}


@dataclass
class SweepConfig:
    data: str
    cfg: str = "yolov5n.yaml"
    weights: str = ""
    hyp: str = "hyp.focal.yaml"
    losses: Any = "focal"
    gamma: Any = "0,0.5,1,1.5,2"
    alpha: Any = "0.25,0.5,0.75"
    sets: Sequence[str] = ()  # --set KEY=V1,V2,... texts: one categorical dimension each
    seeds: int = 3
    epochs: int = 30
    img: int = 640
    batch_size: int = 16
    device: str = ""
    workers: Optional[int] = None
    study: str = "focal-sweep"
    storage: Optional[str] = None
    project: str = "runs/sweep"
    n_jobs: int = 1
    threads: Optional[int] = None
    sampler: str = "grid"
    trials: Optional[int] = None
    sampler_seed: Optional[int] = None
    prune: str = "none"
    timeout: Optional[float] = None
    train_args: Sequence[str] = ()
    heartbeat: int = DEFAULT_HEARTBEAT
    grace: Optional[int] = None  # seconds without heartbeat before a trial counts as dead (default max(90, 4 x heartbeat))
    progress: bool = True
    print_fn: Optional[Callable[[str], None]] = None


@dataclass
class Prepared:
    config: SweepConfig
    space: SearchSpace
    plan: Plan
    storage_url: str
    storage: Any
    study: Any
    created: bool
    runs_dir: Path
    threads: int
    workers: Optional[int]
    known_losses: Tuple[str, ...]


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


# --------------------------------------------------------------------------- validation


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _yolov5_dir() -> Optional[Path]:
    import importlib.util

    spec = importlib.util.find_spec("yolov5")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _resolve_hyp(name: str) -> Path:
    from ..hyp import resolve_hyp_path

    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    bundled = resolve_hyp_path(name)
    if bundled is not None:
        return bundled
    root = _yolov5_dir()
    if root is not None and "/" not in name:
        for candidate in (root / "data" / "hyps" / name, root / "data" / "hyps" / f"{name}.yaml"):
            if candidate.is_file():
                return candidate
    raise SweepError(f"--hyp {name!r}: no such file, and not a bundled hyp (hyp.focal.yaml, hyp.varifocal.yaml, hyp.qfocal.yaml) or a yolov5 hyp")


def _resolve_cfg(name: str) -> str:
    if not name:
        return ""
    path = Path(name).expanduser()
    if path.is_file():
        return str(path.resolve())
    root = _yolov5_dir()
    if root is not None and "/" not in name and list(root.rglob(name)):
        return name  # yolov5's check_yaml finds its own model yamls by name
    raise SweepError(f"--cfg {name!r}: no such file and not a yolov5 model yaml (e.g. yolov5n.yaml)")


def _identity(path: str) -> str:
    """What must match between machines for a file setting: the name, plus a hash of a local file's contents."""
    if not path:
        return ""
    p = Path(path)
    if not p.is_file():
        return p.name  # e.g. yolov5n.yaml, resolved by yolov5 from its own package
    import hashlib

    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return f"{p.name} sha256:{digest}"


def _dataset_identity(path: str) -> Dict[str, Any]:
    import yaml

    meta = yaml.safe_load(Path(path).read_text()) or {}
    names = meta.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    return {"nc": meta.get("nc", len(names) if names is not None else None), "names": names}


def _load_data(path: str) -> Tuple[str, Optional[int]]:
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise SweepError(f"--data {path!r}: no such file (the sweep does not download datasets)")
    try:
        meta = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SweepError(f"--data {path!r}: not valid YAML ({exc})") from None
    if not isinstance(meta, dict):
        raise SweepError(f"--data {path!r}: expected a mapping with train/val/nc/names")
    nc = meta.get("nc")
    if nc is None and meta.get("names") is not None:
        nc = len(meta["names"])
    return str(p.resolve()), None if nc is None else int(nc)


def _check_train_args(args: Sequence[str]) -> None:
    for token in args:
        if not token.startswith("--") or len(token) < 3:
            continue
        name = token[2:].split("=", 1)[0]
        for flag, why in FORBIDDEN_TRAIN_FLAGS.items():
            if flag == name or (len(name) >= 3 and flag.startswith(name)):
                raise SweepError(f"yolov5 flag --{name} cannot be passed through: {why}")


def _check_train_args_with_yolov5(args: Sequence[str]) -> None:
    """Let yolov5's own argparse judge the pass-through flags, in a subprocess (no torch in this one)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "yolo_focal_plugin.sweep.runner", "--check", "--", "--data", "x.yaml", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.splitlines() if "error:" in l] or proc.stderr.strip().splitlines()[-1:]
        raise SweepError(f"yolov5 train does not accept the pass-through flags {' '.join(args)}: {lines[-1] if lines else 'unknown error'}")


def _load_hyp_dict(path: Path) -> Dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SweepError(f"--hyp {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise SweepError(f"--hyp {path}: expected a mapping of hyperparameters")
    return data


def _validate_units(space: SearchSpace, base: Dict[str, Any], nc: Optional[int], known: Sequence[str]) -> None:
    from ..hyp import HypError, parse_focal_hyp

    try:
        parse_focal_hyp(base, nc=nc, known_losses=known)
    except HypError as exc:
        raise SweepError(f"--hyp: {exc}") from None
    # each fl_* --set value on its own first, so that the message names the option and the value
    for spec in space.extras:
        if not spec.key.startswith("fl_"):
            continue
        for value in spec.values:
            try:
                parse_focal_hyp({**base, spec.key: value}, nc=nc, known_losses=known)
            except HypError as exc:
                raise SweepError(f"--set {spec.key}={fmt_extra(value)}: {exc}") from None
    units: List[Unit] = list(space.planned_units())
    if not space.is_grid:  # sampled: check the corners of the space, with every --set combination
        corners = []
        for loss in space.losses:
            for g in (space.gamma.values if space.gamma.kind == "list" else (space.gamma.low, space.gamma.high)):
                for a in (space.alpha.values if space.alpha.kind == "list" else (space.alpha.low, space.alpha.high)):
                    corners += [Unit(loss, g, a, 0, "sampled", extras) for extras in space.extra_combos()]
        units += corners
    for unit in units:
        try:
            cfg = parse_focal_hyp(unit.hyp(base), nc=nc, known_losses=known)
        except HypError as exc:
            raise SweepError(f"{unit.describe()}: {exc}") from None
        if unit.is_baseline and not cfg.is_stock:
            raise SweepError(f"internal error: the baseline hyp is not stock ({cfg.describe()})")


def _known_losses() -> Tuple[str, ...]:
    from .runner import known_losses

    return tuple(known_losses())


def prepare_sweep(config: SweepConfig, create: bool = True) -> Prepared:
    """Check every option, open the storage and create or load the study. Trains nothing.

    Raises :class:`SweepError` with a clear message for any bad input.
    """
    if os.environ.get("YOLO_FOCAL_DISABLE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise SweepError("YOLO_FOCAL_DISABLE is set: a focal-loss sweep needs the plugin active; unset it")
    for name, value, low in (("--epochs", config.epochs, 1), ("--img", config.img, 32), ("--batch-size", config.batch_size, 1), ("--n-jobs", config.n_jobs, 1), ("--heartbeat", config.heartbeat, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SweepError(f"{name} must be an integer >= {low}, got {value!r}")
    if config.grace is not None and (isinstance(config.grace, bool) or not isinstance(config.grace, int) or config.grace <= config.heartbeat):
        raise SweepError(f"--grace must be an integer number of seconds above --heartbeat ({config.heartbeat}), got {config.grace!r}")
    if config.threads is not None and config.threads < 1:
        raise SweepError(f"--threads must be >= 1, got {config.threads}")
    if config.prune not in ("none", "median"):
        raise SweepError(f"--prune must be none or median, got {config.prune!r}")
    if config.timeout is not None and config.timeout <= 0:
        raise SweepError(f"--timeout must be > 0 seconds, got {config.timeout}")
    if not config.study or any(c in config.study for c in "/\\\0") or config.study.startswith("."):
        raise SweepError(f"--study {config.study!r}: use a plain name (letters, digits, - and _)")

    known = _known_losses()
    space = SearchSpace.build(config.sampler, config.losses, config.gamma, config.alpha, config.seeds, config.trials, known,
                              sets=config.sets)
    data, nc = _load_data(config.data)
    cfg = _resolve_cfg(config.cfg)
    weights = config.weights or ""
    if weights:
        if not Path(weights).expanduser().is_file():
            raise SweepError(f"--weights {weights!r}: no such file (the sweep does not download weights; use '' to train from scratch)")
        weights = str(Path(weights).expanduser().resolve())
    if not cfg and not weights:
        raise SweepError("give --cfg (e.g. yolov5n.yaml) or --weights")
    hyp_path = _resolve_hyp(config.hyp)
    base_hyp = _load_hyp_dict(hyp_path)
    space = space.bind_hyp(base_hyp, str(hyp_path))
    _validate_units(space, base_hyp, nc, known)
    train_args = [str(a) for a in config.train_args]
    _check_train_args(train_args)
    if train_args:
        _check_train_args_with_yolov5(train_args)

    cpus = _cpu_count()
    threads = config.threads or max(1, cpus // config.n_jobs)
    workers = config.workers if config.workers is not None else min(8, max(0, threads - 1))

    project = Path(config.project).expanduser()
    runs_dir = (project / config.study).resolve()
    storage_url = normalize_storage_url(config.storage) if config.storage else default_storage_url(project, config.study)
    plan = Plan(
        space=space.to_json(),
        settings={
            # paths may differ between machines: the dataset (classes), model and weights identities are compared
            "dataset": _dataset_identity(data),
            "model": _identity(cfg),
            "weights_id": _identity(weights),
            "data": data,
            "cfg": cfg,
            "weights": weights,
            "epochs": config.epochs,
            "img": config.img,
            "batch_size": config.batch_size,
            "train_args": train_args,
        },
        base_hyp=base_hyp,
        trials=space.trials,
    )
    plan.settings["hyp_file"] = str(hyp_path)  # informative; the contents are compared through base_hyp
    plan.settings["runs_dir"] = str(runs_dir)
    sqlite_file = sqlite_path(storage_url)
    if not create and sqlite_file is not None and not sqlite_file.exists():
        storage = None  # a dry run creates nothing, and opening SQLite would create the file
    else:
        storage = open_storage(storage_url, heartbeat_interval=config.heartbeat, grace_period=config.grace,
                               create_dirs=True)
    study = None
    created = False
    if create:
        # the SQLite file's claim lock also spans creation -> plan, so a bare study is a dead creator's
        lock = _ClaimLock(sqlite_file.with_name(sqlite_file.name + ".lock")) if sqlite_file is not None else None
        study, created = create_or_load_study(storage, config.study, plan, lock=lock,
                                              notify=config.print_fn or print)
    return Prepared(
        config=config, space=space, plan=plan, storage_url=storage_url, storage=storage, study=study,
        created=created, runs_dir=runs_dir, threads=threads, workers=workers, known_losses=known,
    )


# --------------------------------------------------------------------------- process identity


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_start(pid: int) -> Optional[str]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _ClaimLock:
    """Cross-process lock for SQLite studies (re-entrant within a process).

    Optuna claims a queued trial with ``SELECT ... FOR UPDATE`` + ``UPDATE``. PostgreSQL locks the
    row; SQLite ignores ``FOR UPDATE`` and pysqlite runs the ``SELECT`` outside a transaction, so
    two processes sharing one SQLite file can both claim the same trial (seen in the tests). An
    ``flock`` on ``<db>.lock`` around claims and recovery closes that gap; SQLite studies live on
    one machine anyway. Other storages need no lock.
    """

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._file: Any = None

    def __enter__(self) -> "_ClaimLock":
        self._thread_lock.acquire()
        if self.path is not None and self._depth == 0:
            import fcntl

            self._file = open(self.path, "a+")
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._file is not None and self._depth == 0:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        self._thread_lock.release()


# --------------------------------------------------------------------------- engine


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
        from .study import sqlite_path

        db = sqlite_path(normalize_storage_url(prepared.storage_url))
        self.lock = _ClaimLock(db.with_name(db.name + ".lock") if db is not None else None)
        self.stop = threading.Event()
        self.active: Dict[int, _Active] = {}
        self.trained = 0
        self.host = socket.gethostname()
        self.boot = _boot_id()
        self.pid = os.getpid()
        self.pid_start = _proc_start(self.pid)
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
        return created.get("host") == self.host and isinstance(pid, int) and pid != self.pid and not _pid_alive(pid)

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
        if not _pid_alive(pid):
            return True
        start = _proc_start(pid)
        return start is not None and run.get("pid_start") is not None and start != run.get("pid_start")

    def _requeue(self, tid: int, max_retry: Optional[int]) -> None:
        import optuna

        frozen = self.storage.get_trial(tid)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(self.study, frozen)

    def _salvage(self, frozen: Any) -> bool:
        """A dead worker's run that finished training anyway: record it instead of re-running it."""
        import json

        from .trial import STATUS_FILE, best_row, read_results

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
            hyp=unit.hyp(self.p.plan.base_hyp),
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
