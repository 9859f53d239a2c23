"""The per-chunk math of the fused kernel: BCE, focal weight and the analytic logit gradient.

Contract: on one chunk of logits ``x`` and targets ``t`` (same shape, compute dtype), with scratch
views ``s`` of that shape, :func:`_bce_terms` then :func:`_focal_weight` leave

* ``s.B = BCE(x, t)`` (``pos_weight`` included, ``weight`` not) and ``s.D = dB/dx``,
* ``s.W`` the focal weight (``alpha`` included, ``weight`` and the reduction scale not),
* and return ``H = (dW/dx) / (gamma W)`` (``None`` where ``dW/dx == 0`` everywhere),

so that the element loss is ``W * B`` and its logit gradient ``W * (D + gamma * H * B)``. Every op
writes into preallocated scratch (``out=`` / in place): the chunk stays in cache. The driver that
slices the input into chunks and reduces the results is :mod:`._fused`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor


@dataclass(frozen=True)
class _Spec:
    """What to compute: ``kind`` in ``focal | qfocal | varifocal``, a checked ``gamma``, ``reduction``."""

    kind: str
    gamma: float
    reduction: str


class _Scratch:
    """Scratch rows of one worker, allocated once per call and reused by all its chunks: a fresh
    tensor per chunk op would cost a malloc and page faults every time. Views are cached per shape."""

    NAMES = ("E", "P", "Q", "B", "D", "W", "H", "U", "X", "T")

    def __init__(self, numel: int, dtype: torch.dtype, device: torch.device, cast: bool):
        rows = len(self.NAMES) if cast else len(self.NAMES) - 2
        self._buf = torch.empty((rows, numel), dtype=dtype, device=device)
        self._views: Dict[Tuple[int, ...], _Views] = {}

    def views(self, shape: Tuple[int, ...]) -> "_Views":
        found = self._views.get(shape)
        if found is None:
            m = math.prod(shape)
            rows = [row[:m].view(shape) for row in self._buf]
            rows += [None] * (len(self.NAMES) - len(rows))
            found = self._views[shape] = _Views(*rows)
        return found


@dataclass
class _Views:
    """Named scratch rows of one chunk's shape; ``X``/``T`` exist only when half inputs are upcast."""

    E: Tensor
    P: Tensor
    Q: Tensor
    B: Tensor
    D: Tensor
    W: Tensor
    H: Tensor
    U: Tensor
    X: Optional[Tensor]
    T: Optional[Tensor]


def _pow_into(out: Tensor, base: Tensor, gamma: float) -> Tensor:
    """``out = base ** gamma`` for ``base >= 0``; common exponents avoid the general pow (4-7x dearer)."""
    if gamma == 1.0:
        return out.copy_(base)
    if gamma == 2.0:
        return torch.mul(base, base, out=out)
    if gamma == 0.5:
        return torch.sqrt(base, out=out)
    if gamma == 1.5:
        return torch.sqrt(base, out=out).mul_(base)
    if gamma == 3.0:
        return torch.mul(base, base, out=out).mul_(base)
    if gamma == 2.5:
        return torch.sqrt(base, out=out).mul_(base).mul_(base)
    if gamma == 4.0:
        return torch.mul(base, base, out=out).mul_(out)
    # exp(gamma * log(base)) is one transcendental cheaper than torch.pow and maps base == 0 to 0.
    return torch.log(base, out=out).mul_(gamma).exp_()


def _bce_terms(x: Tensor, t: Tensor, pw: Optional[Tensor], s: _Views) -> None:
    """Fill ``s.P = sigmoid(x)``, ``s.Q = sigmoid(-x)``, ``s.B = BCE(x, t)`` (with ``pos_weight``,
    without ``weight``) and ``s.D = dB/dx``; uses ``s.E`` as scratch.

    ``sigmoid(-x)`` is computed directly, never as ``1 - p``: that cancellation turns ``1 - p_t``
    into an exact 0 at saturated logits, where ``u**gamma`` has an infinite derivative for gamma < 1.
    """
    E, P, Q, B, D = s.E, s.P, s.Q, s.B, s.D
    torch.sigmoid(x, out=P)
    torch.neg(x, out=Q).sigmoid_()
    torch.minimum(P, Q, out=E).neg_().log1p_()  # log(1 - sigmoid(-|x|)) = -softplus(-|x|), accurate in both tails
    if pw is None:
        # BCE = relu(x) - t*x + softplus(-|x|); relu(x) - t*x is exact for t in {0, 1}.
        torch.clamp_min(x, 0, out=B).addcmul_(t, x, value=-1).sub_(E)
        torch.sub(P, t, out=D)
        return
    # BCE = (1-t) x + (1 + (pw-1) t) softplus(-x), ATen's pos_weight formula.
    U = s.U
    torch.neg(x, out=B).clamp_min_(0).sub_(E)  # softplus(-x)
    torch.mul(t, pw, out=U).sub_(t).add_(1)  # 1 + (pw-1) t
    B.mul_(U)
    torch.mul(t, x, out=U)
    B.add_(torch.sub(x, U, out=U))  # + (1-t) x, with x - t x exact for t in {0, 1}
    # dB/dx = (1-t) p - pw t q, written so that it is exact for t in {0, 1}
    torch.mul(t, P, out=U)
    torch.sub(P, U, out=U)
    torch.mul(t, Q, out=D).mul_(pw)
    torch.sub(U, D, out=D)


