"""Counting what each assigner does with a batch of boxes, and the per-assigner summary.

One :class:`AssignerCounts` per assigner collects, batch by batch, the positives of every GT and
the positive / ignored anchor slots (:func:`count_yolov5_batch`, :func:`count_iou_batch`);
:func:`summarise` turns it into the JSON the reports are written from. Boxes are ``[n, 4]`` xyxy
canvas pixels, the images of a batch one after another (``counts[b]`` boxes for image ``b``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
import torch

from ...retina import RetinaMatcher, positives_per_gt
from ._yolov5 import yolov5_assign

ASSIGNERS = ("yolov5", "retina", "retina_yolo_anchors")
SIZES = ("small", "medium", "large")
DESCRIPTIONS = {
    "yolov5": "YOLOv5 build_targets (wh ratio < anchor_t, own cell + 2 neighbour cells)",
    "retina": "IoU matcher on RetinaNet P3-P7 anchors",
    "retina_yolo_anchors": "IoU matcher on YOLOv5 anchors at cell centres (fl_assigner: retina)",
}


def size_bucket(boxes: np.ndarray) -> np.ndarray:
    """0 small (area < 32^2), 1 medium (< 96^2), 2 large: COCO's rule on canvas pixels."""
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    return np.where(area < 32 ** 2, 0, np.where(area < 96 ** 2, 1, 2))


@dataclass
class AssignerCounts:
    """What one assigner did so far: positives of each GT (one array per batch) and slot counts."""

    per_gt: List[np.ndarray] = field(default_factory=list)
    slots: int = 0
    pos: int = 0
    ign: int = 0
    ign_by_size: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    shared_pos: int = 0  # yolov5 only: positive slots claimed by more than one GT


def summarise(acc: AssignerCounts, buckets: np.ndarray, name: str) -> dict:
    """The JSON summary of assigner ``name``: positives per GT (mean, median, histogram), slots
    positive / negative / ignored, and the same per size. ``buckets [n]`` is :func:`size_bucket`
    of all GTs in the order they were counted. Means and shares are ``None`` where there are no GTs.
    """
    per_gt = np.concatenate(acc.per_gt) if acc.per_gt else np.zeros(0, np.int64)
    n = len(per_gt)
    neg = acc.slots - acc.pos - acc.ign
    hist = np.bincount(per_gt, minlength=1) if n else np.zeros(1, np.int64)

    def stats(sel: np.ndarray) -> dict:
        k = per_gt[sel]
        return {
            "gts": int(sel.sum()),
            "positives_per_gt_mean": float(k.mean()) if len(k) else None,
            "positives_per_gt_median": float(np.median(k)) if len(k) else None,
            "gts_without_positive": int((k == 0).sum()),
            "share_without_positive": float((k == 0).mean()) if len(k) else None,
            "positives": int(k.sum()),
            "histogram": np.bincount(k, minlength=1).tolist() if len(k) else [0],
        }

    out = {"description": DESCRIPTIONS[name], **stats(np.ones(n, bool))}
    out["anchors"] = {
        "slots": acc.slots, "positive": acc.pos, "negative": neg, "ignored": acc.ign,
        "negatives_per_positive": neg / acc.pos if acc.pos else None,
        "ignored_per_positive": acc.ign / acc.pos if acc.pos else None,
        "share_positive": acc.pos / acc.slots if acc.slots else None,
        "ratio": f"1 : {neg / acc.pos:.1f} : {acc.ign / acc.pos:.2f}" if acc.pos else "no positives",
    }
    out["histogram"] = hist.tolist()
    out["by_size"] = {}
    for s, size in enumerate(SIZES):
        st = stats(buckets == s)
        st["ignored_attributed"] = int(acc.ign_by_size[s])
        out["by_size"][size] = st
    if name == "yolov5":
        out["anchors"]["positive_slots_shared_by_several_gts"] = acc.shared_pos
        out["anchors"]["assignments"] = int(per_gt.sum())
    return out


def count_yolov5_batch(
    acc: AssignerCounts,
    flat: np.ndarray,
    counts: Sequence[int],
    img: int,
    grid_shapes: Sequence[Tuple[int, int]],
    anchors_grid: Sequence[torch.Tensor],
    anchor_t: float,
    yolo_slots: int,
) -> None:
    """Add one batch under YOLOv5's assignment (``img x img`` canvas, ``yolo_slots`` per image).

    A slot is positive once however many GTs claim it; every other slot is a negative.
    """
    n = len(flat)
    image = np.repeat(np.arange(len(counts)), counts)
    xywh = np.stack([(flat[:, 0] + flat[:, 2]) / 2, (flat[:, 1] + flat[:, 3]) / 2,
                     flat[:, 2] - flat[:, 0], flat[:, 3] - flat[:, 1]], 1) / img
    targets = torch.from_numpy(np.concatenate([image[:, None], np.zeros((n, 1)), xywh], 1).astype(np.float32))
    res = yolov5_assign(targets, grid_shapes, anchors_grid, anchor_t)
    acc.per_gt.append(np.bincount(res.gt.numpy(), minlength=n)[:n])
    acc.slots += yolo_slots * len(counts)
    if res.gt.numel():
        key = torch.stack([res.image, res.level, res.anchor, res.gj, res.gi], 1)
        _, cnt = torch.unique(key, dim=0, return_counts=True)
        acc.pos += int(cnt.numel())
        acc.shared_pos += int((cnt > 1).sum())


def count_iou_batch(
    acc: AssignerCounts,
    matcher: RetinaMatcher,
    anchors: torch.Tensor,
    flat: np.ndarray,
    counts: Sequence[int],
    buckets: np.ndarray,
) -> None:
    """Add one batch under the IoU matcher on ``anchors [A, 4]`` (xyxy canvas pixels).

    ``buckets [n]`` are the size buckets of ``flat``: each ignored slot is attributed to the size
    of the GT it overlaps best.
    """
    parts = np.split(flat, np.cumsum(counts)[:-1]) if counts else []
    gts = [torch.from_numpy(p.astype(np.float32)).reshape(-1, 4) for p in parts]
    matches, labels = matcher.match_batch(anchors, gts)
    pos_counts = positives_per_gt(matches, labels, counts)
    acc.per_gt.append(torch.cat(pos_counts).numpy() if pos_counts else np.zeros(0, np.int64))
    acc.slots += int(labels.numel())
    acc.pos += int((labels == 1).sum())
    ign = labels == -1
    acc.ign += int(ign.sum())
    start = 0
    for b, c in enumerate(counts):
        m = matches[b][ign[b]].numpy()
        if len(m):
            acc.ign_by_size += np.bincount(buckets[start:start + c][m], minlength=3)
        start += c
