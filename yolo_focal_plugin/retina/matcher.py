"""RetinaNet-style IoU matcher in which every ground truth gets a positive anchor where it can.

The contract is the docstring of :class:`RetinaMatcher`; ``docs/retina.md`` compares it with
torchvision, detectron2 and mmdetection on the same inputs. The code below it is in three parts:

* :class:`RetinaMatcher` checks inputs, finds the candidate pairs (``_pairs.AnchorIndex``) and
  turns GTs and anchors into compact ids;
* :class:`_Labelling` applies the rule to candidate :class:`~._pairs.Pairs`: thresholds, then
  the low-quality rounds and the last resort for needy GTs;
* a pair source (``_pairs.BoxPairSource`` for boxes, ``_pairs.ListedPairSource`` for a quality
  matrix) hands the rule more pairs of a GT when its short list runs out.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ._pairs import AnchorIndex, BoxPairSource, ListedPairSource, Pairs, PairSource

__all__ = ["RetinaMatcher", "positives_per_gt"]

_SEARCH_MODES = ("auto", "grid", "dense")
_CacheEntry = Tuple[tuple, Tensor, AnchorIndex]


class RetinaMatcher:
    r"""Label anchors positive / negative / ignored against ground-truth boxes by IoU.

    ``matcher(anchors [A, 4], gt_boxes [M, 4]) -> (matches int64 [A], labels int8 [A])``, boxes
    xyxy. ``match_batch`` matches ``B`` images sharing the anchors (``[B, A]`` outputs) and gives
    the same rows as ``B`` single calls; ``match_quality_matrix(quality [M, A])`` applies the same
    rule to a precomputed IoU-like matrix.

    **Contract.** Let ``q(a) = max_g IoU(g, a)`` over the image's ground truths (GTs), as float32
    ``torchvision.ops.box_iou`` computes it. Every anchor ends in exactly one of:

    * *positive* (``labels 1``): ``q(a) >= pos_iou``, and ``matches[a]`` is the GT reaching
      ``q(a)`` (lowest GT index among exactly equal IoUs); or it was given to a needy GT by the
      low-quality step below, and ``matches[a]`` is that GT;
    * *ignored* (``labels -1``): ``neg_iou <= q(a) < pos_iou`` and not given away;
      ``matches[a]`` is the best GT as above, for reference only;
    * *negative* (``labels 0``, ``matches -1``): everything else.

    Thresholds are plain ``>=``: IoU exactly 0.5 is positive, exactly 0.4 ignored (as in
    torchvision and detectron2).

    **Low-quality step** (``allow_low_quality=True``). A GT that owns no positive after the
    thresholds is *needy* (a small or thin box whose best IoU is 0.3; a box whose >= 0.5 anchors
    all overlap another box more). Needy GTs are served by three rules:

    1. *Threshold positives stay put in rule 2*, which hands out only anchors that are not
       positive. Rule 3 may take a positive from a GT that owns two or more, never its best.
    2. *Rounds.* Each unserved needy GT proposes its best remaining candidates: anchors that are
       not positive, with IoU > 0 to it, within ``tie_tol`` of its best such IoU (all of them
       when several tie, as torchvision and detectron2 do). Each proposed anchor goes to the
       proposer with the highest IoU to it (lowest GT index on an exactly equal IoU). A GT that
       wins an anchor is served and keeps all it won; the others propose their next-best free
       anchors in the next round. Every round serves at least one GT or finds one with no free
       anchor left, so the rounds end. (torchvision and detectron2 keep the column argmax as
       ``matches`` of such an anchor, which can be another GT; here it is the GT served.)
    3. *Last resort*, for a needy GT with no free overlapping anchor, in GT index order: among the
       positives overlapping it whose GT owns two or more positives and which are not that GT's
       best (within ``tie_tol``), it takes the one with the highest IoU to it (lowest anchor
       index on ties). This is the only way an anchor changes GT.

    A GT that owns a positive after the thresholds gets nothing from this step.

    **Which GTs can end without a positive.** (a) Dropped degenerate GTs (below). (b) With
    ``allow_low_quality=False``, any GT without a threshold positive. (c) With it, a GT that rule
    3 cannot serve: every anchor overlapping it is positive, each its owner's only positive or its
    owner's best. Rules 2 and 3 are greedy, not a maximum matching, so (c) can happen even when a
    one-to-one assignment giving every GT an anchor exists: ``[[.3, .2, 0, 0], [.29, 0, 0, 0],
    [0, 0, .3, .2], [0, 0, .29, 0]]`` leaves GT1 and GT3 without one (GT0 wins anchor 0 in round
    one, GT1 then has no free anchor; ``GT0->1, GT1->0`` would serve both). With more GTs than
    overlapping anchors (c) is unavoidable. RetinaNet anchors never reached (c) in the tests and
    benchmarks; :func:`positives_per_gt` reports it.

    **Degenerate GTs** never create positives (in torchvision, detectron2 and mmdetection an
    all-zero IoU row turns every anchor positive; mmdetection #8289). A GT is degenerate if a
    coordinate is NaN/inf, if ``x2 <= x1`` or ``y2 <= y1``, or if its IoU with every anchor is 0
    (e.g. outside the image). **Default: ``ValueError`` naming the box** (image, index,
    coordinates). With ``drop_degenerate=True`` it is skipped: no anchor points at it.

    **Ties** within ``tie_tol`` (absolute IoU) count as equal when choosing a GT's best
    anchors; detectron2 #3750 saw exact ``==`` lose 1-2 AP across reimplementations.

    **Edge cases.** No GT: every anchor negative. No anchor: outputs of length 0 (GTs are still
    validated).

    **Memory and equivalence.** No dense ``M x A`` IoU matrix is built: anchors on regular grids
    (RetinaNet, YOLOv5) are indexed and only pairs that can reach the needed IoU are enumerated
    (``_pairs.py``); other anchors are compared in chunks. At most ``max_iou_entries`` pairs exist
    at once. The outputs are identical for any budget, any ``candidate_search`` and to
    ``match_quality_matrix(box_iou(gts, anchors))`` (tested).

    **Anchor index reuse.** Indexing the anchors costs more than matching one image, so the index
    is kept for the anchor tensors used last: two per matcher, and four shared by every matcher
    in the process (so ``RetinaMatcher()(anchors, gt)`` in a loop pays it once). An entry is
    keyed by the tensor's storage, shape, strides, dtype, device and version counter, and holds
    the tensor alive: an in-place edit or a different tensor builds a new index. Tensors made
    under ``torch.inference_mode`` have no version counter and are never cached.

    Args:
        pos_iou: positive threshold, ``0 < neg_iou <= pos_iou <= 1``.
        neg_iou: below it an anchor is negative.
        allow_low_quality: serve needy GTs (rules above).
        tie_tol: absolute IoU tolerance for a GT's tied best anchors, in ``[0, 0.1)``.
        drop_degenerate: skip degenerate GTs instead of raising.
        max_iou_entries: memory budget, in IoU pairs held at once (~100 bytes each), >= 1024.
        candidate_search: ``"auto"`` (grid lookup where the anchors allow it, chunked dense
            comparison for the rest), ``"grid"`` (same, but ``ValueError`` if some anchors are not
            on a regular grid: no silent slow path in training) or ``"dense"`` (compare every
            anchor; the reference the tests use).
    """

    # process-wide anchor indexes, most recent first (see "Anchor index reuse")
    _shared_cache: List[_CacheEntry] = []
    _SHARED_CACHE_SIZE = 4
    _OWN_CACHE_SIZE = 2

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
        # this matcher's own entries: they survive other matchers' churn in the shared cache
        self._cache: List[_CacheEntry] = []

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
        pairs = Pairs(pg, pa, quality[pg, pa])
        q = pairs.best_per_gt(m, 0.0)
        active = self._check_zero_rows(q, lambda g: f"quality row {g}")
        # the list holds every overlapping pair, so every GT's list is complete
        complete = torch.ones(m, dtype=torch.bool, device=quality.device)
        return _Labelling(self, a, pairs, q, active, complete, ListedPairSource(pairs, m)).run()

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
        """The anchors' index, from this matcher's cache, the shared one, or built (and cached)."""
        # Inference tensors (anchors built under torch.inference_mode, e.g. in yolov5's val loop)
        # have no version counter, so an in-place edit could not be detected: never cache them.
        cacheable = not anchors.is_inference()
        key = (anchors.data_ptr(), tuple(anchors.shape), tuple(anchors.stride()), anchors.dtype,
               str(anchors.device), anchors._version if cacheable else None, self.candidate_search)
        if cacheable:
            # an entry holds its tensor alive, so an equal data_ptr means the same storage
            hit = next((e for e in self._cache + RetinaMatcher._shared_cache if e[0] == key), None)
            if hit is not None:
                self._remember(hit)
                return hit[2]
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
            self._remember((key, anchors, idx))
        return idx

    def _remember(self, entry: _CacheEntry) -> None:
        """Put ``entry`` first in this matcher's cache and in the shared one (LRU)."""
        def first(cache: List[_CacheEntry], size: int) -> List[_CacheEntry]:
            return [entry] + [e for e in cache if e[0] != entry[0]][: size - 1]

        if not self._cache or self._cache[0][0] != entry[0]:
            self._cache = first(self._cache, self._OWN_CACHE_SIZE)
        shared = RetinaMatcher._shared_cache
        if not shared or shared[0][0] != entry[0]:
            # rebinding (not mutating) keeps a concurrent reader's list intact
            RetinaMatcher._shared_cache = first(shared, self._SHARED_CACHE_SIZE)

    def _check_zero_rows(self, q: Tensor, name: Callable[[int], str]) -> Tensor:
        """``[m]`` bool: GTs to match; raises on a GT with IoU 0 everywhere unless ``drop_degenerate``."""
        zero = q <= 0
        if zero.any() and not self.drop_degenerate:
            g = int(torch.nonzero(zero)[0])
            raise ValueError(
                f"{name(g)} has IoU 0 with every anchor (outside the anchors' coverage?): it would "
                "turn background anchors positive in a low-quality matching step. Remove it, or pass "
                "drop_degenerate=True to skip such boxes."
            )
        return ~zero

    def _check_boxes(self, gts: Tensor, img: Tensor, local: Tensor) -> Tensor:
        """``[M]`` bool: GTs with a NaN/inf coordinate or no area; raises unless ``drop_degenerate``."""
        finite = torch.isfinite(gts).all(1)
        bad = ~(finite & (gts[:, 2] > gts[:, 0]) & (gts[:, 3] > gts[:, 1]))
        if bad.any() and not self.drop_degenerate:
            g = int(torch.nonzero(bad)[0])
            why = "has a NaN/inf coordinate" if not bool(finite[g]) else "has zero or negative area (x2 <= x1 or y2 <= y1)"
            if bool((gts[g] == 0).all()):
                why += " (zero padding? pass valid= to match_batch)"
            raise ValueError(
                f"gt box {int(local[g])} of image {int(img[g])} = {gts[g].tolist()} {why}; remove it, "
                "or pass drop_degenerate=True to skip such boxes."
            )
        return bad

    def _match(self, anchors: Tensor, gts: Tensor, img: Tensor, local: Tensor, nb: int) -> Tuple[Tensor, Tensor]:
        """``gts [M, 4]`` of images ``img [M]`` (row ``local [M]`` there) -> ``[nb, A]`` outputs."""
        dev = anchors.device
        na = anchors.shape[0]
        bad = self._check_boxes(gts, img, local)  # even without anchors: the caller's data is wrong
        if na == 0:
            return (torch.zeros(nb, 0, dtype=torch.long, device=dev), torch.zeros(nb, 0, dtype=torch.int8, device=dev))
        gidx = torch.nonzero(~bad).squeeze(1)  # compact GT id -> row of gts
        if gidx.numel() == 0:
            return (torch.full((nb, na), -1, dtype=torch.long, device=dev), torch.zeros(nb, na, dtype=torch.int8, device=dev))
        rows = BoxPairSource(gts[gidx].contiguous(), img[gidx], self._index(anchors), self.max_iou_entries)

        # A cheap lower bound of each GT's best IoU limits the first search to the pairs that can
        # matter: IoU >= min(neg_iou, best) - tie_tol (any other pair is a plain negative).
        low = rows.index.lower_bound(rows.boxes, rows.area, rows.budget)
        if rows.index.dense_idx.numel():
            low = torch.maximum(low, rows.index.dense_max(rows.boxes, rows.area, rows.budget))
        pairs = rows.pairs_of(None, low.clamp(max=self.neg_iou) - self.tie_tol)
        q = pairs.best_per_gt(rows.num, 0.0)
        active = self._check_zero_rows(
            q, lambda g: f"gt box {int(local[gidx[g]])} of image {int(rows.image[g])} = {rows.boxes[g].tolist()}"
        )
        # now with the exact best IoU: the same cut, and GTs whose cut is 0 have every pair listed
        reach = q.clamp(max=self.neg_iou) - self.tie_tol
        pairs = pairs[pairs.iou >= reach[pairs.gt]]
        matches, labels = _Labelling(self, nb * na, pairs, q, active, reach <= 0, rows).run()
        pos = matches >= 0
        matches[pos] = local[gidx[matches[pos]]]
        return matches.view(nb, na), labels.view(nb, na)


def _flatten_gts(
    gt_boxes: Union[Sequence[Tensor], Tensor], valid: Optional[Tensor], anchors: Tensor
) -> Tuple[Tensor, Tensor, Tensor, int]:
    """``(gts [M, 4], image [M], index within image [M], batch size)`` in the anchors' dtype/device."""
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


# -- the rule ------------------------------------------------------------------------------------

class _Labelling:
    """One application of :class:`RetinaMatcher`'s rule to candidate pairs.

    Ids are compact: GTs ``0..m-1``, anchors ``0..n-1``. ``pairs`` holds every pair with IoU > 0
    and IoU >= ``min(neg_iou, q[g]) - tie_tol`` (the GT's tied-best list, enough for the
    thresholds); ``q [m]`` is each GT's best IoU; ``active [m]`` the GTs to match (dropped
    degenerate GTs are not); ``complete [m]`` marks GTs whose pairs already include every
    overlapping anchor; ``source`` supplies the rest on demand (rule 2 widening, rule 3).
    """

    # Rule 2 widens a needy GT's list in stages: IoU >= min(neg_iou, q) (its tied best), >= q/2,
    # >= q/8, then everything. A needy GT usually needs only its second or third best anchor, so
    # most lists stay short.
    _STAGES = (1.0, 0.5, 0.125, 0.0)

    def __init__(self, cfg: RetinaMatcher, n: int, pairs: Pairs, q: Tensor, active: Tensor,
                 complete: Tensor, source: PairSource) -> None:
        self.cfg, self.tol = cfg, cfg.tie_tol
        self.m, self.n = q.shape[0], n
        self.dev = q.device
        self.q, self.active, self.source = q, active, source
        self.pairs = pairs[active[pairs.gt]]
        self.complete = complete.clone()

    def run(self) -> Tuple[Tensor, Tensor]:
        """``(matches [n], labels [n])`` with compact GT ids."""
        self._threshold()
        if self.cfg.allow_low_quality:
            needy = (torch.bincount(self.matches[self.labels == 1], minlength=self.m) == 0) & self.active
            if bool(needy.any()):
                stuck = self._rounds(needy)
                if stuck:
                    self._last_resort(stuck)
        return self.matches, self.labels

    def _threshold(self) -> None:
        """Labels by ``q(a)``; ``matches`` = lowest-index GT reaching it; ``own_iou`` of positives."""
        p, n = self.pairs, self.n
        best = torch.zeros(n, dtype=p.iou.dtype, device=self.dev).scatter_reduce_(0, p.anchor, p.iou, "amax")
        is_best = p.iou == best[p.anchor]
        owner = torch.full((n,), self.m, dtype=torch.long, device=self.dev)
        owner.scatter_reduce_(0, p.anchor[is_best], p.gt[is_best], "amin")
        pos = best >= self.cfg.pos_iou
        ign = (best >= self.cfg.neg_iou) & ~pos
        self.labels = torch.zeros(n, dtype=torch.int8, device=self.dev)
        self.labels[pos] = 1
        self.labels[ign] = -1
        self.matches = torch.where(pos | ign, owner, torch.full_like(owner, -1))
        self.own_iou = torch.where(pos, best, torch.zeros_like(best))  # IoU of a positive with its GT
        self.protected = pos  # rule 1

    # -- rule 2 ------------------------------------------------------------------------------
    def _rounds(self, needy: Tensor) -> List[int]:
        """Serve needy GTs round by round; returns the GTs left with no free anchor (sorted)."""
        tol = self.tol
        # reach[g]: g's candidate list holds every free anchor with IoU >= reach[g]
        self.reach = self.q.clamp(max=self.cfg.neg_iou) - tol
        self.complete |= self.reach <= 0
        self.stage = torch.where(self.complete, len(self._STAGES) - 1, 0)
        self.claimed = torch.zeros(self.n, dtype=torch.bool, device=self.dev)
        cand = self.pairs[needy[self.pairs.gt] & ~self.protected[self.pairs.anchor]]
        unserved = needy.clone()
        stuck: List[int] = []
        if bool((needy & ~self.complete).any()):
            cand = self._widen(torch.nonzero(needy & ~self.complete).squeeze(1), cand)
        while bool(unserved.any()):
            cand = cand[unserved[cand.gt] & ~self.claimed[cand.anchor]]
            best = cand.best_per_gt(self.m, -1.0)
            # A truncated list must not decide: its best might tie with (or fall below) anchors it lacks.
            short = unserved & ~self.complete & (best - tol < self.reach)
            if bool(short.any()):
                cand = self._widen(torch.nonzero(short).squeeze(1), cand)
                continue
            none_left = unserved & (best < 0)
            if bool(none_left.any()):
                stuck.extend(torch.nonzero(none_left).squeeze(1).tolist())
                unserved &= ~none_left
                continue
            won = self._award(cand[cand.iou >= best[cand.gt] - tol])
            unserved[won] = False
        return sorted(stuck)

    def _award(self, proposals: Pairs) -> Tensor:
        """Give each proposed anchor to its highest-IoU proposer (lowest id on an exact tie);
        returns the GTs that won (with repeats)."""
        anchor, slot = torch.unique(proposals.anchor, return_inverse=True)
        top_iou = torch.full((anchor.numel(),), -1.0, dtype=proposals.iou.dtype, device=self.dev)
        top_iou.scatter_reduce_(0, slot, proposals.iou, "amax")
        top = proposals.iou == top_iou[slot]
        winner = torch.full((anchor.numel(),), self.m, dtype=torch.long, device=self.dev)
        winner.scatter_reduce_(0, slot[top], proposals.gt[top], "amin")
        w = proposals[winner[slot] == proposals.gt]
        self.claimed[w.anchor] = True
        self.labels[w.anchor] = 1
        self.matches[w.anchor] = w.gt
        self.own_iou[w.anchor] = w.iou
        return w.gt

    def _widen(self, sub: Tensor, cand: Pairs) -> Pairs:
        """Replace the candidates of GTs ``sub`` by their next, longer list (free anchors only)."""
        self.stage[sub] += 1
        stages = torch.tensor(self._STAGES, dtype=self.q.dtype, device=self.dev)
        tau = self.q[sub].clamp(max=self.cfg.neg_iou) * stages[self.stage[sub]] - self.tol
        new = self.source.pairs_of(sub, tau)
        others = torch.ones(self.m, dtype=torch.bool, device=self.dev)
        others[sub] = False
        self.reach[sub] = tau
        self.complete[sub] = tau <= 0
        self.stage[sub[tau <= 0]] = len(self._STAGES) - 1
        free = ~self.protected[new.anchor] & ~self.claimed[new.anchor]
        return Pairs.cat([cand[others[cand.gt]], new[free]])

    # -- rule 3 ------------------------------------------------------------------------------
    def _last_resort(self, stuck: List[int]) -> None:
        """Each GT in ``stuck`` (index order) takes a non-best positive of a GT owning two or more."""
        pos = self.labels == 1
        count = torch.bincount(self.matches[pos], minlength=self.m)
        owner_best = torch.zeros(self.m, dtype=self.own_iou.dtype, device=self.dev)
        owner_best.scatter_reduce_(0, self.matches[pos], self.own_iou[pos], "amax")
        for g in stuck:
            p = self.source.pairs_of(torch.tensor([g], dtype=torch.long, device=self.dev))
            if len(p) == 0:
                continue
            owner = self.matches[p.anchor].clamp(min=0)
            ok = (self.labels[p.anchor] == 1) & (self.matches[p.anchor] >= 0)
            ok &= (count[owner] >= 2) & (self.own_iou[p.anchor] < owner_best[owner] - self.tol)
            if not bool(ok.any()):
                continue
            p = p[ok]
            a = int(p.anchor[p.iou == p.iou.max()].min())
            count[int(self.matches[a])] -= 1
            count[g] += 1
            self.matches[a] = g
            self.own_iou[a] = p.iou[p.anchor == a][0]
            owner_best[g] = torch.maximum(owner_best[g], self.own_iou[a])


def positives_per_gt(matches: Tensor, labels: Tensor, num_gts: Union[int, Sequence[int]]) -> Union[Tensor, List[Tensor]]:
    """Number of positive anchors of each GT.

    Single image: ``matches [A]``, ``labels [A]``, ``num_gts: int`` -> ``[M]``. Batch: ``[B, A]``
    tensors and a list of ``M_b`` -> list of ``[M_b]``. A 0 entry is a GT left without a positive.
    """
    if matches.dim() == 1:
        sel = labels == 1
        return torch.bincount(matches[sel], minlength=int(num_gts))[: int(num_gts)]
    return [positives_per_gt(matches[b], labels[b], int(k)) for b, k in enumerate(num_gts)]