def _focal_weight(spec: _Spec, t: Tensor, alpha: Tuple[Optional[Tensor], ...], s: _Views) -> Optional[Tensor]:
    """Fill ``s.W`` with the focal weight (``alpha`` included, ``weight`` and scale not) and return
    ``H = (dW/dx) / (gamma W)``, or ``None`` when ``dW/dx`` is zero everywhere.

    The gradient is then ``W * (dB/dx + gamma * H * B)``. ``H`` is finite everywhere, including where
    ``W == 0``, so no ``inf * 0`` appears as long as ``gamma * H * B`` fits the compute dtype. For focal
    (``|H| <= 2``, and ``H * B`` small where ``B`` is large) and varifocal that holds for every gamma
    float32 can represent; for qfocal ``|H| = p q / |d|`` grows as ``d -> 0``, which in float32 allows
    gamma up to ~1e25 (far above the 1e6 that ``fl_gamma`` is held to):

    * focal:     ``W = alpha_t u**g``, ``u = 1 - p_t``;  ``H = (1-2t) p q / u``, ``|H| <= 2``
    * qfocal:    ``W = alpha_t |d|**g``, ``d = t - p``;  ``H = -p q / d`` (0 at the cusp ``d = 0``)
    * varifocal: ``W = t`` where ``t > 0`` (``H = 0``), else ``alpha p**g`` (``H = q``)
    """
    P, Q, W, H, U, E = s.P, s.Q, s.W, s.H, s.U, s.E  # E is free once _bce_terms is done
    g = spec.gamma
    if spec.kind == "varifocal":
        (alpha,) = alpha
        torch.sign(t, out=E).clamp_min_(0)  # 1 where t > 0 (positives), else 0; cheaper than where()
        if g == 0:
            W.fill_(1.0)
        else:
            _pow_into(W, P, g)
        if alpha is not None:
            W.mul_(alpha)
        W.addcmul_(E, torch.sub(t, W, out=H))  # W + [t > 0] (t - W)
        if g == 0:
            return None
        torch.mul(Q, E, out=H)
        return torch.sub(Q, H, out=H)  # q [t <= 0]
    a0, a1 = alpha
    if spec.kind == "focal":
        torch.lerp(P, Q, t, out=U)  # 1 - p_t = (1-t) p + t q; lerp is exact at t in {0, 1}
        if g != 0:
            _pow_into(W, U, g)
    else:
        torch.lerp(torch.neg(P, out=U), Q, t, out=U)  # d = t - p = (1-t)(-p) + t q, exact at t in {0, 1}
        torch.sign(U, out=E)
        U.abs_()
        if g != 0:
            _pow_into(W, U, g)
    if a0 is not None:
        if g == 0:
            torch.addcmul(a0, t, a1, out=W)  # alpha_t = (1-alpha) + (2 alpha - 1) t
        else:
            W.mul_(torch.addcmul(a0, t, a1, out=H))
    elif g == 0:
        W.fill_(1.0)
    if g == 0:
        return None
    torch.mul(P, Q, out=H)
    if spec.kind == "focal":
        H.addcmul_(t, H, value=-2.0)  # (1-2t) p q = du/dx; u == 0 only where p q == 0
    else:
        H.mul_(E).neg_()  # -sign(d) p q: the cusp d == 0 gets H = 0 (W is 0 there anyway)
    return H.div_(U.clamp_min_(torch.finfo(U.dtype).tiny))
