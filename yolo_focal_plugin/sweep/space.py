"""What a sweep explores: value lists and ranges, losses, seeds, and the work units they expand to.

Pure Python (no torch, no yolov5, no optuna): parsing and validation happen before anything is
started, and every mistake raises :class:`SweepError` (a ``ValueError``) that says which option is
wrong and what is allowed.

Syntax of ``--gamma`` / ``--alpha``:

* ``0,0.5,1``      a list: every value is a grid point (or a categorical choice for ``tpe``)
* ``0:2:0.5``      a stepped range: expands to ``0,0.5,1,1.5,2`` for a grid (a stepped float for ``tpe``)
* ``0:3``          a continuous range: only for sampled sweeps (``--sampler tpe|random``)

A *unit* is one training run: (loss, gamma, alpha, seed). The baseline units (stock YOLOv5 BCE:
``fl_gamma: 0`` and no other ``fl_*`` key, one per seed) are part of every sweep.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "SweepError",
    "ValueSpec",
    "Unit",
    "SearchSpace",
    "BASELINE",
    "SAMPLERS",
    "parse_values",
    "parse_losses",
    "fmt_value",
]

BASELINE = "baseline"
SAMPLERS = ("grid", "tpe", "random")
MAX_GRID_VALUES = 1000


class SweepError(ValueError):
    """A sweep option or stored study is invalid; raised before any training starts."""


def fmt_value(value: Optional[float]) -> str:
    """Stable, short text for a float (used in unit keys, run names and tables)."""
    if value is None:
        return "-"
    text = f"{float(value):.6g}"
    return "0" if text == "-0" else text


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SweepError(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise SweepError(f"{option}: {text!r} is not a finite number")
    return value


@dataclass(frozen=True)
class ValueSpec:
    """A list of values, or a range ``low:high`` (with an optional ``step``)."""

    kind: str  # "list" | "range"
    values: Tuple[float, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: Optional[float] = None

    def grid_values(self) -> Tuple[float, ...]:
        if self.kind == "list":
            return self.values
        if self.step is None:
            raise SweepError("a continuous range has no grid values")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return tuple(round(self.low + i * self.step, 10) for i in range(n))

    def to_json(self) -> Dict[str, Any]:
        if self.kind == "list":
            return {"kind": "list", "values": list(self.values)}
        return {"kind": "range", "low": self.low, "high": self.high, "step": self.step}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ValueSpec":
        if data["kind"] == "list":
            return cls("list", tuple(float(v) for v in data["values"]))
        return cls("range", (), float(data["low"]), float(data["high"]),
                   None if data.get("step") is None else float(data["step"]))

    def describe(self) -> str:
        if self.kind == "list":
            return ",".join(fmt_value(v) for v in self.values)
        step = f":{fmt_value(self.step)}" if self.step is not None else ""
        return f"{fmt_value(self.low)}:{fmt_value(self.high)}{step}"


def parse_values(text: Any, option: str, low: float, high: float = math.inf, grid: bool = True) -> ValueSpec:
    """Parse ``--gamma``/``--alpha`` text; every value must lie in ``[low, high]``."""
    bounds = f"[{fmt_value(low)}, {fmt_value(high)}]" if math.isfinite(high) else f">= {fmt_value(low)}"
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str) or not text.strip():
        raise SweepError(f"{option} is empty: give a list such as 0,0.5,1 or a range such as 0:2:0.5")
    text = text.strip()
    if ":" in text:
        if "," in text:
            raise SweepError(f"{option} {text!r}: use either a list (0,0.5,1) or a range (0:2:0.5), not both")
        parts = [p.strip() for p in text.split(":")]
        if len(parts) not in (2, 3) or not all(parts):
            raise SweepError(f"{option} {text!r}: a range is low:high or low:high:step")
        lo, hi = _number(parts[0], option), _number(parts[1], option)
        step = _number(parts[2], option) if len(parts) == 3 else None
        if lo > hi:
            raise SweepError(f"{option} {text!r}: low {fmt_value(lo)} is above high {fmt_value(hi)}")
        if lo < low or hi > high:
            raise SweepError(f"{option} {text!r}: values must be {bounds}")
        if step is not None and step <= 0:
            raise SweepError(f"{option} {text!r}: the step must be > 0")
        spec = ValueSpec("range", (), lo, hi, step)
        if grid:
            if step is None:
                raise SweepError(
                    f"{option} {text!r}: a continuous range needs --sampler tpe or random; "
                    f"for a grid give a step (e.g. {fmt_value(lo)}:{fmt_value(hi)}:0.5) or a list"
                )
            values = spec.grid_values()
            if len(values) > MAX_GRID_VALUES:
                raise SweepError(f"{option} {text!r} expands to {len(values)} values (max {MAX_GRID_VALUES})")
            return ValueSpec("list", values)
        return spec
    values: List[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise SweepError(f"{option} {text!r}: empty value in the list")
        value = _number(part, option)
        if not low <= value <= high:
            raise SweepError(f"{option}: {fmt_value(value)} is outside the allowed values {bounds}")
        if value not in values:
            values.append(value)
    return ValueSpec("list", tuple(sorted(values)))


def parse_losses(text: Any, known: Sequence[str]) -> Tuple[str, ...]:
    """``--loss focal,varifocal``: every name must be a known loss."""
    items = text if isinstance(text, (list, tuple)) else str(text or "").split(",")
    losses: List[str] = []
    for item in items:
        name = str(item).strip()
        if not name:
            continue
        if name == BASELINE:
            raise SweepError("--loss: 'baseline' is always included; list focal-loss variants only")
        if name not in known:
            raise SweepError(f"--loss: unknown loss {name!r}; known losses: {', '.join(sorted(set(known)))}")
        if name not in losses:
            losses.append(name)
    if not losses:
        raise SweepError(f"--loss is empty: give one or more of {', '.join(sorted(set(known)))}")
    return tuple(losses)


@dataclass(frozen=True)
class Unit:
    """One training run of the sweep."""

    loss: str  # BASELINE, or an fl_loss name
    gamma: Optional[float]
    alpha: Optional[float]
    seed: int
    origin: str = "grid"  # "grid" | "baseline" | "sampled"

    @property
    def is_baseline(self) -> bool:
        return self.loss == BASELINE

    @property
    def setting(self) -> str:
        """The (loss, gamma, alpha) part of the key: what the report groups seeds by."""
        if self.is_baseline:
            return BASELINE
        return f"{self.loss}|g={fmt_value(self.gamma)}|a={fmt_value(self.alpha)}"

    @property
    def key(self) -> str:
        return f"{self.setting}|s={self.seed}"

    @property
    def slug(self) -> str:
        """File-name friendly form for run directories."""
        if self.is_baseline:
            return f"baseline-s{self.seed}"
        return f"{self.loss}-g{fmt_value(self.gamma)}-a{fmt_value(self.alpha)}-s{self.seed}"

    def params(self) -> Dict[str, Any]:
        """The Optuna params of this unit (the baseline has none: samplers ignore it)."""
        if self.is_baseline:
            return {}
        out: Dict[str, Any] = {"fl_loss": self.loss, "fl_gamma": float(self.gamma or 0.0)}
        if self.alpha is not None:
            out["fl_alpha"] = float(self.alpha)
        return out

    def hyp(self, base: Mapping[str, Any]) -> Dict[str, Any]:
        """The hyp dict this unit trains with, built from the user's hyp."""
        hyp = {k: v for k, v in base.items()}
        if self.is_baseline:
            # stock YOLOv5: no fl_* key but fl_gamma 0 (YOLOv5 itself requires fl_gamma)
            for k in [k for k in hyp if isinstance(k, str) and k.startswith("fl_")]:
                del hyp[k]
            hyp["fl_gamma"] = 0.0
            return hyp
        hyp["fl_loss"] = self.loss
        hyp["fl_gamma"] = float(self.gamma or 0.0)
        if self.alpha is not None:
            hyp["fl_alpha"] = float(self.alpha)
        return hyp

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data["key"] = self.key
        data["setting"] = self.setting
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Unit":
        return cls(
            loss=str(data["loss"]),
            gamma=None if data.get("gamma") is None else float(data["gamma"]),
            alpha=None if data.get("alpha") is None else float(data["alpha"]),
            seed=int(data["seed"]),
            origin=str(data.get("origin", "grid")),
        )

    def describe(self) -> str:
        if self.is_baseline:
            return f"baseline (stock BCE) seed={self.seed}"
        return f"{self.loss} gamma={fmt_value(self.gamma)} alpha={fmt_value(self.alpha)} seed={self.seed}"


