"""Functional forms of the sigmoid losses: focal, quality focal and varifocal.

Contract: each function checks its arguments (``ValueError`` naming the argument; ``TypeError`` for
non-tensors or integer logits), then returns the loss computed by the fused path
(:mod:`._fused`), or by the composite path (:mod:`._composite`) when the targets, ``alpha``,
``pos_weight`` or ``weight`` require grad. Shapes and dtypes are those of
:func:`torch.nn.functional.binary_cross_entropy_with_logits`.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from ._checks import AlphaLike, _alpha_tensor, _check_alpha, _check_gamma, _check_reduction
from ._composite import _composite
from ._fused import _fused_forward, _FusedSigmoidLoss
from ._kernel import _Spec


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
    """The loss ``kind`` (``focal | qfocal | varifocal``) with already checked gamma, alpha, reduction.

    Checks the tensors (same shape, floating-point logits) and picks the path: fused when only the
    logits may need a gradient, composite otherwise.
    """
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
    """Focal loss of RetinaNet (https://arxiv.org/abs/1708.02002), numerically stable.

    ``loss = alpha_t * (1 - p_t) ** gamma * BCE(inputs, targets)`` element-wise, then reduced, with
    ``p = sigmoid(inputs)``, ``p_t = p t + (1 - p)(1 - t)``, ``alpha_t = alpha t + (1 - alpha)(1 - t)``.

    Note the argument order differs from ``torchvision.ops.sigmoid_focal_loss`` (alpha, gamma): pass
    them by keyword when porting code.

    Args:
        inputs: logits, any shape, floating point.
        targets: same shape; 0/1 labels or soft targets in [0, 1] (soft targets bias the optimum of
            this loss away from ``p = t``; use :func:`quality_focal_loss` for them).
        gamma: focusing exponent, finite and >= 0. ``0`` disables the modulating factor. Loss and
            gradient are finite for ``0 <= gamma <= 1e6`` (``yolo_focal_plugin.hyp.FL_GAMMA_MAX``, the
            bound ``fl_gamma`` is held to) at every logit; larger values: see ``docs/losses.md``.
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

    Shapes, dtypes, ``gamma`` (and its finite range), ``alpha``, ``reduction``, ``pos_weight`` and
    ``weight`` as in :func:`sigmoid_focal_loss`.
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

    Shapes, dtypes, ``gamma`` (and its finite range), ``reduction``, ``pos_weight`` and ``weight`` as
    in :func:`sigmoid_focal_loss`.
    """
    return _sigmoid_family("varifocal", inputs, targets, _check_gamma(gamma), _check_alpha(alpha),
                           _check_reduction(reduction), pos_weight, weight)
