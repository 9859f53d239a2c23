"""Build YOLOv5's cls/obj criteria from the ``fl_*`` hyp keys. Pure torch (no yolov5 import).

YOLOv5 calls its criteria as ``BCEcls(pcls, t)`` (rows = positive anchors, columns = classes,
``t`` the label-smoothed one-hot) and ``BCEobj(pi[..., 4], tobj)`` (every grid cell of a level,
``tobj`` the detached IoU at positive cells, 0 elsewhere). Everything here keeps that call shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Type, TypeVar

import torch
import torch.nn as nn

from ..hyp import PLAIN_BCE, FocalHyp, check_alpha_classes

__all__ = ["EpochClock", "PositivesNormalized", "GammaWarmup", "Criteria", "build_criteria", "auto_alpha",
           "innermost", "find_wrapper", "IgnoreMasked"]

W = TypeVar("W", bound=nn.Module)


@dataclass
class EpochClock:
    """The current (0-based) training epoch, advanced by a yolov5 ``on_train_epoch_end`` callback."""

    epoch: int = 0


class PositivesNormalized(nn.Module):
    """RetinaNet normalisation: ``sum(loss) / max(1, number of positives)``.

    ``branch='obj'`` counts target cells > 0 (YOLOv5's objectness target is the IoU at positive
    cells); ``branch='cls'`` counts rows, since YOLOv5 only computes the class loss on positives.
    """

    def __init__(self, criterion: nn.Module, branch: str) -> None:
        super().__init__()
        if branch not in ("obj", "cls"):
            raise ValueError(f"branch must be 'obj' or 'cls', got {branch!r}")
        self.criterion = criterion
        self.branch = branch
        criterion.reduction = "sum"

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        loss = self.criterion(pred, true)
        count = (true > 0).sum() if self.branch == "obj" else torch.tensor(true.shape[0] if true.dim() > 1 else true.numel())
        return loss / count.clamp(min=1).to(loss.dtype)

    def extra_repr(self) -> str:
        return f"branch={self.branch!r}, normaliser='max(1, #positives)'"


class GammaWarmup(nn.Module):
    """Ramps ``criterion.gamma`` linearly from 0 to ``gamma`` over ``warmup`` epochs ("soft gamma").

    gamma(epoch) = gamma * min(1, (epoch + 1) / warmup); epoch 0 already trains with a small gamma.
    """

    def __init__(self, criterion: nn.Module, gamma: float, warmup: float, clock: EpochClock) -> None:
        super().__init__()
        self.criterion = criterion
        self.target_gamma = float(gamma)
        self.warmup = float(warmup)
        self.clock = clock

    def current_gamma(self) -> float:
        return self.target_gamma * min(1.0, (self.clock.epoch + 1) / self.warmup)

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        innermost(self.criterion).gamma = self.current_gamma()
        return self.criterion(pred, true)

    def extra_repr(self) -> str:
        return f"gamma 0 -> {self.target_gamma:g} over {self.warmup:g} epochs"


def _chain(criterion: nn.Module):
    """The criterion and every one it wraps, outermost first (the plugin's wrappers hold ``.criterion``)."""
    while True:
        yield criterion
        if not hasattr(criterion, "criterion"):
            return
        criterion = criterion.criterion


def innermost(criterion: nn.Module) -> nn.Module:
    """The loss under the plugin's wrappers (GammaWarmup, PositivesNormalized, IgnoreMasked)."""
    for criterion in _chain(criterion):
        pass
    return criterion


def find_wrapper(criterion: nn.Module, kind: Type[W]) -> W:
    """The first wrapper of type ``kind`` in ``criterion``'s chain; ``LookupError`` if there is none."""
    for link in _chain(criterion):
        if isinstance(link, kind):
            return link
    raise LookupError(f"no {kind.__name__} in {criterion!r}")


class IgnoreMasked(nn.Module):
    """Objectness criterion that leaves the matcher's ignored cells out of the loss.

    :class:`RetinaTargets` hands it the ignored cells once per batch (:meth:`set_masks`), one bool
    tensor per level in the order YOLOv5 calls the criterion (level 0, 1, 2); each call takes the
    next one. A call with no mask left is an error, never "ignore nothing": it would mean the
    targets did not come from the matcher. ``norm='mean'`` averages over the cells kept;
    ``norm='positives'`` sums them and divides by ``max(1, #cells with target > 0)``.
    """

    def __init__(self, criterion: nn.Module, norm: str = "mean") -> None:
        super().__init__()
        self.criterion = criterion
        self.norm = norm
        self.masks: List[torch.Tensor] = []
        innermost(criterion).reduction = "none"

    def set_masks(self, masks: List[torch.Tensor]) -> None:
        """The ignored cells of one batch, one ``[bs, na, ny, nx]`` bool tensor per level."""
        self.masks = list(masks)

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        if not self.masks:
            raise RuntimeError("IgnoreMasked: no ignore mask for this level; fl_assigner: retina needs "
                               "RetinaTargets (ComputeLoss.build_targets) to run before the objectness loss")
        ignored = self.masks.pop(0)
        if ignored.shape != true.shape:
            raise RuntimeError(f"IgnoreMasked: mask of shape {tuple(ignored.shape)} for a target of shape {tuple(true.shape)}")
        loss = self.criterion(pred, true)
        keep = ~ignored
        if self.norm == "positives":
            return loss[keep].sum() / ((true > 0) & keep).sum().clamp(min=1).to(loss.dtype)
        return loss[keep].mean() if keep.any() else loss.sum() * 0.0

    def extra_repr(self) -> str:
        return f"ignored cells excluded, norm={self.norm!r}"


def auto_alpha(class_weights: Optional[torch.Tensor], nc: int) -> Optional[torch.Tensor]:
    """Per-class alpha from label frequencies: ``alpha_c = clip(1 - f_c, 0.05, 0.95)``.

    ``f_c`` is class c's share of all labels. In the class branch, column c has positives at a
    rate f_c and negatives at 1 - f_c, so ``alpha_c = 1 - f_c`` makes positives and negatives of
    every class carry equal total weight (before focal modulation). ``class_weights`` is what
    ``yolov5.train`` attaches to the model: ``nc * (1/n_c) / sum_k (1/n_k)``.
    """
    if class_weights is None or class_weights.numel() != nc:
        return None
    inverse = 1.0 / class_weights.double().clamp(min=1e-12)  # proportional to n_c
    freq = inverse / inverse.sum()
    return (1.0 - freq).clamp(0.05, 0.95).float()


@dataclass
class Criteria:
    cls: nn.Module
    obj: nn.Module
    lines: List[str] = field(default_factory=list)

    def describe(self) -> str:
        return "; ".join(self.lines)


def _alpha_kwargs(cfg: FocalHyp, branch: str, nc: int, class_weights: Optional[torch.Tensor], device: Any) -> dict:
    if not cfg.alpha_given:
        return {}
    alpha = cfg.alpha
    if alpha is None:
        return {"alpha": None}
    if isinstance(alpha, float):
        return {"alpha": alpha}
    # per-class alpha has no meaning for the single objectness channel: that branch keeps the loss default
    if branch == "obj":
        return {}
    if alpha == "auto":  # parse_focal_hyp has refused it with varifocal
        derived = auto_alpha(class_weights, nc)
        if derived is None:
            return {}
        return {"alpha": derived.to(device)}
    values: Sequence[float] = alpha  # type: ignore[assignment]
    check_alpha_classes(values, nc)  # parse_focal_hyp checks it too when it knows nc; build_criteria may be called without
    return {"alpha": torch.tensor(values, dtype=torch.float32, device=device)}


def _branch(
    name: str,
    bce: nn.BCEWithLogitsLoss,
    cfg: FocalHyp,
    nc: int,
    class_weights: Optional[torch.Tensor],
    device: Any,
    clock: EpochClock,
) -> nn.Module:
    wrapped = cfg.wraps_cls if name == "cls" else cfg.wraps_obj
    if not wrapped:
        if name == "obj" and cfg.assigner == "retina":
            return IgnoreMasked(bce, "mean")
        return bce
    if cfg.loss == PLAIN_BCE:
        criterion: nn.Module = bce
    else:
        from ..registry import get_loss

        criterion = get_loss(cfg.loss)(bce, gamma=cfg.gamma, **_alpha_kwargs(cfg, name, nc, class_weights, device))
    if name == "obj" and cfg.assigner == "retina":
        criterion = IgnoreMasked(criterion, cfg.norm)  # normalises itself, over the cells it keeps
    elif cfg.norm == "positives":
        criterion = PositivesNormalized(criterion, name)
    if cfg.gamma_warmup > 0 and cfg.loss != PLAIN_BCE:
        criterion = GammaWarmup(criterion, cfg.gamma, cfg.gamma_warmup, clock)
    return criterion


def build_criteria(
    cfg: FocalHyp,
    cls_pw: float,
    obj_pw: float,
    nc: int,
    device: Any,
    class_weights: Optional[torch.Tensor] = None,
    clock: Optional[EpochClock] = None,
) -> Criteria:
    """The cls and obj criteria for ``cfg``; fresh ``BCEWithLogitsLoss(pos_weight=...)`` as YOLOv5 builds them."""
    clock = clock or EpochClock()
    bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([cls_pw], device=device))
    bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([obj_pw], device=device))
    cls = _branch("cls", bce_cls, cfg, nc, class_weights, device, clock)
    obj = _branch("obj", bce_obj, cfg, nc, class_weights, device, clock)
    lines = [f"cls: {_one_line(cls)}", f"obj: {_one_line(obj)}"]
    if nc == 1:
        lines.append("(single class: YOLOv5 computes no class loss)")
    return Criteria(cls=cls, obj=obj, lines=lines)


def _one_line(module: nn.Module) -> str:
    text = repr(module)
    return " ".join(part.strip() for part in text.splitlines())
