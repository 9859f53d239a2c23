"""fl_* key validation: every bad value is refused with a message naming key, value and what is allowed."""
from __future__ import annotations

import pytest
import yaml

from yolo_focal_plugin.hyp import FL_KEYS, HypError, bundled_hyps, parse_focal_hyp, resolve_hyp_path

LOSSES = ("focal", "varifocal", "qfocal", "bce")


def parse(**keys):
    return parse_focal_hyp(keys, known_losses=LOSSES)


def test_no_keys_is_stock():
    cfg = parse()
    assert cfg.is_stock and cfg.gamma == 0.0 and not cfg.alpha_given


def test_gamma_zero_without_loss_is_stock_even_with_alpha():
    assert parse(fl_gamma=0.0, fl_alpha=0.5).is_stock


def test_only_gamma_behaves_like_stock_focal():
    cfg = parse(fl_gamma=1.5)
    assert not cfg.is_stock
    assert (cfg.loss, cfg.alpha, cfg.apply, cfg.norm) == ("focal", 0.25, "both", "mean")


def test_loss_key_alone_activates_the_plugin():
    assert not parse(fl_loss="bce").is_stock
    assert not parse(fl_norm="positives").is_stock


@pytest.mark.parametrize(
    "keys, fragment",
    [
        ({"fl_gamma": -0.5}, "'fl_gamma' has invalid value -0.5"),
        ({"fl_gamma": "2"}, "'fl_gamma' has invalid value '2'"),
        ({"fl_gamma": True}, "'fl_gamma' has invalid value True"),
        ({"fl_gamma": float("nan")}, "'fl_gamma'"),
        ({"fl_alpha": 1.5}, "'fl_alpha' has invalid value 1.5"),
        ({"fl_alpha": -0.3}, "'fl_alpha' has invalid value -0.3"),
        ({"fl_alpha": "often"}, "'fl_alpha' has invalid value 'often'"),
        ({"fl_alpha": []}, "'fl_alpha' has invalid value []"),
        ({"fl_alpha": [0.2, 2.0]}, "'fl_alpha'"),
        ({"fl_loss": "focall"}, "'fl_loss' has invalid value 'focall': expected one of bce, focal, qfocal, varifocal"),
        ({"fl_apply": "all"}, "'fl_apply' has invalid value 'all': expected one of cls, obj, both"),
        ({"fl_norm": "sum"}, "'fl_norm' has invalid value 'sum'"),
        ({"fl_gamma_warmup": -1}, "'fl_gamma_warmup' has invalid value -1"),
        ({"fl_assigner": "atss"}, "'fl_assigner' has invalid value 'atss': expected one of yolov5, retina"),
        ({"fl_gama": 2.0}, "unknown hyp key(s) 'fl_gama'"),
    ],
)
def test_invalid_values_name_key_and_value(keys, fragment):
    with pytest.raises(HypError) as info:
        parse(**keys)
    assert fragment in str(info.value)


def test_per_class_alpha_length_is_checked_against_nc():
    assert parse_focal_hyp({"fl_alpha": [0.1, 0.2, 0.3]}, nc=3, known_losses=LOSSES).alpha == (0.1, 0.2, 0.3)
    with pytest.raises(HypError, match="3 per-class values but the dataset has nc=5"):
        parse_focal_hyp({"fl_alpha": [0.1, 0.2, 0.3]}, nc=5, known_losses=LOSSES)


@pytest.mark.parametrize("value", [-1, -1.0, None])
def test_alpha_can_be_disabled(value):
    cfg = parse(fl_alpha=value)
    assert cfg.alpha is None and cfg.alpha_given


def test_alpha_auto():
    assert parse(fl_alpha="auto").alpha == "auto"


def test_registry_is_used_for_loss_names_by_default():
    from yolo_focal_plugin.registry import available_losses

    for name in available_losses():
        assert parse_focal_hyp({"fl_loss": name}).loss == name


def test_bundled_hyps_resolve_by_bare_name_and_validate():
    names = bundled_hyps()
    assert {"hyp.focal.yaml", "hyp.varifocal.yaml", "hyp.qfocal.yaml"} <= set(names)
    for name in names:
        path = resolve_hyp_path(name)
        assert path is not None and path.name == name
        assert resolve_hyp_path(name[: -len(".yaml")]) == path
        hyp = yaml.safe_load(path.read_text())
        cfg = parse_focal_hyp(hyp)
        assert not cfg.is_stock
        assert set(FL_KEYS) <= set(hyp), f"{name} should spell out every fl_* key"
        # the rest is YOLOv5's hyp.scratch-low.yaml: every key YOLOv5 reads must be there
        for key in ("lr0", "box", "cls", "obj", "cls_pw", "obj_pw", "anchor_t", "mosaic"):
            assert key in hyp


def test_hyp_focal_is_the_measured_best_focal_setting_and_focal_scaled_its_old_name():
    """hyp.focal.yaml, the hyp users are told to pass, carries the best focal setting of the evidence
    (issue #12): focal on both branches with the loss scale restored. hyp.focal-scaled.yaml, that
    setting's earlier name, must keep exactly the same values (existing commands name it)."""
    focal, scaled = (yaml.safe_load(resolve_hyp_path(n).read_text()) for n in ("hyp.focal.yaml", "hyp.focal-scaled.yaml"))
    assert focal == scaled
    assert (focal["fl_loss"], focal["fl_gamma"], focal["fl_alpha"], focal["fl_apply"]) == ("focal", 1.5, 0.25, "both")
    assert (focal["obj"], focal["cls"]) == (5.0, 3.0)


