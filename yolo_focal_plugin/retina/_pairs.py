"""Sparse (ground truth, anchor) candidate pairs for IoU matching, under a memory budget.

A dense IoU matrix costs ``M * A`` entries (1,000 GTs x 76,725 anchors = 77 M floats, plus
torchvision's ``[M, A, 2]`` temporaries: ~2.6 GB). Almost all entries are 0 or far below any
threshold. :class:`AnchorIndex` groups anchors by shape; a group whose centres form a full
regular grid (every RetinaNet level/cell-anchor pair does) answers "which anchors can have
IoU >= tau with this box" with a few arithmetic operations, from two exact bounds:

* centred bound (shapes only): ``IoU <= I / (A_a + A_g - I)`` with ``I = min(w_a, w_g) * min(h_a, h_g)``;
* centre offset bound: ``IoU >= tau`` needs ``inter >= tau * max(A_a, A_g)`` and ``inter <= ow * min(h_a, h_g)``
  with the overlap width ``ow <= (w_a + w_g) / 2 - |dx|``, hence
  ``|dx| <= (w_a + w_g) / 2 - tau * max(A_a, A_g) / min(h_a, h_g)`` (same for ``dy``).

Both are inflated by a small slack so float rounding can only add candidates, never drop one;
the IoU of every candidate is then computed exactly as ``torchvision.ops.box_iou`` does, so the
result equals a dense computation bit for bit. Groups that are not a full regular grid (and all
anchors with ``dense=True``) are compared with every GT, in chunks. No step ever materialises more
than ``budget`` pairs at once.

The matcher works on :class:`Pairs` (parallel GT / anchor / IoU columns) and asks a
:class:`PairSource` for more pairs of a GT when needed: :class:`BoxPairSource` searches the
index for boxes, :class:`ListedPairSource` filters a precomputed list (quality-matrix path).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Protocol, Sequence, Tuple

import torch
from torch import Tensor

# px: centres closer than this are one grid column/row; also the slack added to search ranges.
_POS_TOL = 1e-3
# IoU slack on the bounds (float32 IoU error is ~1e-7).
_IOU_SLACK = 1e-4
_MAX_GROUPS = 4096


def pair_iou(gt: Tensor, anc: Tensor, gt_area: Tensor, anc_area: Tensor) -> Tensor:
    """IoU of row-aligned pairs, ``[P]``; same operations in the same order as ``box_iou(gt, anc)``."""
    lt = torch.max(gt[:, :2], anc[:, :2])
    rb = torch.min(gt[:, 2:], anc[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = gt_area + anc_area - inter
    return inter / union


def box_area(b: Tensor) -> Tensor:
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


@dataclass(frozen=True)
class Pairs:
    """Candidate (GT, anchor, IoU) pairs: three parallel ``[P]`` tensors.

    ``gt`` and ``anchor`` are int64 ids, ``iou`` is the pair's IoU (float, > 0). What the ids
    index is the holder's business: local GT rows and anchor rows in :meth:`AnchorIndex.candidates`,
    the matcher's compact GT ids and flat ``image * A + anchor`` ids inside the matcher. Every
    filter is ``pairs[mask]``, so the three columns can never go out of step.
    """

    gt: Tensor
    anchor: Tensor
    iou: Tensor

    @staticmethod
    def empty(dtype: torch.dtype, device: torch.device) -> "Pairs":
        z = torch.zeros(0, dtype=torch.long, device=device)
        return Pairs(z, z, torch.zeros(0, dtype=dtype, device=device))

    @staticmethod
    def cat(parts: Sequence["Pairs"]) -> "Pairs":
        """Concatenation in order (``parts`` must not be empty)."""
        return Pairs(*(torch.cat([getattr(p, f) for p in parts]) for f in ("gt", "anchor", "iou")))

    def __getitem__(self, keep: Tensor) -> "Pairs":
        return Pairs(self.gt[keep], self.anchor[keep], self.iou[keep])

    def __len__(self) -> int:
        return self.gt.numel()

    def best_per_gt(self, m: int, fill: float) -> Tensor:
        """``[m]``: each GT's highest IoU over the pairs, ``fill`` where it has none (or less)."""
        return torch.full((m,), fill, dtype=self.iou.dtype, device=self.iou.device).scatter_reduce_(
            0, self.gt, self.iou, "amax")


