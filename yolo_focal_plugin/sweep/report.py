"""``yolo-focal report``: does any focal setting beat the baseline, with evidence.

One row per (loss, gamma, alpha, ``--set`` values) - the baselines first, then stock YOLOv5 - with, over
seeds: the mean and standard deviation of mAP50-95 and mAP50 (at the epoch YOLOv5 saved ``best.pt``
from), epochs run, pruned and failed runs, and the difference to the row's matched baseline (BCE with
the same values except the loss keys, :data:`._options.MATCHED_BCE`) with Welch's t-test (p-value and 95% CI), and to stock
YOLOv5 when the study has it.
Written as ``report.md``, ``report.csv`` and ``report.json``, plus ``heatmap.png`` (mean mAP50-95
over gamma x alpha, one panel per loss and ``--set`` combination) and ``best_hyp.yaml`` (ready for ``--hyp``).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._options import MATCHED_BCE
from .space import Unit, fmt_extra, fmt_value, is_loss_key
from .stats import SIGNIFICANCE
from .study import default_storage_url, load_study, open_storage, redact_url

# The numbers live in ._build and the figures in ._figures (#13); their names stay importable from here.
from ._build import BASELINE_RULE, Report, Row, baseline_rule, build_report, no_test_reason, precision
from ._figures import write_heatmap

__all__ = ["Row", "Report", "build_report", "write_report", "write_heatmap", "add_arguments", "run_from_args",
           "SIGNIFICANCE", "BASELINE_RULE", "baseline_rule", "precision"]


def set_keys(report: "Report") -> List[str]:
    """The study's --set keys in option order (plus any a row has that the plan lacks); empty without --set."""
    keys = [spec.key for spec in report.plan.search_space().extras]
    for r in report.rows:
        keys += [k for k, _ in r.extras if k not in keys]
    return keys


def _set_cell(report: "Report", row: Row, key: str, missing: str = "-") -> str:
    """The value a row trained with; baselines train no loss key, stock no fl_* key (stock: YOLOv5's own values)."""
    values = dict(row.extras)
    if key in values:
        return fmt_extra(values[key])
    if row.is_reference and not is_loss_key(key) and (row.is_baseline or report.plan.stock_hyp):
        hyp = report.plan.unit_hyp(Unit(row.loss, None, None, 0, extras=row.extras))
        if key in hyp:
            return fmt_extra(hyp[key])
    return missing


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
    stock = report.stock
    out = []
    for r in report.rows:
        t = r.test
        if r.is_reference:
            diff = p = ci = sig = "(reference)" if r.is_baseline else "(stock reference)"
        elif r.baseline_missing:
            diff, p, ci, sig = f"no matched baseline ({r.baseline_setting} not in the study)", "n/a", "n/a", "-"
        elif t is None:
            base = r.baseline
            diff = f"{r.mean_map - base.mean_map:+.{D}f}" if base is not None and r.n and base.n else "-"
            p, ci = "n/a", "n/a"
            sig = f"n/a ({no_test_reason(r)})" if r.n else "-"
        else:
            diff = f"{t.diff:+.{D}f}"
            p = f"{t.p:.3g}"
            ci = f"[{t.ci_low:+.{D}f}, {t.ci_high:+.{D}f}]"
            sig = ("yes, better" if t.diff > 0 else "yes, worse") if t.significant(SIGNIFICANCE) else "no"
        out.append({
            "loss": r.loss,
            "gamma": "-" if r.is_reference else fmt_value(r.gamma),
            "alpha": "-" if r.is_reference or r.alpha is None else fmt_value(r.alpha),
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
            **({"Δ vs stock (p)": _vs_stock(r, stock, D)} if stock is not None else {}),  # only with a stock row
        })
    return out


def _vs_stock(row: Row, stock: Row, D: int) -> str:
    """Mean difference to stock YOLOv5, with Welch's p where it is defined."""
    if row is stock:
        return "(stock reference)"
    if not row.n or not stock.n:
        return "-"
    t = row.stock_test
    return f"{row.mean_map - stock.mean_map:+.{D}f}" + (f" (p {t.p:.3g})" if t is not None else "")


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
        f"- {baseline_rule(plan)}",
        f"- Δ: mean difference to the row's matched baseline ({MATCHED_BCE}: fl_gamma 0, no loss key); "
        f"95% CI and two-sided p from Welch's t-test over seeds; significant at p < {SIGNIFICANCE}",
    ]
    if report.stock is not None:
        lines.append("- Δ vs stock: mean difference to stock YOLOv5 (BCE with hyp.scratch-low.yaml's values), "
                     "Welch's p in brackets")
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
    stock = report.stock is not None
    if stock:  # only with a stock row, so that other studies' CSV keeps its columns
        fields += ["diff_vs_stock", "p_value_vs_stock"]
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
                **({"diff_vs_stock": _cell(j.get("diff_vs_stock")), "p_value_vs_stock": _cell(j.get("p_value_vs_stock"))}
                   if stock else {}),
            })


def _cell(x: Optional[float]) -> str:
    return "" if x is None else f"{x:.6g}"


def best_hyp(report: Report) -> Optional[Dict[str, Any]]:
    """The best setting's hyp (the study's hyp with its fl_* and --set values); BCE's if a baseline or stock is best."""
    if report.best is None:
        return None
    r = report.best
    return report.plan.unit_hyp(Unit(r.loss, r.gamma, r.alpha, 0, extras=r.extras))


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
        + ("" if t is None else f"; vs its matched baseline {t.diff:+.{D}f} (Welch p = {t.p:.3g}, "
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
        "baseline_rule": baseline_rule(report.plan),
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
