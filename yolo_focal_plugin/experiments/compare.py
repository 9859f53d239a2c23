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
import csv
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

__all__ = ["METRICS", "add_arguments", "read_results", "run_compare", "run_from_args"]

# short name -> yolov5 results.csv column (after stripping spaces)
METRICS: Dict[str, str] = {
    "P": "metrics/precision",
    "R": "metrics/recall",
    "mAP50": "metrics/mAP_0.5",
    "mAP50-95": "metrics/mAP_0.5:0.95",
}
FITNESS_WEIGHTS = {"mAP50": 0.1, "mAP50-95": 0.9}  # yolov5 utils/metrics.py fitness()
HYP_KEYS = ("fl_loss", "fl_gamma", "fl_alpha", "fl_apply", "fl_norm", "fl_gamma_warmup", "fl_assigner")


def _float(v: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def read_results(run: Path) -> Dict[str, List[float]]:
    """Columns ``epoch``, ``P``, ``R``, ``mAP50``, ``mAP50-95`` of a run dir (or a results.csv)."""
    run = Path(run)
    path = run / "results.csv" if run.is_dir() else run
    if not path.is_file():
        raise ValueError(f"{run}: no results.csv (is it a yolov5 run directory?)")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{path}: no epochs recorded yet")
    header = [h.strip() for h in rows[0]]
    cols = {}
    for short, name in METRICS.items():
        for candidate in (name, f"{name}(B)"):  # (B): box metrics of segmentation runs
            if candidate in header:
                cols[short] = header.index(candidate)
                break
        else:
            raise ValueError(f"{path}: column '{name}' missing (found: {', '.join(header)})")
    # the PyPI fork also logs per-class columns metrics/<name>_mAP (0.5:0.95) and _mAP_50
    for j, h in enumerate(header):
        base = h[:-3] if h.endswith(("(B)", "(M)")) else h
        if h.startswith("metrics/") and base not in METRICS.values():
            if h.endswith("_mAP_50"):
                cols[f"class:{h[8:-7]}:mAP50"] = j
            elif h.endswith("_mAP"):
                cols[f"class:{h[8:-4]}:mAP50-95"] = j
    data: Dict[str, List[float]] = {k: [] for k in ("epoch", *cols)}
    ei = header.index("epoch") if "epoch" in header else None
    for i, row in enumerate(rows[1:]):
        if not any(c.strip() for c in row):
            continue
        data["epoch"].append(_float(row[ei]) if ei is not None and ei < len(row) else float(i))
        for short, j in cols.items():
            data[short].append(_float(row[j]) if j < len(row) else math.nan)
    if not data["epoch"]:
        raise ValueError(f"{path}: no epochs recorded yet")
    return data


def _fitness(d: Dict[str, List[float]], i: int) -> float:
    return sum(w * d[k][i] for k, w in FITNESS_WEIGHTS.items())


def _hyp_label(run: Path) -> str:
    p = Path(run) / "hyp.yaml"
    if not p.is_file():
        return ""
    try:
        hyp = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError:
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
        fit = [_fitness(d, i) for i in range(n)]
        finite = [i for i in range(n) if not math.isnan(fit[i])]
        best = max(finite, key=lambda i: (fit[i], -i)) if finite else n - 1
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
