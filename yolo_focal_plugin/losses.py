"""Focal-loss family for dense detection, in pure torch (this module never imports yolov5).

Notation: ``x`` is a logit, ``p = sigmoid(x)``, ``q = 1 - p = sigmoid(-x)``, ``t`` the target
(0/1 or soft, in [0, 1]), ``BCE(x, t) = -[t log p + (1 - t) log q]`` (times ``pos_weight`` on the
positive term and ``weight`` on the whole, exactly as :class:`torch.nn.BCEWithLogitsLoss`),
``p_t = p t + q (1 - t)`` and ``alpha_t = alpha t + (1 - alpha)(1 - t)``.

==================  =====================================================  =====================
loss                element-wise formula                                    defaults (module)
==================  =====================================================  =====================
focal (RetinaNet)   ``alpha_t * (1 - p_t)**gamma * BCE``                    gamma 1.5, alpha 0.25
quality focal       ``alpha_t * |t - p|**gamma * BCE``                      gamma 1.5, alpha 0.25
varifocal           ``BCE * (t if t > 0 else alpha * p**gamma)``            gamma 2.0, alpha 0.75
softmax focal       ``-alpha_y * (1 - p_y)**gamma * log p_y`` (multi-class)  gamma 2.0, alpha None
==================  =====================================================  =====================

The module wrappers (:class:`FocalLoss`, :class:`QFocalLoss`, :class:`VFLoss`) are drop-in
replacements for YOLOv5's ``utils/loss.py`` wrappers: they wrap a ``BCEWithLogitsLoss``, take over
its ``reduction`` and set the wrapped one to ``'none'``, so the reduction is always applied to the
*weighted elements* (``mean`` = sum of weighted elements / number of elements).

Numerics (the reason this module exists):

* Finite loss and gradient for every ``gamma >= 0``. For ``0 < gamma < 1`` the textbook autograd
  graph multiplies ``d(u**gamma)/du = inf`` at ``u = 1 - p_t = 0`` (saturated logits, ``|x| >~ 17``
  in float32) by zero and returns NaN; torchvision and YOLOv5 do. Here ``q`` is ``sigmoid(-x)``, never
  ``1 - p``, and the gradient is written out analytically as ``W * (dBCE/dx + gamma * H * BCE)``, with
  ``W`` the focal weight and ``H = W' / (gamma W)`` bounded (see ``_focal_weight``).
* Fast default path (no compiler): one ``autograd.Function`` walks the input in cache-sized chunks on
  a few threads, computes loss *and* gradient in the same pass (two sigmoids and one log1p per
  element), keeps only the gradient (1 N) and never materialises the element-wise loss unless
  ``reduction='none'``.
* float16 / bfloat16 inputs are computed in float32 chunk by chunk; the loss and the gradient are
  returned in the input dtype (float32 under autocast, as autocast returns for BCE). float64 stays
  float64. The saved gradient stays float32 until backward has scaled it by the upstream gradient.
* ``reduction='mean'`` over zero elements returns 0 (not NaN) with a zero gradient.

Gradients with respect to the logits come from the fused kernel. When the target, ``weight``,
``pos_weight`` or a per-class ``alpha`` require grad, or the wrapped loss is not a plain
``BCEWithLogitsLoss``, a slower composite autograd path is used (same formulas, same stability for
the logit gradient).
"""
from __future__ import annotations

import ctypes
import itertools
import math
import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "FocalLoss",
    "QFocalLoss",
    "VFLoss",
    "sigmoid_focal_loss",
    "quality_focal_loss",
    "varifocal_loss",
    "softmax_focal_loss",
    "REDUCTIONS",
    "AlphaLike",
]

AlphaLike = Union[float, int, Sequence[float], Tensor, None]
REDUCTIONS: Tuple[str, ...] = ("none", "mean", "sum")

# Elements per chunk on CPU: big enough to amortise the ~2 us dispatch cost of each op, small enough
# that a worker's 8 float32 scratch rows (2 MiB) stay in L3. Tuned on 2-core AVX2 (docs/losses.md).
_CPU_CHUNK = 1 << 16
# More pool threads than this fight over the GIL between ops.
_MAX_WORKERS = 8
# Accelerators gain nothing from cache blocking but still bound the scratch memory.
_ACCEL_CHUNK = 1 << 22


