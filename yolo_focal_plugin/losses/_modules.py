"""The ``nn.Module`` wrappers, drop-in replacements for YOLOv5's ``utils/loss.py`` ones.

Contract: ``FocalLoss(loss_fcn, gamma, alpha)`` and its siblings wrap a ``BCEWithLogitsLoss``, take
over its ``reduction`` (setting the wrapped one to ``'none'``) and apply it to the *weighted*
elements. ``forward(pred, true)`` returns what the functional form returns for the wrapped loss's
``pos_weight`` and ``weight``; a wrapped loss that is not a plain ``BCEWithLogitsLoss`` (a subclass
with its own ``forward``) is called for the element-wise BCE and the composite path weights it.
``gamma``, ``alpha`` and ``reduction`` are validated on every assignment.
"""
from __future__ import annotations

from typing import Union

from torch import Tensor, nn

from ._checks import AlphaLike, _alpha_repr, _alpha_tensor, _check_alpha, _check_gamma, _check_reduction
from ._composite import _composite
from ._functional import _sigmoid_family


def _is_plain_bce(module: nn.Module) -> bool:
    """True for ``nn.BCEWithLogitsLoss`` itself or a subclass that keeps its ``forward``."""
    return isinstance(module, nn.BCEWithLogitsLoss) and type(module).forward is nn.BCEWithLogitsLoss.forward


class _FocalFamily(nn.Module):
    """Shared machinery of the YOLOv5-style wrappers; see the subclasses for the formulas.

    Raises ``TypeError`` when ``loss_fcn`` is not a module with a ``reduction`` attribute.
    """

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

    Element-wise with ``p = sigmoid(pred)``, ``t = true``, ``p_t = p t + (1 - p)(1 - t)`` and
    ``alpha_t = alpha t + (1 - alpha)(1 - t)``; ``BCE`` is the wrapped loss's element-wise value (its
    ``pos_weight`` and ``weight`` included). Then reduced by the wrapped loss's former ``reduction``.

    Drop-in for YOLOv5's ``FocalLoss(loss_fcn, gamma=1.5, alpha=0.25)``: same constructor, same
    values where YOLOv5's are finite, and finite loss and gradient at every logit for
    ``0 <= gamma <= 1e6`` (``yolo_focal_plugin.hyp.FL_GAMMA_MAX``). ``alpha=-1`` or ``None`` removes
    ``alpha_t``; with ``gamma=0`` the loss is then the wrapped BCE up to rounding (the gradient is
    bit-identical for ``'sum'``/``'none'`` without ``pos_weight``; values may differ in the last bits,
    see ``docs/losses.md``). Soft targets bias the optimum away from ``p = t`` (p = 0.724 for t = 0.6,
    gamma 2): prefer :class:`QFocalLoss` or :class:`VFLoss` for them.

    Shapes: ``pred`` (logits, floating point) and ``true`` (targets in [0, 1]) of the same shape, any
    number of dims; a per-class alpha broadcasts along the last dim. Returns ``pred``'s shape for
    ``'none'``, a scalar otherwise, in ``pred``'s dtype (float32 for half inputs under autocast).
    ``reduction``, ``gamma`` and ``alpha`` may be reassigned at any time and are validated on
    assignment.
    """

    _kind = "focal"

    def __init__(self, loss_fcn: nn.Module, gamma: float = 1.5, alpha: AlphaLike = 0.25):
        super().__init__(loss_fcn, gamma, alpha)


class QFocalLoss(_FocalFamily):
    """Quality focal loss around ``nn.BCEWithLogitsLoss``: ``alpha_t * |t - p| ** gamma * BCE``.

    Element-wise with ``p = sigmoid(pred)``, ``t = true`` and ``alpha_t`` as in :class:`FocalLoss`.
    Drop-in for YOLOv5's ``QFocalLoss(loss_fcn, gamma=1.5, alpha=0.25)`` (which keeps ``alpha_t``,
    unlike the GFL paper; pass ``alpha=None`` for the paper's form). Minimised at ``p = t`` for soft
    targets such as YOLOv5's IoU objectness target.

    Shapes, dtypes, reduction, the finite range of ``gamma`` and the ``gamma=0`` behaviour as in
    :class:`FocalLoss`.
    """

    _kind = "qfocal"

    def __init__(self, loss_fcn: nn.Module, gamma: float = 1.5, alpha: AlphaLike = 0.25):
        super().__init__(loss_fcn, gamma, alpha)


class VFLoss(_FocalFamily):
    """Varifocal loss around ``nn.BCEWithLogitsLoss``: ``BCE * (q if q > 0 else alpha * p ** gamma)``.

    VarifocalNet's definition (``iou_weighted=True``): positives (target ``q > 0``, typically the IoU)
    are weighted by ``q``, negatives (``q <= 0``) by ``alpha * p ** gamma``; ``alpha`` (0.75) weighs the
    negatives (``-1``/``None``: 1). ``p = sigmoid(pred)``, ``q = true``. The wrapped loss's reduction
    is applied to the weighted elements (the widely copied snippet that leaves the inner reduction at
    'mean' multiplies a weight onto a reduced scalar).

    Shapes, dtypes, reduction and the finite range of ``gamma`` as in :class:`FocalLoss`.
    """

    _kind = "varifocal"

    def __init__(self, loss_fcn: nn.Module, gamma: float = 2.0, alpha: AlphaLike = 0.75):
        super().__init__(loss_fcn, gamma, alpha)
