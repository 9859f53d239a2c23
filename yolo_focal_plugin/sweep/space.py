"""What a sweep explores: value lists and ranges, losses, seeds, and the work units they expand to.

Pure Python (no torch, no yolov5, no optuna): parsing and validation happen before anything is
started, and every mistake raises :class:`SweepError` (a ``ValueError``) that says which option is
wrong and what is allowed. The option parsing itself is in :mod:`._options`; its names are
re-exported here.

Syntax of ``--gamma`` / ``--alpha``:

* ``0,0.5,1``      a list: every value is a grid point (or a categorical choice for ``tpe``)
* ``0:2:0.5``      a stepped range: expands to ``0,0.5,1,1.5,2`` for a grid (a stepped float for ``tpe``)
* ``0:3``          a continuous range: only for sampled sweeps (``--sampler tpe|random``)

``--set KEY=V1,V2,...`` (repeatable) adds one categorical dimension for any other hyp key
(``obj=1,2,4``, ``fl_apply=obj,both``); each value is read with ``yaml.safe_load``.

A *unit* is one training run: (loss, gamma, alpha, the ``--set`` values, seed).

The baseline rule (#12), :meth:`SearchSpace.baseline_extras`: a setting is compared with BCE trained
with the *same* values apart from the loss (**matched**): the same gains and the same assigner. That
is the base hyp without its loss keys (every ``fl_*`` key but ``fl_assigner``, see
:func:`is_loss_key`), with ``fl_gamma: 0`` and the setting's ``--set`` values of other keys (``--set``
values of loss keys do not make another baseline). So every sweep has one baseline unit per seed and
combination of the ``--set`` values of keys other than loss keys. Beside it, when any baseline differs from YOLOv5's stock hyp
(``hyp.scratch-low.yaml``) in a non-``fl_*`` value, one **stock** unit per seed trains that hyp
(:meth:`SearchSpace.needs_stock`; ``--no-stock`` leaves it out). Studies created before this rule
(their baseline took no ``--set`` value) keep it when read (:data:`UNMATCHED`).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..hyp import ASSIGNMENT_DEFAULTS, matched_bce

# The option syntax lives in ._options (#13); its names stay importable from here.
from ._options import (  # noqa: F401
    BASELINE,
    STOCK,
    MAX_GRID_VALUES,
    OWNED_KEYS,
    SAMPLERS,
    Extras,
    SetSpec,
    SweepError,
    ValueSpec,
    fmt_extra,
    fmt_value,
    parse_losses,
    parse_sets,
    parse_values,
)

__all__ = [
    "SweepError",
    "ValueSpec",
    "SetSpec",
    "Unit",
    "SearchSpace",
    "BASELINE",
    "STOCK",
    "MATCHED",
    "UNMATCHED",
    "SAMPLERS",
    "is_fl_key",
    "is_loss_key",
    "parse_values",
    "parse_losses",
    "parse_sets",
    "fmt_value",
    "fmt_extra",
    "OWNED_KEYS",
]


# baseline rules: MATCHED since #12; UNMATCHED = what studies created before it trained (the base
# hyp's non-fl values, no --set value), kept only to read and report those studies as they were
MATCHED = "matched"
UNMATCHED = "unmatched"


def is_fl_key(key: Any) -> bool:
    """A plugin key (``fl_*``): it may be ``--set`` although YOLOv5's base hyp does not have it."""
    return isinstance(key, str) and key.startswith("fl_")


def is_loss_key(key: Any) -> bool:
    """An ``fl_*`` key that shapes the loss: baselines drop these, and they never define a baseline.

    The assignment keys (:data:`yolo_focal_plugin.hyp.ASSIGNMENT_DEFAULTS`, ``fl_assigner``) are not
    loss keys: a focal setting under the RetinaNet assigner is compared with BCE under that assigner.
    """
    return is_fl_key(key) and key not in ASSIGNMENT_DEFAULTS


def _stock_reference_hyp(hyp: Mapping[str, Any]) -> Dict[str, Any]:
    """``hyp`` as stock YOLOv5 BCE: no ``fl_*`` key but ``fl_gamma: 0`` (YOLOv5 itself requires it)."""
    out = {k: v for k, v in hyp.items() if not is_fl_key(k)}
    out["fl_gamma"] = 0.0
    return out


