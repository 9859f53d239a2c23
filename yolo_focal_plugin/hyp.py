"""The ``fl_*`` hyperparameter keys: defaults, validation and bundled hyp files.

Pure Python (no torch, no yolov5). Every key is checked before training starts, and a bad key or
value raises :class:`HypError` naming the key, the value and what is allowed.

==================== ============================================ ==========
key                  values                                       default
==================== ============================================ ==========
``fl_gamma``         float in [0, 1e6]                            0.0
``fl_alpha``         float in [0, 1], list of nc floats, ``auto``, 0.25 (the
                     ``-1`` or ``null`` (disabled)                 loss's own)
``fl_loss``          ``focal``, ``varifocal``, ``qfocal``, ``bce`` ``focal``
                     ``yolov5_focal`` or any registered loss name
``fl_apply``         ``cls``, ``obj``, ``both``                   ``both``
``fl_norm``          ``mean``, ``positives``                      ``mean``
``fl_gamma_warmup``  epochs >= 0                                  0
``fl_assigner``      ``yolov5``, ``retina``                       ``yolov5``
==================== ============================================ ==========

Compatibility rule: a hyp with none of these keys, or with ``fl_gamma: 0`` and no other key
that changes the loss, is *stock*: the plugin leaves YOLOv5's criteria untouched.

Every rule about these keys lives in :func:`parse_focal_hyp`, which the training hook
(``before_train``, before the run directory exists), ``ComputeLoss``, ``--evolve`` and the sweep all
call: a rule added anywhere else would let one of those paths disagree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "HypError",
    "FocalHyp",
    "FL_KEYS",
    "parse_focal_hyp",
    "loss_names",
    "plugin_keys",
    "check_alpha_classes",
    "PLAIN_BCE",
    "ASSIGNMENT_DEFAULTS",
    "matched_bce",
    "bundled_hyp_dir",
    "bundled_hyps",
    "resolve_hyp_path",
]

FL_KEYS = (
    "fl_gamma",
    "fl_alpha",
    "fl_loss",
    "fl_apply",
    "fl_norm",
    "fl_gamma_warmup",
    "fl_assigner",
)
# The fl_* keys that choose which anchors train as positives (the assignment), not the loss, each with
# the value that means YOLOv5's own assignment: a BCE baseline compared like with like keeps any other
# value (issue #12: same gains, same assigner).
ASSIGNMENT_DEFAULTS = {"fl_assigner": "yolov5"}
APPLY_CHOICES = ("cls", "obj", "both")
NORM_CHOICES = ("mean", "positives")
ASSIGNER_CHOICES = ("yolov5", "retina")
TASKS = ("detect", "segment")
#: ``fl_loss`` value for YOLOv5's plain BCE: no wrapper (the registry holds the wrappers' names)
PLAIN_BCE = "bce"
# YOLOv5's own FocalLoss class, unmodified (registered by an entry point in pyproject.toml). It
# computes ``true * alpha`` with no None branch, and it is there to reproduce the stock loss, which
# has no per-class or derived alpha: only a float (or its own default 0.25) is meaningful.
STOCK_FOCAL_LOSS = "yolov5_focal"
# Upper bound of fl_gamma. The loss kernels (losses/) stay finite, forward and backward, in
# float32 up to gamma ~1e25 for qfocal (its gamma * H * BCE term, on soft targets within rounding
# of p; ~1.8e36 elsewhere) and ~3e38 for focal and varifocal (where the float32 cast of gamma
# itself overflows), measured at logits in [-120, 120]; YOLOv5's stock FocalLoss up to ~1e30.
# 1e6 keeps 19 orders of magnitude of margin, and no useful gamma comes near it: at gamma 100 the
# focal weight (1 - p_t)**gamma is already below 3e-5 for any sample with p_t > 0.1.
# tests/test_hyp.py checks the kernels at this bound.
FL_GAMMA_MAX = 1.0e6
_GAMMA_ALLOWED = (
    f"expected a finite float >= 0 and <= {FL_GAMMA_MAX:g} (the bound up to which the loss kernels are tested to stay finite "
    "in float32; they overflow near 1e36, and past ~100 the focal weight is 0 for nearly every sample)"
)

AlphaSpec = Union[float, Tuple[float, ...], str, None]


class HypError(ValueError):
    """A ``fl_*`` hyperparameter has a wrong name, type or value."""


@dataclass(frozen=True)
class FocalHyp:
    """The validated focal-loss settings of one hyp.

    ``alpha`` is ``None`` when disabled, ``"auto"``, a float, or a tuple of per-class floats.
    ``alpha_given`` is False when the hyp has no ``fl_alpha``: the wrapper then uses its own
    default (0.25 for focal/qfocal, 0.75 for varifocal, whose alpha weighs negatives).
    """

    gamma: float = 0.0
    alpha: AlphaSpec = 0.25
    alpha_given: bool = False
    loss: str = "focal"
    loss_given: bool = False
    apply: str = "both"
    norm: str = "mean"
    gamma_warmup: float = 0.0
    assigner: str = "yolov5"
    present_keys: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_stock(self) -> bool:
        """True when YOLOv5's own criteria must be kept, bit for bit."""
        return (
            self.gamma == 0.0
            and not self.loss_given
            and self.norm == "mean"
            and self.assigner == "yolov5"
        )

    @property
    def wraps_cls(self) -> bool:
        return self.apply in ("cls", "both")

    @property
    def wraps_obj(self) -> bool:
        return self.apply in ("obj", "both")

    def describe(self) -> str:
        """One line for the run log."""
        if self.is_stock:
            return "stock YOLOv5 criteria (no fl_* setting changes the loss)"
        alpha = "loss default" if not self.alpha_given else ("disabled" if self.alpha is None else self.alpha)
        return (
            f"fl_loss={self.loss} fl_gamma={self.gamma:g} fl_alpha={alpha} fl_apply={self.apply} "
            f"fl_norm={self.norm} fl_gamma_warmup={self.gamma_warmup:g} fl_assigner={self.assigner}"
        )


