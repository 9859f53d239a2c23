"""Optuna storage and study: open, create or resume, compare search spaces, read trial records.

Storage is any Optuna RDB URL. The default is an SQLite file next to the runs
(``sqlite:///<project>/<study>.db``); ``postgresql://user@host:port/db`` lets several machines
work on one study. Heartbeats (Optuna's own) let a worker see that another one died; Optuna's
``RetryHeartbeatStaleTrialCallback`` then queues the interrupted unit again.

Each trial carries two user attributes written by the sweep:

* ``unit``: what the trial trains (loss, gamma, alpha, ``--set`` values, seed, key), set when it is queued.
* ``run``:  who ran it and how it ended (host, pid, run dir, outcome, metrics, failure reason).

The study carries ``yolo_focal_sweep``: the search space, training settings and hyp it was
created with, so a second command on the same study can be checked against it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterable, List, Mapping, Optional, Tuple

from .space import SearchSpace, SetSpec, SweepError, Unit

__all__ = [
    "PLAN_ATTR",
    "PLANNED_ATTR",
    "Plan",
    "default_storage_url",
    "normalize_storage_url",
    "redact_url",
    "open_storage",
    "create_or_load_study",
    "load_study",
    "trial_unit",
    "trial_run",
    "Outcome",
    "classify",
]

PLAN_ATTR = "yolo_focal_sweep"
PLANNED_ATTR = "yolo_focal_sweep_planned"
PLAN_FORMAT = 1
DEFAULT_HEARTBEAT = 15  # seconds between heartbeats of a running trial
DEFAULT_GRACE = 90  # a RUNNING trial without a heartbeat for this long is stale (its worker died)
STALE_MAX_RETRY = 3  # a unit whose worker dies more often than this is recorded as failed

def quiet_optuna() -> None:
    """Optuna logs a line per trial and warns about experimental heartbeats: keep the sweep's own output."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*fixed_params.*")
    warnings.filterwarnings("ignore", message=r".*is already evaluated.*")
    warnings.filterwarnings("ignore", message=r".*is out of the range.*")
    # the sweep records heartbeats itself (engine._heartbeat_loop) around ask/tell
    warnings.filterwarnings("ignore", message=r"Heartbeat of storage is supposed to be used with Study.optimize")
    logging.getLogger("alembic").setLevel(logging.WARNING)


# --------------------------------------------------------------------------- URLs


def default_storage_url(project: Path, study: str) -> str:
    """``sqlite:///<abs project>/<study>.db``: the study lives next to its runs."""
    path = Path(project).expanduser().resolve() / f"{study}.db"
    return f"sqlite:///{path}"


def normalize_storage_url(url: str) -> str:
    """Accept ``postgres://`` and plain ``postgresql://`` with psycopg 3 (SQLAlchemy defaults to psycopg2)."""
    url = url.strip()
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def sqlite_path(url: str) -> Optional[Path]:
    if not url.startswith("sqlite:///"):
        return None
    rest = url[len("sqlite:///"):]
    if not rest or rest.startswith(":memory:"):
        return None
    return Path(rest.split("?", 1)[0])


def open_storage(
    url: str,
    heartbeat_interval: int = DEFAULT_HEARTBEAT,
    grace_period: Optional[int] = None,
    create_dirs: bool = True,
) -> Any:
    """An Optuna ``RDBStorage`` with heartbeats and stale-trial retry; :class:`SweepError` if unreachable."""
    import optuna

    quiet_optuna()
    url = normalize_storage_url(url)
    scheme = url.split(":", 1)[0]
    engine_kwargs: Dict[str, Any] = {}
    path = sqlite_path(url)
    if scheme.startswith("sqlite"):
        if path is not None:
            if create_dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                raise SweepError(f"storage {url}: no such database file {path}")
        engine_kwargs = {"connect_args": {"timeout": 60}}  # wait for another writer instead of failing
    elif scheme.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    elif scheme.startswith("mysql"):
        engine_kwargs = {"pool_pre_ping": True}
    else:
        raise SweepError(f"storage {redact_url(url)}: unsupported URL scheme {scheme!r} (use sqlite:///file.db or postgresql://...)")
    grace = grace_period if grace_period is not None else max(DEFAULT_GRACE, 4 * heartbeat_interval)
    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=STALE_MAX_RETRY),
            )
        except ModuleNotFoundError as exc:
            raise SweepError(f"storage {redact_url(url)}: a database driver is missing ({exc}); for PostgreSQL: pip install 'psycopg[binary]'") from None
        except Exception as exc:  # sqlalchemy OperationalError, ArgumentError ...
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            text = reason[0] if reason else type(exc).__name__
            # several workers opening a new database at once race to create Optuna's tables: retry
            racing = any(w in text.lower() for w in ("already exists", "duplicate key", "locked", "unique constraint"))
            if racing and attempt < 5:
                time.sleep(0.5 + attempt)
                continue
            raise SweepError(f"cannot open storage {redact_url(url)}: {text}") from None
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- plan