def set_chunk_size(cpu: Optional[int] = None, accelerator: Optional[int] = None) -> Tuple[int, int]:
    """Tune the chunk sizes of the fused kernel (elements). Returns the previous ``(cpu, accelerator)``."""
    global _CPU_CHUNK, _ACCEL_CHUNK
    previous = (_CPU_CHUNK, _ACCEL_CHUNK)
    for name, value in (("cpu", cpu), ("accelerator", accelerator)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"chunk size {name!r} must be an int >= 1, got {value!r}")
    _CPU_CHUNK = cpu or _CPU_CHUNK
    _ACCEL_CHUNK = accelerator or _ACCEL_CHUNK
    return previous


_HALF = (torch.float16, torch.bfloat16)


def _out_dtype(x: Tensor) -> torch.dtype:
    """dtype of the returned loss: float32 for a half input under autocast, else the input's dtype.

    Autocast runs ``binary_cross_entropy_with_logits`` and ``cross_entropy`` in float32 and returns
    float32; YOLOv5's AMP loop relies on that. A float16 loss would receive GradScaler's upstream
    gradient (65536 x batch size x gains) in float16, where it overflows to inf on every step.
    """
    if x.dtype in _HALF and torch.is_autocast_enabled(x.device.type):
        return torch.float32
    return x.dtype


# --------------------------------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------------------------------


def _check_gamma(gamma: object, name: str = "gamma") -> float:
    if isinstance(gamma, Tensor) and gamma.numel() == 1:
        gamma = gamma.item()
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise ValueError(f"{name} must be a finite float >= 0, got {gamma!r}")
    value = float(gamma)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite float >= 0, got {gamma!r}")
    return value


def _check_reduction(reduction: object) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of 'none', 'mean', 'sum', got {reduction!r}")
    return reduction  # type: ignore[return-value]


_ALPHA_RULE = "a float in [0, 1], a per-class sequence/tensor of floats in [0, 1], or -1/None to disable"


def _check_alpha(alpha: object, name: str = "alpha") -> Union[None, float, Tensor]:
    """Normalise ``alpha`` to ``None`` (disabled), a float, or a 1-D float64 tensor (per class)."""
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


def _alpha_repr(alpha: Union[None, float, Tensor]) -> str:
    if alpha is None:
        return "None"
    if isinstance(alpha, float):
        return f"{alpha:g}"
    values = [f"{v:g}" for v in alpha.detach().cpu().tolist()]
    shown = ", ".join(values[:6]) + (", ..." if len(values) > 6 else "")
    return f"[{shown}] ({len(values)} classes)"


# --------------------------------------------------------------------------------------------------
# fused kernel: chunked loss + analytic gradient in one pass
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    kind: str
    gamma: float
    reduction: str


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

    The gradient is then ``W * (dB/dx + gamma * H * B)``. ``H`` is bounded wherever ``W > 0`` and
    finite where ``W == 0``, so no ``inf * 0`` appears for any ``gamma >= 0``:

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


def _alpha_operands(kind: str, alpha: Optional[Tensor], shape: torch.Size, like: Tensor, ctype: torch.dtype,
                    scale: float) -> Tuple[Optional[_Operand], ...]:
    """Varifocal: ``(alpha,)``. Focal/qfocal: ``(a0, a1)`` with ``alpha_t = a0 + a1 t``, scale folded in."""
    if kind == "varifocal":
        return (_operand(alpha, shape, like, ctype),)
    if alpha is None:
        return (None, None)
    a = alpha.detach().to(device=like.device, dtype=torch.float64)
    return (_operand((1.0 - a) * scale, shape, like, ctype), _operand((2.0 * a - 1.0) * scale, shape, like, ctype))


