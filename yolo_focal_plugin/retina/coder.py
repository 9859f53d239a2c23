"""RetinaNet box coder (R-CNN ``dx, dy, dw, dh`` deltas) and smooth L1 loss (pure torch).

With anchor ``a`` (centre ``xa, ya``, size ``wa, ha``), box ``g`` and weights ``(wx, wy, ww, wh)``::

    dx = wx * (xg - xa) / wa        dy = wy * (yg - ya) / ha
    dw = ww * log(wg / wa)          dh = wh * log(hg / ha)

``decode`` inverts it, clamping ``dw / ww`` and ``dh / wh`` at ``clamp`` (default
``log(1000 / 16) = 4.135``, torchvision's ``bbox_xform_clip`` and detectron2's ``scale_clamp``) so
that ``exp`` cannot overflow: a decoded box is at most ``1000 / 16 = 62.5`` times its anchor.
The round trip ``decode(encode(g, a), a) == g`` holds to float precision (1e-3 px is tested)
whenever ``|log(wg / wa)|`` and ``|log(hg / ha)|`` are within ``clamp``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

DEFAULT_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encode boxes as deltas relative to anchors, and decode them back.

    Args:
        weights: ``(wx, wy, ww, wh)``; RetinaNet uses ``(1, 1, 1, 1)``.
        clamp: upper bound on the decoded ``dw / ww`` and ``dh / wh`` (see module docstring).
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), clamp: float = DEFAULT_CLAMP) -> None:
        if len(weights) != 4 or any(not (float(w) > 0 and math.isfinite(float(w))) for w in weights):
            raise ValueError(f"weights must be 4 positive finite numbers, got {tuple(weights)!r}")
        if not clamp > 0:
            raise ValueError(f"clamp must be > 0, got {clamp!r}")
        self.weights = tuple(float(w) for w in weights)
        self.clamp = float(clamp)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, clamp={self.clamp:.4f})"

    @staticmethod
    def _cxcywh(boxes: Tensor):
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h

    def encode(self, gt_boxes: Tensor, anchors: Tensor) -> Tensor:
        """Deltas ``[..., 4]`` of ``gt_boxes [..., 4]`` relative to ``anchors [..., 4]`` (both xyxy).

        Boxes and anchors must have positive width and height (``log`` of the size ratio).
        """
        if gt_boxes.shape[-1] != 4 or anchors.shape[-1] != 4:
            raise ValueError(f"expected [..., 4] boxes, got {tuple(gt_boxes.shape)} and {tuple(anchors.shape)}")
        wx, wy, ww, wh = self.weights
        gx, gy, gw, gh = self._cxcywh(gt_boxes)
        ax, ay, aw, ah = self._cxcywh(anchors)
        return torch.stack(
            [wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * torch.log(gw / aw), wh * torch.log(gh / ah)], dim=-1
        )

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """Boxes ``[..., 4]`` xyxy from ``deltas [..., 4]`` relative to ``anchors [..., 4]``."""
        if deltas.shape[-1] != 4 or anchors.shape[-1] != 4:
            raise ValueError(f"expected [..., 4] tensors, got {tuple(deltas.shape)} and {tuple(anchors.shape)}")
        wx, wy, ww, wh = self.weights
        ax, ay, aw, ah = self._cxcywh(anchors.to(deltas.dtype))
        dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.clamp)
        dh = (deltas[..., 3] / wh).clamp(max=self.clamp)
        cx, cy = dx * aw + ax, dy * ah + ay
        w, h = torch.exp(dw) * aw, torch.exp(dh) * ah
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def smooth_l1_loss(input: Tensor, target: Tensor, beta: float = 1.0 / 9.0, reduction: str = "sum") -> Tensor:
    """Smooth L1 (Huber / beta) loss, elementwise ``x = |input - target|``::

        loss = 0.5 * x^2 / beta    if x < beta
               x - 0.5 * beta      otherwise

    ``beta=0`` is plain L1 (detectron2's RetinaNet default); ``1/9`` is torchvision's and the
    default here. ``reduction``: ``"none"``, ``"sum"`` (RetinaNet divides the sum by the number
    of positives itself) or ``"mean"``.
    """
    if not (beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    x = torch.abs(input - target)
    if beta < 1e-5:
        # 0.5 x^2 / beta would be 0/0 at x = 0.
        loss = x
    else:
        loss = torch.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    return loss
