"""The evidence in one figure: each setting's Δ mAP50-95 against its matched BCE, across every table.

Issue #12, item 7: a plot a person reads in five seconds. One point per (setting, dataset) with
Welch's 95% CI, the dataset's image size in its name, the setting's assigner and gains on its row:

* left, **the loss**: each focal-family setting minus its matched BCE (the BCE row of the same
  table with the same gains and assigner, :func:`.evidence.matched_baselines`);
* right, **everything but the loss**: each other BCE setting (raised gains, the RetinaNet
  assigner) minus the table's stock BCE (its first row).

A point right of 0 helped; a CI that crosses 0 is not a finding. Settings whose matched BCE was not
trained in their table have no point (they are listed in the markdown as such).

``python -m yolo_focal_plugin.experiments.evidence_figure docs/evidence/*/evidence.json --out DIR``
writes ``matched.png`` and ``matched.md`` from stored tables; ``yolo-focal demo --evidence`` writes
them for every table under its ``--out``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .evidence import Row, load_evidence, matched_baselines
from ..hyp import PLAIN_BCE, parse_focal_hyp
from ..sweep.stats import mean, welch

__all__ = ["MatchedPoint", "matched_points", "matched_markdown", "plot_matched", "write_matched", "main"]

# YOLOv5's hyp.scratch-low.yaml gains: "stock" in a row's description
_STOCK_GAINS = {"obj": 1.0, "cls": 0.5}
LOSS, OTHER = "loss", "other"


@dataclass(frozen=True)
class MatchedPoint:
    """``setting`` minus ``reference`` on one table: Δ of the seed means, Welch's 95% CI and p (None: < 2 seeds)."""
    panel: str  # LOSS: vs the matched BCE; OTHER: a BCE setting vs the table's stock BCE
    table: str  # "longtail64 (64 px)"
    setting: str
    reference: str
    loss: str
    assigner: str
    gains: str
    seeds: int
    diff: float
    ci_low: Optional[float]
    ci_high: Optional[float]
    p: Optional[float]

    @property
    def row_label(self) -> str:
        return f"{self.loss} | {self.assigner} | {self.gains}"


def describe_hyp(hyp: Mapping[str, object]) -> Tuple[str, str, str]:
    """(loss, assigner, gains) of a trained hyp in words, e.g. ("focal 1.5/0.25 both", "YOLOv5 assigner", "obj 5, cls 3")."""
    parsed = parse_focal_hyp(hyp)
    if parsed.loss == PLAIN_BCE:
        loss = "BCE"
    else:
        if parsed.alpha is None:  # fl_alpha: -1, no weighting
            alpha = "no alpha"
        else:
            alpha = format(parsed.alpha, "g") if isinstance(parsed.alpha, (int, float)) else "per-class"
        where = {"both": "both", "obj": "obj only", "cls": "cls only"}[parsed.apply]
        loss = f"{parsed.loss} {parsed.gamma:g}/{alpha} {where}"
    assigner = "YOLOv5 assigner" if parsed.assigner == "yolov5" else "RetinaNet IoU assigner"
    gains = {k: float(hyp.get(k, v)) for k, v in _STOCK_GAINS.items()}  # type: ignore[arg-type]
    gains_text = "stock gains" if gains == _STOCK_GAINS else ", ".join(f"{k} {v:g}" for k, v in gains.items())
    return loss, assigner, gains_text


def _point(panel: str, table: str, row: Row, reference: Row) -> MatchedPoint:
    loss, assigner, gains = describe_hyp(row.hyp or {})
    test = welch(row.map50_95, reference.map50_95)
    return MatchedPoint(panel, table, row.setting.name, reference.setting.name, loss, assigner, gains,
                        min(len(row.map50_95), len(reference.map50_95)),
                        mean(row.map50_95) - mean(reference.map50_95),
                        test.ci_low if test else None, test.ci_high if test else None, test.p if test else None)


def matched_points(tables: Sequence[Tuple[Mapping[str, object], Sequence[Row]]]) -> Tuple[List[MatchedPoint], List[str]]:
    """Every point of the figure, and the settings that have none (``"table: setting"``, no matched BCE).

    ``tables``: (meta, rows) as :func:`.evidence.load_evidence` returns them; ``meta["table"]``, when
    given, names the table (default: its dataset)."""
    points: List[MatchedPoint] = []
    unmatched: List[str] = []
    for meta, rows in tables:
        table = f"{meta.get('table', meta['dataset'])} ({meta['img']} px)"
        stock = rows[0]
        twins = matched_baselines(rows)
        for row in rows:
            if row.is_bce:
                if row is not stock:
                    points.append(_point(OTHER, table, row, stock))
            elif twins[row.setting.name] is not None:
                points.append(_point(LOSS, table, row, twins[row.setting.name]))  # type: ignore[arg-type]
            else:
                unmatched.append(f"{table}: {row.setting.name}")
    return points, unmatched


