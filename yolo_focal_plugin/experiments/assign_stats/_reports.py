"""The reports of an assign-stats result: a markdown table and a PNG of histograms.

Both read only the result dict that ``run_assign_stats`` returns (and writes as JSON), so a
saved ``assign_stats.json`` can be rendered again. matplotlib is imported when a figure is drawn.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ._stats import SIZES

# figure bins: one bar per count up to 15, then wider groups (RetinaNet gives large boxes 50+)
HIST_EDGES = tuple(range(16)) + (16, 20, 30, 50, 100)
HIST_LABELS = tuple(str(k) for k in range(16)) + ("16-19", "20-29", "30-49", "50-99", "100+")


def _fmt(v: Union[int, float, None], pct: bool = False, nd: int = 2) -> str:
    """A table cell: ``-`` for None, a percentage, ``nd`` decimals for floats, thousands commas for ints."""
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else (f"{v:.{nd}f}" if isinstance(v, float) else f"{v:,}")


def to_markdown(r: dict) -> str:
    """The report as markdown: a summary line, notes, one column per assigner, then rows per size."""
    names = list(r["assigners"])
    lines = [
        f"# Target assignment statistics: `{r['dataset']}` ({r['split']})",
        "",
        f"{r['images']:,} images, {r['gts']:,} ground truths at --img {r['img_size']} "
        f"(small {r['gts_by_size']['small']:,} / medium {r['gts_by_size']['medium']:,} / "
        f"large {r['gts_by_size']['large']:,}); image sizes {r['image_sizes']}. "
        f"anchor_t {r['settings']['anchor_t']}, IoU thresholds {r['settings']['pos_iou']} / "
        f"{r['settings']['neg_iou']}, anchors from `{Path(r['settings']['model_cfg']).name}`.",
        "",
    ]
    notes = []
    if r["degenerate_gts"]:
        notes.append(f"{r['degenerate_gts']} zero-width/height boxes: no assigner gives them a positive "
                     "(counted as without positive).")
    if r["corrupt_label_files_skipped"]:
        notes.append(f"{r['corrupt_label_files_skipped']} corrupt label files skipped, as yolov5 would.")
    if r["duplicate_rows_removed"]:
        notes.append(f"{r['duplicate_rows_removed']} duplicate label rows removed, as yolov5 does.")
    bpr = r.get("autoanchor_bpr")
    if bpr is not None and bpr <= 0.98:
        notes.append(f"AutoAnchor best possible recall is {bpr:.3f} <= 0.98: `yolov5 train` would try new "
                     "k-means anchors (unless --noautoanchor), so its assignment would differ from the yolov5 column.")
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    head = "| | " + " | ".join(f"`{n}`" for n in names) + " |"
    lines += [head, "|---|" + "---:|" * len(names)]
    a = r["assigners"]

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(a[n]) for n in names) + " |")

    row("positives per GT (mean)", lambda s: _fmt(s["positives_per_gt_mean"]))
    row("positives per GT (median)", lambda s: _fmt(s["positives_per_gt_median"], nd=1))
    row("GTs without a positive", lambda s: f"{_fmt(s['gts_without_positive'])} ({_fmt(s['share_without_positive'], True)})")
    row("anchor slots per image", lambda s: _fmt(s["anchors"]["slots"] // max(1, r["images"])))
    row("positive : negative : ignored", lambda s: s["anchors"]["ratio"])
    row("positive share of slots", lambda s: _fmt(s["anchors"]["share_positive"], True) if s["anchors"]["share_positive"] is None
        else f"{s['anchors']['share_positive']:.3%}")
    lines += ["", "By object size (COCO: small < 32², medium < 96² px at --img):", ""]
    lines += ["| size | assigner | GTs | positives/GT | without positive | ignored anchors |", "|---|---|---:|---:|---:|---:|"]
    for size in SIZES:
        for n in names:
            s = a[n]["by_size"][size]
            ign = "-" if n == "yolov5" else _fmt(s["ignored_attributed"])
            lines.append(f"| {size} | `{n}` | {_fmt(s['gts'])} | {_fmt(s['positives_per_gt_mean'])} | "
                         f"{_fmt(s['gts_without_positive'])} ({_fmt(s['share_without_positive'], True)}) | {ign} |")
    if "yolov5" in a:
        y = a["yolov5"]["anchors"]
        lines += ["", f"yolov5: {y['positive_slots_shared_by_several_gts']:,} of {y['positive']:,} positive slots are "
                  "claimed by several GTs (the objectness target keeps one IoU; box and class losses count each)."]
    lines += ["", "Assigners: " + "; ".join(f"`{n}` = {a[n]['description']}" for n in names) + ".", ""]
    return "\n".join(lines)


def _binned(hist: Sequence[int]) -> np.ndarray:
    """``hist[k]`` (GTs with k positives) summed into the bins of :data:`HIST_EDGES`, the last open."""
    h = np.asarray(hist, dtype=float)
    edges = list(HIST_EDGES) + [max(len(h), HIST_EDGES[-1] + 1)]
    return np.array([h[lo:hi].sum() for lo, hi in zip(edges[:-1], edges[1:])])


def plot_histograms(r: dict, path: Union[str, Path]) -> Path:
    """2 x 2 panels (all / small / medium / large): share of GTs with k positives, per assigner.

    Bars are binned as :data:`HIST_LABELS`; the legend gives each assigner's mean and share of
    GTs without a positive. Written as PNG to ``path``, which is returned.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    names = list(r["assigners"])
    colours = {"yolov5": "#1f77b4", "retina": "#ff7f0e", "retina_yolo_anchors": "#2ca02c"}
    fig = Figure(figsize=(14, 9), dpi=110)
    axes = fig.subplots(2, 2)
    panels = [("all sizes", None)] + [(f"{s} ({'< 32²' if s == 'small' else '< 96²' if s == 'medium' else '≥ 96²'} px)", s)
                                      for s in SIZES]
    width = 0.84 / len(names)
    x = np.arange(len(HIST_LABELS))
    for ax, (title, size) in zip(axes.ravel(), panels):
        n_gts = r["gts"] if size is None else r["gts_by_size"][size]
        top = 0.0
        for i, name in enumerate(names):
            s = r["assigners"][name] if size is None else r["assigners"][name]["by_size"][size]
            share = _binned(s["histogram"]) / max(1, n_gts)
            top = max(top, float(share.max()))
            mean, none = s["positives_per_gt_mean"], s["share_without_positive"]
            label = f"{name}: mean {mean:.1f}, none {none:.1%}" if mean is not None else f"{name}: no GTs"
            ax.bar(x + (i - (len(names) - 1) / 2) * width, share, width, color=colours[name], label=label)
        ax.set_title(f"{title}: {n_gts:,} GTs", fontsize=12)
        ax.set_xlabel("positive anchors per ground truth", fontsize=10)
        ax.set_ylabel("share of ground truths", fontsize=10)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xticks(x)
        ax.set_xticklabels(HIST_LABELS, rotation=45, ha="right", fontsize=9)
        ax.set_xlim(-0.6, len(HIST_LABELS) - 0.4)
        # head room for the legend; a panel without GTs gets the full 0-100 % axis, since a
        # range of a few per cent would repeat whole-percent tick labels (0%, 0%, 1%, 1%, ...)
        ax.set_ylim(0, (max(top, 0.01) if n_gts else 1.0) * 1.5)
        ax.set_yticks([t for t in ax.get_yticks() if t <= 1.0 + 1e-9])
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=9, loc="upper left", framealpha=0.9)
    ratios = "   ".join(f"{n} {r['assigners'][n]['anchors']['ratio']}" for n in names)
    fig.suptitle(f"Positive anchors per ground truth at --img {r['img_size']} ({r['images']:,} images, "
                 f"{r['gts']:,} GTs)\npositive : negative : ignored anchor slots:   {ratios}", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path)
    return Path(path)
