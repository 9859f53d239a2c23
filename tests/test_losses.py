"""Loss core: agreement with peers (torchvision, YOLOv5 7.0.14, VarifocalNet's definition, cross-entropy),
ported peer cases (fvcore, torchvision), hand-computed values, gradients and numerics.

Notation as in ``yolo_focal_plugin.losses``: p = sigmoid(x), p_t = p t + (1-p)(1-t),
alpha_t = alpha t + (1-alpha)(1-t).
"""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from yolo_focal_plugin import losses
from yolo_focal_plugin.losses import _chunks
from yolo_focal_plugin.losses import (
    FocalLoss,
    QFocalLoss,
    VFLoss,
    quality_focal_loss,
    sigmoid_focal_loss,
    softmax_focal_loss,
    varifocal_loss,
)

D64 = torch.float64
REDUCTIONS = ["none", "mean", "sum"]
WRAPPERS = [FocalLoss, QFocalLoss, VFLoss]
FUNCTIONALS = {"focal": sigmoid_focal_loss, "qfocal": quality_focal_loss, "varifocal": varifocal_loss}


def close(a, b, tol=1e-9):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * 1e-3)


def grad_of(loss, x, seed=0):
    """d(loss . v)/dx for a fixed random v (v = 1 for scalars)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(loss.shape, generator=g, dtype=loss.dtype) if loss.dim() else torch.ones((), dtype=loss.dtype)
    (gx,) = torch.autograd.grad(loss, x, v)
    return gx


def diverse_pairs(seed=0, dtype=D64):
    """torchvision's TestFocalLoss inputs: probabilities small [0, .2], big [.8, 1] and uniform,
    each with all-0, all-1 and random binary targets, 5x2 per block, converted to logits."""
    g = torch.Generator().manual_seed(seed)
    blocks_x, blocks_t = [], []
    for lo, hi in [(0.0, 0.2), (0.8, 1.0), (0.0, 1.0)]:
        for kind in ("zeros", "ones", "random"):
            p = torch.empty(5, 2, dtype=dtype).uniform_(lo, hi, generator=g).clamp(1e-6, 1 - 1e-6)
            t = {"zeros": torch.zeros(5, 2, dtype=dtype), "ones": torch.ones(5, 2, dtype=dtype),
                 "random": torch.randint(0, 2, (5, 2), generator=g).to(dtype)}[kind]
            blocks_x.append(torch.logit(p))
            blocks_t.append(t)
    return torch.cat(blocks_x), torch.cat(blocks_t)


def vfl_reference(x, q, gamma, alpha, pos_weight=None, weight=None):
    """VarifocalNet's varifocal_loss (mmdet form, iou_weighted=True), written independently:
    focal_weight = q * (q > 0) + alpha * |p - q|**gamma * (q <= 0); loss = BCE(x, q) * focal_weight."""
    p = torch.sigmoid(x)
    a = 1.0 if alpha is None else alpha
    focal_weight = q * (q > 0).to(x.dtype) + a * (p - q).abs().pow(gamma) * (q <= 0).to(x.dtype)
    bce = F.binary_cross_entropy_with_logits(x, q, weight=weight, pos_weight=pos_weight, reduction="none")
    return bce * focal_weight


def reduce(loss, reduction):
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


# --------------------------------------------------------------------------------------------------
# agreement with peers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 1.5, 2.0, 3.3])
@pytest.mark.parametrize("alpha", [-1, 0.0, 0.25, 0.58, 1.0])
def test_focal_equals_torchvision(reduction, gamma, alpha):
    x, t = diverse_pairs(seed=1)
    g = torch.Generator().manual_seed(2)  # seeded, so that a failure reproduces
    x = torch.cat([x, torch.randn(40, 2, generator=g, dtype=D64) * 6]).requires_grad_()
    t = torch.cat([t, torch.randint(0, 2, (40, 2), generator=g).to(D64)])
    ref = torchvision.ops.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma, reduction=reduction)
    ours = sigmoid_focal_loss(x, t, gamma=gamma, alpha=alpha, reduction=reduction)
    close(ours, ref)
    close(grad_of(ours, x), grad_of(ref, x))
    module = FocalLoss(nn.BCEWithLogitsLoss(reduction=reduction), gamma=gamma, alpha=alpha)
    close(module(x, t), ref)


def yolov5_classes():
    from yolov5.utils.loss import FocalLoss as Y5FocalLoss
    from yolov5.utils.loss import QFocalLoss as Y5QFocalLoss

    return {FocalLoss: Y5FocalLoss, QFocalLoss: Y5QFocalLoss}


@pytest.mark.parametrize("cls", [FocalLoss, QFocalLoss])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [None, 1.0, 2.5])
@pytest.mark.parametrize("gamma,alpha", [(1.5, 0.25), (2.0, 0.6), (0.5, 0.25), (1.0, 0.0)])
def test_wrappers_equal_yolov5(cls, reduction, pos_weight, gamma, alpha):
    y5cls = yolov5_classes()[cls]
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(64, 7, generator=g, dtype=D64) * 8).requires_grad_()  # includes saturated logits
    hard = (torch.rand(64, 7, generator=g, dtype=D64) < 0.3).to(D64)
    soft = torch.rand(64, 7, generator=g, dtype=D64)  # YOLOv5's objectness target is a soft IoU
    weight = torch.rand(7, generator=g, dtype=D64) + 0.5

    def bce(**kw):
        pw = None if pos_weight is None else torch.tensor([pos_weight], dtype=D64)
        return nn.BCEWithLogitsLoss(pos_weight=pw, reduction=reduction, **kw)

    for t in (hard, soft):
        for kw in ({}, {"weight": weight}):
            ours = cls(bce(**kw), gamma=gamma, alpha=alpha)(x, t)
            ref = y5cls(bce(**kw), gamma=gamma, alpha=alpha)(x, t)
            close(ours, ref)
            ref_grad = grad_of(ref, x)
            finite = torch.isfinite(ref_grad)  # YOLOv5 is NaN for gamma < 1 at saturated logits
            assert finite.any()
            close(grad_of(ours, x)[finite], ref_grad[finite])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.75), (1.5, 0.25), (2.0, None), (3.0, [0.1, 0.9, 0.5])])
@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_varifocal_equals_varifocalnet_definition(reduction, gamma, alpha, pos_weight):
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(50, 3, generator=g, dtype=D64) * 4).requires_grad_()
    # IACS targets: IoU (clamped to >= 1e-6 as VarifocalNet does) at positives, 0 elsewhere
    iou = torch.rand(50, 3, generator=g, dtype=D64).clamp_min(1e-6)
    q = torch.where(torch.rand(50, 3, generator=g, dtype=D64) < 0.2, iou, torch.zeros((), dtype=D64))
    pw = None if pos_weight is None else torch.tensor([pos_weight], dtype=D64)
    a = torch.tensor(alpha, dtype=D64) if isinstance(alpha, list) else alpha
    ref = reduce(vfl_reference(x, q, gamma, a, pos_weight=pw), reduction)
    ours = VFLoss(nn.BCEWithLogitsLoss(pos_weight=pw, reduction=reduction), gamma=gamma, alpha=alpha)(x, q)
    close(ours, ref)
    close(grad_of(ours, x), grad_of(ref, x))
    close(varifocal_loss(x, q, gamma=gamma, alpha=alpha, reduction=reduction, pos_weight=pw), ref)


@pytest.mark.parametrize("cls", [FocalLoss, QFocalLoss])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("soft", [False, True])
def test_gamma0_alpha_off_is_bce(cls, reduction, soft):
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(30, 4, generator=g, dtype=D64) * 5).requires_grad_()
    t = torch.rand(30, 4, generator=g, dtype=D64)
    t = t if soft else (t < 0.5).to(D64)
    kw = dict(pos_weight=torch.tensor([1.7], dtype=D64), weight=torch.rand(4, generator=g, dtype=D64))
    ref = nn.BCEWithLogitsLoss(reduction=reduction, **kw)(x, t)
    ref_grad = grad_of(ref, x)
    for alpha in (-1, None):
        ours = cls(nn.BCEWithLogitsLoss(reduction=reduction, **kw), gamma=0.0, alpha=alpha)(x, t)
        close(ours, ref, tol=1e-12)
        close(grad_of(ours, x), ref_grad, tol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 2, 3), (6,)])
def test_softmax_focal_gamma0_is_cross_entropy(reduction, shape):
    g = torch.Generator().manual_seed(6)
    logits = (torch.randn(*shape, generator=g, dtype=D64) * 3).requires_grad_()
    class_dim = 0 if len(shape) == 1 else 1
    classes = shape[class_dim]
    tshape = shape[:class_dim] + shape[class_dim + 1:]
    target = torch.randint(0, classes, tshape, generator=g)
    if target.dim():
        target.view(-1)[::3] = -100  # ignored
    ref = F.cross_entropy(logits, target, reduction=reduction, ignore_index=-100)
    ours = softmax_focal_loss(logits, target, gamma=0.0, alpha=None, reduction=reduction)
    close(ours, ref, tol=1e-12)
    close(grad_of(ours, logits), grad_of(ref, logits), tol=1e-12)


def test_softmax_focal_custom_ignore_index_and_per_class_alpha():
    g = torch.Generator().manual_seed(7)
    logits = (torch.randn(20, 4, generator=g, dtype=D64) * 2).requires_grad_()
    target = torch.randint(0, 4, (20,), generator=g)
    target[:5] = 9
    alpha = torch.tensor([0.1, 0.4, 1.0, 2.0], dtype=D64)
    ours = softmax_focal_loss(logits, target, gamma=0.0, alpha=alpha, ignore_index=9, reduction="mean")
    # our mean is a plain mean over the 15 valid targets, not cross_entropy's sum / sum(weight)
    ref = F.cross_entropy(logits, target, weight=alpha, ignore_index=9, reduction="sum") / 15
    close(ours, ref)
    close(grad_of(ours, logits), grad_of(ref, logits))


def test_softmax_focal_all_ignored_mean_is_zero_with_zero_grad():
    logits = torch.randn(4, 3, dtype=D64, requires_grad=True)
    target = torch.full((4,), -100)
    loss = softmax_focal_loss(logits, target, gamma=2.0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    assert softmax_focal_loss(logits[:0], target[:0]).item() == 0.0
    assert F.cross_entropy(logits, target).isnan()  # what we deliberately do not copy


def test_softmax_focal_extreme_logits_finite_for_small_gamma():
    # kornia's case: [100, -100, 0] gives 0 for class 0 and 200 for class 1 (gamma 0)
    logits = torch.tensor([[100.0, -100.0, 0.0], [100.0, -100.0, 0.0]], requires_grad=True)
    target = torch.tensor([0, 1])
    loss = softmax_focal_loss(logits, target, gamma=0.0, reduction="none")
    close(loss, torch.tensor([0.0, 200.0]), tol=1e-6)
    for gamma in (0.1, 0.5, 0.9, 2.0):
        loss = softmax_focal_loss(logits, target, gamma=gamma, reduction="sum")
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), gamma


# --------------------------------------------------------------------------------------------------
# ported peer cases (fvcore tests/test_focal_loss.py, torchvision TestFocalLoss), in our words
# --------------------------------------------------------------------------------------------------


def logits_of(probs):
    return torch.logit(torch.tensor(probs, dtype=D64))


def test_fvcore_gamma0_equals_bce_mean_with_gradients():
    x = logits_of([0.95, 0.90, 0.98, 0.99]).requires_grad_()
    t = torch.ones(4, dtype=D64)
    ours = sigmoid_focal_loss(x, t, gamma=0, alpha=-1, reduction="mean")
    ref = F.binary_cross_entropy_with_logits(x, t, reduction="mean")
    close(ours, ref)
    close(grad_of(ours, x), grad_of(ref, x))


@pytest.mark.parametrize("probs", [[0.95, 0.90, 0.98, 0.99], [0.05, 0.12, 0.09, 0.17]])
def test_fvcore_easy_and_hard_positive_ratio(probs):
    # positives: BCE / FL = 1 / (1 - p)**2 for gamma 2, alpha off (easy: FL << BCE, hard: similar)
    x = logits_of(probs)
    t = torch.ones(4, dtype=D64)
    p = torch.tensor(probs, dtype=D64)
    ratio = F.binary_cross_entropy_with_logits(x, t, reduction="none") / sigmoid_focal_loss(x, t, gamma=2, alpha=-1)
    close(ratio, 1 / (1 - p) ** 2)


def test_fvcore_weighted_easy_ratio():
    # alpha 0.5 on positives halves the loss: BCE / FL = 2 / (1 - p)**2
    probs = [0.95, 0.90, 0.6, 0.3]
    x = logits_of(probs)
    t = torch.ones(4, dtype=D64)
    p = torch.tensor(probs, dtype=D64)
    ratio = F.binary_cross_entropy_with_logits(x, t, reduction="none") / sigmoid_focal_loss(x, t, gamma=2, alpha=0.5)
    close(ratio, 2 / (1 - p) ** 2)


def test_fvcore_alpha_one_ignores_negatives_alpha_zero_ignores_positives():
    x = logits_of([0.05, 0.12, 0.89, 0.79])
    t = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=D64)
    only_pos = sigmoid_focal_loss(x, t, gamma=2, alpha=1.0)
    only_neg = sigmoid_focal_loss(x, t, gamma=2, alpha=0.0)
    assert torch.all(only_pos[2:] == 0) and torch.all(only_pos[:2] > 0)
    assert torch.all(only_neg[:2] == 0) and torch.all(only_neg[2:] > 0)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fvcore_gamma0_equals_bce_2d_and_multiclass(reduction):
    x = logits_of([[0.05, 0.9], [0.52, 0.45], [0.89, 0.8], [0.39, 0.5]])
    t = torch.tensor([[1, 0], [1, 0], [1, 1], [0, 1]], dtype=D64)
    close(sigmoid_focal_loss(x, t, gamma=0, alpha=-1, reduction=reduction),
          F.binary_cross_entropy_with_logits(x, t, reduction=reduction))
    x4 = torch.randn(4, 4, dtype=D64, generator=torch.Generator().manual_seed(8))
    t4 = torch.eye(4, dtype=D64)  # 4x4 one-hot
    close(sigmoid_focal_loss(x4, t4, gamma=0, alpha=-1, reduction=reduction),
          F.binary_cross_entropy_with_logits(x4, t4, reduction=reduction))


@pytest.mark.parametrize("alpha", [-1, 0.0, 0.58, 1.0])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_torchvision_ratio_identity(alpha, gamma, seed):
    # FL <= BCE element-wise and FL / BCE == (1 - p_t)**gamma * alpha_t (alpha_t only if alpha >= 0)
    x, t = diverse_pairs(seed)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    fl = sigmoid_focal_loss(x, t, gamma=gamma, alpha=alpha)
    assert torch.all(fl <= bce * (1 + 1e-12))  # equal for gamma 0 and alpha off, up to rounding
    p = torch.sigmoid(x)
    p_t = p * t + (1 - p) * (1 - t)
    expected = (1 - p_t) ** gamma
    if alpha >= 0:
        expected = expected * (alpha * t + (1 - alpha) * (1 - t))
    close(fl / bce, expected, tol=1e-9)


# --------------------------------------------------------------------------------------------------
# hand-computed values
# --------------------------------------------------------------------------------------------------


def test_hand_computed_values():
    ln2, ln3, ln4 = math.log(2), math.log(3), math.log(4)
    # Focal, x = 0 (p = 1/2), t = 1, gamma 2, alpha 0.25:
    #   BCE = ln 2, (1 - p_t)^2 = 1/4, alpha_t = 1/4  ->  ln2 / 16 = 0.0433216988
    x0 = torch.zeros(1, dtype=D64, requires_grad=True)
    fl = sigmoid_focal_loss(x0, torch.ones(1, dtype=D64), gamma=2, alpha=0.25)
    close(fl, torch.tensor([ln2 / 16], dtype=D64))
    # its gradient with alpha off: d/dx[(1-p)^2] * BCE + (1-p)^2 * (p - 1)
    #   = -2 p (1-p)^2 ln2 + (1/4)(-1/2) = -(ln 2)/4 - 1/8 = -0.2982867951
    fl = sigmoid_focal_loss(x0, torch.ones(1, dtype=D64), gamma=2, alpha=None, reduction="sum")
    close(torch.autograd.grad(fl, x0)[0], torch.tensor([-ln2 / 4 - 1 / 8], dtype=D64))
    # QFocal (YOLOv5 defaults gamma 1.5, alpha 0.25), x = 0, t = 0.6:
    #   |t - p| = 0.1, 0.1^1.5 = 0.0316227766, alpha_t = 0.25*0.6 + 0.75*0.4 = 0.45,
    #   BCE(0, 0.6) = -(0.6 + 0.4) ln(1/2) = ln 2  ->  0.45 * 0.0316227766 * ln 2 = 0.0098636...
    qfl = QFocalLoss(nn.BCEWithLogitsLoss(reduction="sum"))(torch.zeros(1, dtype=D64), torch.tensor([0.6], dtype=D64))
    close(qfl, torch.tensor(0.45 * 0.1 ** 1.5 * ln2, dtype=D64))
    assert abs(qfl.item() - 0.0098636) < 1e-7
    # VFL, x = ln 3 (p = 3/4), gamma 2, alpha 0.75:
    #   negative q = 0: alpha p^2 * (-ln(1 - p)) = 0.75 * 0.5625 * ln 4 = 0.5848429...
    #   positive q = 0.5: q * -(0.5 ln 0.75 + 0.5 ln 0.25) = 0.5 * 0.8369882 = 0.4184941...
    x = torch.full((2,), ln3, dtype=D64)
    vfl = varifocal_loss(x, torch.tensor([0.0, 0.5], dtype=D64), gamma=2, alpha=0.75)
    close(vfl, torch.tensor([0.75 * 0.5625 * ln4, 0.5 * -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))], dtype=D64))
    assert abs(vfl[0].item() - 0.5848429) < 1e-6 and abs(vfl[1].item() - 0.4184941) < 1e-6
    # softmax focal, logits [0, ln 3] (p = [1/4, 3/4]), target 0, gamma 2: -(3/4)^2 ln(1/4) = 0.7797905...
    sfl = softmax_focal_loss(torch.tensor([[0.0, ln3]], dtype=D64), torch.tensor([0]), gamma=2.0)
    close(sfl, torch.tensor(0.5625 * ln4, dtype=D64))


# --------------------------------------------------------------------------------------------------
# gradients and numerics
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["focal", "qfocal", "varifocal"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5, 2.0, 2.7])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_sigmoid_family(kind, gamma, reduction):
    g = torch.Generator().manual_seed(9)
    x = (torch.randn(6, 3, generator=g, dtype=D64) * 3).requires_grad_()
    t = torch.rand(6, 3, generator=g, dtype=D64)
    t[0] = 0.0
    t[1] = 1.0
    fn = FUNCTIONALS[kind]
    pw = torch.tensor([0.5, 1.0, 2.0], dtype=D64)
    weight = torch.rand(6, 3, generator=g, dtype=D64)
    assert torch.autograd.gradcheck(lambda v: fn(v, t, gamma=gamma, alpha=[0.2, 0.5, 0.9], reduction=reduction,
                                                 pos_weight=pw), (x,))
    assert torch.autograd.gradcheck(lambda v: fn(v, t, gamma=gamma, alpha=0.3, reduction=reduction,
                                                 weight=weight), (x,))


@pytest.mark.parametrize("cls", WRAPPERS)
def test_gradcheck_wrappers_and_target_gradient(cls):
    g = torch.Generator().manual_seed(10)
    x = (torch.randn(5, 4, generator=g, dtype=D64) * 2).requires_grad_()
    t = (torch.rand(5, 4, generator=g, dtype=D64) * 0.8 + 0.1).requires_grad_()  # soft, away from the q = 0 switch
    module = cls(nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.5], dtype=D64)))
    assert torch.autograd.gradcheck(module, (x, t.detach()))
    assert torch.autograd.gradcheck(module, (x, t))  # targets that need grad take the composite path


def test_gradcheck_softmax_focal():
    g = torch.Generator().manual_seed(11)
    logits = (torch.randn(6, 4, generator=g, dtype=D64) * 2).requires_grad_()
    target = torch.tensor([0, 3, 1, -100, 2, 2])
    for gamma in (0.0, 0.5, 2.0):
        assert torch.autograd.gradcheck(
            lambda v: softmax_focal_loss(v, target, gamma=gamma, alpha=[0.3, 1.0, 0.5, 2.0], reduction="none"), (logits,))


SATURATED = [17.0, 18.0, 20.0, 30.0, 40.0, 60.0, 88.0, 89.0, 100.0]


@pytest.mark.parametrize("gamma", [0.05, 0.25, 0.5, 0.75, 0.99])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, D64])
def test_small_gamma_finite_at_saturated_logits(gamma, dtype):
    mags = torch.tensor(SATURATED)
    x = torch.cat([mags, -mags]).repeat(3).to(dtype).requires_grad_()
    n = len(SATURATED) * 2
    t = torch.cat([torch.ones(n), torch.zeros(n), torch.full((n,), 0.6)]).to(dtype)
    for cls in WRAPPERS:
        for reduction in REDUCTIONS:
            loss = cls(nn.BCEWithLogitsLoss(reduction=reduction), gamma=gamma)(x, t)
            grad = grad_of(loss, x)
            assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), (cls.__name__, reduction)
    for alpha in ([0.3], None):
        loss = softmax_focal_loss(torch.stack([x, -x], 1), torch.zeros(3 * n, dtype=torch.long), gamma=gamma,
                                  alpha=alpha and alpha * 2, reduction="sum")
        assert torch.isfinite(loss) and torch.isfinite(torch.autograd.grad(loss, x)[0]).all()


def test_peers_really_are_nan_there():
    """The saturated case is real: torchvision and YOLOv5 give NaN gradients at gamma 0.5."""
    x = torch.tensor([30.0, -30.0], requires_grad=True)
    t = torch.tensor([1.0, 0.0])
    tv = torchvision.ops.sigmoid_focal_loss(x, t, alpha=0.25, gamma=0.5, reduction="sum")
    assert torch.isnan(torch.autograd.grad(tv, x)[0]).all()
    y5 = yolov5_classes()[FocalLoss](nn.BCEWithLogitsLoss(), gamma=0.5)(x, t)
    assert torch.isnan(torch.autograd.grad(y5, x)[0]).all()
    ours = FocalLoss(nn.BCEWithLogitsLoss(), gamma=0.5)(x, t)
    assert torch.isfinite(torch.autograd.grad(ours, x)[0]).all()


@pytest.mark.parametrize("cls", WRAPPERS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_half_inputs_agree_with_float32(cls, dtype, reduction):
    g = torch.Generator().manual_seed(12)
    x32 = (torch.randn(300, 5, generator=g) * 4).to(dtype).float()  # representable in both dtypes
    t32 = torch.where(torch.rand(300, 5, generator=g) < 0.3, torch.rand(300, 5, generator=g), torch.zeros(()))
    t32 = t32.to(dtype).float()
    xh = x32.to(dtype).requires_grad_()
    x32.requires_grad_()
    ref = cls(nn.BCEWithLogitsLoss(reduction=reduction))(x32, t32)
    out = cls(nn.BCEWithLogitsLoss(reduction=reduction))(xh, t32.to(dtype))
    assert out.dtype == dtype  # returned in the input dtype; computed in float32
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol * 1e-2)
    v = torch.randn(ref.shape, generator=g).to(dtype)  # the same upstream gradient for both
    (gh,) = torch.autograd.grad(out, xh, v)
    (g32,) = torch.autograd.grad(ref, x32, v.float())
    assert gh.dtype == dtype
    # a float16 mean gradient (~1e-4 here) is partly subnormal: half a subnormal step is the best possible
    atol = 2.0**-24 if (dtype == torch.float16 and reduction == "mean") else tol * 1e-3
    torch.testing.assert_close(gh.float(), g32, rtol=tol, atol=atol)


# --------------------------------------------------------------------------------------------------
# soft targets
# --------------------------------------------------------------------------------------------------


def argmin_p(loss_fn, target, lo=0.3, hi=0.95, steps=65001):
    p = torch.linspace(lo, hi, steps, dtype=D64)
    t = torch.full_like(p, target)
    return p[loss_fn(torch.logit(p), t).argmin()].item()


@pytest.mark.parametrize("target", [0.3, 0.6, 0.85])
def test_quality_and_varifocal_minimised_at_target(target):
    assert argmin_p(lambda x, t: quality_focal_loss(x, t, gamma=2.0), target, 0.05) == pytest.approx(target, abs=2e-5)
    qfl = QFocalLoss(nn.BCEWithLogitsLoss(reduction="none"), gamma=1.5, alpha=0.25)
    assert argmin_p(qfl, target, 0.05) == pytest.approx(target, abs=2e-5)
    vfl = VFLoss(nn.BCEWithLogitsLoss(reduction="none"))
    assert argmin_p(vfl, target, 0.05) == pytest.approx(target, abs=2e-5)


def test_focal_loss_is_biased_for_soft_targets():
    # REFERENCE 1.3: p_t-style focal loss with t = 0.6, gamma 2 is minimised at p ~ 0.724, not 0.6
    p_star = argmin_p(lambda x, t: sigmoid_focal_loss(x, t, gamma=2.0, alpha=None), 0.6)
    assert p_star == pytest.approx(0.724, abs=1e-3)
    module = FocalLoss(nn.BCEWithLogitsLoss(reduction="none"), gamma=2.0)  # alpha_t is constant in p
    assert argmin_p(module, 0.6) == pytest.approx(p_star, abs=1e-5)


# --------------------------------------------------------------------------------------------------
# reductions, attributes, validation, per-class alpha
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", WRAPPERS)
def test_reduction_applies_to_weighted_elements(cls):
    g = torch.Generator().manual_seed(13)
    x = torch.randn(40, 6, generator=g, dtype=D64) * 3
    t = torch.where(torch.rand(40, 6, generator=g, dtype=D64) < 0.3, torch.rand(40, 6, generator=g, dtype=D64),
                    torch.zeros((), dtype=D64))
    elements = cls(nn.BCEWithLogitsLoss(reduction="none"))(x, t)
    assert elements.shape == x.shape
    mean_module = cls(nn.BCEWithLogitsLoss(reduction="mean"))  # what users pass; inner becomes 'none'
    assert mean_module.loss_fcn.reduction == "none" and mean_module.reduction == "mean"
    close(mean_module(x, t), elements.mean())
    close(cls(nn.BCEWithLogitsLoss(reduction="sum"))(x, t), elements.sum())
    # the widely copied bug: a weight times an already-reduced BCE mean is something else
    assert not torch.isclose(mean_module(x, t), (elements / nn.BCEWithLogitsLoss(reduction="none")(x, t)).mean()
                             * F.binary_cross_entropy_with_logits(x, t))


@pytest.mark.parametrize("cls", WRAPPERS)
def test_attributes_reassigned_after_construction_are_honoured(cls):
    g = torch.Generator().manual_seed(14)
    x = torch.randn(20, 3, generator=g, dtype=D64)
    t = (torch.rand(20, 3, generator=g, dtype=D64) < 0.4).to(D64)
    module = cls(nn.BCEWithLogitsLoss())
    fn = FUNCTIONALS[module._kind]
    module.gamma = 0.0  # gamma warm-up starts here
    close(module(x, t), fn(x, t, gamma=0.0, alpha=module.alpha, reduction="mean"))
    module.gamma = 0.7
    module.reduction = "sum"  # sum / num-positives normalisation
    close(module(x, t), fn(x, t, gamma=0.7, alpha=module.alpha, reduction="sum"))
    module.alpha = [0.1, 0.5, 0.9]
    assert isinstance(module.alpha, torch.Tensor) and "3 classes" in repr(module)
    close(module(x, t), fn(x, t, gamma=0.7, alpha=[0.1, 0.5, 0.9], reduction="sum"))
    module.alpha = -1
    assert module.alpha is None


BAD_GAMMAS = [-0.1, float("nan"), float("inf"), "2", None, True]
BAD_ALPHAS = [1.5, -0.5, float("nan"), [0.2, 1.2], [[0.1, 0.2]], [], "0.25", True]


@pytest.mark.parametrize("gamma", BAD_GAMMAS)
def test_invalid_gamma_raises_value_error_naming_it(gamma):
    x, t = torch.zeros(2), torch.zeros(2)
    for call in (lambda: FocalLoss(nn.BCEWithLogitsLoss(), gamma=gamma),
                 lambda: setattr(VFLoss(nn.BCEWithLogitsLoss()), "gamma", gamma),
                 lambda: quality_focal_loss(x, t, gamma=gamma),
                 lambda: softmax_focal_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), gamma=gamma)):
        with pytest.raises(ValueError, match=r"gamma must be a finite float >= 0, got"):
            call()


@pytest.mark.parametrize("alpha", BAD_ALPHAS)
def test_invalid_alpha_raises_value_error_naming_it(alpha):
    x, t = torch.zeros(2), torch.zeros(2)
    for call in (lambda: QFocalLoss(nn.BCEWithLogitsLoss(), alpha=alpha),
                 lambda: setattr(FocalLoss(nn.BCEWithLogitsLoss()), "alpha", alpha),
                 lambda: sigmoid_focal_loss(x, t, alpha=alpha),
                 lambda: varifocal_loss(x, t, alpha=alpha)):
        with pytest.raises(ValueError, match=r"alpha must be .*\[0, 1\]"):
            call()


def test_invalid_reduction_and_softmax_alpha():
    with pytest.raises(ValueError, match="reduction must be one of 'none', 'mean', 'sum', got 'avg'"):
        FocalLoss(nn.BCEWithLogitsLoss(reduction="avg"))
    module = VFLoss(nn.BCEWithLogitsLoss())
    with pytest.raises(ValueError, match="reduction"):
        module.reduction = "batchmean"
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), reduction="xyz")
    with pytest.raises(ValueError, match="alpha .* scalar"):
        softmax_focal_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), alpha=0.25)
    with pytest.raises(ValueError, match="one weight per class"):
        softmax_focal_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), alpha=[1.0, 2.0])
    with pytest.raises(ValueError, match="Target size"):
        sigmoid_focal_loss(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(TypeError, match="loss_fcn"):
        FocalLoss(lambda a, b: a)


@pytest.mark.parametrize("kind", ["focal", "qfocal", "varifocal"])
def test_per_class_alpha_is_per_column(kind):
    g = torch.Generator().manual_seed(15)
    x = torch.randn(3, 5, 4, generator=g, dtype=D64)
    t = torch.where(torch.rand(3, 5, 4, generator=g, dtype=D64) < 0.4, torch.rand(3, 5, 4, generator=g, dtype=D64),
                    torch.zeros((), dtype=D64))
    alphas = [0.0, 0.25, 0.6, 1.0]
    fn = FUNCTIONALS[kind]
    per_class = fn(x, t, gamma=1.5, alpha=torch.tensor(alphas, dtype=D64))
    for c, a in enumerate(alphas):
        close(per_class[..., c], fn(x[..., c], t[..., c], gamma=1.5, alpha=a))


# --------------------------------------------------------------------------------------------------
# implementation paths: chunking, empty, strides, retain_graph, no_grad, composite, imports
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("kind", ["focal", "qfocal", "varifocal"])
def test_chunking_does_not_change_results(monkeypatch, chunk, kind):
    g = torch.Generator().manual_seed(16)
    x = (torch.randn(23, 9, generator=g, dtype=D64) * 3).requires_grad_()
    t = torch.rand(23, 9, generator=g, dtype=D64)
    kw = dict(gamma=1.3, alpha=torch.rand(9, generator=g, dtype=D64), pos_weight=torch.rand(9, generator=g, dtype=D64),
              weight=torch.rand(23, 1, generator=g, dtype=D64))
    fn = FUNCTIONALS[kind]
    ref = fn(x, t, reduction="none", **kw)
    ref_grad = grad_of(ref.sum(), x)
    monkeypatch.setattr(_chunks, "_CPU_CHUNK", chunk)  # 1 and 7 are shorter than a row of 9 classes
    for reduction in REDUCTIONS:
        out = fn(x, t, reduction=reduction, **kw)
        close(out, reduce(ref, reduction))
    close(grad_of(fn(x, t, reduction="sum", **kw), x), ref_grad)


def test_empty_input_mean_is_zero_not_nan():
    x = torch.zeros(0, 80, requires_grad=True)
    t = torch.zeros(0, 80)
    for cls in WRAPPERS:
        loss = cls(nn.BCEWithLogitsLoss())(x, t)
        assert loss.item() == 0.0
        loss.backward()
        assert cls(nn.BCEWithLogitsLoss(reduction="sum"))(x, t).item() == 0.0
        assert cls(nn.BCEWithLogitsLoss(reduction="none"))(x, t).shape == (0, 80)


def test_strided_views_like_yolov5_objectness():
    g = torch.Generator().manual_seed(17)
    pi = (torch.randn(2, 3, 8, 8, 85, generator=g, dtype=D64) * 3).requires_grad_()
    tobj = torch.rand(2, 3, 8, 8, generator=g, dtype=D64) * (torch.rand(2, 3, 8, 8, generator=g, dtype=D64) < 0.1)
    obj = pi[..., 4]  # non-contiguous, stride 85
    for cls in WRAPPERS:
        ours = cls(nn.BCEWithLogitsLoss())(obj, tobj)
        ref = cls(nn.BCEWithLogitsLoss())(obj.contiguous(), tobj)
        close(ours, ref)
        close(grad_of(ours, pi), grad_of(ref, pi))


def test_retain_graph_second_backward_and_no_grad():
    g = torch.Generator().manual_seed(18)
    x = torch.randn(50, generator=g, requires_grad=True)
    t = (torch.rand(50, generator=g) < 0.5).float()
    loss = FocalLoss(nn.BCEWithLogitsLoss())(x, t)
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, x)
    assert torch.equal(g1, g2)
    with torch.no_grad():
        assert torch.equal(FocalLoss(nn.BCEWithLogitsLoss())(x, t), loss.detach())


def test_non_bce_inner_loss_takes_composite_path():
    class ScaledBCE(nn.BCEWithLogitsLoss):
        def forward(self, a, b):
            return 2.0 * super().forward(a, b)

    g = torch.Generator().manual_seed(19)
    x = (torch.randn(30, generator=g, dtype=D64) * 20).requires_grad_()
    t = (torch.rand(30, generator=g, dtype=D64) < 0.5).to(D64)
    for cls in WRAPPERS:
        for gamma in (0.5, 1.5):
            ours = cls(ScaledBCE(), gamma=gamma)(x, t)
            ref = 2.0 * cls(nn.BCEWithLogitsLoss(), gamma=gamma)(x, t)
            close(ours, ref)
            assert torch.isfinite(grad_of(ours, x)).all()


def test_losses_module_does_not_import_yolov5():
    code = ("import sys, yolo_focal_plugin.losses, yolo_focal_plugin.registry; "
            "sys.exit(1 if any(m == 'yolov5' or m.startswith('yolov5.') for m in sys.modules) else 0)")
    env = {"YOLO_FOCAL_DISABLE": "1", "PATH": "/usr/bin:/bin"}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_thread_pool_path_matches_and_leaves_thread_settings_alone(monkeypatch):
    import threading

    before = torch.get_num_threads()
    if before < 2:
        torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(20)
        x = (torch.randn(700, 9, generator=g) * 5).requires_grad_()
        t = torch.rand(700, 9, generator=g)
        alpha = torch.rand(9, generator=g)
        monkeypatch.setattr(_chunks, "_CPU_CHUNK", 512)  # 13 chunks of 56 rows
        for fn in FUNCTIONALS.values():
            monkeypatch.setattr(_chunks, "_INLINE_ELEMENTS", 10**9)  # caller's thread only
            ref = fn(x, t, gamma=1.5, alpha=alpha, reduction="sum")
            ref_grad = grad_of(ref, x)
            monkeypatch.setattr(_chunks, "_INLINE_ELEMENTS", 0)  # pool threads
            assert losses._workers(13, x.numel(), x.device) >= 1
            out = fn(x, t, gamma=1.5, alpha=alpha, reduction="sum")
            close(out, ref, tol=1e-6)
            assert torch.equal(grad_of(out, x), ref_grad)  # chunks are independent: bit-identical gradient
        # the pool threads made their own ops single-threaded; nobody else's setting changed
        assert torch.get_num_threads() == max(before, 2)
        seen = []
        worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        worker.start()
        worker.join()
        assert seen == [max(before, 2)]
    finally:
        torch.set_num_threads(before)


def test_modules_pickle_and_deepcopy_with_their_settings():
    import copy
    import pickle

    module = QFocalLoss(nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]), reduction="sum"), gamma=0.7,
                        alpha=[0.2, 0.8])
    x, t = torch.randn(5, 2), torch.rand(5, 2)
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert (clone.gamma, clone.reduction) == (0.7, "sum") and torch.equal(clone.alpha, module.alpha)
        assert torch.equal(clone(x, t), module(x, t))


def test_set_chunk_size_validates_and_returns_previous():
    previous = losses.set_chunk_size(cpu=1024)
    try:
        assert losses._CPU_CHUNK == 1024
        with pytest.raises(ValueError, match="chunk size 'cpu'"):
            losses.set_chunk_size(cpu=0)
    finally:
        losses.set_chunk_size(*previous)
    assert (losses._CPU_CHUNK, losses._ACCEL_CHUNK) == previous
