"""``yolo-focal``: yolov5's own commands with the plugin active, plus the plugin's tools.

``yolo-focal train|val|detect|export|segment|classify|benchmarks ...`` hand the arguments to
yolov5's CLI unchanged (same flags, defaults and outputs as ``yolov5 ...``). The plugin's own
commands are listed in :data:`COMMANDS`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Dict, List, Optional, Tuple

from .. import __version__

YOLOV5_COMMANDS = ("train", "val", "detect", "export", "segment", "classify", "benchmarks")

# name -> (module, help); each module has add_arguments(parser) and run_from_args(args) -> int
COMMANDS: Dict[str, Tuple[str, str]] = {
    "demo": ("yolo_focal_plugin.experiments.demo_command", "generate an imbalanced dataset, train BCE vs focal, print a table and plot"),
    "synth": ("yolo_focal_plugin.experiments.synth", "generate a class-imbalanced synthetic detection dataset"),
    "assign-stats": ("yolo_focal_plugin.experiments.assign_stats",
                     "positives per object and anchor imbalance: YOLOv5's assignment vs the RetinaNet IoU matcher"),
    "compare": ("yolo_focal_plugin.experiments.compare", "side-by-side final/best P, R, mAP of yolov5 runs, plus mAP curves"),
    "sweep": ("yolo_focal_plugin.sweep.command", "gamma/alpha sweep on Optuna: grid or sampled, multi-seed, resumable, parallel"),
    "report": ("yolo_focal_plugin.sweep.report", "report of a sweep: mAP per setting vs the baseline, heatmap, best hyp"),
    "patch": ("yolo_focal_plugin.cli.patch", "check|apply|revert the plugin's source patches on a vendored yolov5 copy"),
}


def _run_yolov5(argv: List[str]) -> int:
    from ..env import DISABLE, flag
    from ..hyp import HypError

    if not flag(DISABLE):
        from ..integration import install

        install()
    import yolov5.cli

    sys.argv = ["yolov5", *argv]
    try:
        yolov5.cli.app()
    except HypError as exc:
        print(f"yolo-focal: error: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s module is imported (each import costs seconds)."""
    parser = argparse.ArgumentParser(
        prog="yolo-focal",
        description=__doc__.split("\n\n")[0],
        epilog=f"yolov5 commands passed through unchanged: {', '.join(YOLOV5_COMMANDS)}",
    )
    parser.add_argument("--version", action="version", version=f"yolo-focal-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=module.run_from_args)
    for name in YOLOV5_COMMANDS:
        sub.add_parser(name, help=f"yolov5 {name} with the plugin active (all yolov5 flags)", add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in YOLOV5_COMMANDS:
        return _run_yolov5(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    run: Optional[Callable[[argparse.Namespace], int]] = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 1
    try:
        return int(run(args) or 0)
    except ValueError as exc:  # HypError and bad settings: a clear message, no traceback
        print(f"yolo-focal {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
