"""``yolo-focal assign-stats``: the command's arguments and what it prints.

``yolo_focal_plugin.cli.main`` builds the sub-command from :func:`add_arguments` and runs it with
:func:`run_from_args`, both re-exported by the package.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._run import run_assign_stats
from ._stats import ASSIGNERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's options (``--data`` required; the rest as in the README) to ``parser``."""
    parser.add_argument("--data", type=Path, required=True, help="dataset YAML (path/train/val/nc/names)")
    parser.add_argument("--img", "--img-size", dest="img", type=int, default=640, help="training input size (default 640)")
    parser.add_argument("--hyp", default=None, help="hyp YAML or bundled name; anchor_t is read from it (default 4.0)")
    parser.add_argument("--cfg", default="yolov5n.yaml", help="model YAML with the anchors (default yolov5n.yaml)")
    parser.add_argument("--out", type=Path, default=Path("runs/assign-stats"), help="output directory")
    parser.add_argument("--split", choices=("train", "val", "all"), default="train")
    parser.add_argument("--assigners", default=",".join(ASSIGNERS), help=f"comma-separated subset of {','.join(ASSIGNERS)}")
    parser.add_argument("--pos-iou", type=float, default=0.5)
    parser.add_argument("--neg-iou", type=float, default=0.4)
    parser.add_argument("--batch", type=int, default=16, help="images matched per step")
    parser.add_argument("--max-images", type=int, default=None, help="only the first N images")
    parser.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the analysis, print the markdown report and the files written; return the exit code 0."""
    result = run_assign_stats(
        args.data, args.img, args.hyp, args.cfg, args.out,
        split=args.split, assigners=[a.strip() for a in args.assigners.split(",") if a.strip()],
        pos_iou=args.pos_iou, neg_iou=args.neg_iou, batch_size=args.batch,
        max_images=args.max_images, progress=not args.no_progress,
    )
    print(Path(result["files"]["md"]).read_text())
    print("wrote " + ", ".join(result["files"].values()))
    return 0
