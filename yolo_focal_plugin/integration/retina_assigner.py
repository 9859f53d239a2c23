"""``fl_assigner: retina``: YOLOv5 targets from RetinaNet IoU matching, for comparison runs.

YOLOv5 assigns a ground truth (GT) to an anchor shape when their width/height ratios are within
``anchor_t`` and to the GT's cell plus two neighbour cells. Here instead every YOLOv5 anchor box
placed at its grid cell (centre ``((gi + 0.5) * stride, (gj + 0.5) * stride)``, size
``anchors[a] * stride``) is matched by IoU with :class:`~yolo_focal_plugin.retina.RetinaMatcher`:
IoU >= 0.5 positive, < 0.4 negative, in between ignored (left out of the objectness loss), every
GT guaranteed at least one anchor. Positives feed YOLOv5's box, objectness and class losses
exactly as its own targets do.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch

from ..retina import RetinaMatcher, grid_anchor_boxes
from .criteria import IgnoreMasked  # re-exported: it was defined here

__all__ = ["IgnoreMasked", "RetinaTargets"]


class RetinaTargets:
    """Replacement for ``ComputeLoss.build_targets`` (bound on one instance, detection only)."""

    def __init__(self, compute_loss: Any, strides: List[float], obj_criterion: IgnoreMasked,
                 matcher: Optional[RetinaMatcher] = None) -> None:
        self.loss = compute_loss
        self.strides = [float(s) for s in strides]
        self.obj_criterion = obj_criterion
        # Augmentation can leave zero-area boxes in a batch; YOLOv5 itself trains through them.
        self.matcher = matcher or RetinaMatcher(drop_degenerate=True, candidate_search="grid")
        self._cache: Optional[Tuple[Tuple[Tuple[int, int], ...], torch.Tensor, List[int]]] = None

    def _anchor_boxes(self, shapes: Tuple[Tuple[int, int], ...]) -> Tuple[torch.Tensor, List[int]]:
        """YOLOv5's anchor boxes at every cell, rows in ``p[l][b, a, gj, gi]`` order, and level offsets."""
        if self._cache is None or self._cache[0] != shapes:
            ny, nx = shapes[0]
            height, width = ny * self.strides[0], nx * self.strides[0]
            anchors_px = [(level.float().cpu() * s).tolist() for level, s in zip(self.loss.anchors, self.strides)]
            boxes = grid_anchor_boxes(height, width, anchors_px, self.strides)
            sizes = [self.loss.na * h * w for h, w in shapes]
            offsets = [sum(sizes[:i]) for i in range(len(sizes))]
            self._cache = (shapes, boxes, offsets)
        return self._cache[1], self._cache[2]

    def __call__(self, p: List[torch.Tensor], targets: torch.Tensor):
        """Same outputs as YOLOv5's ``build_targets``: tcls, tbox, indices, anch (one entry per level)."""
        loss, device = self.loss, self.loss.device
        bs = p[0].shape[0]
        shapes = tuple((int(pi.shape[2]), int(pi.shape[3])) for pi in p)
        anchor_boxes, offsets = self._anchor_boxes(shapes)
        img_h, img_w = shapes[0][0] * self.strides[0], shapes[0][1] * self.strides[0]

        t = targets.detach().float().cpu()
        xyxy = torch.empty(t.shape[0], 4)
        xyxy[:, 0] = (t[:, 2] - t[:, 4] / 2) * img_w
        xyxy[:, 1] = (t[:, 3] - t[:, 5] / 2) * img_h
        xyxy[:, 2] = (t[:, 2] + t[:, 4] / 2) * img_w
        xyxy[:, 3] = (t[:, 3] + t[:, 5] / 2) * img_h
        rows_per_image = [torch.nonzero(t[:, 0] == b).flatten() for b in range(bs)]
        matches, labels = self.matcher.match_batch(anchor_boxes, [xyxy[r] for r in rows_per_image])
        # row_table[b, m]: the row of `targets` holding image b's m-th GT
        row_table = torch.zeros(bs, max([len(r) for r in rows_per_image] + [1]), dtype=torch.long)
        for b, rows in enumerate(rows_per_image):
            row_table[b, : len(rows)] = rows

        tcls, tbox, indices, anch, masks = [], [], [], [], []
        na = loss.na
        for i, (ny, nx) in enumerate(shapes):
            start, count = offsets[i], na * ny * nx
            level_labels = labels[:, start:start + count]  # [bs, na*ny*nx]
            level_matches = matches[:, start:start + count]
            masks.append((level_labels == -1).view(bs, na, ny, nx).to(device))
            b, local = torch.nonzero(level_labels == 1, as_tuple=True)
            a, rest = local // (ny * nx), local % (ny * nx)
            gj, gi = rest // nx, rest % nx
            gt = t[row_table[b, level_matches[b, local]]]
            gxy = gt[:, 2:4] * torch.tensor([nx, ny], dtype=torch.float32)
            gwh = gt[:, 4:6] * torch.tensor([nx, ny], dtype=torch.float32)
            gij = torch.stack((gi, gj), dim=1).float()
            indices.append((b.to(device), a.to(device), gj.to(device), gi.to(device)))
            tbox.append(torch.cat((gxy - gij, gwh), 1).to(device))
            anch.append(loss.anchors[i][a.to(loss.anchors.device)])
            tcls.append(gt[:, 1].long().to(device))
        self.obj_criterion.set_masks(masks)
        return tcls, tbox, indices, anch
