"""What a sweep explores: value lists and ranges, losses, seeds, and the work units they expand to.

Pure Python (no torch, no yolov5, no optuna): parsing and validation happen before anything is
started, and every mistake raises :class:`SweepError` (a ``ValueError``) that says which option is
wrong and what is allowed.

Syntax of ``--gamma`` / ``--alpha``:

* ``0,0.5,1``      a list: every value is a grid point (or a categorical choice for ``tpe``)
* ``0:2:0.5``      a stepped range: expands to ``0,0.5,1,1.5,2`` for a grid (a stepped float for ``tpe``)
* ``0:3``          a continuous range: only for sampled sweeps (``--sampler tpe|random``)

``--set KEY=V1,V2,...`` (repeatable) adds one categorical dimension for any other hyp key
(``obj=1,2,4``, ``fl_apply=obj,both``); each value is read with ``yaml.safe_load``.

A *unit* is one training run: (loss, gamma, alpha, the ``--set`` values, seed). The baseline units
(stock YOLOv5 BCE: ``fl_gamma: 0`` and no other ``fl_*`` key, one per seed) are part of every sweep;
they take no ``--set`` value (every other key keeps the base hyp's value).
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "SweepError",
    "ValueSpec",
    "SetSpec",
    "Unit",
    "SearchSpace",
    "BASELINE",
    "SAMPLERS",
    "parse_values",
    "parse_losses",
    "parse_sets",
    "fmt_value",
    "fmt_extra",
    "OWNED_KEYS",
]

BASELINE = "baseline"
SAMPLERS = ("grid", "tpe", "random")
MAX_GRID_VALUES = 1000
# hyp keys the sweep sets itself, each from its own option
OWNED_KEYS = {"fl_loss": "--loss", "fl_gamma": "--gamma", "fl_alpha": "--alpha"}
_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

Extras = Tuple[Tuple[str, Any], ...]  # a unit's --set values, in --set order


class SweepError(ValueError):
    """A sweep option or stored study is invalid; raised before any training starts."""


def fmt_value(value: Optional[float]) -> str:
    """Stable, short text for a float (used in unit keys, run names and tables)."""
    if value is None:
        return "-"
    text = f"{float(value):.6g}"
    return "0" if text == "-0" else text


def fmt_extra(value: Any) -> str:
    """Stable text for a ``--set`` value: unit keys, run names, tables (``2.0`` and ``2`` are both ``2``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # 12 digits, not fmt_value's 6: two values the user told apart must not share a unit key
        text = f"{value:.12g}"
        return "0" if text == "-0" else text
    return str(value)


def _slug_text(text: str) -> str:
    """``text`` safe inside a file name (run directories are named after units)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def _extras_text(extras: Extras, sep: str) -> str:
    return "".join(f"{sep}{k}={fmt_extra(v)}" for k, v in extras)


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


def _set_value(part: str, item: str) -> Any:
    """One ``--set`` value: YAML scalar (number, word, true/false)."""
    import yaml

    try:
        value = yaml.safe_load(part)
    except yaml.YAMLError:
        raise SweepError(f"--set {item!r}: cannot read the value {part!r} (give numbers or words)") from None
    if isinstance(value, str):
        # YAML 1.1 reads 1e-3 as a string (it wants 1.0e-3); a hyp value written that way is a number
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            value = number
    if isinstance(value, float) and not math.isfinite(value):
        raise SweepError(f"--set {item!r}: {part!r} is not a finite number")
    if not isinstance(value, (bool, int, float, str)):
        raise SweepError(f"--set {item!r}: {part!r} is not a number, a word or true/false")
    if isinstance(value, str) and "|" in value:
        raise SweepError(f"--set {item!r}: {part!r} contains '|', which unit keys use as separator")
    return value


@dataclass(frozen=True)
class SetSpec:
    """One ``--set KEY=V1,V2,...``: a categorical dimension of the search space."""

    key: str
    values: Tuple[Any, ...]

    def describe(self) -> str:
        return f"{self.key}={','.join(fmt_extra(v) for v in self.values)}"

    def to_json(self) -> Dict[str, Any]:
        return {"key": self.key, "values": list(self.values)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SetSpec":
        return cls(str(data["key"]), tuple(data["values"]))


def parse_sets(items: Any) -> Tuple[SetSpec, ...]:
    """``--set KEY=V1,V2,...`` options (repeatable) -> one :class:`SetSpec` per key, in the order given.

    Checks the syntax and the keys the sweep owns; whether a key exists in the base hyp and whether
    its values are valid is checked by :meth:`SearchSpace.bind_hyp` and the engine.
    """
    if items is None:
        return ()
    if isinstance(items, str):
        items = [items]
    specs: List[SetSpec] = []
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise SweepError(f"--set {item!r}: expected KEY=V1,V2,... (e.g. --set obj=1,2)")
        key, _, text = item.partition("=")
        key = key.strip()
        if not key:
            raise SweepError(f"--set {item!r}: the key is empty; expected KEY=V1,V2,... (e.g. --set obj=1,2)")
        if not _KEY_RE.match(key):
            raise SweepError(f"--set {item!r}: {key!r} is not a hyp key name (letters, digits, _ . -)")
        if key in OWNED_KEYS:
            raise SweepError(f"--set {key}: the sweep sets {key} itself; use {OWNED_KEYS[key]}")
        if any(s.key == key for s in specs):
            raise SweepError(f"--set {key} is given twice; give all its values in one --set {key}=V1,V2,...")
        if not text.strip():
            raise SweepError(f"--set {item!r}: no values; expected {key}=V1,V2,...")
        values: List[Any] = []
        seen: List[str] = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                raise SweepError(f"--set {item!r}: empty value in the list")
            value = _set_value(part, item)
            if fmt_extra(value) not in seen:  # 1 and 1.0 are one value
                seen.append(fmt_extra(value))
                values.append(value)
        specs.append(SetSpec(key, tuple(values)))
    return tuple(specs)


@dataclass(frozen=True)
class Unit:
    """One training run of the sweep."""

    loss: str  # BASELINE, or an fl_loss name
    gamma: Optional[float]
    alpha: Optional[float]
    seed: int
    origin: str = "grid"  # "grid" | "baseline" | "sampled"
    extras: Extras = ()  # the --set values as (key, value) pairs; always empty for the baseline

    @property
    def is_baseline(self) -> bool:
        return self.loss == BASELINE

    @property
    def setting(self) -> str:
        """The (loss, gamma, alpha, --set values) part of the key: what the report groups seeds by."""
        if self.is_baseline:
            return BASELINE
        return f"{self.loss}|g={fmt_value(self.gamma)}|a={fmt_value(self.alpha)}" + _extras_text(self.extras, "|")

    @property
    def key(self) -> str:
        return f"{self.setting}|s={self.seed}"

    @property
    def slug(self) -> str:
        """File-name friendly form for run directories."""
        if self.is_baseline:
            return f"baseline-s{self.seed}"
        extras = "".join(f"-{_slug_text(k)}={_slug_text(fmt_extra(v))}" for k, v in self.extras)
        return f"{self.loss}-g{fmt_value(self.gamma)}-a{fmt_value(self.alpha)}{extras}-s{self.seed}"

    def with_seed(self, seed: int) -> "Unit":
        """The same setting with another seed (the replicas of a sampled setting)."""
        return replace(self, seed=seed)

    def params(self) -> Dict[str, Any]:
        """The Optuna params of this unit (the baseline has none: samplers ignore it)."""
        if self.is_baseline:
            return {}
        out: Dict[str, Any] = {"fl_loss": self.loss, "fl_gamma": float(self.gamma or 0.0)}
        if self.alpha is not None:
            out["fl_alpha"] = float(self.alpha)
        out.update(self.extras)
        return out

    def hyp(self, base: Mapping[str, Any]) -> Dict[str, Any]:
        """The hyp dict this unit trains with, built from the user's hyp."""
        hyp = {k: v for k, v in base.items()}
        if self.is_baseline:
            # stock YOLOv5: no fl_* key but fl_gamma 0 (YOLOv5 itself requires fl_gamma); no --set
            # value either, so every setting is compared with the user's own stock hyp
            for k in [k for k in hyp if isinstance(k, str) and k.startswith("fl_")]:
                del hyp[k]
            hyp["fl_gamma"] = 0.0
            return hyp
        hyp["fl_loss"] = self.loss
        hyp["fl_gamma"] = float(self.gamma or 0.0)
        if self.alpha is not None:
            hyp["fl_alpha"] = float(self.alpha)
        hyp.update(self.extras)
        return hyp

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        if self.extras:
            data["extras"] = [[k, v] for k, v in self.extras]
        else:  # units of sweeps without --set are stored exactly as before --set existed
            del data["extras"]
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
            extras=tuple((str(k), v) for k, v in (data.get("extras") or ())),
        )

    def describe(self) -> str:
        if self.is_baseline:
            return f"baseline (stock BCE) seed={self.seed}"
        extras = _extras_text(self.extras, " ")
        return f"{self.loss} gamma={fmt_value(self.gamma)} alpha={fmt_value(self.alpha)}{extras} seed={self.seed}"


