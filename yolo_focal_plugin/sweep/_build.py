"""The sweep report's numbers: one :class:`Row` per setting, each compared with its matched baseline.

Split from :mod:`.report` (#13), which re-exports every public name here and writes the files.

The baseline rule (#12) is :meth:`~.space.SearchSpace.baseline_extras`: a setting's Welch test is
against the BCE row trained with the *same* non-``fl_*`` values (same base hyp, same non-``fl_*``
``--set`` values). When that row does not exist, the setting says so (``baseline_missing``) and is
compared with nothing: never silently with another baseline. The stock-YOLOv5 row, when the study
has one, is a second reference: every row also gets its difference to it (``stock_test``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._options import MATCHED_BCE
from .space import BASELINE, MATCHED, STOCK, Extras, References, SearchSpace, Unit, fmt_extra, fmt_value
from .stats import SIGNIFICANCE, WelchResult, mean, std, welch
from .study import Outcome, Plan, trial_run, unit_statuses

__all__ = ["Row", "Report", "build_report", "precision", "baseline_rule", "BASELINE_RULE", "STOCK_LABEL"]

BASELINE_RULE = f"baseline: {MATCHED_BCE} (matched)"
STOCK_LABEL = "stock YOLOv5 (hyp.scratch-low.yaml)"


@dataclass
class Row(References):
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
    test: Optional[WelchResult] = None  # vs the matched baseline
    extras: Extras = ()  # the --set values of this setting (a baseline's: its non-fl_* ones)
    baseline_setting: Optional[str] = None  # the matched baseline's setting (None for baselines and stock)
    baseline: Optional["Row"] = field(default=None, repr=False, compare=False)  # that row, if the study has it
    stock_test: Optional[WelchResult] = None  # vs the stock-YOLOv5 row, if the study has one

    @property
    def baseline_missing(self) -> bool:
        """A setting whose matched baseline is not in the study: it is compared with nothing."""
        return not self.is_reference and self.baseline is None

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
        extras = "".join(f" {k}={fmt_extra(v)}" for k, v in self.extras)
        if self.is_baseline:
            return f"baseline (BCE){extras}"
        if self.is_stock:
            return STOCK_LABEL
        if self.loss == "bce":
            return f"bce (fl_loss: bce){extras}"
        return f"{self.loss} gamma={fmt_value(self.gamma)} alpha={fmt_value(self.alpha)}{extras}"

    def to_json(self) -> Dict[str, Any]:
        t = self.test
        # "set" only when the study has --set keys, so older reports keep their exact form
        sets = {"set": dict(self.extras)} if self.extras else {}
        data: Dict[str, Any] = {
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
            "baseline": self.baseline_setting,
            "baseline_missing": self.baseline_missing,
            "diff_vs_baseline": None if t is None else _num(t.diff),
            "p_value": None if t is None else _num(t.p),
            "ci95": None if t is None else [_num(t.ci_low), _num(t.ci_high)],
            "t": None if t is None else _num(t.t),
            "df": None if t is None else _num(t.df),
            "significant": None if t is None else t.significant(SIGNIFICANCE),
        }
        if self.stock_test is not None:
            data["diff_vs_stock"] = _num(self.stock_test.diff)
            data["p_value_vs_stock"] = _num(self.stock_test.p)
        return data


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
        """The first baseline row (the only one without non-fl_* --set keys)."""
        return next((r for r in self.rows if r.is_baseline), None)

    @property
    def baselines(self) -> List[Row]:
        return [r for r in self.rows if r.is_baseline]

    @property
    def stock(self) -> Optional[Row]:
        return next((r for r in self.rows if r.is_stock), None)


def baseline_rule(plan: Plan) -> str:
    """The report's baseline rule in words (markdown and JSON): matched BCE, stock YOLOv5 beside it."""
    space = plan.search_space()
    if space.baseline != MATCHED:
        return ("baseline: BCE with the base hyp's values but its fl_* keys and none of the --set values (unmatched: "
                "the study was made before matched baselines, #12); no stock YOLOv5 reference")
    stock = plan.settings.get("stock_reference")
    if space.stock:
        return f"{BASELINE_RULE}; stock YOLOv5 beside it"
    if stock == "off":
        return f"{BASELINE_RULE}; stock YOLOv5 left out (--no-stock)"
    if stock == "same":
        return f"{BASELINE_RULE}; stock YOLOv5 beside it: here every baseline trains stock YOLOv5's values"
    return f"{BASELINE_RULE}; no stock YOLOv5 reference in this study"


