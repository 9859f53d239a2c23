"""``yolo-focal demo``: the command line of the demo, the evidence tables and the small sweep.

Kept apart from ``demo.py`` so that the training machinery (``demo``) and the experiments built
on it (``evidence``) import in one direction only.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from .demo import (DEFAULT_SETTINGS, EXPECTED_ORDER, ROBUST_PAIRS, demo_dataset, ordering_breaks, run_demo, run_demo_seeds,
                   seeds_table)

__all__ = ["add_arguments", "parse_seeds", "run_from_args", "run_seeds_demo"]

DEMO_SEEDS = "0,1"  # the demo's default: two seeds train side by side, and show whether the ordering repeats
EVIDENCE_SEEDS = "0,1,2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/yolo-focal-demo"), help="output directory")
    parser.add_argument("--epochs", type=int, default=None, help="default 30 (with --evidence: the dataset's, 60 or 50)")
    parser.add_argument("--img", type=int, default=None,
                        help="image size, multiple of 32 (default 64; with --evidence: the dataset's)")
    parser.add_argument("--batch", type=int, default=None, help="default 32 (with --evidence: the dataset's)")
    parser.add_argument("--seed", type=int, default=None,
                        help="one training seed only, in --out itself (the layout before --seeds; its data is generated "
                             "with this seed too); default: --seeds")
    parser.add_argument("--parallel", type=int, default=2, help="trainings side by side")
    parser.add_argument("--sweep", action="store_true",
                        help="instead: a small gamma/alpha sweep with yolo-focal sweep (docs/sweep.md, ~6 min)")
    parser.add_argument("--evidence", action="store_true",
                        help="instead: the README's 'Does focal loss help?' tables: every setting x --seeds on each dataset "
                             "(finished runs in --out are reused)")
    parser.add_argument("--seeds", default=None,
                        help=f"comma-separated training seeds on the same generated data, each in --out/seed<n> "
                             f"(default {DEMO_SEEDS}; with --evidence {EVIDENCE_SEEDS})")
    parser.add_argument("--dataset", default="all",
                        help="with --evidence: one dataset of the README's evidence table (EVIDENCE_DATASETS in "
                             "yolo_focal_plugin.experiments.evidence) or all (default)")
    parser.add_argument("--settings", default=None,
                        help="with --evidence: comma-separated setting names (default: the dataset's; bce is always "
                             "included)")


def run_from_args(args: argparse.Namespace) -> int:
    from .compare import run_compare

    if args.img is not None and args.img % 32:
        raise ValueError(f"--img must be a multiple of 32, got {args.img}")
    if args.evidence:
        from .evidence import EVIDENCE_DATASETS, run_evidence, select_settings

        ignored = [flag for flag, value in (("--seed", args.seed), ("--batch", args.batch), ("--sweep", args.sweep or None))
                   if value is not None]
        if ignored:  # said before hours of training, not discovered in the tables afterwards
            raise ValueError(f"{', '.join(ignored)} cannot be combined with --evidence (seeds: --seeds; batch: each "
                             "dataset's own, in the README's evidence table)")
        seeds = parse_seeds(args.seeds or EVIDENCE_SEEDS)
        datasets = list(EVIDENCE_DATASETS) if args.dataset == "all" else [args.dataset]
        unknown = [d for d in datasets if d not in EVIDENCE_DATASETS]
        if unknown or not seeds:
            raise ValueError(f"--dataset must be one of {', '.join(EVIDENCE_DATASETS)} or all (got {args.dataset!r})"
                             if unknown else "--seeds needs at least one seed")
        for name in datasets:
            settings = select_settings(args.settings, name)
            print(f"## {name}: {EVIDENCE_DATASETS[name].description}\n")
            print(run_evidence(Path(args.out) / "evidence" / name, seeds=seeds, epochs=args.epochs, img=args.img,
                               settings=settings, parallel=args.parallel, dataset=name))
        from .evidence_figure import write_matched

        # every table under --out, those of earlier commands too: the figure is the evidence so far
        tables = sorted((Path(args.out) / "evidence").glob("*/evidence.json"))
        print("## Each setting against its matched BCE, every table (matched.png, matched.md)\n")
        print(write_matched(tables, Path(args.out) / "evidence"))
        return 0
    if args.sweep:
        from ..sweep import run_small_sweep

        result = run_small_sweep(Path(args.out) / "sweep")
        print(result.markdown)
        return 0
    epochs, img, batch = args.epochs or 30, args.img or 64, args.batch or 32
    if args.seed is not None:
        if args.seeds is not None:
            raise ValueError("give --seed N (one seed) or --seeds A,B (several), not both")
        # one seed, exactly as before --seeds existed: runs and compare files in --out itself
        run_dirs = run_demo(args.out, epochs=epochs, img=img, batch=batch, seed=args.seed, parallel=args.parallel)
        result = run_compare(run_dirs, Path(args.out), names=[s.label for s in DEFAULT_SETTINGS])
        print(Path(result["files"]["md"]).read_text())
        print(seeds_table(DEFAULT_SETTINGS, {args.seed: [r["best"] for r in result["runs"]]}, epochs=epochs))
        print("wrote " + ", ".join(result["files"].values()))
        return 0
    markdown = run_seeds_demo(Path(args.out), parse_seeds(args.seeds or DEMO_SEEDS), epochs, img, batch,
                              args.parallel)
    print(markdown)
    return 0


def parse_seeds(text: str) -> List[int]:
    """``"0,1"`` -> ``[0, 1]``; a repeated seed would train the same runs twice, so it is refused."""
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--seeds takes comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds has a seed twice: {text!r}")
    return seeds


def run_seeds_demo(out: Path, seeds: Sequence[int], epochs: int, img: int, batch: int, parallel: int) -> str:
    """Train every demo setting for every seed (one queue, ``parallel`` side by side) on the same data.

    Writes a ``yolo-focal compare`` table and plot per seed (``out/seed<n>/compare.*``) and the
    seeds side by side (``out/demo.md``, ``out/demo.json``); returns the markdown printed for the user.
    """
    from .compare import run_compare

    out = Path(out).resolve()
    # one dataset for every seed (the seed-0 demo's), so seeds differ only in training, as in --evidence
    run_dirs = run_demo_seeds(out, seeds, epochs, batch, demo_dataset(img, 0), DEFAULT_SETTINGS, parallel)
    best_by_seed: Dict[int, List[Mapping[str, float]]] = {}
    files: List[str] = []
    for seed in seeds:
        result = run_compare(run_dirs[seed], out / f"seed{seed}", names=[s.label for s in DEFAULT_SETTINGS])
        best_by_seed[seed] = [r["best"] for r in result["runs"]]
        files += result["files"].values()
    markdown = seeds_table(DEFAULT_SETTINGS, best_by_seed, epochs=epochs)
    (out / "demo.md").write_text(markdown)
    breaks = ordering_breaks(DEFAULT_SETTINGS, best_by_seed)
    robust_breaks = ordering_breaks(DEFAULT_SETTINGS, best_by_seed, ROBUST_PAIRS)
    (out / "demo.json").write_text(json.dumps({
        "epochs": epochs, "img": img, "seeds": list(seeds),
        "settings": [{"name": s.name, "label": s.label,
                      "best": {str(seed): dict(best_by_seed[seed][i]) for seed in seeds}}
                     for i, s in enumerate(DEFAULT_SETTINGS)],
        "expected_order": list(EXPECTED_ORDER),
        "ordering_held": None if breaks is None else not breaks,
        "ordering_breaks": [b.describe() for b in breaks or []],
        "robust_pairs": [list(pair) for pair in ROBUST_PAIRS],
        "robust_held": None if robust_breaks is None else not robust_breaks,
        "robust_breaks": [b.describe() for b in robust_breaks or []],
    }, indent=2, allow_nan=True))
    files += [str(out / "demo.md"), str(out / "demo.json")]
    return markdown + "\nwrote " + ", ".join(files)