@dataclass(frozen=True)
class SearchSpace:
    """Losses x gamma x alpha x --set values (grid or sampled) x seeds, plus the baseline."""

    sampler: str
    losses: Tuple[str, ...]
    gamma: ValueSpec
    alpha: ValueSpec
    seeds: Tuple[int, ...]
    trials: Optional[int] = None  # sampled sweeps: number of sampled settings (each x seeds)
    extras: Tuple[SetSpec, ...] = ()  # --set KEY=V1,V2,...: one categorical dimension each

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
        sets: Any = (),
    ) -> "SearchSpace":
        """Parse and check the options; ``sets`` are the ``--set KEY=V1,V2,...`` texts."""
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
            extras=parse_sets(sets),
        )
        if grid and not space.grid_units():
            raise SweepError("the grid is empty")
        return space

    @property
    def is_grid(self) -> bool:
        return self.sampler == "grid"

    def bind_hyp(self, base: Mapping[str, Any], hyp_name: str) -> "SearchSpace":
        """Check the ``--set`` keys and values against the base hyp; numbers become floats where it has floats.

        A key must be a key of the base hyp or an ``fl_*`` key (a typo such as ``objj`` would
        otherwise train a whole grid with a key YOLOv5 ignores). Whether ``fl_*`` values are valid
        is the plugin's hyp validation's call (the engine runs it on every unit).
        """
        bound: List[SetSpec] = []
        for spec in self.extras:
            if spec.key not in base:
                if not spec.key.startswith("fl_"):
                    raise SweepError(f"--set {spec.key}: not a key of {hyp_name} (only its keys and the plugin's fl_* keys can be swept)")
                bound.append(spec)
                continue
            current = base[spec.key]
            if isinstance(current, (int, float)) and not isinstance(current, bool):
                values: List[Any] = []
                for v in spec.values:
                    if isinstance(v, bool) or not isinstance(v, (int, float)):
                        raise SweepError(f"--set {spec.key}={fmt_extra(v)}: {spec.key} is a number in {hyp_name} ({current!r}), {v!r} is not")
                    # keep the hyp file's types: YOLOv5 then sees what the file would give it
                    # (e.g. torch.tensor([hyp["cls_pw"]]) stays a float tensor)
                    values.append(float(v) if isinstance(current, float) else v)
                bound.append(SetSpec(spec.key, tuple(values)))
            else:
                bound.append(spec)
        return replace(self, extras=tuple(bound))

    def extra_combos(self) -> List[Extras]:
        """Every combination of the ``--set`` values, the last ``--set`` varying fastest (``[()]`` without any)."""
        keys = [s.key for s in self.extras]
        return [tuple(zip(keys, combo)) for combo in itertools.product(*(s.values for s in self.extras))]

    def baseline_units(self) -> List[Unit]:
        return [Unit(BASELINE, None, None, s, "baseline") for s in self.seeds]

    def _settings(self) -> List[Tuple[str, Optional[float], Optional[float], Extras]]:
        settings: List[Tuple[str, Optional[float], Optional[float], Extras]] = []
        combos = self.extra_combos()
        for loss in self.losses:
            if loss == "bce":  # gamma and alpha mean nothing to plain BCE: one setting (per --set combination)
                settings += [(loss, 0.0, None, extras) for extras in combos]
                continue
            for g in self.gamma.grid_values():
                for a in self.alpha.grid_values():
                    settings += [(loss, g, a, extras) for extras in combos]
        return settings

    def grid_units(self) -> List[Unit]:
        """Every grid unit, seed-major (all settings with seed 0 first: early reports cover the grid)."""
        if not self.is_grid:
            return []
        return [Unit(loss, g, a, s, "grid", extras) for s in self.seeds for (loss, g, a, extras) in self._settings()]

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

        out = {
            "fl_loss": optuna.distributions.CategoricalDistribution(list(self.losses)),
            "fl_gamma": dist(self.gamma),
            "fl_alpha": dist(self.alpha),
        }
        for spec in self.extras:
            out[spec.key] = optuna.distributions.CategoricalDistribution(list(spec.values))
        return out

    def _suggest_extras(self, trial: Any) -> Extras:
        return tuple((spec.key, trial.suggest_categorical(spec.key, list(spec.values))) for spec in self.extras)

    def sample_unit(self, trial: Any, seed: int) -> Unit:
        """Ask an Optuna trial for a new setting (sampled sweeps)."""
        loss = trial.suggest_categorical("fl_loss", list(self.losses))
        if loss == "bce":
            return Unit(loss, 0.0, None, seed, "sampled", self._suggest_extras(trial))

        def suggest(name: str, spec: ValueSpec) -> float:
            if spec.kind == "list":
                return float(trial.suggest_categorical(name, list(spec.values)))
            return float(trial.suggest_float(name, spec.low, spec.high, step=spec.step))

        gamma = suggest("fl_gamma", self.gamma)
        alpha = suggest("fl_alpha", self.alpha)
        extras = self._suggest_extras(trial)
        # store at 6 significant digits, as in the key, so that replicas share the exact setting
        return Unit(loss, float(fmt_value(gamma)), float(fmt_value(alpha)), seed, "sampled", extras)

    def fix_params(self, trial: Any, unit: Unit) -> None:
        """Record an enqueued unit's params on its trial with the study's distributions."""
        if unit.is_baseline:
            return
        trial.suggest_categorical("fl_loss", list(self.losses))
        if unit.loss != "bce":
            for name, spec in (("fl_gamma", self.gamma), ("fl_alpha", self.alpha)):
                if spec.kind == "list":
                    trial.suggest_categorical(name, list(spec.values))
                else:
                    trial.suggest_float(name, spec.low, spec.high, step=spec.step)
        self._suggest_extras(trial)

    # ------------------------------------------------------------------ storage form

    def to_json(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "sampler": self.sampler,
            "losses": list(self.losses),
            "gamma": self.gamma.to_json(),
            "alpha": self.alpha.to_json(),
            "seeds": list(self.seeds),
        }
        if self.extras:  # absent without --set: studies created before --set compare equal
            data["set"] = [spec.to_json() for spec in self.extras]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], trials: Optional[int] = None) -> "SearchSpace":
        return cls(
            sampler=str(data["sampler"]),
            losses=tuple(data["losses"]),
            gamma=ValueSpec.from_json(data["gamma"]),
            alpha=ValueSpec.from_json(data["alpha"]),
            seeds=tuple(int(s) for s in data["seeds"]),
            trials=trials,
            extras=tuple(SetSpec.from_json(s) for s in data.get("set") or ()),
        )

    def describe(self) -> str:
        sets = "".join(f" {spec.describe()}" for spec in self.extras)
        text = (
            f"sampler={self.sampler} loss={','.join(self.losses)} gamma={self.gamma.describe()} "
            f"alpha={self.alpha.describe()}{sets} seeds={len(self.seeds)}"
        )
        if not self.is_grid:
            text += f" trials={self.trials}"
        return text


def units_by_key(units: Iterable[Unit]) -> Dict[str, Unit]:
    return {u.key: u for u in units}