def _slug_text(text: str) -> str:
    """``text`` safe inside a file name (run directories are named after units)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def _extras_text(extras: Extras, sep: str) -> str:
    return "".join(f"{sep}{k}={fmt_extra(v)}" for k, v in extras)


class References:
    """Which reference a unit or report row with a ``loss`` is (one definition for both)."""

    loss: str

    @property
    def is_baseline(self) -> bool:
        return self.loss == BASELINE

    @property
    def is_stock(self) -> bool:
        return self.loss == STOCK

    @property
    def is_reference(self) -> bool:
        """A baseline or the stock unit: BCE, no Optuna params, not a setting under test."""
        return self.is_baseline or self.is_stock


@dataclass(frozen=True)
class Unit(References):
    """One training run of the sweep."""

    loss: str  # BASELINE, STOCK, or an fl_loss name
    gamma: Optional[float]
    alpha: Optional[float]
    seed: int
    origin: str = "grid"  # "grid" | "baseline" | "stock" | "sampled"
    extras: Extras = ()  # the --set values as (key, value) pairs; a baseline's: its non-fl_* ones; stock: none

    @property
    def setting(self) -> str:
        """The (loss, gamma, alpha, --set values) part of the key: what the report groups seeds by."""
        if self.is_reference:  # "baseline" without --set: the same key as before matched baselines
            return self.loss + _extras_text(self.extras, "|")
        return f"{self.loss}|g={fmt_value(self.gamma)}|a={fmt_value(self.alpha)}" + _extras_text(self.extras, "|")

    @property
    def key(self) -> str:
        return f"{self.setting}|s={self.seed}"

    @property
    def slug(self) -> str:
        """File-name friendly form for run directories."""
        extras = "".join(f"-{_slug_text(k)}={_slug_text(fmt_extra(v))}" for k, v in self.extras)
        if self.is_reference:
            return f"{self.loss}{extras}-s{self.seed}"
        return f"{self.loss}-g{fmt_value(self.gamma)}-a{fmt_value(self.alpha)}{extras}-s{self.seed}"

    def with_seed(self, seed: int) -> "Unit":
        """The same setting with another seed (the replicas of a sampled setting)."""
        return replace(self, seed=seed)

    def params(self) -> Dict[str, Any]:
        """The Optuna params of this unit (baselines and stock have none: samplers ignore them)."""
        if self.is_reference:
            return {}
        out: Dict[str, Any] = {"fl_loss": self.loss, "fl_gamma": float(self.gamma or 0.0)}
        if self.alpha is not None:
            out["fl_alpha"] = float(self.alpha)
        out.update(self.extras)
        return out

    def hyp(self, base: Mapping[str, Any], stock: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """The hyp dict this unit trains with, built from the user's hyp (``stock``: YOLOv5's stock hyp).

        A baseline is BCE with the base hyp's values but its loss keys (so with its gains and its
        ``fl_assigner``) and its own ``--set`` values; the stock unit is BCE with ``stock``'s values
        (``ValueError`` without it) and no ``fl_*`` key but ``fl_gamma: 0``.
        """
        if self.is_stock:
            if stock is None:
                raise ValueError("the stock unit's hyp needs YOLOv5's stock hyp (the plan's stock_hyp)")
            return _stock_reference_hyp(stock)
        if self.is_baseline:
            hyp = matched_bce(base)
            hyp.update(self.extras)
            return hyp
        hyp = {k: v for k, v in base.items()}
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
        extras = _extras_text(self.extras, " ")
        if self.is_baseline:
            return f"baseline (BCE){extras} seed={self.seed}"
        if self.is_stock:
            return f"stock YOLOv5 (BCE, hyp.scratch-low.yaml) seed={self.seed}"
        return f"{self.loss} gamma={fmt_value(self.gamma)} alpha={fmt_value(self.alpha)}{extras} seed={self.seed}"


@dataclass(frozen=True)
class SearchSpace:
    """Losses x gamma x alpha x --set values (grid or sampled) x seeds, plus the baselines (and stock)."""

    sampler: str
    losses: Tuple[str, ...]
    gamma: ValueSpec
    alpha: ValueSpec
    seeds: Tuple[int, ...]
    trials: Optional[int] = None  # sampled sweeps: number of sampled settings (each x seeds)
    extras: Tuple[SetSpec, ...] = ()  # --set KEY=V1,V2,...: one categorical dimension each
    baseline: str = MATCHED  # the baseline rule; UNMATCHED only for studies created before #12
    stock: bool = False  # one stock-YOLOv5 unit per seed (see needs_stock)

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
                if not is_fl_key(spec.key):
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

    def baseline_extras(self, extras: Extras) -> Extras:
        """The --set values of the baseline a setting with ``extras`` is compared with: THE baseline rule.

        Matched: the setting's values of every key but the loss keys (:func:`is_loss_key`: ``fl_apply``
        and the like belong to the focal side and make no other baseline; ``fl_assigner`` does make
        one). Unmatched (studies made before #12): none.
        """
        if self.baseline != MATCHED:
            return ()
        return tuple((k, v) for k, v in extras if not is_loss_key(k))

    def baseline_combos(self) -> List[Extras]:
        """The --set values of every baseline, in grid order, each once (``[()]`` without --set of non-loss keys)."""
        return list(dict.fromkeys(self.baseline_extras(extras) for extras in self.extra_combos()))

    def baseline_units(self) -> List[Unit]:
        """Every reference unit, seed-major: the baselines of each seed, then its stock unit (if planned)."""
        units: List[Unit] = []
        for s in self.seeds:
            units += [Unit(BASELINE, None, None, s, "baseline", extras) for extras in self.baseline_combos()]
            if self.stock:
                units.append(Unit(STOCK, None, None, s, "stock"))
        return units

    def needs_stock(self, base: Mapping[str, Any], stock: Mapping[str, Any]) -> bool:
        """True when some baseline would train other non-fl values than YOLOv5's stock hyp (gains from
        ``--set`` or from the base hyp): only then does a stock unit add a second reference."""
        reference = Unit(STOCK, None, None, 0, "stock").hyp(base, stock)
        return any(Unit(BASELINE, None, None, 0, "baseline", extras).hyp(base) != reference
                   for extras in self.baseline_combos())

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
        """Units known before the sweep starts: baselines (and stock) first, then the grid (sampled: those only)."""
        return self.baseline_units() + self.grid_units()

    def total_units(self) -> int:
        if self.is_grid:
            return len(self.planned_units())
        return len(self.baseline_units()) + len(self.seeds) * int(self.trials or 0)

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
        if unit.is_reference:
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
        if any(not is_loss_key(spec.key) for spec in self.extras):
            # only where the rules differ: a study made before #12 without such --set resumes as it was
            data["baseline"] = self.baseline
        if self.stock:
            data["stock"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], trials: Optional[int] = None) -> "SearchSpace":
        sets = data.get("set") or ()
        # made before #12, or before fl_assigner made its own baseline: its baselines took no --set value
        legacy = UNMATCHED if any(not is_loss_key(s["key"]) for s in sets) else MATCHED
        return cls(
            sampler=str(data["sampler"]),
            losses=tuple(data["losses"]),
            gamma=ValueSpec.from_json(data["gamma"]),
            alpha=ValueSpec.from_json(data["alpha"]),
            seeds=tuple(int(s) for s in data["seeds"]),
            trials=trials,
            extras=tuple(SetSpec.from_json(s) for s in sets),
            baseline=str(data.get("baseline") or legacy),
            stock=bool(data.get("stock", False)),
        )

    def describe(self) -> str:
        sets = "".join(f" {spec.describe()}" for spec in self.extras)
        text = (
            f"sampler={self.sampler} loss={','.join(self.losses)} gamma={self.gamma.describe()} "
            f"alpha={self.alpha.describe()}{sets} seeds={len(self.seeds)}"
        )
        if self.stock:
            text += " stock=yes"
        if not self.is_grid:
            text += f" trials={self.trials}"
        return text


def units_by_key(units: Iterable[Unit]) -> Dict[str, Unit]:
    return {u.key: u for u in units}
