"""``yolo-focal compare RUN_DIR [RUN_DIR ...]``: final and best metrics of YOLOv5 runs side by side.

Reads each run's ``results.csv`` (yolov5 pads its column names with spaces; segmentation runs
use the box columns ``metrics/precision(B)`` ...), and writes into ``--out``:

* ``compare.md`` (also printed): per run the final-epoch and best-epoch P, R, mAP50, mAP50-95;
  "best" is the epoch with the highest YOLOv5 fitness ``0.1 * mAP50 + 0.9 * mAP50-95``, the
  epoch ``best.pt`` was saved from. The run's ``fl_*`` hyp keys (from its ``hyp.yaml``) label it.
* ``compare.json``: the same numbers plus every epoch's values.
* ``compare_map.png``: mAP50 and mAP50-95 per epoch, one line per run, best epoch marked.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence


from ..yolo_yaml import read_yaml_mapping
from ..run_results import MAP50, MAP50_95, PRECISION, RECALL, best_epoch_index, fitness, read_results_csv

__all__ = ["METRICS", "add_arguments", "best_index", "read_results", "run_compare", "run_from_args"]

# short name -> yolov5 results.csv column (after stripping spaces; segmentation runs add "(B)")
METRICS: Dict[str, str] = {
    "P": PRECISION,
    "R": RECALL,
    "mAP50": MAP50,
    "mAP50-95": MAP50_95,
}
HYP_KEYS = ("fl_loss", "fl_gamma", "fl_alpha", "fl_apply", "fl_norm", "fl_gamma_warmup", "fl_assigner")


def read_results(run: Path) -> Dict[str, List[float]]:
    """Columns ``epoch``, ``P``, ``R``, ``mAP50``, ``mAP50-95`` of a run dir (or a results.csv).

    Also ``class:<name>:mAP50`` and ``class:<name>:mAP50-95`` where the run logged per-class
    columns. Raises ValueError naming the run when there is no results.csv, no epoch or a
    metric column is missing.
    """
    run = Path(run)
    table = read_results_csv(run)
    if table is None:
        raise ValueError(f"{run}: no results.csv (is it a yolov5 run directory?)")
    if not table.rows:
        raise ValueError(f"{table.path}: no epochs recorded yet")
    cols: Dict[str, int] = {}
    for short, name in METRICS.items():
        j = table.index(name)
        if j is None:
            raise ValueError(f"{table.path}: column '{name}' missing (found: {', '.join(table.columns)})")
        cols[short] = j
    # the PyPI fork also logs per-class columns metrics/<name>_mAP (0.5:0.95) and _mAP_50
    for j, h in enumerate(table.columns):
        base = h[:-3] if h.endswith(("(B)", "(M)")) else h
        if h.startswith("metrics/") and base not in METRICS.values():
            if h.endswith("_mAP_50"):
                cols[f"class:{h[8:-7]}:mAP50"] = j
            elif h.endswith("_mAP"):
                cols[f"class:{h[8:-4]}:mAP50-95"] = j
    data: Dict[str, List[float]] = {"epoch": [table.epoch(row, i) for i, row in enumerate(table.rows)]}
    for short, j in cols.items():
        data[short] = [table.value(row, j) for row in table.rows]
    return data


def best_index(curves: Dict[str, List[float]]) -> int:
    """Position of the epoch ``best.pt`` comes from (:func:`~yolo_focal_plugin.run_results.best_epoch_index`),
    over the curves of :func:`read_results`; the last epoch when no epoch has a finite fitness."""
    fitnesses = [fitness(p, r, m50, m) for p, r, m50, m in zip(*(curves[k] for k in METRICS))]
    best = best_epoch_index(fitnesses)
    return len(fitnesses) - 1 if best is None else best


def _hyp_label(run: Path) -> str:
    p = Path(run) / "hyp.yaml"
    if not p.is_file():
        return ""
    try:
        hyp = read_yaml_mapping(p)
    except ValueError:  # a run whose hyp.yaml is unreadable still gets its curves compared
        return ""
    parts = [f"{k[3:]}={hyp[k]}" for k in HYP_KEYS if k in hyp]
    if not parts and "fl_gamma" in hyp:
        parts.append(f"gamma={hyp['fl_gamma']}")
    return " ".join(parts)


def _labels(runs: Sequence[Path]) -> List[str]:
    """Shortest unique labels: the dir name, with parents added while names collide."""
    runs = [Path(r).resolve() for r in runs]
    depth = 1
    while True:
        labels = ["/".join(r.parts[-depth:]) for r in runs]
        if len(set(labels)) == len(labels) or depth >= max(len(r.parts) for r in runs):
            return labels
        depth += 1


def run_compare(run_dirs: Sequence[Path], out_dir: Optional[Path] = None, names: Optional[Sequence[str]] = None) -> dict:
    """Compare runs; write ``compare.{md,json}`` and ``compare_map.png`` into ``out_dir``; return the JSON dict."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    if names is not None and len(names) != len(run_dirs):
        raise ValueError(f"{len(names)} names for {len(run_dirs)} runs")
    labels = list(names) if names is not None else _labels(run_dirs)
    runs = []
    for label, run in zip(labels, run_dirs):
        d = read_results(Path(run))
        n = len(d["epoch"])
        best = best_index(d)
        runs.append({
            "label": label,
            "run_dir": str(run),
            "settings": _hyp_label(Path(run)),
            "epochs": n,
            "final": {k: d[k][-1] for k in METRICS},
            "best_epoch": int(d["epoch"][best]),
            "best": {k: d[k][best] for k in METRICS},
            "best_per_class": {k.split(":")[1]: d[k][best] for k in d if k.startswith("class:") and k.endswith(":mAP50-95")},
            "curves": d,
        })
    out_dir = Path(out_dir) if out_dir is not None else Path("runs/compare")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"runs": runs, "best_rule": "max fitness = 0.1 * mAP50 + 0.9 * mAP50-95 (yolov5's best.pt)"}
    md = to_markdown(result)
    (out_dir / "compare.md").write_text(md)
    (out_dir / "compare.json").write_text(json.dumps(result, indent=2, allow_nan=True))
    plot_curves(result, out_dir / "compare_map.png")
    result["files"] = {"md": str(out_dir / "compare.md"), "json": str(out_dir / "compare.json"),
                       "png": str(out_dir / "compare_map.png")}
    return result