# The chunk loop runs on a small pool of Python threads whose OpenMP thread count is set to 1 (a
# thread-local setting, nothing global changes). Every op of a chunk then runs inline on its thread.
# Without this, ATen's exp/log1p/sqrt (grain size 2048) and MKL's dot open an OpenMP region per op, and
# on shared cores (data-loader workers, other jobs) each region's barrier can cost milliseconds: the
# same 32k-element sqrt measured 8 ms instead of 80 us. The chunks themselves are the parallelism.
_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_pool_lock = threading.Lock()
# Below this many elements a single chunk runs on the caller's thread; no op goes parallel there anyway.
_INLINE_ELEMENTS = 2048


def _drop_pool_after_fork() -> None:
    global _pool, _pool_size
    _pool, _pool_size = None, 0  # the child has none of the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_pool_after_fork)


def _omp_set_num_threads() -> Optional[Callable[[int], None]]:
    """``omp_set_num_threads`` of the OpenMP runtime torch uses (its bundled libgomp first), or None."""
    candidates: List[Optional[str]] = []
    libdir = os.path.join(os.path.dirname(torch.__file__), "lib")
    if os.path.isdir(libdir):
        candidates += [os.path.join(libdir, f) for f in sorted(os.listdir(libdir)) if f.startswith(("libgomp", "libiomp", "libomp"))]
    candidates.append(None)  # whatever runtime is in the global namespace
    for path in candidates:
        try:
            fn = getattr(ctypes.CDLL(path), "omp_set_num_threads")
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = None
        return fn
    return None


def _single_threaded_ops() -> None:
    """Pool-thread initializer: make every ATen/MKL op on this thread run inline."""
    torch.get_num_threads()  # let ATen initialise this thread's settings first, or it would override ours
    setter = _omp_set_num_threads()
    if setter is not None:
        setter(1)


