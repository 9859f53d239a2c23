"""RetinaMatcher: thresholds, low-quality conflicts, degenerate boxes, peers' cases, chunking."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_iou

from yolo_focal_plugin.retina import RetinaMatcher, anchors_for_image, positives_per_gt
from yolo_focal_plugin.retina import _pairs

T = torch.tensor


def _scene(n: int, size: int, lo: float, hi: float, seed: int) -> torch.Tensor:
    """n boxes, log-uniform sizes in [lo, hi] px, aspect ratio in [1/2, 2], clipped to the image."""
    g = torch.Generator().manual_seed(seed)
    s = torch.exp(torch.empty(n).uniform_(math.log(lo), math.log(hi), generator=g))
    ar = torch.exp(torch.empty(n).uniform_(-0.69, 0.69, generator=g))
    w, h = s * ar.sqrt(), s / ar.sqrt()
    cx, cy = torch.rand(n, generator=g) * size, torch.rand(n, generator=g) * size
    b = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).clamp(0, size)
    return b[((b[:, 2] - b[:, 0]) > 1) & ((b[:, 3] - b[:, 1]) > 1)]


def _crowd(n: int, size: int, seed: int) -> torch.Tensor:
    """Hundreds of 6-20 px boxes plus near-duplicates (0.3 px jitter) and exact duplicates."""
    base = _scene(n, size, 6, 20, seed)
    g = torch.Generator().manual_seed(seed + 1)
    near = base[: n // 4] + torch.rand(n // 4, 4, generator=g) * 0.3
    return torch.cat([base, near, base[: n // 10]])


@pytest.fixture(scope="module")
def a320() -> torch.Tensor:
    return anchors_for_image(320, 320)


# ---- thresholds ---------------------------------------------------------------------------

@pytest.mark.parametrize("gt, label", [
    ([0, 0, 10, 5], 1),     # IoU 50/100 = 0.5 exactly -> positive
    ([0, 0, 10, 4], -1),    # IoU 0.4 exactly -> ignored
    ([0, 0, 10, 3.9], 0),   # IoU 0.39 -> negative
    ([0, 0, 10, 4.5], -1),  # 0.45 -> ignored
])
def test_threshold_semantics_exact_values(gt, label):
    m = RetinaMatcher(allow_low_quality=False)
    matches, labels = m(T([[0.0, 0, 10, 10]]), T([gt]))
    assert labels.tolist() == [label]
    assert matches.tolist() == [0 if label != 0 else -1]
    assert matches.dtype == torch.int64 and labels.dtype == torch.int8


def test_detectron2_threshold_values_on_matrix():
    # detectron2 run: IoU exactly 0.4 -> -1, exactly 0.5 -> 1, 0.39999 -> 0
    q = T([[0.4, 0.5, 0.39999, 0.7]])
    _, labels = RetinaMatcher(allow_low_quality=False).match_quality_matrix(q)
    assert labels.tolist() == [-1, 1, 0, 1]


@pytest.mark.parametrize("pos, neg", [(0.3, 0.4), (1.2, 0.4), (0.5, -0.1), (0.5, 0.0), (float("nan"), 0.4), (0.5, float("inf"))])
def test_bad_thresholds_raise(pos, neg):
    with pytest.raises(ValueError):
        RetinaMatcher(pos_iou=pos, neg_iou=neg)


def test_other_bad_settings_raise():
    with pytest.raises(ValueError, match="tie_tol"):
        RetinaMatcher(tie_tol=-1e-6)
    with pytest.raises(ValueError, match="max_iou_entries"):
        RetinaMatcher(max_iou_entries=10)
    with pytest.raises(ValueError, match="candidate_search"):
        RetinaMatcher(candidate_search="kd")


def test_equal_thresholds_have_no_ignore_band():
    _, labels = RetinaMatcher(0.5, 0.5, allow_low_quality=False).match_quality_matrix(T([[0.49, 0.5, 0.1]]))
    assert labels.tolist() == [0, 1, 0]


# ---- peers' cases (REFERENCE.md 6.2), RetinaNet thresholds ---------------------------------

def test_case_A_all_zero_row_raises_by_default():
    q = T([[0.9, 0, 0, 0.45], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="quality row 1"):
        RetinaMatcher().match_quality_matrix(q)


def test_case_A_all_zero_row_dropped_never_turns_background_positive():
    # torchvision/detectron2: every zero-IoU anchor becomes positive; mmdet: GT1 steals all four
    matches, labels = RetinaMatcher(drop_degenerate=True).match_quality_matrix(T([[0.9, 0, 0, 0.45], [0, 0, 0, 0]]))
    assert labels.tolist() == [1, 0, 0, -1]
    assert matches.tolist() == [0, -1, -1, 0]


def test_case_B_shared_best_anchor_both_gts_matched():
    # torchvision [-1,0,-1] and detectron2 labels [0,1,0] leave GT1 empty; mmdet leaves GT0 empty.
    matches, labels = RetinaMatcher().match_quality_matrix(T([[0.30, 0.45, 0.10], [0.20, 0.35, 0.05]]))
    # anchor 1 goes to GT0 (0.45 > 0.35); GT1 takes its next-best free anchor, anchor 0 (0.20)
    assert labels.tolist() == [1, 1, 0]
    assert matches.tolist() == [1, 0, -1]
    swapped_m, swapped_l = RetinaMatcher().match_quality_matrix(T([[0.20, 0.35, 0.05], [0.30, 0.45, 0.10]]))
    assert swapped_l.tolist() == [1, 1, 0] and swapped_m.tolist() == [0, 1, -1]


def test_case_C_high_iou_positive_is_never_stolen():
    # mmdet reassigns anchor 0 (IoU 0.9 to GT0) to GT1. Here GT1 takes a free anchor instead.
    matches, labels = RetinaMatcher().match_quality_matrix(T([[0.9, 0.6, 0.0], [0.8, 0.1, 0.05]]))
    assert matches.tolist() == [0, 0, 1] and labels.tolist() == [1, 1, 1]


def test_case_C_last_resort_takes_the_owner_s_second_anchor_not_its_best():
    # only two anchors, both >= 0.5 positives of GT0: GT1 takes anchor 1 (GT0 keeps its 0.9 best)
    matches, labels = RetinaMatcher().match_quality_matrix(T([[0.9, 0.6], [0.8, 0.1]]))
    assert matches.tolist() == [0, 1] and labels.tolist() == [1, 1]


def test_more_gts_than_anchors_leaves_one_unmatched_and_reports_it():
    matches, labels = RetinaMatcher().match_quality_matrix(T([[0.3], [0.2]]))
    assert matches.tolist() == [0] and labels.tolist() == [1]
    assert positives_per_gt(matches, labels, 2).tolist() == [1, 0]


def test_case_D_detectron2_unit_matrix_every_gt_gets_an_anchor():
    q = T([[0.15, 0.45, 0.2, 0.6], [0.3, 0.65, 0.05, 0.1], [0.05, 0.4, 0.25, 0.4]])
    matches, labels = RetinaMatcher(pos_iou=0.7, neg_iou=0.3).match_quality_matrix(q)
    # detectron2: matches [1,1,2,0], labels [-1,1,0,1] (GT2's tied best anchors 1 and 3 both go
    # to other GTs, so GT2 gets nothing). Here GT2 gets its next-best free anchor, anchor 2.
    assert matches.tolist() == [1, 1, 2, 0]
    assert labels.tolist() == [-1, 1, 1, 1]
    assert positives_per_gt(matches, labels, 3).tolist() == [1, 1, 1]


def test_torchvision_tie_case_all_tied_best_anchors_positive():
    matches, labels = RetinaMatcher().match_quality_matrix(T([[0.3, 0.3, 0.1]]))
    assert matches.tolist() == [0, 0, -1] and labels.tolist() == [1, 1, 0]


def test_ties_use_a_tolerance_not_exact_equality():
    q = T([[0.3, 0.3 - 3e-7, 0.1]])  # float noise between two geometrically equal anchors
    assert RetinaMatcher().match_quality_matrix(q)[1].tolist() == [1, 1, 0]
    assert RetinaMatcher(tie_tol=0.0).match_quality_matrix(q)[1].tolist() == [1, 0, 0]
    # beyond the tolerance it is a different anchor
    assert RetinaMatcher().match_quality_matrix(T([[0.3, 0.2999, 0.1]]))[1].tolist() == [1, 0, 0]


def test_ties_with_boxes_symmetric_anchors():
    # GT centred between two equal anchors: the same IoU with both -> both positive
    anchors = T([[0.0, 0, 10, 10], [10.0, 0, 20, 10], [40.0, 40, 50, 50]])
    matches, labels = RetinaMatcher()(anchors, T([[7.0, 2, 13, 8]]))
    assert labels.tolist() == [1, 1, 0] and matches.tolist() == [0, 0, -1]


def test_mmdet_max_iou_assigner_case():
    priors = T([[0.0, 0, 10, 10], [10, 10, 20, 20], [5, 5, 15, 15], [32, 32, 38, 42]])
    gts = T([[0.0, 0, 10, 9], [0, 10, 10, 19]])
    iou = box_iou(gts, priors)
    assert iou[0, 0].item() == pytest.approx(0.9) and iou[1, 2].item() == pytest.approx(0.1515, abs=1e-4)
    matches, labels = RetinaMatcher()(priors, gts)
    # mmdet gt_inds [1, 0, 2, 0] (1-based): prior 2 is GT1's low-quality match at IoU 0.15
    assert matches.tolist() == [0, -1, 1, -1] and labels.tolist() == [1, 0, 1, 0]


# ---- E, F: empty inputs -------------------------------------------------------------------

@pytest.mark.parametrize("empty", [torch.zeros(0, 4), torch.zeros(0), []])
def test_case_E_no_gt_every_anchor_negative(a320, empty):
    matches, labels = RetinaMatcher()(a320, torch.as_tensor(empty, dtype=torch.float32))
    assert matches.shape == (a320.shape[0],) and (matches == -1).all() and (labels == 0).all()
    bm, bl = RetinaMatcher().match_batch(a320, [torch.zeros(0, 4), T([[10.0, 10, 60, 60]])])
    assert (bl[0] == 0).all() and (bl[1] == 1).any()


def test_case_F_no_anchors_empty_outputs():
    matches, labels = RetinaMatcher()(torch.zeros(0, 4), T([[0.0, 0, 10, 10]]))
    assert matches.shape == (0,) and labels.shape == (0,) and labels.dtype == torch.int8
    qm, ql = RetinaMatcher().match_quality_matrix(torch.zeros(2, 0))
    assert qm.shape == (0,) and ql.shape == (0,)
    with pytest.raises(ValueError, match="zero or negative area"):  # GTs are still validated
        RetinaMatcher()(torch.zeros(0, 4), T([[0.0, 0, 0, 10]]))


# ---- degenerate GTs -----------------------------------------------------------------------

@pytest.mark.parametrize("bad, why", [
    ([30.0, 30, 30, 50], "zero or negative area"),
    ([30.0, 30, 50, 30], "zero or negative area"),
    ([50.0, 30, 30, 50], "zero or negative area"),
    ([30.0, float("nan"), 50, 50], "NaN/inf"),
    ([30.0, 30, float("inf"), 50], "NaN/inf"),
    ([5000.0, 5000, 5010, 5010], "IoU 0 with every anchor"),
])
def test_degenerate_gt_raises_naming_the_box(a320, bad, why):
    gts = T([[10.0, 10, 60, 60], bad])
    with pytest.raises(ValueError) as exc:
        RetinaMatcher()(a320, gts)
    assert why in str(exc.value) and "gt box 1 of image 0" in str(exc.value)
    assert "drop_degenerate=True" in str(exc.value)


@pytest.mark.parametrize("bad", [[30.0, 30, 30, 50], [30.0, float("nan"), 50, 50], [5000.0, 5000, 5010, 5010]])
def test_degenerate_gt_dropped_on_request_changes_nothing_else(a320, bad):
    good = T([[10.0, 10, 60, 60], [100, 120, 180, 150]])
    ref_m, ref_l = RetinaMatcher()(a320, good)
    m, l = RetinaMatcher(drop_degenerate=True)(a320, torch.cat([good[:1], T([bad]), good[1:]]))
    assert torch.equal(l, ref_l)
    # indices shift by one after the dropped row, and nothing points at it
    assert not (m == 1).any()
    assert torch.equal(m[ref_m == 0], torch.zeros_like(m[ref_m == 0]))
    assert (m[ref_m == 1] == 2).all()


# ---- crowded scenes: every GT gets a positive, no >= pos_iou positive is taken --------------

def _check_invariants(anchors, gts, matches, labels, pos_iou=0.5, neg_iou=0.4):
    iou = box_iou(gts, anchors)
    best, _ = iou.max(0)
    # lowest GT index among exactly equal best IoUs
    arg = torch.where(iou == best[None], torch.arange(len(gts))[:, None], len(gts)).min(0).values
    strong = best >= pos_iou
    assert (labels[strong] == 1).all(), "a >= pos_iou anchor is not positive"
    assert torch.equal(matches[strong], arg[strong]), "a >= pos_iou positive was taken from its best GT"
    weak = ~strong
    # what is not a threshold positive: negative below neg_iou unless given to a needy GT
    assert ((labels[weak] == 0) | (labels[weak] == 1) | (best[weak] >= neg_iou)).all()
    assert (labels[(best < neg_iou) & (labels != 1)] == 0).all()
    pos = labels == 1
    assert (iou[matches[pos], pos.nonzero().squeeze(1)] > 0).all(), "a positive with IoU 0 to its GT"
    counts = positives_per_gt(matches, labels, len(gts))
    assert (counts > 0).all(), f"{int((counts == 0).sum())} GTs without a positive"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crowded_small_boxes_and_near_duplicates(a320, seed):
    gts = _crowd(300, 320, seed)
    assert len(gts) > 350
    matches, labels = RetinaMatcher()(a320, gts)
    _check_invariants(a320, gts, matches, labels)


def test_exact_duplicate_boxes_get_different_anchors(a320):
    box = T([[100.0, 100, 140, 130]])
    gts = box.repeat(5, 1)
    matches, labels = RetinaMatcher()(a320, gts)
    counts = positives_per_gt(matches, labels, 5)
    assert (counts > 0).all()
    _check_invariants(a320, gts, matches, labels)


def test_torchvision_and_detectron2_leave_crowded_gts_unmatched_we_do_not(a320):
    # The motivating measurement, on a small scale: torchvision's Matcher on the same input.
    from torchvision.models.detection._utils import Matcher

    gts = _crowd(300, 320, 7)
    tv = Matcher(0.5, 0.4, allow_low_quality_matches=True)(box_iou(gts, a320))
    tv_counts = torch.bincount(tv[tv >= 0], minlength=len(gts))
    assert (tv_counts == 0).sum() > 0
    matches, labels = RetinaMatcher()(a320, gts)
    assert (positives_per_gt(matches, labels, len(gts)) > 0).all()


def test_same_labels_as_torchvision_when_no_gt_is_needy(a320):
    from torchvision.models.detection._utils import Matcher

    gts = _scene(12, 320, 40, 200, seed=3)
    tv = Matcher(0.5, 0.4, allow_low_quality_matches=True)(box_iou(gts, a320))
    matches, labels = RetinaMatcher()(a320, gts)
    assert (positives_per_gt(matches, labels, len(gts)) > 0).all()
    tv_labels = torch.where(tv >= 0, 1, torch.where(tv == -2, -1, 0)).to(torch.int8)
    assert torch.equal(labels, tv_labels)
    assert torch.equal(matches[labels == 1], tv[labels == 1])


# ---- equivalence of search strategies, chunking and batching -------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_grid_search_equals_dense_and_quality_matrix(a320, seed):
    gts = torch.cat([_scene(60, 320, 3, 400, seed), _crowd(40, 320, seed)])
    ref = RetinaMatcher().match_quality_matrix(box_iou(gts, a320))
    for m in (RetinaMatcher(), RetinaMatcher(candidate_search="dense", max_iou_entries=400_000),
              RetinaMatcher(max_iou_entries=1024)):
        got = m(a320, gts)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), m


def test_irregular_anchor_sets_fall_back_to_dense_and_agree():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 200
    wh = 5 + torch.rand(500, 2, generator=g) * 60
    anchors = torch.cat([xy, xy + wh], 1)
    anchors = torch.cat([anchors, anchors_for_image(128, 128)])  # part grid, part irregular
    gts = _scene(40, 200, 4, 120, seed=5)
    ref = RetinaMatcher().match_quality_matrix(box_iou(gts, anchors))
    got = RetinaMatcher(max_iou_entries=4096)(anchors, gts)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


def test_thousand_gts_chunked_under_budget_identical(monkeypatch):
    anchors = anchors_for_image(640, 640)
    gts = torch.cat([_scene(900, 640, 4, 300, seed=11), _crowd(200, 640, 12)])
    assert len(gts) >= 1000
    big = RetinaMatcher(max_iou_entries=1 << 22)(anchors, gts)

    budget = 4096
    seen = []
    orig = _pairs.AnchorIndex.pairs

    def spy(self, gt, tau, b, *args, **kwargs):
        for gl, a in orig(self, gt, tau, b, *args, **kwargs):
            seen.append(gl.numel())
            yield gl, a

    monkeypatch.setattr(_pairs.AnchorIndex, "pairs", spy)
    small = RetinaMatcher(max_iou_entries=budget)(anchors, gts)
    assert max(seen) <= budget and len(seen) > 10
    assert torch.equal(big[0], small[0]) and torch.equal(big[1], small[1])
    assert (positives_per_gt(*small, len(gts)) > 0).all()


def test_batch_list_padded_and_single_agree(a320):
    scenes = [_scene(20, 320, 8, 150, s) for s in range(3)] + [torch.zeros(0, 4)]
    m = RetinaMatcher()
    lm, ll = m.match_batch(a320, scenes)
    mmax = max(len(s) for s in scenes)
    padded = torch.zeros(len(scenes), mmax, 4)
    valid = torch.zeros(len(scenes), mmax, dtype=torch.bool)
    for b, s in enumerate(scenes):
        padded[b, : len(s)] = s
        valid[b, : len(s)] = True
    pm, pl = m.match_batch(a320, padded, valid)
    assert lm.shape == (4, a320.shape[0]) and torch.equal(lm, pm) and torch.equal(ll, pl)
    for b, s in enumerate(scenes):
        sm, sl = m(a320, s)
        assert torch.equal(sm, lm[b]) and torch.equal(sl, ll[b])
    counts = positives_per_gt(lm, ll, [len(s) for s in scenes])
    assert [c.numel() for c in counts] == [len(s) for s in scenes]
    with pytest.raises(ValueError, match="gt box 0 of image 3.*valid="):  # zero padding without `valid`
        m.match_batch(a320, padded)


def test_bad_shapes_raise(a320):
    with pytest.raises(ValueError, match=r"\[M, 4\]"):
        RetinaMatcher()(a320, torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"\[A, 4\]"):
        RetinaMatcher()(torch.zeros(3, 3), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="NaN"):
        RetinaMatcher()(T([[0.0, 0, float("nan"), 1]]), T([[0.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RetinaMatcher().match_quality_matrix(T([[1.5, 0.2]]))


def test_grid_mode_refuses_irregular_anchors(a320):
    gts = T([[10.0, 10, 60, 60]])
    assert torch.equal(RetinaMatcher(candidate_search="grid")(a320, gts)[1], RetinaMatcher()(a320, gts)[1])
    with pytest.raises(ValueError, match="not on a regular grid"):
        RetinaMatcher(candidate_search="grid")(torch.cat([a320, T([[1.0, 2, 33, 17], [5.0, 40, 37, 55]])]), gts)


def test_yolo_grid_anchor_boxes_are_matched_on_the_grid_path():
    from yolo_focal_plugin.retina import grid_anchor_boxes

    wh = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)], [(116, 90), (156, 198), (373, 326)]]
    boxes = grid_anchor_boxes(320, 320, wh, (8, 16, 32))
    gts = _crowd(200, 320, 4)
    got = RetinaMatcher(candidate_search="grid")(boxes, gts)
    ref = RetinaMatcher().match_quality_matrix(box_iou(gts, boxes))
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    assert (positives_per_gt(*got, len(gts)) > 0).all()


def test_anchors_made_under_inference_mode_are_matched_and_not_cached():
    # yolov5's val loop builds targets under torch.inference_mode; such tensors have no version counter
    with torch.inference_mode():
        anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 10.0, 20.0, 20.0]])
        gts = torch.tensor([[0.0, 0.0, 10.0, 9.0]])
        matcher = RetinaMatcher()
        matches, labels = matcher(anchors, gts)
        matches_again, _ = matcher(anchors, gts)
    assert labels.tolist() == [1, 0] and matches.tolist() == [0, -1] and matches_again.tolist() == [0, -1]
    assert matcher._cache == []


# ---- #13: the restated matcher gives the pre-#13 outputs bit for bit ------------------------

def test_same_outputs_as_the_pre_13_matcher_on_80_seeded_problems():
    # Frozen outputs of commit 7182b89 (see tests/_matcher_reference.py for how they were made):
    # grid, YOLO, irregular and tiny anchor sets, batches, eight settings, and quality matrices
    # with exact ties that reach the rounds and the last resort.
    from pathlib import Path

    from _matcher_reference import run  # tests/ is on sys.path (rootdir conftest, no __init__)

    ref = torch.load(Path(__file__).parent / "data" / "matcher_reference.pt", weights_only=True)
    assert len(ref["problems"]) == 80
    for problem, want in zip(ref["problems"], ref["outputs"]):
        got = run(problem)
        assert got.keys() == want.keys(), problem["name"]
        for k in want:
            if k == "error":
                assert got[k] == want[k], problem["name"]
            else:
                assert torch.equal(got[k], want[k]), (problem["name"], k)


def _unserved_gts_are_explained(iou, matches, labels, tie_tol=1e-5):
    """The documented rule (c): a matchable GT without a positive has every overlapping anchor
    positive, each its owner's only positive or its owner's best (within tie_tol)."""
    counts = positives_per_gt(matches, labels, iou.shape[0])
    pos = (labels == 1).nonzero().squeeze(1)
    owner_best = torch.zeros(iou.shape[0]).scatter_reduce_(0, matches[pos], iou[matches[pos], pos], "amax")
    for g in (counts == 0).nonzero().squeeze(1).tolist():
        for a in (iou[g] > 0).nonzero().squeeze(1).tolist():
            assert labels[a] == 1, f"GT {g} left without a positive although anchor {a} is free"
            o = int(matches[a])
            assert counts[o] == 1 or iou[o, a] >= owner_best[o] - tie_tol, (g, a, o)


def test_greedy_rule_can_leave_gts_unserved_although_a_one_to_one_assignment_exists():
    # The docstring's example: all IoUs below neg_iou, so every GT is needy.
    q = T([[0.30, 0.20, 0, 0], [0.29, 0, 0, 0], [0, 0, 0.30, 0.20], [0, 0, 0.29, 0]])
    import itertools

    # GT0->1, GT1->0, GT2->3, GT3->2 gives every GT an anchor it overlaps ...
    assert any(all(q[g, a] > 0 for g, a in enumerate(perm)) for perm in itertools.permutations(range(4)))
    matches, labels = RetinaMatcher().match_quality_matrix(q)
    # ... but round one gives anchor 0 to GT0 (0.30 > 0.29) and anchor 2 to GT2; GT1 and GT3 then
    # have no free anchor, and rule 3 may not take an owner's only positive.
    assert matches.tolist() == [0, -1, 2, -1] and labels.tolist() == [1, 0, 1, 0]
    assert positives_per_gt(matches, labels, 4).tolist() == [1, 0, 1, 0]
    _unserved_gts_are_explained(q, matches, labels)
    # the same on boxes: GT0 and GT1 both overlap anchor 0 most, only GT0 also overlaps anchor 1
    anchors = T([[0.0, 0, 10, 10], [20.0, 0, 30, 10]])
    gts = T([[4.0, 0, 22, 10], [-10.0, 0, 5, 10]])
    iou = box_iou(gts, anchors)
    assert iou[0, 0] > iou[1, 0] > 0 and 0 < iou[0, 1] and iou[1, 1] == 0 and iou.max() < 0.4
    bm, bl = RetinaMatcher()(anchors, gts)
    assert bm.tolist() == [0, -1] and positives_per_gt(bm, bl, 2).tolist() == [1, 0]
    _unserved_gts_are_explained(iou, bm, bl)


def test_every_gt_left_without_a_positive_is_one_the_contract_allows():
    from _matcher_reference import anchors_of, matcher_for, problems

    unserved = 0
    for p in problems():
        m = matcher_for(p["config"])
        if not m.allow_low_quality:
            continue  # (b): nothing to explain
        if "quality" in p:
            ious, outs = [p["quality"]], [m.match_quality_matrix(p["quality"])]
        else:
            anchors = anchors_of(p)
            try:
                bm, bl = m.match_batch(anchors, p["gts"])
            except ValueError:
                continue
            ious, outs = [box_iou(g, anchors) for g in p["gts"]], list(zip(bm, bl))
        for iou, (matches, labels) in zip(ious, outs):
            # (a) dropped degenerate GTs have no overlapping anchor here (NaN/no area/IoU 0 rows)
            iou = torch.nan_to_num(iou, nan=0.0)
            _unserved_gts_are_explained(iou, matches, labels, m.tie_tol)
            unserved += int((positives_per_gt(matches, labels, iou.shape[0])[iou.amax(1) > 0] == 0).sum())
    assert unserved > 0  # the problems do reach rule (c)


def test_fresh_matchers_share_one_anchor_index_and_an_edit_rebuilds_it(monkeypatch):
    built = []
    orig = _pairs.AnchorIndex.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        orig(self, *args, **kwargs)

    monkeypatch.setattr(_pairs.AnchorIndex, "__init__", counting)
    anchors = anchors_for_image(128, 128)
    scenes = [_scene(15, 128, 6, 90, seed) for seed in range(4)]
    per_image = [RetinaMatcher()(anchors, g) for g in scenes]  # the form users write first
    assert len(built) == 1
    batch = RetinaMatcher().match_batch(anchors, scenes)
    assert len(built) == 1
    for b, (m, l) in enumerate(per_image):
        assert torch.equal(m, batch[0][b]) and torch.equal(l, batch[1][b])
    RetinaMatcher(candidate_search="dense")(anchors, scenes[0])  # another mode, another index
    assert len(built) == 2
    anchors[0] += 1.0  # in place: the version counter moves, the cached index must not be used
    got = RetinaMatcher()(anchors, scenes[0])
    assert len(built) == 3
    ref = RetinaMatcher().match_quality_matrix(box_iou(scenes[0], anchors))
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
