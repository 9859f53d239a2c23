"""``yolo-focal report``: does any focal setting beat the baseline, with evidence.

One row per (loss, gamma, alpha, ``--set`` values) - the baseline first - with, over seeds: the mean and standard
deviation of mAP50-95 and mAP50 (at the epoch YOLOv5 saved ``best.pt`` from), epochs run, pruned
and failed runs, and the difference to the baseline with Welch's t-test (p-value and 95% CI).
Written as ``report.md``, ``report.csv`` and ``report.json``, plus ``heatmap.png`` (mean mAP50-95
over gamma x alpha, one panel per loss and ``--set`` combination) and ``best_hyp.yaml`` (ready for ``--hyp``).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .space import BASELINE, Extras, Unit, fmt_extra, fmt_value
from .stats import WelchResult, mean, std, welch
from .study import Outcome, Plan, default_storage_url, load_study, open_storage, redact_url, trial_run, unit_statuses

__all__ = ["Row", "Report", "build_report", "write_report", "add_arguments", "run_from_args", "SIGNIFICANCE"]

SIGNIFICANCE = 0.05


@dataclass
class Row:
    setting: str
    loss: str
    gamma: Optional[float]
    alpha: Optional[float]
    seeds: int  # units planned/seen for this setting
    n: int  # completed runs (the statistics use these)
    map50_95: List[float] = field(default_factory=list)
    map50: List[float] = field(default_factory=list)
    epochs: List[int] = field(default_factory=list)
    failed: int = 0
    pruned: int = 0
    pending: int = 0  # running or queued
    failures: List[str] = field(default_factory=list)
    test: Optional[WelchResult] = None
    extras: Extras = ()  # the --set values of this setting (the baseline has none)

    @property
    def is_baseline(self) -> bool:
        return self.loss == BASELINE

    @property
    def mean_map(self) -> float:
        return mean(self.map50_95)

    @property
    def std_map(self) -> float:
        return std(self.map50_95)

    @property
    def mean_map50(self) -> float:
        return mean(self.map50)

    @property
    def std_map50(self) -> float:
        return std(self.map50)

    def label(self) -> str:
        if self.is_baseline:
            return "baseline (stock YOLOv5 BCE)"
        extras = "".join(f" {k}={fmt_extra(v)}" for k, v in self.extras)
        if self.loss == "bce":
            return f"bce (fl_loss: bce){extras}"
        return f"{self.loss} gamma={fmt_value(self.gamma)} alpha={fmt_value(self.alpha)}{extras}"

    def to_json(self) -> Dict[str, Any]:
        t = self.test
        # "set" only when the study has --set keys, so older reports keep their exact form
        sets = {"set": dict(self.extras)} if self.extras else {}
        return {
            "setting": self.setting,
            "loss": self.loss,
            "gamma": self.gamma,
            "alpha": self.alpha,
            **sets,
            "seeds": self.seeds,
            "n": self.n,
            "map50_95_mean": _num(self.mean_map),
            "map50_95_std": _num(self.std_map),
            "map50_mean": _num(self.mean_map50),
            "map50_std": _num(self.std_map50),
            "map50_95_values": self.map50_95,
            "map50_values": self.map50,
            "epochs": self.epochs,
            "failed": self.failed,
            "pruned": self.pruned,
            "pending": self.pending,
            "failures": self.failures,
            "diff_vs_baseline": None if t is None else _num(t.diff),
            "p_value": None if t is None else _num(t.p),
            "ci95": None if t is None else [_num(t.ci_low), _num(t.ci_high)],
            "t": None if t is None else _num(t.t),
            "df": None if t is None else _num(t.df),
            "significant": None if t is None else t.significant(SIGNIFICANCE),
        }


def _num(x: float) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class Report:
    study: str
    storage: str
    plan: Plan
    rows: List[Row]
    verdict: str
    best: Optional[Row]
    counts: Dict[str, int]
    decimals: int = 4

    @property
    def baseline(self) -> Optional[Row]:
        return next((r for r in self.rows if r.is_baseline), None)


def precision(rows: Sequence[Row]) -> int:
    """Decimals for this report: 4, or more when the smallest nonzero mean or difference needs them (max 7)."""
    values: List[float] = []
    base = next((r for r in rows if r.is_baseline), None)
    for r in rows:
        values += [abs(r.mean_map), abs(r.mean_map50)]
        if base is not None and r.n and base.n:
            values.append(abs(r.mean_map - base.mean_map))
    small = [v for v in values if math.isfinite(v) and v > 0]
    if not small:
        return 4
    return int(min(7, max(4, math.ceil(-math.log10(min(small))) + 1)))


def _sort_key(row: Row, order: Dict[str, List[str]]) -> Tuple[Any, ...]:
    """Baseline first, then loss, gamma, alpha and the --set values in the order the user gave them."""
    extras = tuple(order[k].index(fmt_extra(v)) if fmt_extra(v) in order.get(k, []) else len(order.get(k, []))
                   for k, v in row.extras)
    return (0 if row.is_baseline else 1, row.loss, row.gamma if row.gamma is not None else -1.0,
            row.alpha if row.alpha is not None else -1.0, extras)


def set_keys(report: "Report") -> List[str]:
    """The study's --set keys in option order (plus any a row has that the plan lacks); empty without --set."""
    keys = [spec.key for spec in report.plan.search_space().extras]
    for r in report.rows:
        keys += [k for k, _ in r.extras if k not in keys]
    return keys