def _fmt(value: Optional[float], spec: str = "+.3f") -> str:
    return "-" if value is None else format(value, spec)


def matched_markdown(points: Sequence[MatchedPoint], unmatched: Sequence[str]) -> str:
    """The figure's numbers: one line per point, the loss panel first."""
    lines = ["| panel | table | setting | loss | assigner | gains | compared with | seeds | Δ mAP50-95 | 95% CI | p (Welch) |",
             "|---|---|---|---|---|---|---|---:|---:|---|---:|"]
    for p in sorted(points, key=lambda p: (p.panel != LOSS, p.row_label, p.table)):
        panel = "loss vs matched BCE" if p.panel == LOSS else "BCE vs stock BCE"
        ci = "-" if p.ci_low is None else f"[{p.ci_low:+.3f}, {p.ci_high:+.3f}]"
        lines.append(f"| {panel} | {p.table} | {p.setting} | {p.loss} | {p.assigner} | {p.gains} | {p.reference} | "
                     f"{p.seeds} | {p.diff:+.3f} | {ci} | {_fmt(p.p, '.3f')} |")
    if unmatched:
        lines += ["", "No matched BCE trained in their table (no point): " + ", ".join(unmatched) + "."]
    return "\n".join(lines) + "\n"


def plot_matched(points: Sequence[MatchedPoint], path: Path, title: str = "") -> Path:
    """PNG, two panels (the loss vs matched BCE; gains/assigner vs stock BCE): Δ with 95% CI per (setting, table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(LOSS, "the loss: Δ vs BCE with the same gains and assigner"),
              (OTHER, "gains / assigner, BCE: Δ vs stock BCE")]
    tables = list(dict.fromkeys(p.table for p in points))
    colours: Dict[str, Tuple[float, ...]] = {t: plt.get_cmap("tab10").colors[i % 10] for i, t in enumerate(tables)}
    heights = [max(1, len({p.row_label for p in points if p.panel == key})) for key, _ in panels]
    fig, axes = plt.subplots(1, 2, figsize=(16, 0.5 * max(heights) + 2.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1.25, 1]})
    for ax, (key, heading) in zip(axes[0], panels):
        mine = [p for p in points if p.panel == key]
        labels = sorted({p.row_label for p in mine})
        for p in mine:
            # the tables with a point on this row, spread around its tick in legend order
            here = [t for t in tables if any(q.row_label == p.row_label and q.table == t for q in mine)]
            offset = (here.index(p.table) - (len(here) - 1) / 2) * 0.22
            y = len(labels) - 1 - labels.index(p.row_label) - offset
            if p.ci_low is not None:
                ax.plot([p.ci_low, p.ci_high], [y, y], color=colours[p.table], linewidth=1.5)
            ax.plot([p.diff], [y], "o", color=colours[p.table], markersize=6)
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(labels)), labels[::-1], fontsize=8)
        ax.set_ylim(-0.6, max(1, len(labels)) - 0.4)
        ax.set_xlabel("Δ best mAP50-95 (dot: Δ of seed means; line: Welch 95% CI)", fontsize=9)
        ax.set_title(heading, fontsize=10)
        if not mine:
            ax.text(0.5, 0.5, "no point", transform=ax.transAxes, ha="center")
    handles = [plt.Line2D([], [], marker="o", color=colours[t], linestyle="", label=t) for t in tables]
    fig.legend(handles=handles, loc="lower center", ncol=max(1, len(tables)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_matched(evidence_files: Sequence[Path], out_dir: Path) -> str:
    """``matched.{png,md}`` in ``out_dir`` from ``evidence.json`` files; returns the markdown."""
    if not evidence_files:
        raise ValueError("no evidence.json given: run yolo-focal demo --evidence first")
    tables = []
    for f in evidence_files:
        meta, rows = load_evidence(Path(f))
        tables.append(({**meta, "table": Path(f).resolve().parent.name}, rows))  # two tables may share a dataset
    points, unmatched = matched_points(tables)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = matched_markdown(points, unmatched)
    (out_dir / "matched.md").write_text(markdown)
    seeds = sorted({p.seeds for p in points})
    plot_matched(points, out_dir / "matched.png",
                 title=f"yolov5n from scratch on generated data, {'/'.join(map(str, seeds))} seeds per point; "
                       "right of the dashed line = better")
    return markdown


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yolo_focal_plugin.experiments.evidence_figure",
                                     description="Δ vs matched BCE across evidence tables (matched.png, matched.md)")
    parser.add_argument("files", nargs="+", type=Path, help="evidence.json files")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        parser.error(f"not a file: {', '.join(missing)}")
    print(write_matched(args.files, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
