"""Small statistics over seeds: mean, sample std, and Welch's t-test against the baseline.

Welch's test does not assume equal variances (a focal setting can be far noisier than BCE). With
``n`` seeds per setting it is honest but weak: with 3 seeds only large, consistent differences
come out significant, which is the right default for "should I switch my loss?".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

__all__ = ["mean", "std", "WelchResult", "welch", "SIGNIFICANCE"]

# the sweep report's level: "significant" means two-sided p below this (report, table, heatmap marks)
SIGNIFICANCE = 0.05


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1); NaN for fewer than two values."""
    n = len(values)
    if n < 2:
        return math.nan
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


@dataclass(frozen=True)
class WelchResult:
    diff: float  # mean(a) - mean(b)
    t: float
    df: float
    p: float  # two-sided
    ci_low: float  # 95% confidence interval of the difference (Welch-Satterthwaite)
    ci_high: float

    def significant(self, level: float = 0.05) -> bool:
        return math.isfinite(self.p) and self.p < level


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Optional[WelchResult]:
    """Welch's two-sample t-test of ``mean(a) - mean(b)``; None when it is not defined.

    Needs at least two values on each side and a non-zero pooled standard error.
    """
    try:
        from scipy import stats
    except ImportError:  # a runtime dependency of the report; say so instead of a bare traceback
        from .space import SweepError

        raise SweepError("the sweep report's significance test needs scipy: pip install 'scipy>=1.10'") from None

    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = std(a) ** 2 / len(a), std(b) ** 2 / len(b)
    se = math.sqrt(va + vb)
    diff = mean(a) - mean(b)
    if se == 0.0:
        return None
    t = diff / se
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    p = float(2.0 * stats.t.sf(abs(t), df))
    q = float(stats.t.ppf(0.5 + confidence / 2.0, df))
    return WelchResult(diff=diff, t=t, df=df, p=p, ci_low=diff - q * se, ci_high=diff + q * se)