def _workers(chunks: int, numel: int, device: torch.device) -> int:
    """Pool threads to use; 0 means run on the caller's thread."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads <= 1 or numel <= _INLINE_ELEMENTS:
        return 0
    return max(1, min(threads, _MAX_WORKERS, chunks))


def _get_pool(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="yolo-focal-loss",
                                       initializer=_single_threaded_ops)
            _pool_size = size
        return _pool


def _map_chunks(count: int, run: Callable[[int, _Scratch], Optional[Tensor]],
                make_scratch: Callable[[], _Scratch], workers: int) -> List[Optional[Tensor]]:
    """``[run(i, scratch) for i in range(count)]`` on ``workers`` pool threads (0: on the caller's thread)."""
    out: List[Optional[Tensor]] = [None] * count
    counter = itertools.count()

    def loop() -> None:
        with torch.no_grad():  # grad mode is thread-local; nothing here is differentiated
            scratch = make_scratch()
            for i in iter(counter.__next__, None):
                if i >= count:
                    return
                out[i] = run(i, scratch)

    if workers == 0:
        loop()
        return out
    pool = _get_pool(workers)
    for fut in [pool.submit(loop) for _ in range(workers)]:
        fut.result()
    return out


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
    ctype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.detach().contiguous()
    t = t.detach().contiguous()
    scale = 1.0 / max(n, 1) if spec.reduction == "mean" else 1.0
    alpha_ops = _alpha_operands(spec.kind, alpha, shape, x, ctype, scale)
    if alpha_ops[0] is not None and spec.kind != "varifocal":
        scale = 1.0  # folded into alpha_t
    pw = _operand(pos_weight, shape, x, ctype)
    w = _operand(weight, shape, x, ctype)
    ops = [op for op in (*alpha_ops, pw, w) if op is not None]
    chunk = _CPU_CHUNK if x.device.type == "cpu" else _ACCEL_CHUNK
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

    workers = _workers(count, n, x.device)
    partial = _map_chunks(count, run, lambda: _Scratch(step * width, ctype, x.device, cast), workers)
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


# --------------------------------------------------------------------------------------------------
# composite path (autograd through torch ops): targets / weights that need grad, non-BCE inner losses
# --------------------------------------------------------------------------------------------------


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
    if gamma == 0:
        return torch.ones_like(u)
    if gamma >= 1:
        return u.pow(gamma)
    return _SafePow.apply(u, gamma)


def _composite_weight(kind: str, x: Tensor, t: Tensor, gamma: float, alpha: Optional[Tensor]) -> Tensor:
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
    ctype = torch.float64 if x.dtype == torch.float64 else torch.float32
    xc, tc = x.to(ctype), t.to(ctype)
    if elementwise is None:
        pw = None if pos_weight is None else pos_weight.to(ctype)
        w = None if weight is None else weight.to(ctype)
        elementwise = F.binary_cross_entropy_with_logits(xc, tc, weight=w, pos_weight=pw, reduction="none")
    a = None if alpha is None else alpha.to(device=x.device, dtype=ctype)
    loss = elementwise.to(ctype) * _composite_weight(kind, xc, tc, gamma, a)
    return _reduce(loss, reduction).to(_out_dtype(x))


# --------------------------------------------------------------------------------------------------
# functional API
# --------------------------------------------------------------------------------------------------


def _alpha_tensor(alpha: Union[None, float, Tensor]) -> Optional[Tensor]:
    if alpha is None:
        return None
    if isinstance(alpha, float):
        return torch.tensor(alpha, dtype=torch.float64)
    return alpha


def _sigmoid_family(
    kind: str,
    inputs: Tensor,
    targets: Tensor,
    gamma: float,
    alpha: Union[None, float, Tensor],
    reduction: str,
    pos_weight: Optional[Tensor],
    weight: Optional[Tensor],
) -> Tensor:
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("inputs and targets must be tensors")
    if targets.shape != inputs.shape:
        raise ValueError(f"Target size ({tuple(targets.shape)}) must be the same as input size "
                         f"({tuple(inputs.shape)})")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a floating-point tensor, got {inputs.dtype}")
    if pos_weight is not None and bool((pos_weight == 1).all()):
        pos_weight = None  # YOLOv5 always passes pos_weight=[1.0]; the formula is then plain BCE
    alpha_t = _alpha_tensor(alpha)
    needs_composite = any(
        v is not None and v.requires_grad for v in (targets, pos_weight, weight, alpha_t)
    )
    if needs_composite:
        return _composite(kind, inputs, targets, gamma, alpha_t, reduction, pos_weight=pos_weight, weight=weight)
    spec = _Spec(kind, gamma, reduction)
    if torch.is_grad_enabled() and inputs.requires_grad:
        return _FusedSigmoidLoss.apply(inputs, targets, spec, alpha_t, pos_weight, weight)
    loss, _ = _fused_forward(inputs, targets, spec, alpha_t, pos_weight, weight, False)
    return loss


def sigmoid_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    gamma: float = 2.0,
    alpha: AlphaLike = 0.25,
    reduction: str = "none",
    pos_weight: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
) -> Tensor:
    """Focal loss of RetinaNet (https://arxiv.org/abs/1708.02002), numerically stable for any gamma >= 0.

    ``loss = alpha_t * (1 - p_t) ** gamma * BCE(inputs, targets)`` element-wise, then reduced.

    Note the argument order differs from ``torchvision.ops.sigmoid_focal_loss`` (alpha, gamma): pass
    them by keyword when porting code.

    Args:
        inputs: logits, any shape, floating point.
        targets: same shape; 0/1 labels or soft targets in [0, 1] (soft targets bias the optimum of
            this loss away from ``p = t``; use :func:`quality_focal_loss` for them).
        gamma: focusing exponent, finite and >= 0. ``0`` disables the modulating factor.
        alpha: weight of positives (negatives get ``1 - alpha``): a float in [0, 1], a per-class
            sequence/tensor broadcast along the last dim, or ``-1``/``None`` to disable.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'`` (``'mean'`` of an empty input is 0).
        pos_weight, weight: as in :func:`torch.nn.functional.binary_cross_entropy_with_logits`; they
            weight the BCE term, the focal factors multiply on top (as in YOLOv5's ``FocalLoss``).

    Returns:
        Loss in the dtype of ``inputs`` (float32 for half inputs under autocast, like BCE's); shape
        of ``inputs`` for ``'none'``, a scalar otherwise.
    """
    return _sigmoid_family("focal", inputs, targets, _check_gamma(gamma), _check_alpha(alpha),
                           _check_reduction(reduction), pos_weight, weight)


