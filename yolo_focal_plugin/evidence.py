"""``yolo-focal demo --evidence``: does focal loss help YOLOv5 on imbalanced data? Measured, per seed.

Trains yolov5n from scratch on the demo's long-tailed dataset once per (setting, seed), two at a
time, and tabulates the best-epoch mAP50-95 / mAP50 (the epoch ``best.pt`` comes from) as mean ±
std over seeds, the difference to stock BCE with Welch's t-test (the sweep report's test), and the
per-class mAP50-95, since rare classes are what focal loss is meant to help. Every setting is a
plain hyp a user can pass to ``yolov5 train --hyp``; each is written next to its runs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from .compare import _fitness, read_results
from .demo import DemoSetting, demo_dataset, run_demo
from .sweep.stats import mean, std, welch

__all__ = ["EVIDENCE_SETTINGS", "run_evidence", "summarise"]

# Each setting isolates one candidate cause of the mAP loss (README, "Does focal loss help?").
EVIDENCE_SETTINGS = (
    DemoSetting("bce", "BCE (stock YOLOv5)", {}),
    DemoSetting("yolov5_focal", "YOLOv5 focal: fl_gamma 1.5, alpha 0.25, both branches", {"fl_gamma": 1.5}),
    DemoSetting("yolov5_focal_gains", "same, obj gain x10 and cls gain x6 (loss scale restored)",
                {"fl_gamma": 1.5, "obj": 10.0, "cls": 3.0}),
    DemoSetting("varifocal_obj", "varifocal on objectness only (hyp.varifocal.yaml)", {}, base_hyp="hyp.varifocal.yaml"),
)


def _best_epoch(curves: Dict[str, List[float]]) -> int:
    """The epoch yolov5 saves as best.pt (highest fitness; the first on ties)."""
    return max(range(len(curves["epoch"])), key=lambda i: (_fitness(curves, i), -i))


@dataclass
class Row:
    setting: DemoSetting
    map50_95: List[float]
    map50: List[float]
    per_class: Dict[str, List[float]]


def summarise(rows: Sequence[Row]) -> str:
    """Markdown: one line per setting (mean ± std over seeds, Δ to the first row with Welch p), then per class."""
    base = rows[0]
    lines = ["| setting | seeds | best mAP50-95 | best mAP50 | Δ mAP50-95 vs BCE | 95% CI | p (Welch) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        cells = [row.setting.label, str(len(row.map50_95)),
                 f"{mean(row.map50_95):.3f} ± {std(row.map50_95):.3f}", f"{mean(row.map50):.3f} ± {std(row.map50):.3f}"]
        if row is base:
            cells += ["(reference)", "", ""]
        else:
            test = welch(row.map50_95, base.map50_95)
            diff = mean(row.map50_95) - mean(base.map50_95)
            cells += [f"{diff:+.3f}", f"[{test.ci_low:+.3f}, {test.ci_high:+.3f}]" if test else "-",
                      f"{test.p:.3f}" if test else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    classes = list(base.per_class)
    if classes:
        lines += ["", "Per-class mAP50-95 at the best epoch (mean over seeds; classes from most to least frequent):", "",
                  "| setting | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
        for row in rows:
            lines.append(f"| {row.setting.label} | " + " | ".join(f"{mean(row.per_class.get(c, [float('nan')])):.3f}"
                                                                   for c in classes) + " |")
    return "\n".join(lines) + "\n"


def run_evidence(out_dir: Path, seeds: Sequence[int] = (0, 1, 2), epochs: int = 60, img: int = 64,
                 settings: Sequence[DemoSetting] = EVIDENCE_SETTINGS, parallel: int = 2) -> str:
    """Train every (setting, seed) on the demo dataset (seed 0's data for all), write evidence.{md,json}."""
    out_dir = Path(out_dir)
    data_cfg = demo_dataset(img, 0)
    rows = [Row(s, [], [], {}) for s in settings]
    for seed in seeds:
        run_dirs = run_demo(out_dir / f"seed{seed}", epochs=epochs, img=img, seed=seed, data_cfg=data_cfg,
                            settings=settings, parallel=parallel)
        for row, run_dir in zip(rows, run_dirs):
            curves = read_results(run_dir)
            best = _best_epoch(curves)
            row.map50_95.append(curves["mAP50-95"][best])
            row.map50.append(curves["mAP50"][best])
            for key, values in curves.items():
                if key.startswith("class:") and key.endswith(":mAP50-95"):
                    row.per_class.setdefault(key.split(":")[1], []).append(values[best])
    markdown = summarise(rows)
    (out_dir / "evidence.md").write_text(markdown)
    (out_dir / "evidence.json").write_text(json.dumps(
        [{"setting": r.setting.name, "label": r.setting.label, "hyp_overrides": r.setting.hyp_overrides,
          "base_hyp": r.setting.base_hyp, "seeds": list(seeds), "map50_95": r.map50_95, "map50": r.map50,
          "per_class_map50_95": r.per_class} for r in rows], indent=2))
    return markdown
