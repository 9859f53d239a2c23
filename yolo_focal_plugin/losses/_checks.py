"""Argument checks shared by every loss: ``gamma``, ``reduction`` and the sigmoid losses' ``alpha``.

Contract: each ``_check_*`` returns the normalised value or raises :class:`ValueError` naming the
argument, the value and what is allowed. Nothing here touches the loss math.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

AlphaLike = Union[float, int, Sequence[float], Tensor, None]
REDUCTIONS: Tuple[str, ...] = ("none", "mean", "sum")


def _check_gamma(gamma: object, name: str = "gamma") -> float:
    """``gamma`` as a finite float >= 0 (a one-element tensor is accepted and read out).

    No upper bound is enforced here: the kernels are tested finite up to the ``fl_gamma`` bound
    of :mod:`yolo_focal_plugin.hyp` (``FL_GAMMA_MAX``); see the package docstring for the range.
    """
    if isinstance(gamma, Tensor) and gamma.numel() == 1:
        gamma = gamma.item()
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise ValueError(f"{name} must be a finite float >= 0, got {gamma!r}")
    value = float(gamma)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite float >= 0, got {gamma!r}")
    return value


def _check_reduction(reduction: object) -> str:
    """``reduction`` unchanged if it is one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of 'none', 'mean', 'sum', got {reduction!r}")
    return reduction  # type: ignore[return-value]


_ALPHA_RULE = "a float in [0, 1], a per-class sequence/tensor of floats in [0, 1], or -1/None to disable"


def _check_alpha(alpha: object, name: str = "alpha") -> Union[None, float, Tensor]:
    """Normalise ``alpha`` to ``None`` (disabled), a float, or a 1-D float64 tensor (per class).

    A tensor that requires grad is kept as it is (not detached), so that the loss can be
    differentiated with respect to it.
    """
    if alpha is None:
        return None
    if isinstance(alpha, Tensor):
        if alpha.dim() == 0:
            alpha = alpha.item()
        else:
            values = alpha.detach() if not alpha.requires_grad else alpha
            return _check_alpha_vector(values, name)
    if isinstance(alpha, bool):
        raise ValueError(f"{name} must be {_ALPHA_RULE}; got {alpha!r}")
    if isinstance(alpha, numbers.Real):
        value = float(alpha)
        if value == -1:
            return None
        if not (0.0 <= value <= 1.0):  # also rejects NaN
            raise ValueError(f"{name} must be {_ALPHA_RULE}; got {alpha!r}")
        return value
    if isinstance(alpha, (str, bytes)) or not isinstance(alpha, Sequence) and not hasattr(alpha, "__array__"):
        raise ValueError(f"{name} must be {_ALPHA_RULE}; got {alpha!r}")
    try:
        values = torch.as_tensor(alpha, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be {_ALPHA_RULE}; got {alpha!r}") from exc
    return _check_alpha_vector(values, name)


def _check_alpha_vector(values: Tensor, name: str) -> Tensor:
    """A per-class alpha: 1-D, non-empty, every value in [0, 1]; integer tensors become float64."""
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(f"{name} must be {_ALPHA_RULE}; a per-class alpha must be 1-D and non-empty, "
                         f"got shape {tuple(values.shape)}")
    if not values.is_floating_point():
        values = values.double()
    with torch.no_grad():
        bad = ~((values >= 0) & (values <= 1))
        if bool(bad.any()):
            first = values[bad][0].item()
            raise ValueError(f"{name} must be {_ALPHA_RULE}; per-class value {first!r} is out of range")
    return values


def _alpha_tensor(alpha: Union[None, float, Tensor]) -> Optional[Tensor]:
    """A checked alpha as a tensor (float64 0-d for a float), or ``None`` when disabled."""
    if alpha is None:
        return None
    if isinstance(alpha, float):
        return torch.tensor(alpha, dtype=torch.float64)
    return alpha


def _alpha_repr(alpha: Union[None, float, Tensor]) -> str:
    """Short text for a checked alpha in a module's repr (at most six per-class values shown)."""
    if alpha is None:
        return "None"
    if isinstance(alpha, float):
        return f"{alpha:g}"
    values = [f"{v:g}" for v in alpha.detach().cpu().tolist()]
    shown = ", ".join(values[:6]) + (", ..." if len(values) > 6 else "")
    return f"[{shown}] ({len(values)} classes)"