def _fail(key: str, value: Any, allowed: str) -> HypError:
    return HypError(f"hyp key '{key}' has invalid value {value!r}: {allowed}")


def _as_float(key: str, value: Any, allowed: str) -> float:
    # bool is an int subclass; `fl_gamma: yes` must not silently become 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(key, value, allowed)
    value = float(value)
    if not math.isfinite(value):
        raise _fail(key, value, allowed)
    return value


def _looks_like_fl_key(key: Any) -> bool:
    """``fl_*`` in any case, ``fl-*`` too: what a user meant as one of the plugin's keys."""
    return isinstance(key, str) and key.lower().replace("-", "_").startswith("fl_")


def check_alpha_classes(alphas: Sequence[float], nc: int) -> None:
    """A per-class ``fl_alpha`` has one value per class: raise :class:`HypError` otherwise."""
    if len(alphas) != nc:
        raise HypError(f"hyp key 'fl_alpha' has {len(alphas)} per-class values but the dataset has nc={nc} classes")


def _parse_alpha(value: Any, nc: Optional[int]) -> AlphaSpec:
    allowed = "expected a float in [0, 1], a list of one float in [0, 1] per class, 'auto', or -1/null to disable"
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        raise _fail("fl_alpha", value, allowed)
    if isinstance(value, (list, tuple)):
        if not value:
            raise _fail("fl_alpha", value, allowed)
        alphas = tuple(_as_float("fl_alpha", v, allowed) for v in value)
        if any(not 0.0 <= a <= 1.0 for a in alphas):
            raise _fail("fl_alpha", value, allowed)
        if nc is not None:
            check_alpha_classes(alphas, nc)
        return alphas
    alpha = _as_float("fl_alpha", value, allowed)
    if alpha == -1.0:
        return None
    if not 0.0 <= alpha <= 1.0:
        raise _fail("fl_alpha", value, allowed)
    return alpha