@dataclass
class Plan:
    """What the study was created for. ``space`` and ``settings`` must match on resume."""

    space: Dict[str, Any]
    settings: Dict[str, Any]
    base_hyp: Dict[str, Any]
    trials: Optional[int] = None
    created: Dict[str, Any] = field(default_factory=dict)
    stock_hyp: Dict[str, Any] = field(default_factory=dict)  # YOLOv5's hyp.scratch-low.yaml, when stock units are planned

    def to_json(self) -> Dict[str, Any]:
        data = {
            "format": PLAN_FORMAT,
            "space": self.space,
            "settings": self.settings,
            "base_hyp": self.base_hyp,
            "trials": self.trials,
            "created": self.created,
        }
        if self.stock_hyp:  # absent without stock units: plans made before them keep their form
            data["stock_hyp"] = self.stock_hyp
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Plan":
        return cls(
            space=dict(data["space"]),
            settings=dict(data["settings"]),
            base_hyp=dict(data.get("base_hyp") or {}),
            trials=data.get("trials"),
            created=dict(data.get("created") or {}),
            stock_hyp=dict(data.get("stock_hyp") or {}),
        )

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_json(self.space, trials=self.trials)

    def unit_hyp(self, unit: Unit) -> Dict[str, Any]:
        """The hyp ``unit`` trains with in this study (the stock unit's comes from ``stock_hyp``)."""
        return unit.hyp(self.base_hyp, self.stock_hyp or None)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# informative only: paths may differ between machines (the hyp's contents are compared)
UNCOMPARED_SETTINGS = ("hyp_file", "runs_dir", "data", "cfg", "weights", "stock_reference")
# search-space entries a plan leaves out when unused (studies made before they existed lack them)
SPACE_DEFAULTS: Dict[str, Any] = {"set": [], "stock": False}


def _stock_text(value: Any) -> str:
    return "a stock YOLOv5 reference unit" if value else "no stock YOLOv5 reference unit"


def _sets_text(sets: Any) -> str:
    """A stored ``set`` list as the options that made it (``--set obj=1,2 --set ...``, or ``no --set``)."""
    specs = [SetSpec.from_json(s) for s in sets or ()]
    return " ".join(f"--set {spec.describe()}" for spec in specs) if specs else "no --set"


def plan_differences(stored: Plan, new: Plan) -> List[str]:
    """Human-readable differences that make a resume wrong (empty: compatible)."""
    diffs: List[str] = []
    for section, a, b in (("search space", stored.space, new.space), ("training setting", stored.settings, new.settings)):
        defaults = SPACE_DEFAULTS if section == "search space" else {}
        for key in sorted(set(a) | set(b)):
            if section == "training setting" and key in UNCOMPARED_SETTINGS:
                continue
            old, now = a.get(key, defaults.get(key)), b.get(key, defaults.get(key))
            if old != now:
                if key == "set":  # in the option's own syntax: --set obj=1,2
                    old, now = _sets_text(old), _sets_text(now)
                    diffs.append(f"{section} '--set': study has {old}, this command has {now}")
                    continue
                if section == "search space" and key == "baseline":  # only studies made before #12 lack it
                    diffs.append(f"search space 'baseline': study has {old or 'unmatched'} baselines (made before "
                                 f"matched baselines, #12: its baseline ignored --set), this command has {now}; "
                                 f"`yolo-focal report` still reads it, a new --study trains matched baselines")
                    continue
                if section == "search space" and key == "stock":
                    hint = "add --no-stock to resume it" if now else "drop --no-stock to resume it"
                    diffs.append(f"search space 'stock': study has {_stock_text(old)}, this command has "
                                 f"{_stock_text(now)}; {hint}")
                    continue
                diffs.append(f"{section} '{key}': study has {_short(old)}, this command has {_short(now)}")
    if stored.base_hyp != new.base_hyp:
        keys = sorted(k for k in set(stored.base_hyp) | set(new.base_hyp) if stored.base_hyp.get(k) != new.base_hyp.get(k))
        diffs.append(f"hyp differs in {', '.join(map(str, keys))}")
    if stored.stock_hyp and new.stock_hyp and stored.stock_hyp != new.stock_hyp:
        keys = sorted(k for k in set(stored.stock_hyp) | set(new.stock_hyp) if stored.stock_hyp.get(k) != new.stock_hyp.get(k))
        diffs.append(f"YOLOv5's stock hyp (hyp.scratch-low.yaml) differs in {', '.join(map(str, keys))}")
    return diffs


