"""``yolo-focal demo``: the command line of the demo, the evidence tables and the small sweep.

Kept apart from ``demo.py`` so that the training machinery (``demo``) and the experiments built
on it (``evidence``) import in one direction only.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .demo import DEFAULT_SETTINGS, run_demo

__all__ = ["add_arguments", "run_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/yolo-focal-demo"), help="output directory")
    parser.add_argument("--epochs", type=int, default=None, help="default 30 (with --evidence: the dataset's, 60 or 50)")
    parser.add_argument("--img", type=int, default=None,
                        help="image size, multiple of 32 (default 64; with --evidence: the dataset's)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2, help="trainings side by side")
    parser.add_argument("--sweep", action="store_true",
                        help="instead: a small gamma/alpha sweep with yolo-focal sweep (docs/sweep.md, ~6 min)")
    parser.add_argument("--evidence", action="store_true",
                        help="instead: the README's 'Does focal loss help?' tables: every setting x --seeds on each dataset "
                             "(finished runs in --out are reused)")
    parser.add_argument("--seeds", default="0,1,2", help="with --evidence: comma-separated training seeds")
    parser.add_argument("--dataset", default="all",
                        help="with --evidence: longtail64, small96 or all (default); see yolo_focal_plugin.experiments.evidence")
    parser.add_argument("--settings", default=None,
                        help="with --evidence: comma-separated setting names (default: all; bce is always included)")


def run_from_args(args: argparse.Namespace) -> int:
    from .compare import run_compare

    if args.img is not None and args.img % 32:
        raise ValueError(f"--img must be a multiple of 32, got {args.img}")
    if args.evidence:
        from .evidence import EVIDENCE_DATASETS, run_evidence, select_settings

        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        datasets = list(EVIDENCE_DATASETS) if args.dataset == "all" else [args.dataset]
        unknown = [d for d in datasets if d not in EVIDENCE_DATASETS]
        if unknown or not seeds:
            raise ValueError(f"--dataset must be one of {', '.join(EVIDENCE_DATASETS)} or all (got {args.dataset!r})"
                             if unknown else "--seeds needs at least one seed")
        settings = select_settings(args.settings)
        for name in datasets:
            print(f"## {name}: {EVIDENCE_DATASETS[name].description}\n")
            print(run_evidence(Path(args.out) / "evidence" / name, seeds=seeds, epochs=args.epochs, img=args.img,
                               settings=settings, parallel=args.parallel, dataset=name))
        return 0
    if args.sweep:
        from ..sweep import run_small_sweep

        result = run_small_sweep(Path(args.out) / "sweep")
        print(result.markdown)
        return 0
    run_dirs = run_demo(args.out, epochs=args.epochs or 30, img=args.img or 64, batch=args.batch, seed=args.seed,
                        parallel=args.parallel)
    result = run_compare(run_dirs, Path(args.out), names=[s.label for s in DEFAULT_SETTINGS])
    print(Path(result["files"]["md"]).read_text())
    print("wrote " + ", ".join(result["files"].values()))
    return 0
