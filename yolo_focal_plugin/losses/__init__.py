"""Focal-loss family for dense detection, in pure torch (this package never imports yolov5).

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

Numerics (the reason this package exists):

* Finite loss and gradient at every logit for ``0 <= gamma <= 1e6`` (``hyp.FL_GAMMA_MAX``, the bound
  ``fl_gamma`` is held to; ``tests/test_hyp.py`` checks the kernels there), computed in float32 or
  float64. (A float16 *result* can still overflow where BCE's own does: a ``'sum'`` above 65504.)
  Beyond that bound, in float32: focal, varifocal and softmax focal stay finite up to the float32
  maximum (~3.4e38; the sigmoid losses then raise converting gamma); quality focal can overflow from
  ~1e25 on soft targets within rounding of ``p`` (``gamma * H * BCE`` below exceeds float32, ``H``
  being ``p q / |t - p|``). float64 has far more room (finite at 1e300 in our checks).
  For ``0 < gamma < 1`` the textbook autograd graph multiplies ``d(u**gamma)/du = inf`` at
  ``u = 1 - p_t = 0`` (saturated logits, ``|x| >~ 17`` in float32) by zero and returns NaN;
  torchvision and YOLOv5 do. Here ``q`` is ``sigmoid(-x)``, never ``1 - p``, and the gradient is
  written out analytically as ``W * (dBCE/dx + gamma * H * BCE)``, with ``W`` the focal weight and
  ``H = W' / (gamma W)`` bounded for focal and varifocal (see ``_kernel._focal_weight``).
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

Layout (private modules, dependencies pointing down the list):

* ``_checks``     argument validation (gamma, reduction, alpha)
* ``_dtypes``     compute and return dtypes
* ``_chunks``     chunk sizes (:func:`set_chunk_size`) and the chunk thread pool
* ``_kernel``     per-chunk math: BCE, focal weight, analytic gradient
* ``_fused``      the fused autograd.Function that drives the kernel over chunks
* ``_composite``  the same losses as plain autograd, for gradients beyond the logits
* ``_functional`` :func:`sigmoid_focal_loss`, :func:`quality_focal_loss`, :func:`varifocal_loss`
* ``_softmax``    :func:`softmax_focal_loss`
* ``_modules``    :class:`FocalLoss`, :class:`QFocalLoss`, :class:`VFLoss`
"""
from __future__ import annotations

from typing import Any

# The private names below were module-level in the old single-file losses.py; benchmarks, tests and
# other code could reach into it, so they stay reachable here. New code should import from the private module.
from . import _chunks
from ._checks import REDUCTIONS, AlphaLike, _alpha_repr, _alpha_tensor, _check_alpha, _check_gamma, _check_reduction
from ._chunks import _map_chunks, _workers, set_chunk_size
from ._composite import _composite
from ._dtypes import _out_dtype
from ._functional import _sigmoid_family, quality_focal_loss, sigmoid_focal_loss, varifocal_loss
from ._fused import _fused_forward, _FusedSigmoidLoss
from ._kernel import _Spec
from ._modules import FocalLoss, QFocalLoss, VFLoss, _FocalFamily
from ._softmax import softmax_focal_loss

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

# Tunables that set_chunk_size (or a test) rebinds in _chunks: read them live, never as a copy made
# at import. To change one, call set_chunk_size or patch ``yolo_focal_plugin.losses._chunks``.
_LIVE_FROM_CHUNKS = ("_CPU_CHUNK", "_ACCEL_CHUNK", "_MAX_WORKERS", "_INLINE_ELEMENTS")


def __getattr__(name: str) -> Any:
    """Module attribute fallback (PEP 562): the current value of a chunk tunable."""
    if name in _LIVE_FROM_CHUNKS:
        return getattr(_chunks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
