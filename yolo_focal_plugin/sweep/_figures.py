"""The sweep report's figures: ``heatmap.png`` (mean mAP50-95 over gamma x alpha) or, for sampled
sweeps over continuous ranges, a scatter; one panel per loss and ``--set`` combination.

Split from :mod:`.report` (#13), which re-exports :func:`write_heatmap`. Reads a built
:class:`~.report.Report`; computes no statistic of its own.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Tuple

from ._options import MATCHED_BCE, Extras, fmt_extra, fmt_value
from .stats import SIGNIFICANCE

if TYPE_CHECKING:  # the report imports this module: a runtime import would be circular
    from .report import Report

__all__ = ["write_heatmap"]


Panel = Tuple[str, Extras]  # one heatmap/scatter panel: a loss and one --set combination


def _panel_title(panel: Panel) -> str:
    loss, extras = panel
    if not extras:
        return f"fl_loss: {loss}"
    return f"fl_loss: {loss}\n" + " ".join(f"{k}={fmt_extra(v)}" for k, v in extras)


def _panel_grid(n: int, with_sets: bool) -> Tuple[int, int]:
    """(rows, columns) of panels: one row as before --set existed; --set combinations wrap after 4."""
    cols = min(n, 4) if with_sets else n
    return math.ceil(n / cols), cols


def _make_room(fig: Any, nrows: int, with_sets: bool) -> Dict[str, Any]:
    """Space for two-line panel titles (--set values); the suptitle keyword arguments to use."""
    if not with_sets:
        return {}
    if nrows > 1:
        fig.subplots_adjust(hspace=0.55)
    return {"y": 1.0 + 0.06 / nrows}


def _reference_text(report: "Report") -> str:
    """The figure title's references: the matched baseline (its mean when there is one) and stock YOLOv5."""
    D = report.decimals
    done = [r for r in report.baselines if r.n]
    if len(report.baselines) > 1:
        text = f"the matched baseline ({MATCHED_BCE})"
    elif done:
        text = f"baseline (BCE, matched) {done[0].mean_map:.{D}f}"
    else:
        text = "baseline: no completed run"
    stock = report.stock
    if stock is not None and stock.n:
        text += f"; stock YOLOv5 {stock.mean_map:.{D}f}"
    return text


def write_heatmap(report: Report, path: Path) -> bool:
    """Mean mAP50-95 over gamma (rows) x alpha (columns), one panel per loss and --set combination.

    False if nothing to draw. Every --set combination gets its own panel: drawn into one gamma x
    alpha grid, settings that differ only in a --set value would overwrite each other's cell.
    """
    D = report.decimals
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups: List[Panel] = list(dict.fromkeys((r.loss, r.extras) for r in report.rows if not r.is_reference and r.loss != "bce"))
    if not groups:
        return False
    base_text = _reference_text(report)
    panels = []
    finite = [r.mean_map for r in report.rows if r.n and math.isfinite(r.mean_map)]
    vmin, vmax = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 1e-3, vmax + 1e-3
    space = report.plan.search_space()
    with_sets = any(extras for _, extras in groups)
    if space.gamma.kind == "range" or space.alpha.kind == "range":
        return _write_scatter(report, path, groups, base_text, vmin, vmax)
    for group in groups:
        rows = [r for r in report.rows if (r.loss, r.extras) == group]
        gammas = sorted({r.gamma for r in rows if r.gamma is not None})
        alphas = sorted({r.alpha for r in rows if r.alpha is not None})
        panels.append((group, rows, gammas, alphas))
    nrows, ncols = _panel_grid(len(panels), with_sets)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(4.8, 1.3 * max(len(p[3]) for p in panels) + 2.6) * ncols, (0.75 * max(len(p[2]) for p in panels) + 2.4) * nrows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    room = _make_room(fig, nrows, with_sets)
    image = None
    for ax, (group, rows, gammas, alphas) in zip(axes.ravel(), panels):
        grid = np.full((len(gammas), len(alphas)), np.nan)
        text: Dict[Tuple[int, int], str] = {}
        for r in rows:
            if r.gamma not in gammas or r.alpha not in alphas:
                continue
            i, j = gammas.index(r.gamma), alphas.index(r.alpha)
            if r.n:
                grid[i, j] = r.mean_map
                mark = ""
                if r.test is not None and r.test.significant(SIGNIFICANCE):
                    mark = "▲" if r.test.diff > 0 else "▼"
                base = r.baseline  # each cell against its own matched baseline
                delta = f"\n{r.mean_map - base.mean_map:+.{D}f}" if base is not None and base.n else ""
                text[(i, j)] = f"{r.mean_map:.{D}f}{mark}{delta}"
            else:
                text[(i, j)] = "failed" if r.failed else ("pruned" if r.pruned else "…")
        cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")  # no completed run: grey, labelled
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
        ax.set_xticks(range(len(alphas)), [fmt_value(a) for a in alphas])
        ax.set_yticks(range(len(gammas)), [fmt_value(g) for g in gammas])
        ax.set_xlabel("fl_alpha")
        ax.set_ylabel("fl_gamma")
        ax.set_title(_panel_title(group))
        for (i, j), label in text.items():
            value = grid[i, j]
            dark_cell = math.isfinite(value) and (value - vmin) / (vmax - vmin) < 0.55
            ax.text(j, i, label, ha="center", va="center", fontsize=8, color="white" if dark_cell else "black")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), label="mean mAP50-95 over seeds")
    fig.suptitle(f"{report.study}: mean mAP50-95; second line Δ vs {base_text}; ▲/▼ Welch p<{SIGNIFICANCE}", fontsize=9, **room)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def _write_scatter(report: Report, path: Path, groups: List[Panel], base_text: str, vmin: float, vmax: float) -> bool:
    """Sampled sweeps over continuous ranges: one point per sampled setting, coloured by mean mAP50-95."""
    D = report.decimals
    import matplotlib.pyplot as plt

    with_sets = any(extras for _, extras in groups)
    nrows, ncols = _panel_grid(len(groups), with_sets)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.ravel()[len(groups):]:
        ax.axis("off")
    room = _make_room(fig, nrows, with_sets)
    image = None
    for ax, group in zip(axes.ravel(), groups):
        rows = [r for r in report.rows if (r.loss, r.extras) == group]
        done = [r for r in rows if r.n]
        other = [r for r in rows if not r.n]
        if done:
            image = ax.scatter([r.alpha for r in done], [r.gamma for r in done], c=[r.mean_map for r in done],
                               cmap="viridis", vmin=vmin, vmax=vmax, s=[40 + 30 * r.n for r in done], edgecolors="black")
            best = max(done, key=lambda r: r.mean_map)
            ax.annotate(f"{best.mean_map:.{D}f}", (best.alpha, best.gamma), textcoords="offset points", xytext=(6, 6), fontsize=8)
        if other:
            ax.scatter([r.alpha for r in other], [r.gamma for r in other], marker="x", color="grey", label="failed/pruned")
            ax.legend(fontsize=8, loc="best")
        ax.set_xlabel("fl_alpha")
        ax.set_ylabel("fl_gamma")
        ax.set_title(f"{_panel_title(group)} ({len(rows)} sampled settings)")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), label="mean mAP50-95 over seeds")
    fig.suptitle(f"{report.study}: mean mAP50-95 per sampled setting; {base_text}", fontsize=9, **room)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True
