"""The fused fast path: loss and analytic logit-gradient in one chunked pass, as an autograd.Function.

Contract: :class:`_FusedSigmoidLoss` ``.apply(x, t, spec, alpha, pos_weight, weight)`` returns the
loss of ``spec`` (reduced, or element-wise in ``x``'s shape for ``'none'``) in the dtype given by
:func:`._dtypes._out_dtype`, and is differentiable with respect to ``x`` only (once). ``alpha``
(``None``, 0-d or per-class ``(C,)``), ``pos_weight`` and ``weight`` broadcast to ``x``'s shape and
are treated as constants; the caller (:mod:`._functional`) routes the cases that need their
gradients to :mod:`._composite` instead.

How: :func:`_fused_forward` cuts the input into chunks (:mod:`._chunks`), runs the per-chunk math of
:mod:`._kernel` on each, keeps only the gradient (1 N) and never materialises the element-wise loss
unless ``reduction='none'``. Half inputs are upcast chunk by chunk.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import _chunks
from ._dtypes import _compute_dtype, _out_dtype
from ._kernel import _bce_terms, _focal_weight, _Scratch, _Spec


class _Operand:
    """A broadcast operand (alpha terms, pos_weight, weight) prepared for chunked use.

    A ``row`` operand is a scalar or varies only along the last dim (shape ``(C,)``): it is used as-is
    for every chunk. A ``full`` operand is laid out like the input, ``(rows, width)``, and sliced.
    """

    __slots__ = ("tensor", "full")

    def __init__(self, tensor: Tensor, full: bool):
        self.tensor = tensor
        self.full = full

    @property
    def per_class(self) -> bool:
        return not self.full and self.tensor.dim() == 1

    def chunk(self, rows: slice) -> Tensor:
        return self.tensor[rows] if self.full else self.tensor


def _operand(value: Optional[Tensor], shape: torch.Size, like: Tensor, ctype: torch.dtype) -> Optional[_Operand]:
    """``value`` (detached, on ``like``'s device, in ``ctype``) as a row or full operand; ``None`` stays None.

    Raises ``ValueError`` when ``value`` does not broadcast to ``shape``.
    """
    if value is None:
        return None
    try:
        torch.broadcast_shapes(value.shape, shape)
    except RuntimeError as exc:
        raise ValueError(f"operand of shape {tuple(value.shape)} does not broadcast to input shape "
                         f"{tuple(shape)}") from exc
    value = value.detach().to(device=like.device, dtype=ctype)
    if value.numel() == 1:
        return _Operand(value.reshape(()), full=False)
    if len(shape) and value.dim() <= len(shape) and value.shape[-1] == shape[-1] and value.numel() == shape[-1]:
        return _Operand(value.reshape(-1), full=False)
    return _Operand(value.expand(shape).reshape(-1), full=True)


def _alpha_operands(kind: str, alpha: Optional[Tensor], shape: torch.Size, like: Tensor, ctype: torch.dtype,
                    scale: float) -> Tuple[Optional[_Operand], ...]:
    """Varifocal: ``(alpha,)``. Focal/qfocal: ``(a0, a1)`` with ``alpha_t = a0 + a1 t``, scale folded in."""
    if kind == "varifocal":
        return (_operand(alpha, shape, like, ctype),)
    if alpha is None:
        return (None, None)
    a = alpha.detach().to(device=like.device, dtype=torch.float64)
    return (_operand((1.0 - a) * scale, shape, like, ctype), _operand((2.0 * a - 1.0) * scale, shape, like, ctype))




def _fused_forward(
    x: Tensor,
    t: Tensor,
    spec: _Spec,
    alpha: Optional[Tensor],
    pos_weight: Optional[Tensor],
    weight: Optional[Tensor],
    need_grad: bool,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Loss (reduced or element-wise, input dtype) and, if asked, ``d loss / d x`` for upstream grad 1."""
    shape = x.shape
    n = x.numel()
    ctype = _compute_dtype(x.dtype)
    x = x.detach().contiguous()
    t = t.detach().contiguous()
    scale = 1.0 / max(n, 1) if spec.reduction == "mean" else 1.0
    alpha_ops = _alpha_operands(spec.kind, alpha, shape, x, ctype, scale)
    if alpha_ops[0] is not None and spec.kind != "varifocal":
        scale = 1.0  # folded into alpha_t
    pw = _operand(pos_weight, shape, x, ctype)
    w = _operand(weight, shape, x, ctype)
    ops = [op for op in (*alpha_ops, pw, w) if op is not None]
    chunk = _chunks._chunk_size(x.device)
    cols = shape[-1] if len(shape) else 1
    # Per-class operands need whole rows in a chunk; otherwise chunk the flat elements.
    width = cols if any(op.per_class for op in ops) and 0 < cols <= chunk else 1
    for op in ops:
        if op.per_class and width == 1:  # rows too long for a chunk: lay the operand out like the input
            op.tensor, op.full = op.tensor.expand(shape).reshape(-1), True
        if op.full:
            op.tensor = op.tensor.view(-1, width)
    x2, t2 = x.view(-1, width), t.view(-1, width)
    rows = x2.shape[0]
    step = max(1, min(chunk, max(n, 1)) // width)
    count = -(-rows // step)
    out_dtype = _out_dtype(x)
    loss_out = torch.empty_like(x2, dtype=out_dtype) if spec.reduction == "none" else None
    # The gradient stays in the compute dtype until backward has scaled it by the upstream gradient:
    # stored in float16 at unit upstream, a 'mean' gradient (~1/N per element) underflows to 0
    # before GradScaler's scale can reach it.
    grad = torch.empty_like(x2, dtype=ctype) if need_grad else None
    cast = x.dtype != ctype or t.dtype != ctype

    def run(i: int, scratch: _Scratch) -> Optional[Tensor]:
        sl = slice(i * step, min((i + 1) * step, rows))
        xc, tc = x2[sl], t2[sl]
        s = scratch.views(tuple(xc.shape))
        if xc.dtype != ctype:  # half/bfloat16: upcast inside the cache-resident chunk, not the whole input
            xc = s.X.copy_(xc)
        if tc.dtype != ctype:
            tc = s.T.copy_(tc)
        _bce_terms(xc, tc, None if pw is None else pw.chunk(sl), s)
        H = _focal_weight(spec, tc, tuple(None if op is None else op.chunk(sl) for op in alpha_ops), s)
        W, B, D = s.W, s.B, s.D
        if w is not None:
            W.mul_(w.chunk(sl))
        if scale != 1.0:
            W.mul_(scale)
        if grad is not None:
            if H is not None:
                D.addcmul_(H, B, value=spec.gamma)
            torch.mul(D, W, out=grad[sl])
        if loss_out is not None:
            torch.mul(W, B, out=loss_out[sl])
            return None
        return torch.dot(W.view(-1), B.view(-1))

    workers = _chunks._workers(count, n, x.device)
    partial = _chunks._map_chunks(count, run, lambda: _Scratch(step * width, ctype, x.device, cast), workers)
    if loss_out is not None:
        loss = loss_out.view(shape)
    elif partial:
        loss = torch.stack(partial).to(torch.float64).sum().to(out_dtype)  # type: ignore[arg-type]
    else:
        loss = torch.zeros((), dtype=out_dtype, device=x.device)
    return loss, (None if grad is None else grad.view(shape))


class _FusedSigmoidLoss(torch.autograd.Function):
    """Loss and analytic logit-gradient computed together in the forward pass.

    Only the gradient (one tensor of the input's size) is kept for backward; the element-wise loss is
    never stored. Backward scales it in place by the incoming gradient. A second backward through the
    same graph (``retain_graph=True``) recomputes it from the saved inputs.
    """

    @staticmethod
    def forward(ctx, x, t, spec, alpha, pos_weight, weight):  # type: ignore[override]
        need_grad = ctx.needs_input_grad[0]
        loss, grad = _fused_forward(x, t, spec, alpha, pos_weight, weight, need_grad)
        ctx.spec = spec
        ctx.grad = grad
        ctx.in_dtype = x.dtype
        if need_grad:
            ctx.save_for_backward(x, t, alpha, pos_weight, weight)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        grad = ctx.grad
        ctx.grad = None
        if grad is None:  # retain_graph and a second backward: recompute
            x, t, alpha, pos_weight, weight = ctx.saved_tensors
            _, grad = _fused_forward(x, t, ctx.spec, alpha, pos_weight, weight, True)
        grad.mul_(grad_out)  # in the compute dtype; only the scaled gradient is rounded to the input's
        return grad.to(ctx.in_dtype), None, None, None, None, None
