"""The sweep's option syntax: ``--loss``, ``--gamma``/``--alpha`` values and ranges, ``--set KEY=V1,V2,...``.

Split from :mod:`.space` (#13), which re-exports every name here; :mod:`.space` builds the units
from what these parse. Pure Python: every mistake raises :class:`SweepError` (a ``ValueError``)
that says which option is wrong and what is allowed, before anything is started.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "SweepError",
    "ValueSpec",
    "SetSpec",
    "BASELINE",
    "STOCK",
    "MATCHED_BCE",
    "SAMPLERS",
    "MAX_GRID_VALUES",
    "OWNED_KEYS",
    "Extras",
    "parse_values",
    "parse_losses",
    "parse_sets",
    "fmt_value",
    "fmt_extra",
]

BASELINE = "baseline"  # MATCHED_BCE: what each setting is compared with
# The matched baseline in words (#12), one home for every report, figure and help text that names it
MATCHED_BCE = "BCE with the same values except the loss (same gains, same fl_assigner)"
STOCK = "stock"  # YOLOv5's stock hyp (hyp.scratch-low.yaml): the second reference, reported beside it
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
        if name in (BASELINE, STOCK):
            raise SweepError(f"--loss: {name!r} is always included; list focal-loss variants only")
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