def _check_key_names(hyp: Mapping[str, Any]) -> None:
    """Unknown ``fl_*`` keys are typos. The check ignores case (and ``-`` for ``_``) so that
    ``FL_GAMMA`` or ``Fl_gamma``, which YOLOv5 would silently ignore, are refused too."""
    unknown = sorted(
        k for k in hyp
        if _looks_like_fl_key(k) and k not in FL_KEYS
    )
    if not unknown:
        return
    import difflib  # only on the error path: this module is imported by every training process

    def named(key: str) -> str:
        close = difflib.get_close_matches(key.lower().replace("-", "_"), FL_KEYS, n=1, cutoff=0.6)
        return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)

    raise HypError(
        f"unknown hyp key(s) {', '.join(named(k) for k in unknown)}: the fl_* keys are {', '.join(FL_KEYS)}, "
        "in lower case"
    )


def parse_focal_hyp(
    hyp: Mapping[str, Any],
    nc: Optional[int] = None,
    known_losses: Optional[Sequence[str]] = None,
    task: str = "detect",
) -> FocalHyp:
    """Validate the ``fl_*`` keys of ``hyp`` and return them as a :class:`FocalHyp`.

    ``nc`` (number of classes), when known, checks the length of a per-class ``fl_alpha``.
    ``known_losses`` defaults to the loss registry's names plus ``bce``.
    ``task`` is ``detect`` or ``segment``: YOLOv5's segmentation training supports fewer keys.
    Raises :class:`HypError` for unknown ``fl_*`` keys (typos) and invalid values.
    """
    if not isinstance(hyp, Mapping):
        raise HypError(f"hyp must be a mapping of keys to values, got {type(hyp).__name__}")
    _check_key_names(hyp)

    gamma = _as_float("fl_gamma", hyp.get("fl_gamma", 0.0), _GAMMA_ALLOWED)
    if not 0.0 <= gamma <= FL_GAMMA_MAX:
        raise _fail("fl_gamma", hyp["fl_gamma"], _GAMMA_ALLOWED)

    # without fl_loss, gamma 0 means no modulation at all: plain BCE (YOLOv5's FocalLoss at gamma 0
    # would still multiply alpha), e.g. for an fl_assigner or fl_norm comparison run
    loss = hyp.get("fl_loss", "focal" if gamma > 0 else PLAIN_BCE)
    if "fl_loss" in hyp:
        if known_losses is None:
            known_losses = loss_names()
        if not isinstance(loss, str) or loss not in known_losses:
            raise _fail("fl_loss", loss, f"expected one of {', '.join(sorted(set(known_losses)))}")

    def choice(key: str, default: str, choices: Sequence[str]) -> str:
        value = hyp.get(key, default)
        if not isinstance(value, str) or value not in choices:
            raise _fail(key, value, f"expected one of {', '.join(choices)}")
        return value

    apply = choice("fl_apply", "both", APPLY_CHOICES)
    norm = choice("fl_norm", "mean", NORM_CHOICES)
    assigner = choice("fl_assigner", ASSIGNMENT_DEFAULTS["fl_assigner"], ASSIGNER_CHOICES)

    warmup = _as_float("fl_gamma_warmup", hyp.get("fl_gamma_warmup", 0), "expected a number of epochs >= 0")
    if warmup < 0:
        raise _fail("fl_gamma_warmup", hyp["fl_gamma_warmup"], "expected a number of epochs >= 0")

    alpha_given = "fl_alpha" in hyp
    alpha = _parse_alpha(hyp["fl_alpha"], nc) if alpha_given else 0.25
    # Refused whatever fl_apply says (even `obj`, where the class branch that would use it is BCE):
    # the value means the opposite of what the user asked for, so it is a mistake in the hyp.
    if alpha == "auto" and loss == "varifocal":
        raise _fail("fl_alpha", hyp["fl_alpha"], "'auto' cannot be used with fl_loss: varifocal, whose alpha weighs "
                    "negatives ('auto' derives a weight of positives); use a float in [0, 1]")
    if alpha_given and loss == STOCK_FOCAL_LOSS and not isinstance(alpha, float):
        raise _fail("fl_alpha", hyp["fl_alpha"], f"fl_loss: {STOCK_FOCAL_LOSS} (YOLOv5's own FocalLoss class, unmodified) "
                    "needs a float in [0, 1]; it cannot disable alpha (-1/null), and 'auto' or a per-class list "
                    "is not the stock loss: use fl_loss: focal for those")
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "segment" and assigner == "retina":
        raise _fail("fl_assigner", assigner, "the RetinaNet assigner supports detection, not segmentation")
    if task == "segment" and warmup > 0:
        raise _fail("fl_gamma_warmup", hyp["fl_gamma_warmup"], "YOLOv5's segmentation train() runs no epoch "
                    "callbacks, so gamma would never ramp up; remove the key or set it to 0")

    return FocalHyp(
        gamma=gamma,
        alpha=alpha,
        alpha_given=alpha_given,
        loss=loss,
        loss_given="fl_loss" in hyp,
        apply=apply,
        norm=norm,
        gamma_warmup=warmup,
        assigner=assigner,
        present_keys=tuple(k for k in FL_KEYS if k in hyp),
    )


