"""Criteria built from fl_* keys: normalisation, gamma warm-up, auto alpha, the RetinaNet assigner."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from yolo_focal_plugin.hyp import parse_focal_hyp
from yolo_focal_plugin.integration.criteria import EpochClock, GammaWarmup, PositivesNormalized, auto_alpha, build_criteria
from yolo_focal_plugin.integration.retina_assigner import IgnoreMasked
from yolo_focal_plugin.losses import FocalLoss


def test_positives_normalisation_divides_the_sum_by_positive_cells():
    crit = PositivesNormalized(nn.BCEWithLogitsLoss(), "obj")
    pred = torch.tensor([[0.5, -1.0, 2.0, 0.0]])
    true = torch.tensor([[0.8, 0.0, 0.0, 0.3]])  # two positive cells (IoU targets 0.8 and 0.3)
    expected = nn.functional.binary_cross_entropy_with_logits(pred, true, reduction="sum") / 2
    torch.testing.assert_close(crit(pred, true), expected)
    # no positive at all: the sum itself (divisor clamped to 1), never a division by zero
    zero = torch.zeros_like(true)
    torch.testing.assert_close(crit(pred, zero), nn.functional.binary_cross_entropy_with_logits(pred, zero, reduction="sum"))


def test_positives_normalisation_for_the_class_branch_counts_rows():
    crit = PositivesNormalized(FocalLoss(nn.BCEWithLogitsLoss(), gamma=2.0, alpha=0.25), "cls")
    pred, true = torch.randn(3, 4), torch.eye(4)[:3]
    reference = FocalLoss(nn.BCEWithLogitsLoss(reduction="sum"), gamma=2.0, alpha=0.25)(pred, true) / 3
    torch.testing.assert_close(crit(pred, true), reference)


def test_gamma_warmup_ramps_linearly_per_epoch():
    clock = EpochClock()
    crit = GammaWarmup(FocalLoss(nn.BCEWithLogitsLoss(), gamma=0.0), gamma=2.0, warmup=4, clock=clock)
    seen = []
    for epoch in range(6):
        clock.epoch = epoch
        crit(torch.zeros(2, 2), torch.ones(2, 2))
        seen.append(crit.criterion.gamma)
    assert seen == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]


def test_auto_alpha_from_yolov5_class_weights():
    counts = torch.tensor([80.0, 15.0, 5.0])
    weights = (1 / counts) / (1 / counts).sum() * 3  # what yolov5's labels_to_class_weights * nc gives
    alpha = auto_alpha(weights, 3)
    torch.testing.assert_close(alpha, torch.tensor([0.20, 0.85, 0.95]).clamp(0.05, 0.95), atol=1e-6, rtol=0)
    assert auto_alpha(None, 3) is None and auto_alpha(weights, 4) is None


def test_build_criteria_obeys_fl_apply_and_reports_it():
    cfg = parse_focal_hyp({"fl_loss": "qfocal", "fl_gamma": 1.0, "fl_apply": "obj"})
    crit = build_criteria(cfg, cls_pw=1.0, obj_pw=2.0, nc=3, device="cpu")
    assert type(crit.cls) is nn.BCEWithLogitsLoss and crit.cls.pos_weight.item() == 1.0
    assert crit.obj.loss_fcn.pos_weight.item() == 2.0 and crit.obj.gamma == 1.0
    assert crit.lines[0].startswith("cls: BCEWithLogitsLoss") and crit.lines[1].startswith("obj: QFocalLoss")


def test_gamma_zero_without_loss_key_is_plain_bce_for_assigner_runs():
    cfg = parse_focal_hyp({"fl_assigner": "retina"})
    crit = build_criteria(cfg, 1.0, 1.0, nc=3, device="cpu")
    assert type(crit.cls) is nn.BCEWithLogitsLoss
    assert isinstance(crit.obj, IgnoreMasked) and type(crit.obj.criterion) is nn.BCEWithLogitsLoss


def test_ignore_masked_leaves_ignored_cells_out():
    crit = IgnoreMasked(nn.BCEWithLogitsLoss(), "mean")
    pred, true = torch.randn(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    mask = torch.zeros(1, 3, 2, 2, dtype=torch.bool)
    mask[0, 1] = True
    crit.masks = [mask]
    full = nn.functional.binary_cross_entropy_with_logits(pred, true, reduction="none")
    torch.testing.assert_close(crit(pred, true), full[~mask].mean())
    assert crit.masks == []


def test_ignore_masked_without_a_mask_is_an_error_not_ignore_nothing():
    crit = IgnoreMasked(nn.BCEWithLogitsLoss(), "mean")
    pred, true = torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    with pytest.raises(RuntimeError, match="no ignore mask"):
        crit(pred, true)
    crit.set_masks([torch.zeros(1, 3, 4, 4, dtype=torch.bool)])
    with pytest.raises(RuntimeError, match="mask of shape"):
        crit(pred, true)