def _worker_identity() -> Dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


# Without a cross-process lock (PostgreSQL, MySQL), how long a study with no plan and no trials may
# stay so before it counts as left behind by a creator killed between ``create_study`` and writing
# the plan (a gap of ~36 ms measured). A creator stalled longer is not lost: see create_or_load_study.
ADOPT_AFTER = 5.0


def _is_bare(study: Any) -> bool:
    """No user attribute and no trial: what ``create_study`` leaves before the plan is written."""
    return not study.user_attrs and not study.get_trials(deepcopy=False)


def create_or_load_study(
    storage: Any,
    name: str,
    plan: Plan,
    lock: Optional[ContextManager[Any]] = None,
    adopt_after: float = ADOPT_AFTER,
    notify: Optional[Callable[[str], None]] = None,
) -> Tuple[Any, bool]:
    """Create the study (this process then queues the plan) or load it and check it matches.

    Exactly one process creates a study (the storage's unique name constraint), so the plan is
    queued once even when several workers start together. Returns ``(study, created)``.

    A process killed between creating the study and writing its plan leaves a *bare* study (no
    attribute, no trial): the same command must resume it, so a bare study is deleted and created
    again, by this process. ``lock`` (a cross-process lock, the SQLite file's) is held from creation
    to plan, so a bare study seen under it is certainly a dead creator's; without one, a study bare
    for ``adopt_after`` seconds is taken as such. A creator that stalled longer finds its study gone
    and simply starts over, here, as a loader.
    """
    import optuna

    quiet_optuna()
    guard: ContextManager[Any] = lock if lock is not None else contextlib.nullcontext()
    for _ in range(5):  # each round either returns or removes one dead creator's bare study
        with guard:
            try:
                study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=False)
            except optuna.exceptions.DuplicatedStudyError:
                study = None
            if study is not None:
                plan.created = _worker_identity()
                try:
                    study.set_user_attr(PLAN_ATTR, plan.to_json())
                except KeyError:  # deleted as a dead creator's (no lock, stalled > adopt_after): start over
                    continue
                return study, True
        study = _load_planned(storage, name, guard, 0.0 if lock is not None else adopt_after, notify)
        if study is None:
            continue
        stored = Plan.from_json(study.user_attrs[PLAN_ATTR])
        diffs = plan_differences(stored, plan)
        if diffs:
            raise SweepError(
                f"study {name!r} was created with a different search space or settings, so its results "
                f"cannot be mixed with this command's:\n  - " + "\n  - ".join(diffs) +
                "\nRe-run with the study's original options to resume it, or use a new --study name."
            )
        if plan.trials is not None and plan.trials != stored.trials:
            stored.trials = plan.trials  # a sampled sweep may be extended (or shortened) on resume
            study.set_user_attr(PLAN_ATTR, stored.to_json())
        return study, False
    raise SweepError(f"study {name!r}: could not create or load it (it kept disappearing); is another tool deleting it?")