def matched_bce(hyp: Mapping[str, Any]) -> Dict[str, Any]:
    """The hyp of the BCE run that ``hyp`` is compared with like with like (issue #12): every value of
    ``hyp`` but its loss, so the same gains and the same assigner.

    Every ``fl_*`` key is dropped except an assignment key (:data:`ASSIGNMENT_DEFAULTS`) that asks for
    another assigner than YOLOv5's, and ``fl_gamma: 0`` is set (YOLOv5 itself requires the key). With
    YOLOv5's assigner the result has no plugin key, so the plugin keeps YOLOv5's criteria bit for bit.
    Two settings share a matched BCE exactly when their ``matched_bce`` are equal.
    """
    out: Dict[str, Any] = {}
    for key, value in hyp.items():
        is_fl = isinstance(key, str) and key.startswith("fl_")
        if not is_fl or (key in ASSIGNMENT_DEFAULTS and value != ASSIGNMENT_DEFAULTS[key]):
            out[key] = value
    out["fl_gamma"] = 0.0
    return out


def plugin_keys(hyp: Mapping[str, Any]) -> List[str]:
    """The keys of ``hyp`` that only the plugin understands: every ``fl_*`` key, in any case, except
    a numeric ``fl_gamma`` (YOLOv5's own key, which stock ``ComputeLoss`` and ``--evolve`` handle).

    These are the keys that would silently do nothing, or break YOLOv5, without the plugin.
    """
    keys = []
    for key, value in hyp.items():
        if not _looks_like_fl_key(key):
            continue
        if key == "fl_gamma" and isinstance(value, (int, float)) and not isinstance(value, bool):
            continue
        keys.append(key)
    return keys


def loss_names() -> Tuple[str, ...]:
    """Every valid ``fl_loss`` value: the registry's names (built-ins, registered, entry points) and ``bce``.

    Imports no torch: the registry resolves classes only when a loss is built.
    """
    from .registry import available_losses

    return tuple(sorted(set(available_losses()) | {PLAIN_BCE}))


def bundled_hyp_dir() -> Path:
    """Directory of the hyp files shipped with the plugin (wheel copy first, then a source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "hyps", here.parent / "hyps"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no bundled hyps directory next to {here}")


def bundled_hyps() -> list:
    """Names of the shipped hyp files, e.g. ``['hyp.focal.yaml', ...]``."""
    return sorted(p.name for p in bundled_hyp_dir().glob("hyp.*.yaml"))


def resolve_hyp_path(name: Union[str, Path]) -> Optional[Path]:
    """Path of a bundled hyp given by bare name (``hyp.focal.yaml`` or ``hyp.focal``), else None."""
    name = str(name)
    if not name or "/" in name or "\\" in name:
        return None
    try:
        directory = bundled_hyp_dir()
    except FileNotFoundError:
        return None
    for candidate in (name, f"{name}.yaml"):
        path = directory / candidate
        if path.is_file():
            return path
    return None