def _f(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.4f}"


def to_markdown(result: dict) -> str:
    runs = result["runs"]
    ref = runs[0]["best"]["mAP50-95"]
    lines = [
        "| run | settings | epochs | final P | final R | final mAP50 | final mAP50-95 "
        "| best epoch | best P | best R | best mAP50 | best mAP50-95 | Δ best mAP50-95 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        fin, best = r["final"], r["best"]
        delta = best["mAP50-95"] - ref
        lines.append(
            f"| {r['label']} | {r['settings'] or '-'} | {r['epochs']} | "
            + " | ".join(_f(fin[k]) for k in METRICS)
            + f" | {r['best_epoch']} | " + " | ".join(_f(best[k]) for k in METRICS)
            + f" | {'-' if math.isnan(delta) else f'{delta:+.4f}'} |"
        )
    lines += ["", f"Best epoch: {result['best_rule']}. Δ is against the first run.", ""]
    classes: List[str] = []
    for r in runs:
        classes += [c for c in r["best_per_class"] if c not in classes]
    if classes:
        lines += ["Per-class mAP50-95 at each run's best epoch:", "",
                  "| class | " + " | ".join(r["label"] for r in runs) + " |",
                  "|---|" + "---:|" * len(runs)]
        for c in classes:
            lines.append(f"| {c} | " + " | ".join(_f(r["best_per_class"].get(c, math.nan)) for r in runs) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_curves(result: dict, path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 4.8 + 0.3 * len(result["runs"])), dpi=110)
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("mAP50", "mAP50-95")):
        for r in result["runs"]:
            c = r["curves"]
            (line,) = ax.plot(c["epoch"], c[key], marker="o" if r["epochs"] <= 30 else None, ms=3,
                              label=f"{r['label']}" + (f" ({r['settings']})" if r["settings"] else ""))
            ax.plot([r["best_epoch"]], [r["best"][key]], marker="*", ms=13, color=line.get_color(),
                    markeredgecolor="black", linestyle="none")
        ax.set_title(f"{key} per epoch (★ best epoch)", fontsize=12)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    # below the plots, one run per row: labels with their settings are too long to sit inside an axes
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=1, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07 * len(labels), 1, 1))
    fig.savefig(path)
    return Path(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="yolov5 run directories (with results.csv)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="output directory (default runs/compare)")
    parser.add_argument("--names", default=None, help="comma-separated labels, one per run (default: dir names)")


def run_from_args(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    result = run_compare(args.runs, args.out, names)
    print(Path(result["files"]["md"]).read_text())
    print("wrote " + ", ".join(result["files"].values()))
    return 0