def precision(rows: Sequence[Row]) -> int:
    """Decimals for this report: 4, or more when the smallest nonzero mean or difference needs them (max 7)."""
    values: List[float] = []
    for r in rows:
        values += [abs(r.mean_map), abs(r.mean_map50)]
        if r.baseline is not None and r.n and r.baseline.n:
            values.append(abs(r.mean_map - r.baseline.mean_map))
    small = [v for v in values if math.isfinite(v) and v > 0]
    if not small:
        return 4
    return int(min(7, max(4, math.ceil(-math.log10(min(small))) + 1)))


def _sort_key(row: Row, order: Dict[str, List[str]]) -> Tuple[Any, ...]:
    """Baselines first, then stock, then loss, gamma, alpha and the --set values in the order the user gave them."""
    extras = tuple(order[k].index(fmt_extra(v)) if fmt_extra(v) in order.get(k, []) else len(order.get(k, []))
                   for k, v in row.extras)
    return (0 if row.is_baseline else 1 if row.is_stock else 2, row.loss,
            row.gamma if row.gamma is not None else -1.0, row.alpha if row.alpha is not None else -1.0, extras)


def _match(rows: Dict[str, Row], space: SearchSpace) -> None:
    """Give every setting its matched baseline (by the space's rule) and the stock row, with their tests."""
    stock = rows.get(STOCK)
    for row in rows.values():
        if stock is not None and row is not stock:
            row.stock_test = welch(row.map50_95, stock.map50_95)
        if row.is_reference:
            continue
        row.baseline_setting = Unit(BASELINE, None, None, 0, "baseline", space.baseline_extras(row.extras)).setting
        row.baseline = rows.get(row.baseline_setting)
        if row.baseline is not None:
            row.test = welch(row.map50_95, row.baseline.map50_95)


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
    space = plan.search_space()
    _match(rows, space)
    order = {spec.key: [fmt_extra(v) for v in spec.values] for spec in space.extras}
    ordered = sorted(rows.values(), key=lambda r: _sort_key(r, order))
    verdict, best = _verdict(ordered)
    return Report(study=study, storage=storage, plan=plan, rows=ordered, verdict=verdict, best=best, counts=counts,
                  decimals=precision(ordered))