def quality_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    gamma: float = 2.0,
    alpha: AlphaLike = None,
    reduction: str = "none",
    pos_weight: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
) -> Tensor:
    """Quality focal loss (GFL, https://arxiv.org/abs/2006.04388), for soft targets such as IoU.

    ``loss = alpha_t * |targets - sigmoid(inputs)| ** gamma * BCE(inputs, targets)`` element-wise.
    Defaults follow the paper (``beta = gamma = 2``, no alpha); :class:`QFocalLoss` keeps YOLOv5's
    ``gamma = 1.5, alpha = 0.25``. Minimised at ``p = t`` for every target in [0, 1]. At ``p == t``
    exactly (the cusp of ``|t - p| ** gamma`` for ``gamma < 1``) the gradient is taken as 0.

    Shapes, dtypes, ``alpha``, ``reduction``, ``pos_weight`` and ``weight`` as in
    :func:`sigmoid_focal_loss`.
    """
    return _sigmoid_family("qfocal", inputs, targets, _check_gamma(gamma), _check_alpha(alpha),
                           _check_reduction(reduction), pos_weight, weight)


def varifocal_loss(
    inputs: Tensor,
    targets: Tensor,
    gamma: float = 2.0,
    alpha: AlphaLike = 0.75,
    reduction: str = "none",
    pos_weight: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
) -> Tensor:
    """Varifocal loss (VarifocalNet, https://arxiv.org/abs/2008.13367), ``iou_weighted=True``.

    Element-wise ``BCE(inputs, q) * (q if q > 0 else alpha * sigmoid(inputs) ** gamma)`` with target
    ``q`` (the IoU-aware score of a positive, 0 for negatives). Positives are weighted by their
    target, negatives are down-weighted focal-style; ``alpha`` (default 0.75) scales the *negatives*,
    unlike the focal loss's alpha. A per-class ``alpha`` scales each class's negatives; ``-1``/``None``
    means 1. Minimised at ``p = q`` on positives.

    Shapes, dtypes, ``reduction``, ``pos_weight`` and ``weight`` as in :func:`sigmoid_focal_loss`.
    """
    return _sigmoid_family("varifocal", inputs, targets, _check_gamma(gamma), _check_alpha(alpha),
                           _check_reduction(reduction), pos_weight, weight)


# --------------------------------------------------------------------------------------------------
# softmax (multi-class) focal loss
# --------------------------------------------------------------------------------------------------


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

    Args:
        logits: ``(N, C)``, ``(N, C, d1, ..., dk)`` or ``(C,)``, like :func:`torch.nn.functional.cross_entropy`.
        target: class indices, ``(N)``, ``(N, d1, ..., dk)`` or ``()``; ``ignore_index`` entries are skipped.
        gamma: finite and >= 0; with ``gamma = 0`` and ``alpha = None`` this equals ``F.cross_entropy``.
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
    ctype = torch.float64 if logits.dtype == torch.float64 else torch.float32
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


# --------------------------------------------------------------------------------------------------
# nn.Module wrappers (YOLOv5-compatible)
# --------------------------------------------------------------------------------------------------


def _is_plain_bce(module: nn.Module) -> bool:
    return isinstance(module, nn.BCEWithLogitsLoss) and type(module).forward is nn.BCEWithLogitsLoss.forward