def _set_cell(report: "Report", row: Row, key: str, missing: str = "-") -> str:
    """The value a row trained with; the baseline trains the base hyp's own non-fl values and no fl_* key."""
    values = dict(row.extras)
    if key in values:
        return fmt_extra(values[key])
    if row.is_baseline and not key.startswith("fl_") and key in report.plan.base_hyp:
        return fmt_extra(report.plan.base_hyp[key])
    return missing


def build_report(trials: Sequence[Any], plan: Plan, study: str = "", storage: str = "") -> Report:
    """The report's numbers from a study's trials (FrozenTrials with ``unit``/``run`` attributes)."""
    statuses = unit_statuses(trials)
    rows: Dict[str, Row] = {}
    counts: Dict[str, int] = {}
    for key, st in statuses.items():
        unit = st.unit
        row = rows.get(unit.setting)
        if row is None:
            row = rows[unit.setting] = Row(unit.setting, unit.loss, unit.gamma, unit.alpha, 0, 0, extras=unit.extras)
        row.seeds += 1
        state = st.state
        counts[state] = counts.get(state, 0) + 1
        final = st.final
        if state == Outcome.COMPLETE and final is not None:
            run = trial_run(final)
            m = run.get("map50_95", final.value)
            if m is None or not math.isfinite(float(m)):
                continue
            row.n += 1
            row.map50_95.append(float(m))
            row.map50.append(float(run.get("map50", math.nan)))
            row.epochs.append(int(run.get("epochs_run", 0)))
        elif state == Outcome.PRUNED and final is not None:
            row.pruned += 1
            row.epochs.append(int(trial_run(final).get("epochs_run", len(final.intermediate_values))))
        elif state == Outcome.FAILED:
            row.failed += 1
            reason = trial_run(final).get("reason") if final is not None else f"interrupted more than {len(st.trials) - 1} times"
            row.failures.append(f"seed {unit.seed}: {reason or 'unknown'}")
        else:
            row.pending += 1
    order = {spec.key: [fmt_extra(v) for v in spec.values] for spec in plan.search_space().extras}
    ordered = sorted(rows.values(), key=lambda r: _sort_key(r, order))
    base = next((r for r in ordered if r.is_baseline), None)
    for row in ordered:
        if row is not base and base is not None:
            row.test = welch(row.map50_95, base.map50_95)
    verdict, best = _verdict(ordered, base)
    return Report(study=study, storage=storage, plan=plan, rows=ordered, verdict=verdict, best=best, counts=counts,
                  decimals=precision(ordered))