def _verdict(rows: List[Row]) -> Tuple[str, Optional[Row]]:
    D = precision(rows)
    scored = [r for r in rows if r.n > 0]
    if not scored:
        return "No completed runs yet: nothing to compare.", None
    best = max(scored, key=lambda r: r.mean_map)
    others = [r for r in scored if not r.is_reference]
    missing = [r for r in rows if r.baseline_missing]
    note = (f" {len(missing)} setting(s) have no matched baseline ({MATCHED_BCE}) and are "
            f"compared with nothing." if missing else "")
    compared = [r for r in others if r.baseline is not None and r.baseline.n > 0]
    if not [r for r in rows if r.is_baseline and r.n > 0]:
        return (f"The baseline has no completed run, so nothing can be compared with it. "
                f"Highest mean mAP50-95: {best.label()} ({best.mean_map:.{D}f}).{note}"), best
    if others and not compared:
        return (f"No setting has a matched baseline ({MATCHED_BCE}) with a completed run, so "
                f"nothing can be compared. Highest mean mAP50-95: {best.label()} ({best.mean_map:.{D}f}).{note}"), best
    winners = [r for r in compared if r.test is not None and r.test.significant(SIGNIFICANCE) and r.test.diff > 0]
    if winners:
        top = max(winners, key=lambda r: r.mean_map)
        t, base = top.test, top.baseline
        assert t is not None and base is not None
        extra = f" {len(winners) - 1} other setting(s) also beat theirs significantly." if len(winners) > 1 else ""
        return (f"{top.label()} beats the baseline: mAP50-95 {top.mean_map:.{D}f} vs {base.mean_map:.{D}f} "
                f"({t.diff:+.{D}f}, 95% CI [{t.ci_low:+.{D}f}, {t.ci_high:+.{D}f}], Welch p = {t.p:.3g}, "
                f"{top.n} vs {base.n} seeds).{extra}{_stock_note(rows, top, D)}{note}"), top
    higher = [r for r in compared if r.mean_map > r.baseline.mean_map]  # type: ignore[union-attr]
    if not higher:
        equal = sum(1 for r in compared if r.mean_map == r.baseline.mean_map)  # type: ignore[union-attr]
        if equal == len(compared):
            how = "every focal-loss setting scored the same mean mAP50-95 as"
        elif equal:
            how = f"no focal-loss setting scored a higher mean mAP50-95 ({equal} the same, {len(compared) - equal} lower) than"
        else:
            how = "every focal-loss setting scored a lower mean mAP50-95 than"
        bases = list(dict.fromkeys(id(r.baseline) for r in compared))
        top_base = max((r.baseline for r in compared), key=lambda b: b.mean_map, default=None)  # type: ignore[union-attr]
        if top_base is None:
            top_base = max((r for r in rows if r.is_baseline and r.n), key=lambda r: r.mean_map)
        whom = (f"{MATCHED_BCE} ({top_base.mean_map:.{D}f}, {top_base.n} seeds)" if len(bases) <= 1
                else f"its matched baseline ({MATCHED_BCE})")
        zero = " Every run scored 0: train longer (--epochs) before comparing." if all(
            v == 0 for r in scored for v in r.map50_95) else ""
        return (f"No setting beats the baseline: {how} {whom}. Keep fl_gamma: 0.{zero}"
                f"{_stock_note(rows, top_base, D)}{note}"), top_base
    top = max(higher, key=lambda r: r.mean_map)
    t, base = top.test, top.baseline
    assert base is not None
    why = (f"Welch p = {t.p:.3g}, 95% CI of the difference [{t.ci_low:+.{D}f}, {t.ci_high:+.{D}f}] includes 0"
           if t is not None else f"no significance test: {no_test_reason(top)}")
    return (f"No setting beats the baseline significantly. Highest mean: {top.label()} with mAP50-95 "
            f"{top.mean_map:.{D}f} vs {base.mean_map:.{D}f} ({top.mean_map - base.mean_map:+.{D}f}), but {why}. "
            f"Run more seeds (--seeds) or epochs before switching from BCE.{_stock_note(rows, top, D)}{note}"), top


def _stock_note(rows: Sequence[Row], row: Row, D: int) -> str:
    """The stock-YOLOv5 reference beside the verdict's row (empty without a completed stock row)."""
    stock = next((r for r in rows if r.is_stock and r.n), None)
    if stock is None or row is stock or not row.n:
        return ""
    return (f" Stock YOLOv5 (hyp.scratch-low.yaml) beside it: {stock.mean_map:.{D}f} "
            f"({row.mean_map - stock.mean_map:+.{D}f} for {row.label()}).")


def no_test_reason(row: Row) -> str:
    """Why ``welch`` gave no result for ``row`` against its matched baseline (one wording for table and verdict)."""
    base = row.baseline
    if base is None:
        return f"no matched baseline ({row.baseline_setting or BASELINE} is not in the study)"
    if row.n < 2 or base.n < 2:
        return f"needs ≥2 completed seeds each, has {row.n} vs {base.n}"
    return "every seed of both scored the same: no spread to test"
