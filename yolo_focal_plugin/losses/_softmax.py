"""Multi-class (softmax) focal loss, computed from ``log_softmax``.

Contract: :func:`softmax_focal_loss` takes the arguments of :func:`torch.nn.functional.cross_entropy`
(class-index targets, ``ignore_index``) and returns ``-alpha_y * (1 - p_y) ** gamma * log p_y``
reduced over the non-ignored targets; with ``gamma = 0`` and ``alpha = None`` it equals
``F.cross_entropy``. The derivative with respect to ``log p_y`` is written out
(:class:`_SoftmaxFocalTerm`) so that it stays finite for ``0 < gamma < 1`` at ``p_y = 1``.
"""
from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._checks import _check_gamma, _check_reduction
from ._dtypes import _compute_dtype, _out_dtype
from ._kernel import _pow_into


class _SoftmaxFocalTerm(torch.autograd.Function):
    """``f(z) = -(1 - e^z) ** gamma * z`` for ``z = log p_y <= 0``, with a stable analytic derivative.

    ``f'(z) = u**g * (g * e^z * z / u - 1)`` with ``u = -expm1(z)``; ``z / u`` tends to -1 as ``z -> 0``
    and is finite elsewhere, so the derivative is finite for every ``g >= 0`` (autograd through
    ``u ** g`` would give ``inf * 0`` at ``p_y = 1`` for ``g < 1``).
    """

    @staticmethod
    def forward(ctx, z, gamma):  # type: ignore[override]
        z = z.clamp_max(0.0)
        u = torch.expm1(z).neg_()
        mod = _pow_into(torch.empty_like(u), u, gamma) if gamma != 0 else torch.ones_like(u)
        ctx.gamma = gamma
        ctx.save_for_backward(z, u, mod)
        return -(mod * z)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        z, u, mod = ctx.saved_tensors
        g = ctx.gamma
        if g == 0:
            return -grad_out, None
        ratio = z / u.clamp_min(torch.finfo(u.dtype).tiny)  # mod == 0 wherever u hits the clamp
        return grad_out * mod * (g * torch.exp(z) * ratio - 1.0), None


def _check_class_alpha(alpha: object, classes: int) -> Optional[Tensor]:
    """``None`` (disabled) or one finite weight >= 0 per class; a scalar is rejected as ambiguous."""
    if alpha is None:
        return None
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool) and float(alpha) == -1:
        return None
    if isinstance(alpha, numbers.Real) or (isinstance(alpha, Tensor) and alpha.dim() == 0):
        raise ValueError(
            f"alpha for softmax_focal_loss must be a per-class sequence of {classes} weights >= 0, "
            f"or None/-1; got the scalar {alpha!r} (a scalar is ambiguous: kornia gives class 0 "
            f"1 - alpha and the others alpha)")
    try:
        values = torch.as_tensor(alpha, dtype=torch.float64) if not isinstance(alpha, Tensor) else alpha
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"alpha must be a per-class sequence of weights >= 0 or None; got {alpha!r}") from exc
    if values.dim() != 1 or values.numel() != classes:
        raise ValueError(f"alpha must have one weight per class ({classes}), got shape {tuple(values.shape)}")
    with torch.no_grad():
        if not bool(((values >= 0) & torch.isfinite(values)).all()):
            raise ValueError(f"alpha must hold finite weights >= 0, got {values.tolist()!r}")
    return values


def softmax_focal_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    alpha: Optional[Union[Sequence[float], Tensor]] = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    """Multi-class focal loss from ``log_softmax``: ``-alpha_y * (1 - p_y) ** gamma * log p_y``.

    ``p = softmax(logits)`` along the class dim (dim 1, or dim 0 for ``(C,)`` logits) and ``y`` the
    target class of each position.

    Args:
        logits: ``(N, C)``, ``(N, C, d1, ..., dk)`` or ``(C,)``, like :func:`torch.nn.functional.cross_entropy`.
        target: class indices, ``(N)``, ``(N, d1, ..., dk)`` or ``()``; ``ignore_index`` entries are skipped.
        gamma: finite and >= 0; with ``gamma = 0`` and ``alpha = None`` this equals ``F.cross_entropy``.
            Loss and gradient are finite for ``0 <= gamma <= 1e6`` (as for :func:`sigmoid_focal_loss`).
        alpha: ``None``/``-1`` or one weight >= 0 per class (a scalar is rejected as ambiguous).
        reduction: ``'none'`` (target-shaped, 0 at ignored entries) | ``'sum'`` | ``'mean'``.

    ``'mean'`` divides by the number of non-ignored targets (a plain mean of the alpha-weighted terms,
    not ``F.cross_entropy``'s ``sum / sum(weight)``); with no valid target it returns 0 (not NaN) with a
    zero gradient. Computed in float32 for half inputs; returned in the dtype of ``logits`` (float32 under
    autocast, like ``F.cross_entropy``).
    """
    gamma = _check_gamma(gamma)
    reduction = _check_reduction(reduction)
    if logits.dim() == 0:
        raise ValueError("logits must have a class dimension")
    class_dim = 0 if logits.dim() == 1 else 1
    classes = logits.shape[class_dim]
    a = _check_class_alpha(alpha, classes)
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got {target.dtype}")
    expected = logits.shape[:class_dim] + logits.shape[class_dim + 1:]
    if target.shape != expected:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits shape "
                         f"{tuple(logits.shape)} (expected {tuple(expected)})")
    ctype = _compute_dtype(logits.dtype)
    logp = F.log_softmax(logits.to(ctype), dim=class_dim)
    valid = target != ignore_index
    index = target.masked_fill(~valid, 0).long()
    if bool(((index < 0) | (index >= classes)).any()):
        raise ValueError(f"target holds class indices outside [0, {classes}) that are not ignore_index")
    z = logp.gather(class_dim, index.unsqueeze(class_dim)).squeeze(class_dim)
    loss = _SoftmaxFocalTerm.apply(z, gamma)
    if a is not None:
        loss = loss * a.to(device=loss.device, dtype=ctype)[index]
    loss = torch.where(valid, loss, torch.zeros((), dtype=ctype, device=loss.device))
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = loss.sum()
    else:
        out = loss.sum() / valid.sum().clamp_min(1).to(ctype)
    return out.to(_out_dtype(logits))