@dataclass(frozen=True)
class SearchSpace:
    """Losses x gamma x alpha (grid or sampled) x seeds, plus the baseline."""

    sampler: str
    losses: Tuple[str, ...]
    gamma: ValueSpec
    alpha: ValueSpec
    seeds: Tuple[int, ...]
    trials: Optional[int] = None  # sampled sweeps: number of sampled settings (each x seeds)

    @classmethod
    def build(
        cls,
        sampler: str,
        losses: Sequence[str],
        gamma: Any,
        alpha: Any,
        seeds: int,
        trials: Optional[int],
        known_losses: Sequence[str],
    ) -> "SearchSpace":
        if sampler not in SAMPLERS:
            raise SweepError(f"--sampler: {sampler!r} is not one of {', '.join(SAMPLERS)}")
        grid = sampler == "grid"
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise SweepError(f"--seeds must be an integer >= 1, got {seeds!r}")
        if grid and trials is not None:
            raise SweepError("--trials is for sampled sweeps (--sampler tpe|random); a grid runs every combination")
        if not grid and (trials is None or isinstance(trials, bool) or int(trials) < 1):
            raise SweepError(f"--sampler {sampler} needs --trials N (N >= 1 sampled settings), got {trials!r}")
        space = cls(
            sampler=sampler,
            losses=parse_losses(losses, known_losses),
            gamma=parse_values(gamma, "--gamma", 0.0, grid=grid),
            alpha=parse_values(alpha, "--alpha", 0.0, 1.0, grid=grid),
            seeds=tuple(range(seeds)),
            trials=None if grid else int(trials),  # type: ignore[arg-type]
        )
        if grid and not space.grid_units():
            raise SweepError("the grid is empty")
        return space

    @property
    def is_grid(self) -> bool:
        return self.sampler == "grid"

    def baseline_units(self) -> List[Unit]:
        return [Unit(BASELINE, None, None, s, "baseline") for s in self.seeds]

    def _settings(self) -> List[Tuple[str, Optional[float], Optional[float]]]:
        settings: List[Tuple[str, Optional[float], Optional[float]]] = []
        for loss in self.losses:
            if loss == "bce":  # gamma and alpha mean nothing to plain BCE: one setting
                settings.append((loss, 0.0, None))
                continue
            for g in self.gamma.grid_values():
                for a in self.alpha.grid_values():
                    settings.append((loss, g, a))
        return settings

    def grid_units(self) -> List[Unit]:
        """Every grid unit, seed-major (all settings with seed 0 first: early reports cover the grid)."""
        if not self.is_grid:
            return []
        return [Unit(loss, g, a, s, "grid") for s in self.seeds for (loss, g, a) in self._settings()]

    def planned_units(self) -> List[Unit]:
        """Units known before the sweep starts: baseline first, then the grid (sampled: baseline only)."""
        return self.baseline_units() + self.grid_units()

    def total_units(self) -> int:
        if self.is_grid:
            return len(self.planned_units())
        return len(self.seeds) * (1 + int(self.trials or 0))

    # ------------------------------------------------------------------ Optuna distributions

    def distributions(self) -> Dict[str, Any]:
        """Optuna distributions of the params (lists are categorical, ranges floats)."""
        import optuna

        def dist(spec: ValueSpec) -> Any:
            if spec.kind == "list":
                return optuna.distributions.CategoricalDistribution(list(spec.values))
            return optuna.distributions.FloatDistribution(spec.low, spec.high, step=spec.step)

        return {
            "fl_loss": optuna.distributions.CategoricalDistribution(list(self.losses)),
            "fl_gamma": dist(self.gamma),
            "fl_alpha": dist(self.alpha),
        }

    def sample_unit(self, trial: Any, seed: int) -> Unit:
        """Ask an Optuna trial for a new setting (sampled sweeps)."""
        loss = trial.suggest_categorical("fl_loss", list(self.losses))
        if loss == "bce":
            return Unit(loss, 0.0, None, seed, "sampled")

        def suggest(name: str, spec: ValueSpec) -> float:
            if spec.kind == "list":
                return float(trial.suggest_categorical(name, list(spec.values)))
            return float(trial.suggest_float(name, spec.low, spec.high, step=spec.step))

        gamma = suggest("fl_gamma", self.gamma)
        alpha = suggest("fl_alpha", self.alpha)
        # store at 6 significant digits, as in the key, so that replicas share the exact setting
        return Unit(loss, float(fmt_value(gamma)), float(fmt_value(alpha)), seed, "sampled")

    def fix_params(self, trial: Any, unit: Unit) -> None:
        """Record an enqueued unit's params on its trial with the study's distributions."""
        if unit.is_baseline:
            return
        trial.suggest_categorical("fl_loss", list(self.losses))
        if unit.loss == "bce":
            return
        for name, spec in (("fl_gamma", self.gamma), ("fl_alpha", self.alpha)):
            if spec.kind == "list":
                trial.suggest_categorical(name, list(spec.values))
            else:
                trial.suggest_float(name, spec.low, spec.high, step=spec.step)

    # ------------------------------------------------------------------ storage form

    def to_json(self) -> Dict[str, Any]:
        return {
            "sampler": self.sampler,
            "losses": list(self.losses),
            "gamma": self.gamma.to_json(),
            "alpha": self.alpha.to_json(),
            "seeds": list(self.seeds),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], trials: Optional[int] = None) -> "SearchSpace":
        return cls(
            sampler=str(data["sampler"]),
            losses=tuple(data["losses"]),
            gamma=ValueSpec.from_json(data["gamma"]),
            alpha=ValueSpec.from_json(data["alpha"]),
            seeds=tuple(int(s) for s in data["seeds"]),
            trials=trials,
        )

    def describe(self) -> str:
        text = (
            f"sampler={self.sampler} loss={','.join(self.losses)} gamma={self.gamma.describe()} "
            f"alpha={self.alpha.describe()} seeds={len(self.seeds)}"
        )
        if not self.is_grid:
            text += f" trials={self.trials}"
        return text


def units_by_key(units: Iterable[Unit]) -> Dict[str, Unit]:
    return {u.key: u for u in units}