class _FocalFamily(nn.Module):
    """Shared machinery of the YOLOv5-style wrappers; see the subclasses for the formulas."""

    _kind = "focal"

    def __init__(self, loss_fcn: nn.Module, gamma: float, alpha: AlphaLike):
        super().__init__()
        if not isinstance(loss_fcn, nn.Module) or not hasattr(loss_fcn, "reduction"):
            raise TypeError(f"loss_fcn must be an nn.BCEWithLogitsLoss (a module with a 'reduction'), "
                            f"got {type(loss_fcn).__name__}")
        self.loss_fcn = loss_fcn
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = loss_fcn.reduction
        self.loss_fcn.reduction = "none"  # the wrapper reduces the weighted elements itself

    @property
    def gamma(self) -> float:
        return self._gamma

    @gamma.setter
    def gamma(self, value: float) -> None:
        self.__dict__["_gamma"] = _check_gamma(value)

    @property
    def alpha(self) -> Union[None, float, Tensor]:
        """``None`` (disabled), a float, or a 1-D per-class tensor."""
        return self._alpha

    @alpha.setter
    def alpha(self, value: AlphaLike) -> None:
        self.__dict__["_alpha"] = _check_alpha(value)

    @property
    def reduction(self) -> str:
        return self._reduction

    @reduction.setter
    def reduction(self, value: str) -> None:
        self.__dict__["_reduction"] = _check_reduction(value)

    def forward(self, pred: Tensor, true: Tensor) -> Tensor:
        alpha = self._alpha
        if _is_plain_bce(self.loss_fcn):
            return _sigmoid_family(self._kind, pred, true, self._gamma, alpha, self._reduction,
                                   self.loss_fcn.pos_weight, self.loss_fcn.weight)
        elementwise = self.loss_fcn(pred, true)
        return _composite(self._kind, pred, true, self._gamma, _alpha_tensor(alpha), self._reduction,
                          elementwise=elementwise)

    def extra_repr(self) -> str:
        text = f"gamma={self._gamma:g}, alpha={_alpha_repr(self._alpha)}, reduction={self._reduction!r}"
        pw = getattr(self.loss_fcn, "pos_weight", None)
        if isinstance(pw, Tensor):
            values = pw.detach().cpu().flatten().tolist()
            text += f", pos_weight={values if len(values) <= 6 else values[:6] + ['...']}"
        return text


class FocalLoss(_FocalFamily):
    """Focal loss around ``nn.BCEWithLogitsLoss``: ``alpha_t * (1 - p_t) ** gamma * BCE``.

    Drop-in for YOLOv5's ``FocalLoss(loss_fcn, gamma=1.5, alpha=0.25)``: same constructor, same
    values where YOLOv5's are finite (the BCE term includes ``loss_fcn``'s ``pos_weight``/``weight``),
    finite loss and gradient everywhere. ``alpha=-1`` or ``None`` removes ``alpha_t``; with
    ``gamma=0`` it is then exactly the wrapped BCE. Soft targets bias the optimum away from ``p = t``
    (p = 0.724 for t = 0.6, gamma 2): prefer :class:`QFocalLoss` or :class:`VFLoss` for them.

    ``reduction``, ``gamma`` and ``alpha`` may be reassigned at any time and are validated on
    assignment. Shapes: ``pred`` and ``true`` of the same shape; per-class alpha along the last dim.
    """

    _kind = "focal"

    def __init__(self, loss_fcn: nn.Module, gamma: float = 1.5, alpha: AlphaLike = 0.25):
        super().__init__(loss_fcn, gamma, alpha)


class QFocalLoss(_FocalFamily):
    """Quality focal loss around ``nn.BCEWithLogitsLoss``: ``alpha_t * |t - p| ** gamma * BCE``.

    Drop-in for YOLOv5's ``QFocalLoss(loss_fcn, gamma=1.5, alpha=0.25)`` (which keeps ``alpha_t``,
    unlike the GFL paper; pass ``alpha=None`` for the paper's form). Minimised at ``p = t`` for soft
    targets such as YOLOv5's IoU objectness target.
    """

    _kind = "qfocal"

    def __init__(self, loss_fcn: nn.Module, gamma: float = 1.5, alpha: AlphaLike = 0.25):
        super().__init__(loss_fcn, gamma, alpha)


class VFLoss(_FocalFamily):
    """Varifocal loss around ``nn.BCEWithLogitsLoss``: ``BCE * (q if q > 0 else alpha * p ** gamma)``.

    VarifocalNet's definition (``iou_weighted=True``): positives (target ``q > 0``, typically the IoU)
    are weighted by ``q``, negatives (``q <= 0``) by ``alpha * p ** gamma``; ``alpha`` (0.75) weighs the
    negatives. The wrapped loss's reduction is applied to the weighted elements (the widely copied
    snippet that leaves the inner reduction at 'mean' multiplies a weight onto a reduced scalar).
    """

    _kind = "varifocal"

    def __init__(self, loss_fcn: nn.Module, gamma: float = 2.0, alpha: AlphaLike = 0.75):
        super().__init__(loss_fcn, gamma, alpha)
