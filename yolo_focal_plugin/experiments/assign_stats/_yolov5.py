"""A YOLOv5 model's anchors, and YOLOv5's target assignment re-implemented without the model.

Mirrors three pieces of YOLOv5 7.0 (the ``yolov5`` pip package 7.0.x, ``yolov5/utils/``):

* :func:`yolov5_assign` is ``loss.py``'s ``ComputeLoss.build_targets``: the same tensor
  operations in the same order, with one extra column that carries each row's GT index (the
  real one keeps only the image and class). ``tests/test_assign_stats.py::
  test_equals_real_yolov5_build_targets`` runs the real ``build_targets`` on 300 random boxes
  (borders, exact half-cell offsets and a zero-width box among them) and checks that image,
  anchor, grid row/column and GT index are equal, row for row, at every level; the test puts
  the GT index in the class column to trace it. Two hand-computed cases pin the rule itself.
* :func:`best_possible_recall` is ``autoanchor.py``'s ``check_anchors`` metric, without its
  random 0.9-1.1 rescaling of the labels.
* :func:`load_model_anchors` reads ``anchors`` from a model YAML as ``yolo.py``'s ``Model``
  does, with strides ``8 * 2^l`` (P3/8, P4/16, P5/32, P6/64): the strides every bundled
  detection model has.

Pure torch and PyYAML: yolov5 is only located on disk (for its bundled model YAMLs), never
imported.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml

DEFAULT_ANCHOR_T = 4.0  # yolov5 hyp.scratch-*.yaml

AnchorsPx = List[List[Tuple[float, float]]]
"""``[[(w, h) x na] x nl]``: anchor sizes in canvas pixels, per level."""


def _find_model_yaml(model_cfg: Union[str, Path]) -> Path:
    """``model_cfg`` as a file, else that name among the model YAMLs bundled with yolov5."""
    p = Path(model_cfg)
    if p.is_file():
        return p
    name = p.name if p.suffix else f"{p.name}.yaml"
    try:
        spec = importlib.util.find_spec("yolov5")  # locates the package without importing it
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        for sub in ("models", "models/hub", "models/segment"):
            cand = Path(root) / sub / name
            if cand.is_file():
                return cand
    # ValueError: the CLI turns it into a one-line message
    raise ValueError(f"model config {model_cfg!r} not found (not a file, not in yolov5's models/)")


def load_model_anchors(model_cfg: Union[str, Path]) -> Tuple[AnchorsPx, List[int], Path]:
    """Anchors ``[[(w, h) x na] x nl]`` in pixels, strides ``8 * 2^l`` and the YAML's path.

    ``model_cfg`` is a path, or the name of a model YAML bundled with yolov5 (``yolov5n.yaml`` or
    ``yolov5n``; ``models/``, ``models/hub/``, ``models/segment/``). ``ValueError`` when it is not
    found, or its anchors are not explicit ``w, h`` pairs, the same number on every level.
    """
    path = _find_model_yaml(model_cfg)
    with open(path) as f:
        cfg = yaml.safe_load(f)
    anchors = cfg.get("anchors") if isinstance(cfg, dict) else None
    if not isinstance(anchors, list) or not anchors:
        raise ValueError(f"{path}: needs explicit 'anchors' (a list per level); got {anchors!r} "
                         "(an int means AutoAnchor computes them at training time)")
    levels = []
    for lvl in anchors:
        if len(lvl) % 2:
            raise ValueError(f"{path}: anchors per level must be w,h pairs, got {lvl!r}")
        levels.append([(float(lvl[i]), float(lvl[i + 1])) for i in range(0, len(lvl), 2)])
    if len({len(lvl) for lvl in levels}) != 1:
        raise ValueError(f"{path}: every level needs the same number of anchors, got {[len(v) for v in levels]}")
    strides = [8 * 2 ** i for i in range(len(levels))]  # P3/8, P4/16, P5/32 (, P6/64)
    return levels, strides, path


@dataclass
class YoloAssignment:
    """Rows of ``build_targets`` output, all ``[K]``: GT index, level, anchor, grid row/col, image."""

    gt: torch.Tensor  # row of ``targets`` this entry came from (yolov5 keeps only image and class)
    level: torch.Tensor
    anchor: torch.Tensor
    gj: torch.Tensor
    gi: torch.Tensor
    image: torch.Tensor


def yolov5_assign(
    targets: torch.Tensor,
    grid_shapes: Sequence[Tuple[int, int]],
    anchors_grid: Sequence[torch.Tensor],
    anchor_t: float,
) -> YoloAssignment:
    """YOLOv5 7.0 ``ComputeLoss.build_targets`` without the model, keeping the GT index.

    ``targets [n, 6]``: ``image, cls, xc, yc, w, h`` normalised to the input canvas.
    ``grid_shapes[l] = (ny, nx)``; ``anchors_grid[l] [na, 2]``: anchors in grid units
    (pixels / stride, float32 like ``Detect.anchors``). The operations are yolov5's, in yolov5's
    order, so the rows equal ``indices`` of the real one, level by level (see the module doc for
    the test that checks it); ``gt`` equals the row's index into ``targets``.

    The rule: GT ``n`` goes to anchor ``k`` of level ``l`` if ``max(r, 1/r) < anchor_t`` for both
    ``r = w / w_k`` and ``r = h / h_k``; each match takes its own cell plus the (up to) two
    neighbour cells whose border is within half a cell of the centre, if the centre is more than
    one cell from that edge of the grid.
    A box of zero width or height gets no row. Rows that share a slot are kept, as in yolov5.
    """
    na, nt = anchors_grid[0].shape[0], targets.shape[0]
    out = {k: [] for k in ("gt", "level", "anchor", "gj", "gi", "image")}
    gain = torch.ones(8)  # yolov5: 7 columns (image, cls, xywh, anchor); the 8th is the GT index
    ai = torch.arange(na).float().view(na, 1).repeat(1, nt)
    gid = torch.arange(nt).float().view(1, nt).repeat(na, 1)
    t_all = torch.cat((targets.float().repeat(na, 1, 1), ai[..., None], gid[..., None]), 2)
    g = 0.5
    off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]]).float() * g
    for i, ((ny, nx), anchors) in enumerate(zip(grid_shapes, anchors_grid)):
        gain[2:6] = torch.tensor([nx, ny, nx, ny], dtype=torch.float32)
        t = t_all * gain
        if nt:
            r = t[..., 4:6] / anchors[:, None]
            j = torch.max(r, 1 / r).max(2)[0] < anchor_t
            t = t[j]
            gxy = t[:, 2:4]
            gxi = gain[[2, 3]] - gxy
            j, k = ((gxy % 1 < g) & (gxy > 1)).T
            l, m = ((gxi % 1 < g) & (gxi > 1)).T
            j = torch.stack((torch.ones_like(j), j, k, l, m))
            t = t.repeat((5, 1, 1))[j]
            offsets = (torch.zeros_like(gxy)[None] + off[:, None])[j]
        else:
            t = t_all[0]
            offsets = 0
        b = t[:, 0].long()
        gxy = t[:, 2:4]
        a = t[:, 6].long()
        gij = (gxy - offsets).long()
        gi, gj = gij.T
        out["gt"].append(t[:, 7].long())
        out["level"].append(torch.full_like(a, i))
        out["anchor"].append(a)
        out["gj"].append(gj.clamp(0, ny - 1))
        out["gi"].append(gi.clamp(0, nx - 1))
        out["image"].append(b)
    return YoloAssignment(**{k: torch.cat(v) for k, v in out.items()})


def best_possible_recall(wh: np.ndarray, anchor_wh: AnchorsPx, thr: float) -> Optional[float]:
    """YOLOv5 AutoAnchor's best possible recall of boxes ``wh [n, 2]`` (canvas pixels) for the anchors.

    The share of boxes for which some anchor is within ``thr`` (``anchor_t``) in both width and
    height ratio, as ``check_anchors`` computes it but without its random 0.9-1.1 rescaling.
    Boxes of zero width or height are left out; ``None`` when none is left. ``yolov5 train``
    fits new anchors when this is <= 0.98.
    """
    ok = (wh > 0).all(1)
    if not ok.any():
        return None
    w = torch.from_numpy(wh[ok]).float()
    k = torch.tensor([a for lvl in anchor_wh for a in lvl], dtype=torch.float32)
    r = w[:, None] / k[None]
    best = torch.min(r, 1 / r).min(2)[0].max(1)[0]
    return float((best > 1 / thr).float().mean())
