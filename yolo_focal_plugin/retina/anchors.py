"""RetinaNet anchors on the P3-P7 feature pyramid (pure torch).

Layout (the torchvision / mmdetection convention, checked against both in the tests):

* levels P3..P7 with strides ``s_l`` = 8, 16, 32, 64, 128 and base sizes ``b_l`` = 32 .. 512;
* per level, ``len(aspect_ratios) * len(scales)`` = 9 *cell anchors* centred on (0, 0).
  For a size ``S = b_l * scale`` and an aspect ratio ``r = h / w``::

      w = S / sqrt(r),   h = S * sqrt(r)        (so sqrt(w * h) == S)
      cell anchor = [-w/2, -h/2, w/2, h/2]

  Sizes run from 32 to 512 * 2^(2/3) = 812.75 px (the "[32, 813]" range of the paper);
  the widest anchor is 1149.40 x 574.70 px, the narrowest side 32 / sqrt(2) = 22.63 px.
* anchor centres of level ``l``: ``((j + offset) * s_l, (i + offset) * s_l)`` for grid row
  ``i < ceil(H / s_l)`` and column ``j < ceil(W / s_l)``. ``offset=0`` (default) puts the first
  centre on the image corner, as torchvision, mmdetection and detectron2's config do.
  ``ceil`` is the feature-map size a stride-2 conv chain with padding produces.
* order of the rows of the returned ``[A, 4]`` tensor: level, then grid row ``i``, then grid
  column ``j``, then cell anchor. Cell anchors are ratio-major (``order="ratio_major"``,
  ratios outer, scales inner: torchvision and mmdetection) or scale-major
  (``order="scale_major"``: detectron2). Anchor ``k`` of level ``l`` at cell ``(i, j)`` is row
  ``sum_{m<l} A_m + (i * W_l + j) * K + k``.

Everything is computed in float64 and cast once, so coordinates are the correctly rounded
float32 values (torchvision rounds its cell anchors to whole pixels and truncates sizes to int,
e.g. 812.75 -> 812: see ``tests/test_retina_anchors.py`` for the comparison).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

DEFAULT_STRIDES: Tuple[int, ...] = (8, 16, 32, 64, 128)
DEFAULT_BASE_SIZES: Tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
DEFAULT_SCALES: Tuple[float, ...] = (1.0, 2.0 ** (1.0 / 3.0), 2.0 ** (2.0 / 3.0))
DEFAULT_ASPECT_RATIOS: Tuple[float, ...] = (0.5, 1.0, 2.0)

_ORDERS = ("ratio_major", "scale_major")


def cell_anchors(
    base_size: float,
    scales: Sequence[float] = DEFAULT_SCALES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    order: str = "ratio_major",
    sizes: Optional[Sequence[float]] = None,
) -> Tensor:
    """Zero-centred anchors of one level, float64 ``[len(ratios) * len(sizes), 4]`` xyxy.

    ``S = base_size * scale`` (or each of ``sizes`` when given), then ``w = S / sqrt(r)`` and
    ``h = S * sqrt(r)`` with ``r = h / w``.
    """
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {_ORDERS}, got {order!r}")
    if sizes is None:
        if not (base_size > 0 and math.isfinite(base_size)):
            raise ValueError(f"base_size must be a positive finite number, got {base_size!r}")
        if len(scales) == 0 or any(not (s > 0 and math.isfinite(s)) for s in scales):
            raise ValueError(f"scales must be positive finite numbers, got {tuple(scales)!r}")
        sizes = [base_size * s for s in scales]
    if len(sizes) == 0 or any(not (s > 0 and math.isfinite(s)) for s in sizes):
        raise ValueError(f"anchor sizes must be positive finite numbers, got {tuple(sizes)!r}")
    if len(aspect_ratios) == 0 or any(not (r > 0 and math.isfinite(r)) for r in aspect_ratios):
        raise ValueError(f"aspect_ratios must be positive finite numbers, got {tuple(aspect_ratios)!r}")
    sizes = torch.tensor([float(s) for s in sizes], dtype=torch.float64)
    h_ratio = torch.tensor(aspect_ratios, dtype=torch.float64).sqrt()
    if order == "ratio_major":
        ws = (sizes[None, :] / h_ratio[:, None]).reshape(-1)
        hs = (sizes[None, :] * h_ratio[:, None]).reshape(-1)
    else:
        ws = (sizes[:, None] / h_ratio[None, :]).reshape(-1)
        hs = (sizes[:, None] * h_ratio[None, :]).reshape(-1)
    return torch.stack([-ws, -hs, ws, hs], dim=1) / 2


def grid_sizes_for_image(height: int, width: int, strides: Sequence[int] = DEFAULT_STRIDES) -> list:
    """Feature-map sizes ``[(ceil(H / s), ceil(W / s)) for s in strides]``."""
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]


def anchors_per_level(
    height: int,
    width: int,
    *,
    strides: Sequence[float] = DEFAULT_STRIDES,
    base_sizes: Sequence[float] = DEFAULT_BASE_SIZES,
    scales: Sequence[float] = DEFAULT_SCALES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    offset: float = 0.0,
    grid_sizes: Optional[Sequence[Tuple[int, int]]] = None,
    order: str = "ratio_major",
    sizes: Optional[Sequence[Sequence[float]]] = None,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> list:
    """Anchors of each level: list of ``[H_l * W_l * K, 4]`` tensors (see module docstring).

    ``sizes`` (one sequence per level) replaces ``base_sizes x scales``, e.g. torchvision's
    int-truncated ``((32, 40, 50), (64, 80, 101), ...)`` or detectron2's ``[[32, 64]]``.
    """
    if sizes is not None:
        if len(sizes) != len(strides):
            raise ValueError(f"sizes needs one sequence per level, got {len(sizes)} for {len(strides)} levels")
        base_sizes = [float(level[0]) if len(level) else 1.0 for level in sizes]
    if len(strides) != len(base_sizes):
        raise ValueError(
            f"strides and base_sizes must have one entry per level, got {len(strides)} and {len(base_sizes)}"
        )
    if any(not (s > 0 and math.isfinite(s)) for s in strides):
        raise ValueError(f"strides must be positive, got {tuple(strides)!r}")
    if not math.isfinite(offset):
        raise ValueError(f"offset must be finite, got {offset!r}")
    if grid_sizes is None:
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        grid_sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in strides]
    elif len(grid_sizes) != len(strides):
        raise ValueError(f"grid_sizes needs one (rows, cols) per level, got {len(grid_sizes)} for {len(strides)} levels")
    out = []
    for lvl, (stride, base, (gh, gw)) in enumerate(zip(strides, base_sizes, grid_sizes)):
        cells = cell_anchors(float(base), scales, aspect_ratios, order, None if sizes is None else sizes[lvl])
        cy = (torch.arange(int(gh), dtype=torch.float64) + offset) * stride
        cx = (torch.arange(int(gw), dtype=torch.float64) + offset) * stride
        sy, sx = torch.meshgrid(cy, cx, indexing="ij")
        shifts = torch.stack([sx, sy, sx, sy], dim=-1).reshape(-1, 1, 4)
        out.append((shifts + cells[None]).reshape(-1, 4).to(dtype=dtype, device=device))
    return out


def anchors_for_image(
    height: int,
    width: int,
    *,
    strides: Sequence[float] = DEFAULT_STRIDES,
    base_sizes: Sequence[float] = DEFAULT_BASE_SIZES,
    scales: Sequence[float] = DEFAULT_SCALES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    offset: float = 0.0,
    grid_sizes: Optional[Sequence[Tuple[int, int]]] = None,
    order: str = "ratio_major",
    sizes: Optional[Sequence[Sequence[float]]] = None,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> Tensor:
    """All anchors of an ``height x width`` image, ``[A, 4]`` xyxy in pixels.

    ``A = K * sum_l ceil(H / s_l) * ceil(W / s_l)`` with ``K = len(scales) * len(aspect_ratios)``;
    640 x 640 with the defaults gives ``9 * (6400 + 1600 + 400 + 100 + 25) = 76,725``.
    ``grid_sizes`` overrides the per-level ``(rows, cols)``, ``sizes`` the per-level anchor sizes
    (see :func:`anchors_per_level`); ordering and offset: module docstring.
    """
    levels = anchors_per_level(
        height,
        width,
        strides=strides,
        base_sizes=base_sizes,
        scales=scales,
        aspect_ratios=aspect_ratios,
        offset=offset,
        grid_sizes=grid_sizes,
        order=order,
        sizes=sizes,
        dtype=dtype,
        device=device,
    )
    return torch.cat(levels, dim=0)


def num_anchors(
    height: int,
    width: int,
    strides: Sequence[int] = DEFAULT_STRIDES,
    anchors_per_location: int = 9,
) -> int:
    """Number of anchors :func:`anchors_for_image` returns for these settings."""
    return anchors_per_location * sum(h * w for h, w in grid_sizes_for_image(height, width, strides))


def grid_anchor_boxes(
    height: int,
    width: int,
    anchor_wh: Sequence[Sequence[Tuple[float, float]]],
    strides: Sequence[float],
    *,
    offset: float = 0.5,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> Tensor:
    """Anchor boxes of a YOLO-style head, xyxy ``[A, 4]`` in pixels, for IoU matching.

    ``anchor_wh[l]`` lists the ``(w, h)`` (pixels) of the anchors of level ``l`` with stride
    ``strides[l]`` (YOLOv5n at P3: ``[(10, 13), (16, 30), (33, 23)]``). Each anchor is placed at
    every cell centre ``((j + offset) * s, (i + offset) * s)`` of the ``ceil(H / s) x ceil(W / s)``
    grid. Rows are ordered level, anchor, grid row ``i``, grid column ``j`` -- YOLOv5's
    prediction layout ``p[l][b, a, i, j]`` -- so row
    ``sum_{m<l} na * H_m * W_m + (a * H_l + i) * W_l + j`` is slot ``(a, i, j)`` of level ``l``.
    """
    if len(anchor_wh) != len(strides):
        raise ValueError(f"anchor_wh needs one list per level, got {len(anchor_wh)} for {len(strides)} strides")
    out = []
    for whs, s in zip(anchor_wh, strides):
        wh = torch.as_tensor(whs, dtype=torch.float64).reshape(-1, 2)
        if not (wh > 0).all():
            raise ValueError(f"anchor sizes must be positive, got {wh.tolist()}")
        gh, gw = math.ceil(height / s), math.ceil(width / s)
        cy = (torch.arange(gh, dtype=torch.float64) + offset) * s
        cx = (torch.arange(gw, dtype=torch.float64) + offset) * s
        yy, xx = torch.meshgrid(cy, cx, indexing="ij")
        ctr = torch.stack([xx, yy, xx, yy], -1).reshape(1, -1, 4)
        half = torch.cat([-wh / 2, wh / 2], 1).reshape(-1, 1, 4)
        out.append((ctr + half).reshape(-1, 4))
    return torch.cat(out).to(dtype=dtype, device=device)