def _verdict(rows: List[Row], base: Optional[Row]) -> Tuple[str, Optional[Row]]:
    D = precision(rows)
    scored = [r for r in rows if r.n > 0]
    if not scored:
        return "No completed runs yet: nothing to compare.", None
    best = max(scored, key=lambda r: r.mean_map)
    if base is None or base.n == 0:
        return (f"The baseline has no completed run, so nothing can be compared with it. "
                f"Highest mean mAP50-95: {best.label()} ({best.mean_map:.{D}f})."), best
    others = [r for r in scored if not r.is_baseline]
    winners = [r for r in others if r.test is not None and r.test.significant(SIGNIFICANCE) and r.test.diff > 0]
    if winners:
        top = max(winners, key=lambda r: r.mean_map)
        t = top.test
        assert t is not None
        extra = f" {len(winners) - 1} other setting(s) also beat it significantly." if len(winners) > 1 else ""
        return (f"{top.label()} beats the baseline: mAP50-95 {top.mean_map:.{D}f} vs {base.mean_map:.{D}f} "
                f"({t.diff:+.{D}f}, 95% CI [{t.ci_low:+.{D}f}, {t.ci_high:+.{D}f}], Welch p = {t.p:.3g}, "
                f"{top.n} vs {base.n} seeds).{extra}"), top
    higher = [r for r in others if r.mean_map > base.mean_map]
    if not higher:
        equal = sum(1 for r in others if r.mean_map == base.mean_map)
        if equal == len(others):
            how = "every focal-loss setting scored the same mean mAP50-95 as"
        elif equal:
            how = f"no focal-loss setting scored a higher mean mAP50-95 ({equal} the same, {len(others) - equal} lower) than"
        else:
            how = "every focal-loss setting scored a lower mean mAP50-95 than"
        zero = " Every run scored 0: train longer (--epochs) before comparing." if all(
            v == 0 for r in scored for v in r.map50_95) else ""
        return (f"No setting beats the baseline: {how} stock YOLOv5 BCE ({base.mean_map:.{D}f}, {base.n} seeds). "
                f"Keep fl_gamma: 0.{zero}"), base
    top = max(higher, key=lambda r: r.mean_map)
    t = top.test
    why = (f"Welch p = {t.p:.3g}, 95% CI of the difference [{t.ci_low:+.{D}f}, {t.ci_high:+.{D}f}] includes 0"
           if t is not None else f"no significance test: {_no_test_reason(top, base)}")
    return (f"No setting beats the baseline significantly. Highest mean: {top.label()} with mAP50-95 "
            f"{top.mean_map:.{D}f} vs {base.mean_map:.{D}f} ({top.mean_map - base.mean_map:+.{D}f}), but {why}. "
            f"Run more seeds (--seeds) or epochs before switching from BCE."), top


def _no_test_reason(row: Row, base: Optional[Row]) -> str:
    """Why ``welch`` gave no result for ``row`` against the baseline (one wording for table and verdict)."""
    if base is None or row.n < 2 or base.n < 2:
        return f"needs ≥2 completed seeds each, has {row.n} vs {base.n if base else 0}"
    return "every seed of both scored the same: no spread to test"


# --------------------------------------------------------------------------- output


def _pm(m: float, s: float, D: int = 4) -> str:
    if not math.isfinite(m):
        return "-"
    return f"{m:.{D}f} ± {s:.{D}f}" if math.isfinite(s) else f"{m:.{D}f}"


