"""BoxCoder round trip and peers' values; smooth L1."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from yolo_focal_plugin.retina import BoxCoder, RetinaMatcher, anchors_for_image, smooth_l1_loss


def test_known_deltas():
    anchor = torch.tensor([[0.0, 0, 10, 10]])
    gt = torch.tensor([[5.0, 5, 25, 25]])  # centre (15, 15), 20 x 20
    d = BoxCoder().encode(gt, anchor)
    assert d[0].tolist() == pytest.approx([1.0, 1.0, math.log(2), math.log(2)], abs=1e-6)
    assert BoxCoder().encode(anchor, anchor).abs().max() == 0


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (5.0, 5.0, 10.0, 10.0)])
def test_round_trip_on_matched_anchors_within_1e3_px(weights):
    anchors = anchors_for_image(640, 640)
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 560
    wh = 4 + torch.rand(200, 2, generator=g) * 500
    gts = torch.cat([xy, (xy + wh).clamp(max=640)], 1)
    matches, labels = RetinaMatcher()(anchors, gts)
    pos = labels == 1
    a, t = anchors[pos], gts[matches[pos]]
    coder = BoxCoder(weights)
    back = coder.decode(coder.encode(t, a), a)
    assert (back - t).abs().max().item() < 1e-3


def test_agrees_with_torchvision_box_coder():
    det_utils = pytest.importorskip("torchvision.models.detection._utils")
    tv = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
    anchors = torch.tensor([[0.0, 0, 10, 10], [100, 50, 164, 82], [-20, -20, 30, 60]])
    gts = torch.tensor([[2.0, 1, 9, 12], [90, 40, 170, 100], [0, 0, 5, 5]])
    ours = BoxCoder()
    assert torch.allclose(ours.encode(gts, anchors), tv.encode_single(gts, anchors), atol=1e-6)
    deltas = torch.tensor([[0.1, -0.2, 0.3, -0.4], [1.0, 2.0, -1.0, 0.5], [0.0, 0.0, 10.0, 10.0]])
    assert torch.allclose(ours.decode(deltas, anchors), tv.decode_single(deltas, anchors), atol=1e-4)


def test_decode_clamps_huge_scale_deltas():
    anchor = torch.tensor([[0.0, 0, 16, 16]])
    out = BoxCoder().decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), anchor)
    assert torch.isfinite(out).all()
    assert (out[0, 2] - out[0, 0]).item() == pytest.approx(1000.0, rel=1e-5)  # 16 * 1000/16


def test_batched_shapes():
    anchors = anchors_for_image(64, 64)[:10]
    deltas = torch.zeros(2, 10, 4)
    assert torch.allclose(BoxCoder().decode(deltas, anchors), anchors.expand(2, 10, 4), atol=1e-5)


@pytest.mark.parametrize("weights, clamp", [((1, 1, 1), 1.0), ((1, 1, 0, 1), 1.0), ((1, 1, 1, 1), 0.0)])
def test_bad_coder_settings(weights, clamp):
    with pytest.raises(ValueError):
        BoxCoder(weights, clamp)


@pytest.mark.parametrize("beta", [1.0 / 9.0, 0.5, 1.0])
def test_smooth_l1_matches_torch(beta):
    x = torch.linspace(-2, 2, 101)
    y = torch.zeros_like(x)
    assert torch.allclose(smooth_l1_loss(x, y, beta, "none"), F.smooth_l1_loss(x, y, beta=beta, reduction="none"))
    assert torch.allclose(smooth_l1_loss(x, y, beta), F.smooth_l1_loss(x, y, beta=beta, reduction="sum"))
    assert torch.allclose(smooth_l1_loss(x, y, beta, "mean"), F.smooth_l1_loss(x, y, beta=beta, reduction="mean"))


def test_smooth_l1_values_and_beta_zero_is_l1():
    x = torch.tensor([0.05, 0.5, -2.0])
    out = smooth_l1_loss(x, torch.zeros(3), beta=0.1, reduction="none")
    assert out.tolist() == pytest.approx([0.5 * 0.05 ** 2 / 0.1, 0.5 - 0.05, 2.0 - 0.05])
    l1 = smooth_l1_loss(x, torch.zeros(3), beta=0.0, reduction="none")
    assert l1.tolist() == pytest.approx([0.05, 0.5, 2.0])
    x = torch.zeros(3, requires_grad=True)
    smooth_l1_loss(x, torch.zeros(3), beta=0.0).backward()
    assert torch.isfinite(x.grad).all()


def test_smooth_l1_bad_args():
    with pytest.raises(ValueError, match="beta"):
        smooth_l1_loss(torch.zeros(1), torch.zeros(1), beta=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        smooth_l1_loss(torch.zeros(1), torch.zeros(1), reduction="avg")
