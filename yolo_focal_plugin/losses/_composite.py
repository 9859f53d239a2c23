"""The composite path: the same losses as plain autograd through torch ops.

Contract: :func:`_composite` returns the same loss as the fused path (same formulas, same dtype
rules, values equal up to rounding) and is differentiable with respect to every tensor argument:
the logits, the targets, ``alpha``, ``pos_weight`` and ``weight``. :mod:`._functional` uses it when
one of those besides the logits requires grad; :mod:`._modules` when the wrapped loss is not a plain
``BCEWithLogitsLoss`` (it then passes the wrapped loss's element-wise output as ``elementwise``).
Slower than the fused path; the logit gradient stays finite for ``0 < gamma < 1`` (:class:`_SafePow`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ._dtypes import _compute_dtype, _out_dtype


class _SafePow(torch.autograd.Function):
    """``u ** gamma`` for ``u >= 0`` and ``0 < gamma < 1`` whose derivative is ``0`` (not inf) at ``u = 0``.

    Only used in the composite path; there the factor it multiplies always vanishes at ``u = 0``.
    """

    @staticmethod
    def forward(ctx, u, gamma):  # type: ignore[override]
        out = u.pow(gamma)
        ctx.gamma = gamma
        ctx.save_for_backward(u, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        u, out = ctx.saved_tensors
        return grad_out * ctx.gamma * out / u.clamp_min(torch.finfo(u.dtype).tiny), None


def _pow(u: Tensor, gamma: float) -> Tensor:
    """``u ** gamma`` for ``u >= 0`` with a finite derivative at ``u = 0`` for every ``gamma >= 0``."""
    if gamma == 0:
        return torch.ones_like(u)
    if gamma >= 1:
        return u.pow(gamma)
    return _SafePow.apply(u, gamma)


def _composite_weight(kind: str, x: Tensor, t: Tensor, gamma: float, alpha: Optional[Tensor]) -> Tensor:
    """The focal weight of ``kind`` (``alpha`` included), shaped like ``x``; see the package docstring."""
    p = torch.sigmoid(x)
    q = torch.sigmoid(-x)
    if kind == "varifocal":
        neg = _pow(p, gamma)
        if alpha is not None:
            neg = neg * alpha
        return torch.where(t > 0, t, neg)
    if kind == "focal":
        w = _pow(torch.lerp(p, q, t), gamma)
    else:
        w = _pow(torch.lerp(-p, q, t).abs(), gamma)
    if alpha is not None:
        w = w * (t * (2 * alpha - 1) + (1 - alpha))
    return w


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    """Apply ``reduction`` to element-wise ``loss``."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / max(loss.numel(), 1)  # mean of nothing is 0, not NaN


def _composite(
    kind: str,
    x: Tensor,
    t: Tensor,
    gamma: float,
    alpha: Optional[Tensor],
    reduction: str,
    elementwise: Optional[Tensor] = None,
    pos_weight: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
) -> Tensor:
    """``reduction`` of ``BCE * focal weight``, element-wise over ``x`` (shape of ``x`` for ``'none'``).

    ``elementwise``, when given, replaces the BCE term (then ``pos_weight`` and ``weight`` are not
    used: they are already in it).
    """
    ctype = _compute_dtype(x.dtype)
    xc, tc = x.to(ctype), t.to(ctype)
    if elementwise is None:
        pw = None if pos_weight is None else pos_weight.to(ctype)
        w = None if weight is None else weight.to(ctype)
        elementwise = F.binary_cross_entropy_with_logits(xc, tc, weight=w, pos_weight=pw, reduction="none")
    a = None if alpha is None else alpha.to(device=x.device, dtype=ctype)
    loss = elementwise.to(ctype) * _composite_weight(kind, xc, tc, gamma, a)
    return _reduce(loss, reduction).to(_out_dtype(x))