def _epochs(values: Sequence[int]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def table_rows(report: Report) -> List[Dict[str, str]]:
    D = report.decimals
    keys = set_keys(report)
    out = []
    for r in report.rows:
        t = r.test
        if r.is_baseline:
            diff = p = ci = sig = "(reference)"
        elif t is None:
            diff = f"{r.mean_map - report.baseline.mean_map:+.{D}f}" if report.baseline and r.n and report.baseline.n else "-"
            p, ci = "n/a", "n/a"
            sig = f"n/a ({_no_test_reason(r, report.baseline)})" if r.n else "-"
        else:
            diff = f"{t.diff:+.{D}f}"
            p = f"{t.p:.3g}"
            ci = f"[{t.ci_low:+.{D}f}, {t.ci_high:+.{D}f}]"
            sig = ("yes, better" if t.diff > 0 else "yes, worse") if t.significant(SIGNIFICANCE) else "no"
        out.append({
            "loss": r.loss,
            "gamma": "-" if r.is_baseline else fmt_value(r.gamma),
            "alpha": "-" if r.is_baseline or r.alpha is None else fmt_value(r.alpha),
            **{k: _set_cell(report, r, k) for k in keys},
            "runs": f"{r.n}/{r.seeds}",
            "mAP50-95": _pm(r.mean_map, r.std_map, D),
            "mAP50": _pm(r.mean_map50, r.std_map50, D),
            "epochs": _epochs(r.epochs),
            "failed": str(r.failed),
            "pruned": str(r.pruned),
            "Δ mAP50-95": diff,
            "95% CI": ci,
            "p (Welch)": p,
            "significant": sig,
        })
    return out


def to_markdown(report: Report, heatmap: Optional[str] = None, best_hyp: Optional[str] = None) -> str:
    plan = report.plan
    s = plan.settings
    space = plan.search_space()
    c = report.counts
    lines = [
        f"# Focal-loss sweep report: `{report.study}`",
        "",
        f"**Verdict:** {report.verdict}",
        "",
        f"- search space: {space.describe()}",
        f"- training: data `{Path(str(s.get('data', ''))).name}`, cfg `{s.get('cfg') or '-'}`, weights `{s.get('weights') or 'scratch'}`, "
        f"{s.get('epochs')} epochs, img {s.get('img')}, batch {s.get('batch_size')}"
        + (f", extra flags `{' '.join(s.get('train_args') or [])}`" if s.get("train_args") else ""),
        f"- units: {c.get('complete', 0)} complete, {c.get('failed', 0)} failed, {c.get('pruned', 0)} pruned, "
        f"{c.get('running', 0) + c.get('waiting', 0) + c.get('missing', 0)} not finished",
        "- metric: mAP50-95 and mAP50 on the val set at the epoch YOLOv5 kept as best.pt; mean ± sample std over seeds",
        f"- Δ: mean difference to the baseline (stock YOLOv5 BCE: no fl_* keys, fl_gamma 0); 95% CI and two-sided "
        f"p from Welch's t-test over seeds; significant at p < {SIGNIFICANCE}",
    ]
    if space.extras:
        lines.append(f"- --set {', '.join(spec.key for spec in space.extras)}: the baseline does not take these values; it "
                     f"trains the hyp's own (shown in its row) without any fl_* key, so every row is compared with stock YOLOv5")
    lines.append("")
    rows = table_rows(report)
    if rows:
        headers = list(rows[0].keys())
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        for r in rows:
            lines.append("| " + " | ".join(r[h] for h in headers) + " |")
        lines.append("")
    failures = [(r, f) for r in report.rows for f in r.failures]
    if failures:
        lines.append("## Failed runs")
        lines.append("")
        for r, f in failures:
            lines.append(f"- {r.label()}, {f}")
        lines.append("")
    if heatmap:
        lines += [f"![mean mAP50-95 over gamma x alpha]({heatmap})", ""]
    if best_hyp and report.best is not None:
        lines += [f"Best setting as a ready hyp: `{best_hyp}` ({report.best.label()}).", ""]
    if report.storage:
        lines.append(f"Storage: `{redact_url(report.storage)}`")
    return "\n".join(lines) + "\n"


def write_csv(report: Report, path: Path) -> None:
    keys = set_keys(report)
    fields = ["loss", "gamma", "alpha", *keys, "seeds", "n", "map50_95_mean", "map50_95_std", "map50_mean", "map50_std",
              "epochs_min", "epochs_max", "failed", "pruned", "pending", "diff_vs_baseline", "ci95_low", "ci95_high",
              "p_value", "significant"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in report.rows:
            j = r.to_json()
            w.writerow({
                "loss": r.loss, "gamma": "" if r.gamma is None else r.gamma, "alpha": "" if r.alpha is None else r.alpha,
                **{k: _set_cell(report, r, k, missing="") for k in keys},
                "seeds": r.seeds, "n": r.n,
                "map50_95_mean": _cell(j["map50_95_mean"]), "map50_95_std": _cell(j["map50_95_std"]),
                "map50_mean": _cell(j["map50_mean"]), "map50_std": _cell(j["map50_std"]),
                "epochs_min": min(r.epochs) if r.epochs else "", "epochs_max": max(r.epochs) if r.epochs else "",
                "failed": r.failed, "pruned": r.pruned, "pending": r.pending,
                "diff_vs_baseline": _cell(j["diff_vs_baseline"]),
                "ci95_low": _cell(j["ci95"][0]) if j["ci95"] else "", "ci95_high": _cell(j["ci95"][1]) if j["ci95"] else "",
                "p_value": _cell(j["p_value"]), "significant": "" if j["significant"] is None else j["significant"],
            })


def _cell(x: Optional[float]) -> str:
    return "" if x is None else f"{x:.6g}"


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

    groups: List[Panel] = list(dict.fromkeys((r.loss, r.extras) for r in report.rows if not r.is_baseline and r.loss != "bce"))
    if not groups:
        return False
    base = report.baseline
    base_mean = base.mean_map if base is not None and base.n else math.nan
    panels = []
    finite = [r.mean_map for r in report.rows if r.n and math.isfinite(r.mean_map)]
    vmin, vmax = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 1e-3, vmax + 1e-3
    space = report.plan.search_space()
    with_sets = any(extras for _, extras in groups)
    if space.gamma.kind == "range" or space.alpha.kind == "range":
        return _write_scatter(report, path, groups, base_mean, vmin, vmax)
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
                delta = f"\n{r.mean_map - base_mean:+.{D}f}" if math.isfinite(base_mean) else ""
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
    base_text = f"baseline (stock BCE) {base_mean:.{D}f}" if math.isfinite(base_mean) else "baseline: no completed run"
    fig.suptitle(f"{report.study}: mean mAP50-95; second line Δ vs {base_text}; ▲/▼ Welch p<{SIGNIFICANCE}", fontsize=9, **room)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def _write_scatter(report: Report, path: Path, groups: List[Panel], base_mean: float, vmin: float, vmax: float) -> bool:
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
    base_text = f"baseline (stock BCE) {base_mean:.{D}f}" if math.isfinite(base_mean) else "baseline: no completed run"
    fig.suptitle(f"{report.study}: mean mAP50-95 per sampled setting; {base_text}", fontsize=9, **room)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def best_hyp(report: Report) -> Optional[Dict[str, Any]]:
    """The best setting's hyp (the study's hyp with its fl_* and --set values); the stock hyp if that is the baseline."""
    if report.best is None:
        return None
    r = report.best
    unit = Unit(r.loss, r.gamma, r.alpha, 0, extras=r.extras)
    return unit.hyp(report.plan.base_hyp)


def write_best_hyp(report: Report, path: Path) -> bool:
    D = report.decimals
    import yaml

    hyp = best_hyp(report)
    if hyp is None or report.best is None:
        return False
    r = report.best
    t = r.test
    header = [
        f"# Best setting of yolo-focal sweep study '{report.study}': {r.label()}",
        f"# mean mAP50-95 {r.mean_map:.{D}f} over {r.n} seed(s)"
        + ("" if t is None else f"; vs baseline {t.diff:+.{D}f} (Welch p = {t.p:.3g}, "
           f"{'significant' if t.significant(SIGNIFICANCE) else 'NOT significant'} at {SIGNIFICANCE})"),
        f"# verdict: {report.verdict}",
        f"# usage: yolov5 train --hyp {path.name} ...   (with yolo-focal-plugin installed)",
    ]
    with open(path, "w") as f:
        f.write("\n".join(_wrap_comment(line) for line in header) + "\n")
        yaml.safe_dump(hyp, f, sort_keys=False)
    return True


def _wrap_comment(line: str, width: int = 110) -> str:
    import textwrap

    if len(line) <= width:
        return line
    return "\n".join(textwrap.wrap(line, width=width, subsequent_indent="#   "))


def write_report(report: Report, out_dir: Path) -> Dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files: Dict[str, Path] = {}
    heat = out_dir / "heatmap.png"
    if write_heatmap(report, heat):
        files["heatmap"] = heat
    hyp = out_dir / "best_hyp.yaml"
    if write_best_hyp(report, hyp):
        files["best_hyp"] = hyp
    md = out_dir / "report.md"
    md.write_text(to_markdown(report, heatmap=heat.name if "heatmap" in files else None, best_hyp=hyp.name if "best_hyp" in files else None))
    files["markdown"] = md
    csv_path = out_dir / "report.csv"
    write_csv(report, csv_path)
    files["csv"] = csv_path
    js = out_dir / "report.json"
    js.write_text(json.dumps({
        "study": report.study,
        "storage": redact_url(report.storage),
        "verdict": report.verdict,
        "best": None if report.best is None else report.best.setting,
        "counts": report.counts,
        "space": report.plan.space,
        "settings": report.plan.settings,
        "significance_level": SIGNIFICANCE,
        "rows": [r.to_json() for r in report.rows],
    }, indent=2, default=str) + "\n")
    files["json"] = js
    return files


def report_study(study_name: str, storage_url: str, out_dir: Optional[Path] = None) -> Tuple[Report, Dict[str, Path]]:
    storage = open_storage(storage_url, create_dirs=False)
    study, plan = load_study(storage, study_name)
    report = build_report(study.get_trials(deepcopy=False), plan, study=study_name, storage=storage_url)
    if out_dir is None:
        out_dir = Path(plan.settings.get("runs_dir") or ".") / "report"
    return report, write_report(report, out_dir)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", default="focal-sweep", help="study name (default: %(default)s)")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///<project>/<study>.db)")
    parser.add_argument("--project", default="runs/sweep", help="the sweep's --project, to find the default storage (default: %(default)s)")
    parser.add_argument("--out", default=None, help="output directory (default: <project>/<study>/report)")


def run_from_args(args: argparse.Namespace) -> int:
    storage = args.storage or default_storage_url(Path(args.project), args.study)
    out = Path(args.out) if args.out else Path(args.project) / args.study / "report"
    report, files = report_study(args.study, storage, out)
    print(to_markdown(report, heatmap=str(files.get("heatmap", "")) or None, best_hyp=str(files.get("best_hyp", "")) or None))
    print("written: " + ", ".join(str(p) for p in files.values()))
    return 0
