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
from .stats import SIGNIFICANCE, WelchResult, mean, std, welch
from .study import Outcome, Plan, default_storage_url, load_study, open_storage, redact_url, trial_run, unit_statuses

# The figures live in ._figures (#13); write_heatmap stays importable from here.
from ._figures import write_heatmap

__all__ = ["Row", "Report", "build_report", "write_report", "write_heatmap", "add_arguments", "run_from_args",
           "SIGNIFICANCE"]


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