def test_paths_are_not_treated_as_bundled_names():
    assert resolve_hyp_path("some/dir/hyp.focal.yaml") is None
    assert resolve_hyp_path("hyp.nonexistent.yaml") is None


# --- issue #15 section 2: hyps that got through validation -------------------------------------

WITH_STOCK = LOSSES + ("yolov5_focal",)


@pytest.mark.parametrize(
    "key, suggestion",
    [("FL_GAMMA", "fl_gamma"), ("Fl_gamma", "fl_gamma"), ("FL_Alpha", "fl_alpha"), ("fl-loss", "fl_loss"),
     ("fl_gama", "fl_gamma"), ("FL_GAMMA_WARMUP", "fl_gamma_warmup")],
)
def test_misspelled_key_in_any_case_is_refused_naming_the_key_it_resembles(key, suggestion):
    # YOLOv5 ignores hyp keys it does not read: a capitalised FL_GAMMA would train plain BCE
    with pytest.raises(HypError) as info:
        parse_focal_hyp({key: 2.0}, known_losses=LOSSES)
    assert f"unknown hyp key(s) {key!r} (did you mean {suggestion!r}?)" in str(info.value)


def test_keys_that_only_start_like_fl_are_not_mistaken_for_typos():
    # YOLOv5's own keys (fliplr, flipud) share the first letters
    assert parse_focal_hyp({"fliplr": 0.5, "flipud": 0.0, "fl_gamma": 0.0}, known_losses=LOSSES).is_stock


@pytest.mark.parametrize("apply", ["both", "cls", "obj"])
def test_auto_alpha_with_varifocal_is_refused_whatever_the_branch(apply):
    # one rule for ComputeLoss, before_train and the sweep: it used to live in criteria.py (cls only)
    # and in the sweep, so fl_apply: obj got through one and not the other
    with pytest.raises(HypError, match="'fl_alpha' has invalid value 'auto': 'auto' cannot be used with fl_loss: varifocal"):
        parse_focal_hyp({"fl_loss": "varifocal", "fl_gamma": 2.0, "fl_alpha": "auto", "fl_apply": apply},
                        known_losses=LOSSES)


def test_auto_alpha_is_still_fine_with_focal_and_qfocal():
    for loss in ("focal", "qfocal"):
        assert parse_focal_hyp({"fl_loss": loss, "fl_alpha": "auto"}, known_losses=LOSSES).alpha == "auto"


@pytest.mark.parametrize("alpha", [-1, None, "auto", [0.2, 0.3, 0.4]])
def test_stock_yolov5_focal_needs_a_float_alpha(alpha):
    # yolov5.utils.loss.FocalLoss computes `true * self.alpha`: None dies with TypeError on the first
    # batch; auto / per-class lists are not the stock loss the key exists to reproduce
    with pytest.raises(HypError) as info:
        parse_focal_hyp({"fl_loss": "yolov5_focal", "fl_gamma": 0.5, "fl_alpha": alpha}, nc=3, known_losses=WITH_STOCK)
    assert f"'fl_alpha' has invalid value {alpha!r}: fl_loss: yolov5_focal" in str(info.value)


def test_stock_yolov5_focal_with_float_or_default_alpha():
    assert parse_focal_hyp({"fl_loss": "yolov5_focal", "fl_gamma": 0.5, "fl_alpha": 0.25},
                           known_losses=WITH_STOCK).alpha == 0.25
    assert not parse_focal_hyp({"fl_loss": "yolov5_focal", "fl_gamma": 0.5}, known_losses=WITH_STOCK).alpha_given


@pytest.mark.parametrize("gamma", [1.0e300, 1.0e37, 1.0e6 * (1 + 1e-12)])
def test_gamma_above_the_kernel_bound_is_refused_with_the_reason(gamma):
    with pytest.raises(HypError) as info:
        parse_focal_hyp({"fl_gamma": gamma}, known_losses=LOSSES)
    assert f"'fl_gamma' has invalid value {gamma!r}: expected a finite float >= 0 and <= 1e+06" in str(info.value)
    assert "loss kernels" in str(info.value)


def test_loss_kernels_are_finite_at_the_gamma_bound():
    # the bound in hyp.py is only honest while the kernels compute it: forward and backward, float32
    # and float64, saturated and tiny logits, hard and soft targets, every reduction
    torch = pytest.importorskip("torch")
    from yolo_focal_plugin.hyp import FL_GAMMA_MAX
    from yolo_focal_plugin.losses import FocalLoss, QFocalLoss, VFLoss

    assert parse_focal_hyp({"fl_gamma": FL_GAMMA_MAX}, known_losses=LOSSES).gamma == FL_GAMMA_MAX
    logits = torch.cat([torch.linspace(-120, 120, 241), torch.tensor([0.0, 1e-6, -1e-6, 17.0, -17.0, 88.0, -104.0])])
    for cls in (FocalLoss, QFocalLoss, VFLoss):
        for dtype in (torch.float32, torch.float64):
            for target in (0.0, 0.3, 1.0):
                for reduction in ("mean", "sum", "none"):
                    x = logits.to(dtype).clone().requires_grad_(True)
                    loss = cls(torch.nn.BCEWithLogitsLoss(reduction=reduction), gamma=FL_GAMMA_MAX, alpha=0.25)(
                        x, torch.full_like(x, target))
                    loss.sum().backward()
                    assert torch.isfinite(loss).all() and torch.isfinite(x.grad).all(), (cls, dtype, target, reduction)
