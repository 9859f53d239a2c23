"""``yolo-focal sweep``: gamma/alpha (and ``--set`` hyp key) sweeps on Optuna; any other flag goes to ``yolov5 train``."""
from __future__ import annotations

import argparse
from typing import List, Optional, Sequence, Tuple

from .engine import SweepConfig, run_sweep
from .study import redact_url

__all__ = ["add_arguments", "run_from_args", "config_from_args"]

EPILOG = """\
Any other flag is passed to every trial's `yolov5 train` unchanged (e.g. --rect, --cache ram,
--optimizer AdamW, --noautoanchor); flags the sweep sets itself (--seed, --project, --name ...) are
refused. The same command resumes a stopped sweep. Several machines share a study with
--storage postgresql://user@host/db. See docs/sweep.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False  # --seed (yolov5) must not become --seeds (ours)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    g = parser.add_argument_group("what to train (as yolov5 train)")
    g.add_argument("--data", required=True, help="dataset yaml (local file)")
    g.add_argument("--cfg", default="yolov5n.yaml", help="model yaml (default: %(default)s)")
    g.add_argument("--weights", default="", help="initial weights, '' = from scratch (default)")
    g.add_argument("--hyp", default="hyp.focal.yaml", help="base hyp; the sweep sets fl_loss/fl_gamma/fl_alpha (and the --set keys) in it (default: %(default)s)")
    g.add_argument("--epochs", type=int, default=30, help="epochs per trial (default: %(default)s)")
    g.add_argument("--img", type=int, default=640, help="image size (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=16, help="batch size (default: %(default)s)")
    g.add_argument("--device", default="", help="yolov5 --device (default: yolov5's choice)")
    g.add_argument("--workers", type=int, default=None, help="dataloader workers per trial (default: threads per trial - 1, max 8)")
    s = parser.add_argument_group("search space")
    s.add_argument("--loss", default="focal", help="fl_loss values, comma-separated: focal,varifocal,qfocal,bce (default: %(default)s)")
    s.add_argument("--gamma", default="0,0.5,1,1.5,2", help="fl_gamma: list 0,1,2 | stepped range 0:2:0.5 | range 0:3 (sampled) (default: %(default)s)")
    s.add_argument("--alpha", default="0.25,0.5,0.75", help="fl_alpha in [0, 1], same syntax (default: %(default)s)")
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2",
                   help="repeatable: also sweep hyp key KEY over these values (read as YAML: numbers or words), "
                        "e.g. --set obj=1,2 --set fl_apply=obj,both; KEY must be in --hyp or an fl_* key. "
                        "Each setting is compared with BCE at its own values except the loss (a baseline per "
                        "combination of --set keys that are not fl_* loss keys; fl_assigner makes one, fl_apply does not)")
    s.add_argument("--no-stock", action="store_true",
                   help="no stock-YOLOv5 reference (hyp.scratch-low.yaml, one unit per seed); by default it is "
                        "trained when a baseline's values (gains, fl_assigner) differ from stock and reported beside it")
    s.add_argument("--seeds", type=int, default=3, help="training seeds per setting (default: %(default)s)")
    s.add_argument("--sampler", default="grid", choices=("grid", "tpe", "random"), help="grid: every combination; tpe/random: --trials sampled settings (default: %(default)s)")
    s.add_argument("--trials", type=int, default=None, help="sampled settings for --sampler tpe|random (each x --seeds)")
    s.add_argument("--sampler-seed", type=int, default=None, help="seed of the tpe/random sampler")
    s.add_argument("--prune", default="none", choices=("none", "median"), help="stop trials below the median of others at the same epoch (default: %(default)s)")
    r = parser.add_argument_group("study, storage and execution")
    r.add_argument("--study", default="focal-sweep", help="study name (default: %(default)s)")
    r.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///<project>/<study>.db; postgresql://... for several machines)")
    r.add_argument("--project", default="runs/sweep", help="runs go to <project>/<study>/ (default: %(default)s)")
    r.add_argument("--n-jobs", type=int, default=1, help="trials side by side on this machine; torch threads are divided (default: %(default)s)")
    r.add_argument("--threads", type=int, default=None, help="torch threads per trial (default: cores / n-jobs)")
    r.add_argument("--timeout", type=float, default=None, help="fail a trial that runs longer than this many seconds")
    r.add_argument("--heartbeat", type=int, default=15, help="seconds between a running trial's heartbeats (default: %(default)s)")
    r.add_argument("--grace", type=int, default=None, help="seconds without a heartbeat after which another worker re-runs a trial (default: max(90, 4 x heartbeat))")
    r.add_argument("--no-progress", action="store_true", help="no progress bar (one line per trial only)")
    r.add_argument("--no-report", action="store_true", help="do not write the report when the sweep finishes")
    r.add_argument("--dry-run", action="store_true", help="check the options and show the units; create nothing, train nothing")

    # unknown flags are yolov5 train flags: keep them instead of letting argparse reject them
    original = parser.parse_known_args

    def parse_known_args(args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None) -> Tuple[argparse.Namespace, List[str]]:
        ns, extras = original(args, namespace)
        if extras and extras[0] == "--":
            extras = extras[1:]
        ns.train_args = list(getattr(ns, "train_args", None) or []) + list(extras)
        return ns, []

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]
    parser.set_defaults(train_args=[])


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    return SweepConfig(
        data=args.data, cfg=args.cfg, weights=args.weights, hyp=args.hyp, losses=args.loss, gamma=args.gamma,
        alpha=args.alpha, sets=list(args.sets or []), stock=not args.no_stock, seeds=args.seeds, epochs=args.epochs, img=args.img, batch_size=args.batch_size,
        device=args.device, workers=args.workers, study=args.study, storage=args.storage, project=args.project,
        n_jobs=args.n_jobs, threads=args.threads, sampler=args.sampler, trials=args.trials,
        sampler_seed=args.sampler_seed, prune=args.prune, timeout=args.timeout,
        train_args=list(args.train_args or []), heartbeat=args.heartbeat, grace=args.grace, progress=not args.no_progress,
    )


def run_from_args(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.dry_run:
        from .engine import prepare_sweep

        prepared = prepare_sweep(config, create=False)
        units = prepared.space.planned_units()
        print(f"OK: {prepared.space.total_units()} units ({prepared.space.describe()}); "
              f"storage {redact_url(prepared.storage_url)}; runs in {prepared.runs_dir}; "
              f"{prepared.threads} thread(s) per trial")
        for unit in units:
            print(f"  {unit.key}")
        if not prepared.space.is_grid:
            print(f"  + {prepared.space.trials} sampled settings x {len(prepared.space.seeds)} seeds")
        return 0
    summary = run_sweep(config)
    print(summary.line())
    if summary.interrupted:
        print("stopped: run the same command again to resume (finished trials are kept).")
        return 130
    storage_flag = f" --storage '{redact_url(summary.storage_url)}'" if args.storage else f" --project {args.project}"
    if not args.no_report:
        from .report import report_study

        report, files = report_study(args.study, summary.storage_url, summary.runs_dir / "report")
        print(f"verdict: {report.verdict}")
        print(f"report: {files['markdown']} (table, CSV, JSON, heatmap, best hyp in {files['markdown'].parent})")
    print(f"re-create the report any time: yolo-focal report --study {args.study}{storage_flag}")
    return 0 if summary.counts.get("complete", 0) else 1
