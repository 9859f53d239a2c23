"""RetinaNet-style IoU matcher in which every ground truth gets at least one positive anchor.

The rule is documented on :class:`RetinaMatcher`; ``docs/retina.md`` compares it with
torchvision, detectron2 and mmdetection on the same inputs.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ._pairs import AnchorIndex, box_area, pair_iou

__all__ = ["RetinaMatcher", "positives_per_gt"]

_SEARCH_MODES = ("auto", "grid", "dense")


class RetinaMatcher:
    r"""Label anchors positive / negative / ignored against ground-truth boxes by IoU.

    ``matcher(anchors [A, 4], gt_boxes [M, 4]) -> (matches int64 [A], labels int8 [A])``, boxes xyxy.
    ``match_batch`` does a whole batch in one pass; ``match_quality_matrix`` applies the same
    rule to a precomputed ``[M, A]`` IoU (or other quality in [0, 1]) matrix.

    **Labels.** Let ``q(a) = max_g IoU(g, a)`` over the ground truths (GTs) of the image.

    * ``labels[a] = 1`` (positive) if ``q(a) >= pos_iou``; ``matches[a]`` is the GT reaching
      ``q(a)`` (the lowest GT index among exactly equal IoUs).
    * ``labels[a] = -1`` (ignored) if ``neg_iou <= q(a) < pos_iou``; ``matches[a]`` is that GT too,
      for reference only.
    * ``labels[a] = 0`` (negative) if ``q(a) < neg_iou``; ``matches[a] = -1``.

    Thresholds are plain ``>=`` comparisons of float32 IoUs: IoU exactly 0.5 is positive, exactly
    0.4 is ignored (as in torchvision and detectron2).

    **Low-quality matches** (``allow_low_quality=True``). A GT that owns no positive after the
    threshold step ("needy"; e.g. a small or thin box whose best IoU is 0.3, or a box whose >= 0.5
    anchors all overlap another box more) receives anchors as follows:

    1. *Threshold positives are never taken.* An anchor that is positive by threshold stays with
       its best GT, so a GT can never lose an anchor with IoU >= ``pos_iou`` to it.
    2. *Rounds.* Each needy GT without an anchor proposes its best remaining candidates: the
       anchors not yet positive with IoU > 0 to it whose IoU is within ``tie_tol`` of its best
       remaining IoU (several anchors when they tie, as torchvision and detectron2 do). Each
       proposed anchor goes to the proposer with the highest IoU to it (lowest GT index on an
       exactly equal IoU). A GT that wins at least one anchor is done and keeps all it won; the
       others drop the anchors just taken and propose again (their next-best free anchors).
       Every round settles at least one GT, so the loop ends. ``matches`` of an anchor made
       positive here is the GT it was given to (torchvision and detectron2 keep the column
       argmax there, which can be another GT).
    3. *Last resort.* A needy GT whose every overlapping anchor is already positive takes, among
       anchors of GTs that own two or more positives, excluding each such GT's best anchor(s)
       (within ``tie_tol``), the one with the highest IoU to it (lowest anchor index on ties).
       Needy GTs are served in index order. This is the only case where an anchor changes GT,
       and the previous owner always keeps its best anchor. It needs more GTs than free
       overlapping anchors (two boxes sharing the only two anchors); RetinaNet anchors never
       reach it in the tests and benchmarks. If even this fails (more GTs than overlapping
       anchors), the GT stays without a positive; :func:`positives_per_gt` shows it.

    A GT that already owns a positive gets nothing extra from this step: its best anchors have
    IoU >= ``pos_iou`` and are positives already (its own or, by rule 1, a better-overlapping GT's).

    **Degenerate GTs** never create positives (in torchvision, detectron2 and mmdetection an
    all-zero IoU row turns every anchor positive; mmdetection #8289). A GT is degenerate if a
    coordinate is NaN/inf, if ``x2 <= x1`` or ``y2 <= y1`` (zero/negative area), or if its IoU
    with every anchor is 0 (e.g. outside the image). **Default: ``ValueError`` naming the box.**
    With ``drop_degenerate=True`` such GTs are skipped: no anchor is matched to them, and they
    are the only GTs that can end with no positive.

    **Edge cases.** No GT: every anchor negative (``matches`` all -1). No anchor: outputs of
    length 0 (GTs are still validated).

    **Memory.** IoU is never computed densely. For anchors on regular grids (RetinaNet, YOLOv5)
    only the pairs that can reach the needed IoU are enumerated (see ``_pairs.py``); any other
    anchors are compared in chunks. At most ``max_iou_entries`` pairs are materialised at once;
    the result does not depend on it (tested).

    Args:
        pos_iou: positive threshold, ``0 < neg_iou <= pos_iou <= 1``.
        neg_iou: below it an anchor is negative.
        allow_low_quality: give needy GTs anchors (rules above).
        tie_tol: absolute IoU tolerance for "tied best anchors" (detectron2 #3750 saw exact ``==``
            lose 1-2 AP across reimplementations).
        drop_degenerate: skip degenerate GTs instead of raising.
        max_iou_entries: memory budget, in IoU pairs held at once (~100 bytes each).
        candidate_search: ``"auto"`` (grid lookup where the anchors allow it, chunked dense
            comparison for the rest), ``"grid"`` (same, but ``ValueError`` if some anchors are not
            on a regular grid: no silent slow path in training) or ``"dense"`` (compare every
            anchor; the reference the tests use).
    """

    def __init__(
        self,
        pos_iou: float = 0.5,
        neg_iou: float = 0.4,
        allow_low_quality: bool = True,
        *,
        tie_tol: float = 1e-5,
        drop_degenerate: bool = False,
        max_iou_entries: int = 1 << 20,
        candidate_search: str = "auto",
    ) -> None:
        for name, v in (("pos_iou", pos_iou), ("neg_iou", neg_iou)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be a number in (0, 1], got {v!r}")
        if pos_iou < neg_iou:
            raise ValueError(f"pos_iou ({pos_iou}) must be >= neg_iou ({neg_iou})")
        if not (0.0 <= tie_tol < 0.1):
            raise ValueError(f"tie_tol must be in [0, 0.1), got {tie_tol!r}")
        if int(max_iou_entries) < 1024:
            raise ValueError(f"max_iou_entries must be >= 1024, got {max_iou_entries!r}")
        if candidate_search not in _SEARCH_MODES:
            raise ValueError(f"candidate_search must be one of {_SEARCH_MODES}, got {candidate_search!r}")
        self.pos_iou = float(pos_iou)
        self.neg_iou = float(neg_iou)
        self.allow_low_quality = bool(allow_low_quality)
        self.tie_tol = float(tie_tol)
        self.drop_degenerate = bool(drop_degenerate)
        self.max_iou_entries = int(max_iou_entries)
        self.candidate_search = candidate_search
        self._cache: List[Tuple[tuple, Tensor, AnchorIndex]] = []

    def __repr__(self) -> str:
        return (
            f"RetinaMatcher(pos_iou={self.pos_iou}, neg_iou={self.neg_iou}, "
            f"allow_low_quality={self.allow_low_quality}, tie_tol={self.tie_tol}, "
            f"drop_degenerate={self.drop_degenerate})"
        )

    # -- public entry points ----------------------------------------------------------------
    def __call__(self, anchors: Tensor, gt_boxes: Tensor) -> Tuple[Tensor, Tensor]:
        """Match one image: ``anchors [A, 4]``, ``gt_boxes [M, 4]`` -> ``matches [A]``, ``labels [A]``."""
        matches, labels = self.match_batch(anchors, [gt_boxes])
        return matches[0], labels[0]

    def match_batch(
        self,
        anchors: Tensor,
        gt_boxes: Union[Sequence[Tensor], Tensor],
        valid: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Match ``B`` images sharing one anchor set.

        ``gt_boxes`` is a list of ``[M_b, 4]`` tensors, or a padded ``[B, M_max, 4]`` tensor with
        ``valid [B, M_max]`` (bool) marking the real rows (without ``valid`` every row is a box, so
        zero padding raises as degenerate). Returns ``matches [B, A]`` (index into image ``b``'s
        GTs / padded rows, -1 for negatives) and ``labels [B, A]`` int8.
        """
        anchors = self._check_anchors(anchors)
        gts, img, local, nb = _flatten_gts(gt_boxes, valid, anchors)
        return self._match(anchors, gts, img, local, nb)

    def match_quality_matrix(self, quality: Tensor) -> Tuple[Tensor, Tensor]:
        """Apply the same rule to a precomputed quality matrix ``[M, A]`` with values in [0, 1].

        An all-zero row is a degenerate GT (``ValueError`` unless ``drop_degenerate``); negative
        or NaN entries raise.
        """
        if quality.dim() != 2:
            raise ValueError(f"quality must be [M, A], got shape {tuple(quality.shape)}")
        m, a = quality.shape
        if m and a:
            if not torch.isfinite(quality).all():
                raise ValueError("quality matrix has NaN/inf entries")
            if (quality < 0).any() or (quality > 1).any():
                raise ValueError("quality matrix entries must be in [0, 1] (IoU-like)")
        if a == 0:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.int8)
        pg, pa = torch.nonzero(quality > 0, as_tuple=True)
        pi = quality[pg, pa]
        q = torch.zeros(m, dtype=quality.dtype, device=quality.device)
        q.scatter_reduce_(0, pg, pi, "amax")
        active = self._check_zero_rows(q, lambda g: f"quality row {g}")
        full = torch.ones(m, dtype=torch.bool, device=quality.device)
        matches, labels = _assign(
            m, a, pg, pa, pi, q, active, full, self, expand=None, device=quality.device
        )
        return matches, labels

    # -- internals -------------------------------------------------------------------------
    def _check_anchors(self, anchors: Tensor) -> Tensor:
        if not isinstance(anchors, Tensor):
            anchors = torch.as_tensor(anchors, dtype=torch.float32)
        if anchors.numel() == 0:
            return anchors.reshape(0, 4).to(torch.float32 if not anchors.is_floating_point() else anchors.dtype)
        if anchors.dim() != 2 or anchors.shape[1] != 4:
            raise ValueError(f"anchors must be [A, 4] xyxy, got shape {tuple(anchors.shape)}")
        if not anchors.is_floating_point():
            anchors = anchors.float()
        return anchors

    def _index(self, anchors: Tensor) -> AnchorIndex:
        # Inference tensors (anchors built under torch.inference_mode, e.g. in yolov5's val loop)
        # have no version counter, so an in-place edit could not be detected: never cache them.
        cacheable = not anchors.is_inference()
        key = (anchors.data_ptr(), tuple(anchors.shape), tuple(anchors.stride()), anchors.dtype,
               str(anchors.device), anchors._version if cacheable else None, self.candidate_search)
        for k, t, idx in (self._cache if cacheable else ()):
            # holding ``t`` keeps its memory alive, so an equal data_ptr means the same storage
            if k == key:
                return idx
        if not torch.isfinite(anchors).all():
            raise ValueError("anchors contain NaN/inf coordinates")
        if ((anchors[:, 2] <= anchors[:, 0]) | (anchors[:, 3] <= anchors[:, 1])).any():
            raise ValueError("anchors must have positive width and height")
        idx = AnchorIndex(anchors, dense=self.candidate_search == "dense")
        if self.candidate_search == "grid" and idx.dense_idx.numel():
            raise ValueError(
                f"candidate_search='grid': {idx.dense_idx.numel()} of {idx.num} anchors are not on a regular "
                "grid (anchors of one shape must cover every cell of a grid); use 'auto'"
            )
        if cacheable:
            self._cache = [(key, anchors, idx)] + self._cache[:1]
        return idx

    def _check_zero_rows(self, q: Tensor, name: Callable[[int], str]) -> Tensor:
        zero = q <= 0
        if zero.any() and not self.drop_degenerate:
            g = int(torch.nonzero(zero)[0])
            raise ValueError(
                f"{name(g)} has IoU 0 with every anchor (outside the anchors' coverage?): it would "
                "turn background anchors positive in a low-quality matching step. Remove it, or pass "
                "drop_degenerate=True to skip such boxes."
            )
        return ~zero

    def _collect(self, index: AnchorIndex, gt: Tensor, area: Tensor, tau: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Pairs ``(gt_local, anchor, iou)`` with ``iou > 0`` and ``iou >= tau[gt]``."""
        gs, as_, ious = [], [], []
        for gl, a in index.pairs(gt, tau, self.max_iou_entries):
            iou = pair_iou(gt[gl], index.anchors[a], area[gl], index.area[a])
            keep = (iou > 0) & (iou >= tau[gl])
            gs.append(gl[keep])
            as_.append(a[keep])
            ious.append(iou[keep])
        dev = gt.device
        if not gs:
            return (torch.zeros(0, dtype=torch.long, device=dev),) * 2 + (torch.zeros(0, dtype=gt.dtype, device=dev),)
        return torch.cat(gs), torch.cat(as_), torch.cat(ious)

    def _match(self, anchors: Tensor, gts: Tensor, img: Tensor, local: Tensor, nb: int) -> Tuple[Tensor, Tensor]:
        dev = anchors.device
        na = anchors.shape[0]
        # -- degenerate boxes (checked even without anchors: the caller's data is wrong either way)
        finite = torch.isfinite(gts).all(1)
        good_area = (gts[:, 2] > gts[:, 0]) & (gts[:, 3] > gts[:, 1])
        bad = ~(finite & good_area)
        if bad.any() and not self.drop_degenerate:
            g = int(torch.nonzero(bad)[0])
            why = "has a NaN/inf coordinate" if not bool(finite[g]) else "has zero or negative area (x2 <= x1 or y2 <= y1)"
            if bool((gts[g] == 0).all()):
                why += " (zero padding? pass valid= to match_batch)"
            raise ValueError(
                f"gt box {int(local[g])} of image {int(img[g])} = {gts[g].tolist()} {why}; remove it, "
                "or pass drop_degenerate=True to skip such boxes."
            )
        if na == 0:
            return (torch.zeros(nb, 0, dtype=torch.long, device=dev), torch.zeros(nb, 0, dtype=torch.int8, device=dev))
        gidx = torch.nonzero(~bad).squeeze(1)
        if gidx.numel() == 0:
            return (torch.full((nb, na), -1, dtype=torch.long, device=dev), torch.zeros(nb, na, dtype=torch.int8, device=dev))
        gt = gts[gidx].contiguous()
        gimg = img[gidx]
        area = box_area(gt)
        m = gt.shape[0]
        index = self._index(anchors)
        budget = self.max_iou_entries

        # Lower bound L of each GT's best IoU -> keep only pairs that can matter:
        # IoU >= min(neg_iou, best) - tie_tol (everything else is a negative pair).
        low = index.lower_bound(gt, area, budget)
        if index.dense_idx.numel():
            low = torch.maximum(low, index.dense_max(gt, area, budget))
        tau = low.clamp(max=self.neg_iou) - self.tie_tol
        pg, pa, pi = self._collect(index, gt, area, tau)
        q = torch.zeros(m, dtype=gt.dtype, device=dev).scatter_reduce_(0, pg, pi, "amax")
        active = self._check_zero_rows(
            q, lambda g: f"gt box {int(local[gidx[g]])} of image {int(gimg[g])} = {gt[g].tolist()}"
        )
        tau_q = q.clamp(max=self.neg_iou) - self.tie_tol
        keep = pi >= tau_q[pg]
        pg, pa, pi = pg[keep], pa[keep], pi[keep]
        flat = gimg[pg] * na + pa
        full = tau_q <= 0  # the pair list of such a GT already holds every overlapping anchor

        def recollect(sub: Tensor, tau_sub: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
            """Pairs of the GTs ``sub`` (compact ids) with IoU >= tau_sub (default: all overlapping),
            as (gt, flat anchor id, iou)."""
            if tau_sub is None:
                tau_sub = torch.zeros(sub.numel(), dtype=gt.dtype, device=dev)
            g2, a2, i2 = self._collect(index, gt[sub], area[sub], tau_sub.to(gt.dtype))
            g2 = sub[g2]
            return g2, gimg[g2] * na + a2, i2

        matches, labels = _assign(
            m, nb * na, pg, flat, pi, q, active, full, self, expand=recollect, device=dev
        )
        pos = matches >= 0
        matches[pos] = local[gidx[matches[pos]]]
        return matches.view(nb, na), labels.view(nb, na)


def _flatten_gts(gt_boxes, valid, anchors: Tensor):
    """``(gts [M, 4], image [M], index within image [M], batch size)``."""
    dev, dt = anchors.device, anchors.dtype
    if isinstance(gt_boxes, Tensor):
        if gt_boxes.dim() != 3 or gt_boxes.shape[-1] != 4:
            raise ValueError(f"padded gt_boxes must be [B, M, 4], got shape {tuple(gt_boxes.shape)}")
        nb, mm = gt_boxes.shape[:2]
        if valid is None:
            valid = torch.ones(nb, mm, dtype=torch.bool, device=gt_boxes.device)
        if valid.shape != (nb, mm):
            raise ValueError(f"valid must be [B, M] = {(nb, mm)}, got {tuple(valid.shape)}")
        img, local = torch.nonzero(valid.bool(), as_tuple=True)
        gts = gt_boxes[img, local]
        return gts.to(dev, dt), img.to(dev), local.to(dev), nb
    if valid is not None:
        raise ValueError("valid is only used with a padded [B, M, 4] gt_boxes tensor")
    boxes, imgs, locs = [], [], []
    for b, g in enumerate(gt_boxes):
        g = torch.as_tensor(g)
        if g.numel() == 0:
            g = g.reshape(0, 4)
        if g.dim() != 2 or g.shape[1] != 4:
            raise ValueError(f"gt_boxes[{b}] must be [M, 4] xyxy, got shape {tuple(g.shape)}")
        boxes.append(g.to(dev, dt))
        imgs.append(torch.full((g.shape[0],), b, dtype=torch.long, device=dev))
        locs.append(torch.arange(g.shape[0], device=dev))
    nb = len(boxes)
    if nb == 0:
        z = torch.zeros(0, dtype=torch.long, device=dev)
        return torch.zeros(0, 4, dtype=dt, device=dev), z, z, 0
    return torch.cat(boxes), torch.cat(imgs), torch.cat(locs), nb


def _assign(
    m: int,
    n: int,
    pg: Tensor,
    pa: Tensor,
    pi: Tensor,
    q: Tensor,
    active: Tensor,
    full: Tensor,
    cfg: RetinaMatcher,
    expand,
    device,
) -> Tuple[Tensor, Tensor]:
    """The labelling rule of :class:`RetinaMatcher` on sparse pairs.

    ``pg, pa, pi``: GT id (< m), flat anchor id (< n) and IoU of every pair with IoU > 0 and
    IoU >= min(neg_iou, q[g]) - tie_tol; ``q [m]``: best IoU per GT; ``active``: GTs to match;
    ``full[g]``: the pair list of ``g`` holds every anchor with IoU > 0 (else ``expand(gt_ids)``
    returns them as ``(gt, flat anchor, iou)``; ``None`` when every list is full).
    """
    tol = cfg.tie_tol
    act = active[pg]
    pg, pa, pi = pg[act], pa[act], pi[act]
    best = torch.zeros(n, dtype=pi.dtype, device=device).scatter_reduce_(0, pa, pi, "amax")
    isb = pi == best[pa]
    owner = torch.full((n,), m, dtype=torch.long, device=device)
    owner.scatter_reduce_(0, pa[isb], pg[isb], "amin")
    pos = best >= cfg.pos_iou
    ign = (best >= cfg.neg_iou) & ~pos
    labels = torch.zeros(n, dtype=torch.int8, device=device)
    labels[pos] = 1
    labels[ign] = -1
    matches = torch.where(pos | ign, owner, torch.full_like(owner, -1))
    if not cfg.allow_low_quality:
        return matches, labels
    own_iou = torch.where(pos, best, torch.zeros_like(best))

    count = torch.bincount(matches[pos], minlength=m)
    needy = (count == 0) & active
    if not bool(needy.any()):
        return matches, labels
    protected = pos  # rule 1: threshold positives never move in rule 2
    sel = needy[pg] & ~protected[pa]
    cg, ca, ci = pg[sel], pa[sel], pi[sel]
    # tau_k[g]: the pair list of g holds every anchor with IoU >= tau_k[g] (all of them if full[g])
    tau_k = q.clamp(max=cfg.neg_iou) - tol
    full = full.clone() | (tau_k <= 0)
    unresolved = needy.clone()
    claimed = torch.zeros(n, dtype=torch.bool, device=device)
    stuck: List[int] = []

    # Lists grow in stages: IoU >= min(neg_iou, q) (the tied best), >= q/2, >= q/8, everything.
    # A needy GT usually needs only its second or third best anchor, so most lists stay short.
    stage = torch.where(full, 3, 0)
    fractions = torch.tensor([1.0, 0.5, 0.125, 0.0], dtype=q.dtype, device=device)

    def widen(sub: Tensor, cg: Tensor, ca: Tensor, ci: Tensor):
        stage[sub] += 1
        new_t = q[sub].clamp(max=cfg.neg_iou) * fractions[stage[sub]] - tol
        g2, a2, i2 = expand(sub, new_t)
        keep = torch.ones(m, dtype=torch.bool, device=device)
        keep[sub] = False
        keep = keep[cg]
        ok = ~protected[a2] & ~claimed[a2]
        tau_k[sub] = new_t
        full[sub] = new_t <= 0
        stage[sub[new_t <= 0]] = 3
        return torch.cat([cg[keep], g2[ok]]), torch.cat([ca[keep], a2[ok]]), torch.cat([ci[keep], i2[ok]])

    if expand is not None and bool((needy & ~full).any()):
        cg, ca, ci = widen(torch.nonzero(needy & ~full).squeeze(1), cg, ca, ci)
    while bool(unresolved.any()):
        k = unresolved[cg] & ~claimed[ca]
        cg, ca, ci = cg[k], ca[k], ci[k]
        bestg = torch.full((m,), -1.0, dtype=pi.dtype, device=device).scatter_reduce_(0, cg, ci, "amax")
        # A truncated list must not decide: its best might tie with (or fall below) anchors it lacks.
        need = unresolved & ~full & (bestg - tol < tau_k)
        if bool(need.any()):
            cg, ca, ci = widen(torch.nonzero(need).squeeze(1), cg, ca, ci)
            continue
        none_left = unresolved & (bestg < 0)
        if bool(none_left.any()):
            stuck.extend(torch.nonzero(none_left).squeeze(1).tolist())
            unresolved &= ~none_left
            continue
        prop = ci >= bestg[cg] - tol
        g2, a2, i2 = cg[prop], ca[prop], ci[prop]
        ua, inv = torch.unique(a2, return_inverse=True)
        top_iou = torch.full((ua.numel(),), -1.0, dtype=i2.dtype, device=device).scatter_reduce_(0, inv, i2, "amax")
        top = i2 == top_iou[inv]
        win = torch.full((ua.numel(),), m, dtype=torch.long, device=device)
        win.scatter_reduce_(0, inv[top], g2[top], "amin")
        won = win[inv] == g2
        wa, wg, wi = a2[won], g2[won], i2[won]
        claimed[wa] = True
        labels[wa] = 1
        matches[wa] = wg
        own_iou[wa] = wi
        unresolved[wg] = False

    if stuck:
        _last_resort(sorted(stuck), m, matches, labels, own_iou, expand, pa, pg, pi, tol, device)
    return matches, labels


def _last_resort(stuck, m, matches, labels, own_iou, recollect, pa, pg, pi, tol, device) -> None:
    """Rule 3: take a non-best anchor from a GT that owns two or more positives."""
    posm = labels == 1
    count = torch.bincount(matches[posm], minlength=m)
    owner_best = torch.zeros(m, dtype=own_iou.dtype, device=device)
    owner_best.scatter_reduce_(0, matches[posm], own_iou[posm], "amax")
    for g in stuck:
        if recollect is None:  # quality-matrix path: the pair list is complete
            sel = pg == g
            a2, i2 = pa[sel], pi[sel]
        else:
            _, a2, i2 = recollect(torch.tensor([g], dtype=torch.long, device=device))
        if a2.numel() == 0:
            continue
        own = matches[a2]
        ok = (labels[a2] == 1) & (own >= 0)
        own_c = own.clamp(min=0)
        ok &= (count[own_c] >= 2) & (own_iou[a2] < owner_best[own_c] - tol)
        if not bool(ok.any()):
            continue
        a2, i2 = a2[ok], i2[ok]
        a = int(a2[i2 == i2.max()].min())
        old = int(matches[a])
        count[old] -= 1
        count[g] += 1
        matches[a] = g
        own_iou[a] = i2[a2 == a][0]
        owner_best[g] = torch.maximum(owner_best[g], own_iou[a])


def positives_per_gt(matches: Tensor, labels: Tensor, num_gts: Union[int, Sequence[int]]) -> Union[Tensor, List[Tensor]]:
    """Number of positive anchors of each GT.

    Single image: ``matches [A]``, ``labels [A]``, ``num_gts: int`` -> ``[M]``. Batch: ``[B, A]``
    tensors and a list of ``M_b`` -> list of ``[M_b]``. A 0 entry is a GT left without a positive.
    """
    if matches.dim() == 1:
        sel = labels == 1
        return torch.bincount(matches[sel], minlength=int(num_gts))[: int(num_gts)]
    return [positives_per_gt(matches[b], labels[b], int(k)) for b, k in enumerate(num_gts)]