def _load_planned(
    storage: Any, name: str, guard: ContextManager[Any], adopt_after: float, notify: Optional[Callable[[str], None]]
) -> Optional[Any]:
    """The existing study once it has its plan; None after deleting a dead creator's bare study
    (or when it vanished meanwhile): the caller creates it again."""
    import optuna

    try:
        study = optuna.load_study(storage=storage, study_name=name)
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    deadline = time.monotonic() + adopt_after
    while True:
        if PLAN_ATTR in study.user_attrs:
            return study
        if not _is_bare(study):  # trials or attributes of its own: somebody else's study, keep it
            raise SweepError(
                f"study {name!r} exists in this storage but was not created by yolo-focal sweep "
                f"(no {PLAN_ATTR} attribute, and it has trials or attributes); use another --study name"
            )
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    with guard:  # with the lock, a live creator would be holding it until its plan is written
        try:
            if PLAN_ATTR in study.user_attrs:
                return study
            if not _is_bare(study):
                return _load_planned(storage, name, guard, adopt_after, notify)  # raises the message above
            storage.delete_study(study_id)  # by id: never a study that another process created since
        except KeyError:
            return None  # deleted meanwhile by another process resuming the same command
    if notify is not None:
        notify(f"study {name!r} had no plan and no trials (its creator was stopped right after creating it): "
               "created it again")
    return None


def load_study(storage: Any, name: str) -> Tuple[Any, Plan]:
    """Load a sweep study for reporting; :class:`SweepError` if it does not exist or is not a sweep."""
    import optuna

    quiet_optuna()
    try:
        study = optuna.load_study(storage=storage, study_name=name)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
        hint = f"; studies in this storage: {', '.join(names)}" if names else "; the storage has no studies"
        raise SweepError(f"no study named {name!r}{hint}") from None
    data = study.user_attrs.get(PLAN_ATTR)
    if data is None:
        raise SweepError(f"study {name!r} was not created by yolo-focal sweep (no {PLAN_ATTR} attribute)")
    return study, Plan.from_json(data)


# --------------------------------------------------------------------------- trial records


def trial_unit(trial: Any) -> Optional[Unit]:
    data = trial.user_attrs.get("unit")
    if not data:
        return None
    try:
        return Unit.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


def trial_run(trial: Any) -> Dict[str, Any]:
    run = trial.user_attrs.get("run")
    return dict(run) if isinstance(run, dict) else {}


class Outcome:
    """How a trial ended, as the sweep sees it."""

    WAITING = "waiting"
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"  # a real failure of the unit: final, never re-run
    INTERRUPTED = "interrupted"  # the worker was stopped or died: the unit runs again
    DUPLICATE = "duplicate"  # claimed while another trial already had the unit: never trained

    FINAL = (COMPLETE, PRUNED, FAILED)


def classify(trial: Any) -> str:
    from optuna.trial import TrialState

    state = trial.state
    if state == TrialState.WAITING:
        return Outcome.WAITING
    if state == TrialState.RUNNING:
        return Outcome.RUNNING
    if state == TrialState.COMPLETE:
        return Outcome.COMPLETE
    if state == TrialState.PRUNED:
        return Outcome.PRUNED
    outcome = trial_run(trial).get("outcome")
    if outcome in (Outcome.FAILED, Outcome.DUPLICATE):
        return outcome
    return Outcome.INTERRUPTED  # FAIL set by a Ctrl-C, or by Optuna's stale-heartbeat check


@dataclass
class UnitStatus:
    unit: Unit
    trials: List[Any] = field(default_factory=list)

    def outcomes(self) -> List[str]:
        return [classify(t) for t in self.trials]

    @property
    def final(self) -> Optional[Any]:
        """The trial that settled this unit (first final one), or None."""
        for t in sorted(self.trials, key=lambda t: t.number):
            if classify(t) in Outcome.FINAL:
                return t
        return None

    @property
    def retries_exhausted(self) -> bool:
        outcomes = self.outcomes()
        return (
            Outcome.WAITING not in outcomes
            and Outcome.RUNNING not in outcomes
            and outcomes.count(Outcome.INTERRUPTED) > STALE_MAX_RETRY
        )

    @property
    def state(self) -> str:
        final = self.final
        if final is not None:
            return classify(final)
        outcomes = self.outcomes()
        if Outcome.RUNNING in outcomes:
            return Outcome.RUNNING
        if Outcome.WAITING in outcomes:
            return Outcome.WAITING
        if self.retries_exhausted:
            return Outcome.FAILED
        return "missing"


def unit_statuses(trials: Iterable[Any]) -> Dict[str, UnitStatus]:
    """Trials grouped by unit key (trials without a unit are ignored)."""
    out: Dict[str, UnitStatus] = {}
    for t in trials:
        unit = trial_unit(t)
        if unit is None:
            continue
        out.setdefault(unit.key, UnitStatus(unit)).trials.append(t)
    return out
