"""Preparation of a sweep: every option checked, the storage opened, the study created or loaded.

Everything a user can get wrong (paths, hyp, ``--set`` values, pass-through ``yolov5 train``
flags, numeric options) is refused here with a :class:`~.space.SweepError` that names the option,
before any trial trains. :func:`prepare_sweep` trains nothing; the engine runs what it returns.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..env import DISABLE
from ..env import flag as env_flag
from ..yolo_yaml import YamlFileError, dataset_classes, read_yaml_mapping
from ._liveness import ClaimLock
from .space import SearchSpace, SweepError, Unit, fmt_extra, is_fl_key
from .study import (
    DEFAULT_HEARTBEAT,
    Plan,
    create_or_load_study,
    default_storage_url,
    normalize_storage_url,
    open_storage,
    sqlite_path,
)

__all__ = ["SweepConfig", "Prepared", "prepare_sweep", "FORBIDDEN_TRAIN_FLAGS"]

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
    stock: bool = True  # a stock-YOLOv5 unit per seed where a baseline's non-fl values differ from stock (--no-stock: never)
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
    nc, names = dataset_classes(path)
    return {"nc": nc, "names": names}


def _read_yaml_mapping(path: Path, option: str, expected: str) -> Dict[str, Any]:
    """The mapping in YAML file ``path``; a SweepError that starts with ``option`` when it is not one."""
    try:
        return read_yaml_mapping(path, expected)
    except YamlFileError as exc:
        raise SweepError(f"{option}: {str(exc).split(': ', 1)[-1]}") from None


def _load_data(path: str) -> Tuple[str, Optional[int]]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise SweepError(f"--data {path!r}: no such file (the sweep does not download datasets)")
    meta = _read_yaml_mapping(p, f"--data {path!r}", "a mapping with train/val/nc/names")
    return str(p.resolve()), dataset_classes(meta)[0]


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
    return _read_yaml_mapping(path, f"--hyp {path}", "a mapping of hyperparameters")


STOCK_HYP = "hyp.scratch-low.yaml"  # the hyp `yolov5 train` uses when given none: "stock YOLOv5"


def _load_stock_hyp() -> Dict[str, Any]:
    """YOLOv5's own stock hyp, from the installed yolov5 package (the stock unit trains it)."""
    root = _yolov5_dir()
    path = root / "data" / "hyps" / STOCK_HYP if root is not None else None
    if path is None or not path.is_file():
        raise SweepError(f"cannot find yolov5's data/hyps/{STOCK_HYP} for the stock YOLOv5 reference; "
                         "is yolov5 installed? (--no-stock leaves the reference out)")
    return _read_yaml_mapping(path, f"yolov5's {STOCK_HYP}", "a mapping of hyperparameters")


def _validate_units(space: SearchSpace, base: Dict[str, Any], nc: Optional[int], known: Sequence[str],
                    stock: Optional[Dict[str, Any]] = None) -> None:
    from ..hyp import HypError, parse_focal_hyp

    try:
        parse_focal_hyp(base, nc=nc, known_losses=known)
    except HypError as exc:
        raise SweepError(f"--hyp: {exc}") from None
    # each fl_* --set value on its own first, so that the message names the option and the value
    for spec in space.extras:
        if not is_fl_key(spec.key):
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
            cfg = parse_focal_hyp(unit.hyp(base, stock), nc=nc, known_losses=known)
        except HypError as exc:
            raise SweepError(f"{unit.describe()}: {exc}") from None
        if unit.is_reference and not cfg.is_stock:
            raise SweepError(f"internal error: the {unit.loss} hyp is not YOLOv5's BCE ({cfg.describe()})")


def _known_losses() -> Tuple[str, ...]:
    from .runner import known_losses

    return tuple(known_losses())


def prepare_sweep(config: SweepConfig, create: bool = True) -> Prepared:
    """Check every option, open the storage and create or load the study. Trains nothing.

    Raises :class:`SweepError` with a clear message for any bad input.
    """
    if env_flag(DISABLE):
        raise SweepError(f"{DISABLE} is set: a focal-loss sweep needs the plugin active; unset it")
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
    stock_hyp: Dict[str, Any] = {}
    if config.stock:
        stock_hyp = _load_stock_hyp()
        if space.needs_stock(base_hyp, stock_hyp):
            space = replace(space, stock=True)
        else:  # every baseline already is stock YOLOv5: nothing to add, nothing to store
            stock_hyp = {}
    _validate_units(space, base_hyp, nc, known, stock_hyp or None)
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
        stock_hyp=stock_hyp,
    )
    plan.settings["hyp_file"] = str(hyp_path)  # informative; the contents are compared through base_hyp
    plan.settings["runs_dir"] = str(runs_dir)
    # informative, for the report's wording: why there is, or is not, a stock unit (space.stock is compared)
    plan.settings["stock_reference"] = "on" if space.stock else ("same" if config.stock else "off")
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
        lock = ClaimLock(sqlite_file.with_name(sqlite_file.name + ".lock")) if sqlite_file is not None else None
        study, created = create_or_load_study(storage, config.study, plan, lock=lock,
                                              notify=config.print_fn or print)
    return Prepared(
        config=config, space=space, plan=plan, storage_url=storage_url, storage=storage, study=study,
        created=created, runs_dir=runs_dir, threads=threads, workers=workers, known_losses=known,
    )