def _cluster_1d(v: Tensor) -> Tuple[Tensor, Tensor]:
    """Sorted cluster centres of the values in ``v`` (gap > _POS_TOL starts a new cluster) and
    the cluster id of every value."""
    sv, order = torch.sort(v)
    new = torch.ones_like(sv, dtype=torch.bool)
    new[1:] = (sv[1:] - sv[:-1]) > _POS_TOL
    cid_sorted = torch.cumsum(new.long(), 0) - 1
    centres = sv[new]  # smallest member of each cluster
    cid = torch.empty_like(cid_sorted)
    cid[order] = cid_sorted
    return centres, cid


class AnchorIndex:
    """Anchors ``[A, 4]`` split into regular-grid shape groups and a dense remainder."""

    def __init__(self, anchors: Tensor, dense: bool = False) -> None:
        self.anchors = anchors
        self.area = box_area(anchors)
        self.num = anchors.shape[0]
        a = anchors.detach().to("cpu", torch.float64)
        w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
        groups = []
        dense_parts = []
        if not dense and self.num > 0:
            # cluster widths/heights with a tolerance: float32 corners make w vary in the last bits
            _, kw = _cluster_1d(w)
            _, kh = _cluster_1d(h)
            uniq, inv = torch.unique(kw * (int(kh.max()) + 1) + kh, return_inverse=True)
            if uniq.shape[0] > _MAX_GROUPS:
                dense = True
            else:
                order = torch.argsort(inv, stable=True)
                counts = torch.bincount(inv, minlength=uniq.shape[0]).tolist()
                start = 0
                for cnt in counts:
                    idx = order[start:start + cnt]
                    start += cnt
                    g = self._grid_group(idx, w, h, cx, cy)
                    if g is None:
                        dense_parts.append(idx)
                    else:
                        groups.append(g)
        if dense or self.num == 0:
            dense_parts = [torch.arange(self.num)]
            groups = []
        dev = anchors.device
        self.dense_idx = (torch.cat(dense_parts) if dense_parts else torch.zeros(0, dtype=torch.long)).to(dev)
        self.num_groups = len(groups)
        if groups:
            cols = list(zip(*[(g["w"], g["h"], g["x0"], g["sx"], g["y0"], g["sy"]) for g in groups]))
            self.g_w, self.g_h, self.g_x0, self.g_sx, self.g_y0, self.g_sy = (
                torch.tensor(c, dtype=torch.float64, device=dev) for c in cols
            )
            self.g_nx = torch.tensor([g["nx"] for g in groups], dtype=torch.long, device=dev)
            self.g_ny = torch.tensor([g["ny"] for g in groups], dtype=torch.long, device=dev)
            sizes = self.g_nx * self.g_ny
            self.g_off = torch.cumsum(sizes, 0) - sizes
            # x and y side by side, [S, 2], built once here: the searches below run per call,
            # and a per-image loop pays their number of small ops once per image
            self.g_wh = torch.stack([self.g_w, self.g_h], 1)
            self.g_area = self.g_w * self.g_h
            self.g_origin = torch.stack([self.g_x0, self.g_y0], 1)
            self.g_step = torch.stack([self.g_sx, self.g_sy], 1)
            self.g_n = torch.stack([self.g_nx, self.g_ny], 1)
            self.g_n_f = self.g_n.to(torch.float64)
            self.g_last_f = (self.g_n - 1).to(torch.float64)
            self.table = torch.cat([g["table"] for g in groups]).to(dev)

    @staticmethod
    def _grid_group(idx: Tensor, w: Tensor, h: Tensor, cx: Tensor, cy: Tensor):
        ux, col = _cluster_1d(cx[idx])
        uy, row = _cluster_1d(cy[idx])
        nx, ny = ux.numel(), uy.numel()
        if nx * ny != idx.numel():
            return None
        sx = float((ux[-1] - ux[0]) / (nx - 1)) if nx > 1 else 1.0
        sy = float((uy[-1] - uy[0]) / (ny - 1)) if ny > 1 else 1.0
        if sx <= 0 or sy <= 0:
            return None
        if nx > 1 and (ux - (ux[0] + torch.arange(nx, dtype=ux.dtype) * sx)).abs().max() > _POS_TOL:
            return None
        if ny > 1 and (uy - (uy[0] + torch.arange(ny, dtype=uy.dtype) * sy)).abs().max() > _POS_TOL:
            return None
        table = torch.full((nx * ny,), -1, dtype=torch.long)
        table[row * nx + col] = idx
        if bool((table < 0).any()):  # two anchors in one cell (duplicates): not a grid
            return None
        return {
            "w": float(w[idx].mean()), "h": float(h[idx].mean()),
            "x0": float(ux[0]), "sx": sx, "nx": nx,
            "y0": float(uy[0]), "sy": sy, "ny": ny, "table": table,
        }

    # -- candidates -----------------------------------------------------------------------
    def _combos(self, gt: Tensor, tau: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per (GT, grid group), shapes ``[m, S]``: number of cells in the search window, its first
        column, first row and width in cells (0 cells where the group cannot reach ``tau``)."""
        g = gt.to(torch.float64)
        wh_g = (g[:, 2:] - g[:, :2])[:, None]  # [m, 1, 2]
        c_g = ((g[:, :2] + g[:, 2:]) / 2)[:, None]
        iwh = torch.minimum(self.g_wh, wh_g)  # [m, S, 2]: largest possible overlap width, height
        inter = iwh[..., 0] * iwh[..., 1]
        ag = wh_g[..., 0] * wh_g[..., 1]
        t = (tau.to(torch.float64)[:, None] - _IOU_SLACK).clamp(min=0)
        ub = inter / (self.g_area + ag - inter)
        big = torch.maximum(self.g_area, ag)
        # the x half-window divides by the overlap height and vice versa: hence the flip
        r = (self.g_wh + wh_g) / 2 - (t * big)[..., None] / iwh.flip(-1) + _POS_TOL * (1 + self.g_wh + wh_g)
        # clamp in float first: a far-away box must not overflow the long conversion
        lo = torch.minimum(torch.ceil((c_g - r - self.g_origin) / self.g_step).clamp(min=-1), self.g_n_f)
        lo = lo.long().clamp(min=0)
        hi = torch.minimum(torch.floor((c_g + r - self.g_origin) / self.g_step).clamp(min=-1), self.g_n_f)
        hi = torch.minimum(hi.long(), self.g_n - 1)
        n = (hi - lo + 1).clamp(min=0)
        active = (ub >= t) & (r > 0).all(-1)
        cnt = torch.where(active, n[..., 0] * n[..., 1], torch.zeros_like(n[..., 0]))
        return cnt, lo[..., 0], lo[..., 1], n[..., 0]

    def lower_bound(self, gt: Tensor, gt_area: Tensor, budget: int) -> Tensor:
        """``[m]``: IoU of each GT with the anchor nearest to its centre in every grid group, max
        over groups; a lower bound of the GT's best IoU (0 when there are no grid groups)."""
        m = gt.shape[0]
        out = torch.zeros(m, dtype=gt.dtype, device=gt.device)
        if self.num_groups == 0 or m == 0:
            return out
        step = max(1, budget // self.num_groups)
        for s in range(0, m, step):
            g = gt[s:s + step].to(torch.float64)
            c_g = ((g[:, :2] + g[:, 2:]) / 2)[:, None]  # [k, 1, 2]
            cell = torch.round((c_g - self.g_origin) / self.g_step).clamp(min=0)
            cell = torch.minimum(cell, self.g_last_f).long()  # [k, S, 2]: nearest column, row
            a = self.table[self.g_off + cell[..., 1] * self.g_nx + cell[..., 0]].reshape(-1)
            gi = torch.arange(s, s + g.shape[0], device=gt.device).repeat_interleave(self.num_groups)
            iou = pair_iou(gt[gi], self.anchors[a], gt_area[gi], self.area[a])
            out[s:s + g.shape[0]] = iou.view(-1, self.num_groups).amax(1)
        return out

    def pairs(
        self, gt: Tensor, tau: Tensor, budget: int, grid: bool = True, dense: bool = True
    ) -> Iterator[Tuple[Tensor, Tensor]]:
        """Chunks ``(gt_local [P], anchor [P])`` with ``P <= budget``, covering every pair whose IoU
        can be ``>= tau[gt]`` (``tau <= 0``: every overlapping pair); ``grid`` / ``dense`` select
        the two parts of the anchor set."""
        m = gt.shape[0]
        dev = gt.device
        if m == 0:
            return
        if grid and self.num_groups:
            step = max(1, budget // self.num_groups)
            for s0 in range(0, m, step):
                sl = slice(s0, min(m, s0 + step))
                cnt, cx_lo, cy_lo, nxr = self._combos(gt[sl], tau[sl])
                flat = cnt.reshape(-1)
                nz = torch.nonzero(flat).squeeze(1)
                if nz.numel() == 0:
                    continue
                cnt_c = flat[nz]
                gl_c = nz // self.num_groups + s0
                sg_c = nz % self.num_groups
                lo_x, lo_y, nxr_c = cx_lo.reshape(-1)[nz], cy_lo.reshape(-1)[nz], nxr.reshape(-1)[nz]
                cum = torch.cumsum(cnt_c, 0)
                total = int(cum[-1])
                for p0 in range(0, total, budget):
                    p = torch.arange(p0, min(total, p0 + budget), device=dev)
                    cid = torch.searchsorted(cum, p, right=True)
                    local = p - (cum[cid] - cnt_c[cid])
                    del p
                    w = nxr_c[cid]
                    rr = lo_y[cid] + local // w
                    cc = lo_x[cid] + local % w
                    del local, w
                    sg = sg_c[cid]
                    a = self.table[self.g_off[sg] + rr * self.g_nx[sg] + cc]
                    yield gl_c[cid], a
        nd = self.dense_idx.numel()
        if dense and nd:
            a_step = min(nd, budget)
            rows = max(1, budget // a_step)
            for a0 in range(0, nd, a_step):
                aid = self.dense_idx[a0:a0 + a_step]
                for r0 in range(0, m, rows):
                    r1 = min(m, r0 + rows)
                    gl = torch.arange(r0, r1, device=dev).repeat_interleave(aid.numel())
                    yield gl, aid.repeat(r1 - r0)

    def candidates(self, gt: Tensor, gt_area: Tensor, tau: Tensor, budget: int) -> Pairs:
        """Every pair ``(local GT row, anchor row, IoU)`` with ``IoU > 0`` and ``IoU >= tau[gt]``,
        GT-major within each chunk of :meth:`pairs`; IoUs exactly as ``box_iou`` gives them."""
        parts = []
        for gl, a in self.pairs(gt, tau, budget):
            iou = pair_iou(gt[gl], self.anchors[a], gt_area[gl], self.area[a])
            keep = (iou > 0) & (iou >= tau[gl])
            parts.append(Pairs(gl[keep], a[keep], iou[keep]))
        return Pairs.cat(parts) if parts else Pairs.empty(gt.dtype, gt.device)

    def dense_max(self, gt: Tensor, gt_area: Tensor, budget: int) -> Tensor:
        """``[m]``: exact best IoU of each GT over the dense (non-grid) anchors."""
        out = torch.zeros(gt.shape[0], dtype=gt.dtype, device=gt.device)
        if self.dense_idx.numel() == 0:
            return out
        tau = torch.zeros(gt.shape[0], dtype=gt.dtype, device=gt.device)
        for gl, a in self.pairs(gt, tau, budget, grid=False):
            iou = pair_iou(gt[gl], self.anchors[a], gt_area[gl], self.area[a])
            out.scatter_reduce_(0, gl, iou, "amax")
        return out


class PairSource(Protocol):
    """Where the matcher's rule gets more pairs of a GT when its short list runs out."""

    def pairs_of(self, sub: Optional[Tensor], tau: Optional[Tensor] = None) -> Pairs:
        """Pairs (compact GT id, flat anchor id, IoU) of the GTs ``sub`` (``None``: all) with
        ``IoU > 0`` and ``IoU >= tau`` (``tau [len(sub)]``; ``None``: every overlapping anchor)."""


@dataclass
class BoxPairSource:
    """The non-degenerate GT boxes of a batch (compact ids ``0..num-1``), searched in ``index``.

    Flat anchor id = ``image * A + anchor``, so one labelling covers the whole batch.
    """

    boxes: Tensor  # [num, 4]
    image: Tensor  # [num] long
    index: AnchorIndex
    budget: int

    def __post_init__(self) -> None:
        self.area = box_area(self.boxes)
        self.num = self.boxes.shape[0]

    def pairs_of(self, sub: Optional[Tensor], tau: Optional[Tensor] = None) -> Pairs:
        boxes, area = (self.boxes, self.area) if sub is None else (self.boxes[sub], self.area[sub])
        if tau is None:
            tau = torch.zeros(boxes.shape[0], dtype=boxes.dtype, device=boxes.device)
        p = self.index.candidates(boxes, area, tau.to(boxes.dtype), self.budget)
        gt = p.gt if sub is None else sub[p.gt]
        return Pairs(gt, self.image[gt] * self.index.num + p.anchor, p.iou)


@dataclass
class ListedPairSource:
    """Every overlapping pair of ``m`` GTs, listed up front (the quality-matrix path)."""

    pairs: Pairs
    m: int

    def pairs_of(self, sub: Optional[Tensor], tau: Optional[Tensor] = None) -> Pairs:
        slot = torch.full((self.m,), -1, dtype=torch.long, device=self.pairs.gt.device)  # GT -> position in sub
        sub = torch.arange(self.m, device=slot.device) if sub is None else sub
        slot[sub] = torch.arange(sub.numel(), device=slot.device)
        p = self.pairs[slot[self.pairs.gt] >= 0]
        return p if tau is None else p[p.iou >= tau[slot[p.gt]]]
