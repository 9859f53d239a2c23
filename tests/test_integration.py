"""The ComputeLoss patch, install/uninstall, the version guard and each compatibility shim, in-process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import yolo_focal_plugin
from yolo_focal_plugin.hyp import HypError, resolve_hyp_path
from yolo_focal_plugin.integration import applied_patches, install, installed, uninstall
from yolo_focal_plugin.integration.yolov5_hooks import UnsupportedYolov5Version, check_version

yolov5 = pytest.importorskip("yolov5")
import yolov5.segment.train  # noqa: E402  (import so every watched module is patched)
import yolov5.train  # noqa: E402
import yolov5.utils.general as general  # noqa: E402
import yolov5.utils.loss as loss_module  # noqa: E402
import yolov5.utils.metrics as metrics  # noqa: E402
from yolov5.models.yolo import Model  # noqa: E402

STOCK_HYP = Path(yolov5.__file__).parent / "data" / "hyps" / "hyp.scratch-low.yaml"
MODEL_CFG = Path(yolov5.__file__).parent / "models" / "yolov5n.yaml"


@pytest.fixture(autouse=True)
def plugin_installed():
    install()
    yield
    install()


def load_hyp(path: Path, **overrides) -> dict:
    hyp = yaml.safe_load(Path(path).read_text())
    hyp.update(overrides)
    return hyp


_BASE_MODELS: dict = {}


def model_and_batch(hyp: dict, nc: int = 3, seed: int = 0):
    """A yolov5n (built once per nc: building profiles FLOPs and takes seconds), its predictions and targets."""
    import copy

    if nc not in _BASE_MODELS:
        torch.manual_seed(seed)
        _BASE_MODELS[nc] = Model(str(MODEL_CFG), ch=3, nc=nc)
    model = copy.deepcopy(_BASE_MODELS[nc]).train()
    model.hyp = hyp
    torch.manual_seed(seed)
    imgs = torch.rand(2, 3, 64, 64)
    targets = torch.tensor(
        [[0, 0, 0.30, 0.30, 0.20, 0.25], [0, 2, 0.70, 0.60, 0.30, 0.20], [1, 1, 0.50, 0.50, 0.15, 0.15], [1, 0, 0.2, 0.8, 0.25, 0.2]]
    )
    return model, model(imgs), targets


def loss_of(hyp: dict, nc: int = 3):
    model, preds, targets = model_and_batch(hyp, nc)
    return loss_module.ComputeLoss(model)(preds, targets)


def test_fresh_interpreter_is_patched_by_the_startup_hook():
    code = (
        "import yolov5.utils.loss as L, yolov5.utils.segment.loss as S;"
        "print(getattr(L.ComputeLoss.__init__, '_yolo_focal', False), getattr(S.ComputeLoss.__init__, '_yolo_focal', False))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
    env = {**__import__("os").environ, "YOLO_FOCAL_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.split()
    assert out == ["False", "False"]


def test_install_is_idempotent():
    before = applied_patches()
    install()
    install()
    assert applied_patches() == before and installed()


def test_uninstall_restores_every_object_exactly():
    from PIL import ImageFont

    patched_init = loss_module.ComputeLoss.__init__
    assert getattr(patched_init, "_yolo_focal", False)
    uninstall()
    try:
        assert not installed() and applied_patches() == []
        assert not hasattr(loss_module.ComputeLoss.__init__, "_yolo_focal")
        assert loss_module.ComputeLoss.__init__.__module__ == "yolov5.utils.loss"
        assert not hasattr(general.check_font, "__wrapped__")
        assert not hasattr(general.check_file, "__wrapped__")
        assert metrics.np is np
        assert not hasattr(yolov5.train.train, "__wrapped__")
        assert "main" not in yolov5.segment.train.run_cli.__code__.co_names
        assert not hasattr(ImageFont.FreeTypeFont, "getsize")
        with pytest.raises(KeyError):  # stock yolov5 needs fl_gamma; only the plugin supplies a default
            loss_of({k: v for k, v in load_hyp(STOCK_HYP).items() if k != "fl_gamma"})
    finally:
        install()
    # install() again must really patch again (the old assertion here passed when it did nothing)
    assert getattr(loss_module.ComputeLoss.__init__, "_yolo_focal", False)
    assert hasattr(general.check_font, "__wrapped__") and metrics.np is not np


def test_patched_context_manager_restores_when_it_installed():
    uninstall()
    try:
        with yolo_focal_plugin.patched():
            assert getattr(loss_module.ComputeLoss.__init__, "_yolo_focal", False)
        assert not hasattr(loss_module.ComputeLoss.__init__, "_yolo_focal")
    finally:
        install()


def test_stock_hyp_gives_bit_identical_losses():
    hyp = load_hyp(STOCK_HYP)
    patched_loss, patched_items = loss_of(dict(hyp))
    uninstall()
    try:
        stock_loss, stock_items = loss_of(dict(hyp))
    finally:
        install()
    assert torch.equal(patched_loss, stock_loss) and torch.equal(patched_items, stock_items)


def test_only_fl_gamma_matches_stock_focal_loss():
    hyp = load_hyp(STOCK_HYP, fl_gamma=1.5)
    ours, ours_items = loss_of(dict(hyp))
    uninstall()
    try:
        stock, stock_items = loss_of(dict(hyp))
    finally:
        install()
    assert not torch.equal(ours_items, loss_of(load_hyp(STOCK_HYP))[1])  # focal really changed the loss
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours_items, stock_items, rtol=1e-5, atol=1e-7)


def test_focal_hyp_wraps_the_branches_it_names():
    from yolo_focal_plugin.losses import FocalLoss, QFocalLoss, VFLoss

    for name, cls_type, obj_type in (
        ("hyp.focal.yaml", FocalLoss, FocalLoss),
        ("hyp.focal-scaled.yaml", FocalLoss, FocalLoss),
        ("hyp.qfocal.yaml", QFocalLoss, QFocalLoss),
        ("hyp.varifocal.yaml", torch.nn.BCEWithLogitsLoss, VFLoss),
    ):
        model, _, _ = model_and_batch(load_hyp(resolve_hyp_path(name)))
        compute = loss_module.ComputeLoss(model)
        assert type(compute.BCEcls) is cls_type, name
        assert type(compute.BCEobj) is obj_type, name


def test_pos_weight_is_kept_inside_the_wrapper():
    model, _, _ = model_and_batch(load_hyp(resolve_hyp_path("hyp.qfocal.yaml"), cls_pw=2.0, obj_pw=3.0))
    compute = loss_module.ComputeLoss(model)
    assert compute.BCEcls.loss_fcn.pos_weight.item() == 2.0
    assert compute.BCEobj.loss_fcn.pos_weight.item() == 3.0


def test_bad_hyp_fails_before_the_stock_init():
    model, _, _ = model_and_batch(load_hyp(STOCK_HYP, fl_gama=1.0))
    with pytest.raises(HypError, match="fl_gama"):
        loss_module.ComputeLoss(model)


def test_per_class_alpha_and_auto_alpha_reach_the_class_branch():
    model, preds, targets = model_and_batch(load_hyp(resolve_hyp_path("hyp.focal.yaml"), fl_apply="cls",
                                                     fl_alpha=[0.1, 0.5, 0.9]))
    compute = loss_module.ComputeLoss(model)
    assert compute.BCEcls.alpha.tolist() == pytest.approx([0.1, 0.5, 0.9])
    model.class_weights = torch.tensor([0.2, 0.8, 2.0]) * 3 / 3.0
    model.hyp["fl_alpha"] = "auto"
    compute = loss_module.ComputeLoss(model)
    alpha = compute.BCEcls.alpha
    assert alpha.shape == (3,) and alpha[2] > alpha[1] > alpha[0]  # rarer class (larger weight) -> larger alpha
    assert torch.isfinite(compute(preds, targets)[0]).all()


def test_version_guard():
    assert check_version("7.0.14")
    with pytest.raises(UnsupportedYolov5Version, match="found yolov5 7.0.13"):
        check_version("7.0.13")
    with pytest.raises(UnsupportedYolov5Version, match="unknown version"):
        check_version(None)


def test_version_guard_can_be_forced(monkeypatch, capsys):
    monkeypatch.setenv("YOLO_FOCAL_FORCE", "1")
    assert check_version("7.0.13")
    assert "patching anyway" in capsys.readouterr().err


# ------------------------------------------------------------------ shims


def test_font_is_seeded_instead_of_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(general, "CONFIG_DIR", tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("check_font tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    general.check_font("Arial.ttf")
    general.check_font("Arial.Unicode.ttf")
    assert (tmp_path / "Arial.ttf").stat().st_size > 10_000
    assert (tmp_path / "Arial.Unicode.ttf").is_file()


def test_bare_hyp_names_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Path(general.check_yaml("hyp.focal.yaml")) == resolve_hyp_path("hyp.focal.yaml")
    own = tmp_path / "hyp.focal.yaml"
    own.write_text("fl_gamma: 1.0\n")
    assert general.check_yaml("hyp.focal.yaml") == "hyp.focal.yaml"  # a user's own file wins


def test_local_weights_skip_the_hub(tmp_path):
    from yolo_focal_plugin.integration.compat import guarded_hub_download

    calls = []

    def hub(repo_id, *args, **kwargs):  # stands in for yolov5's look-up, which needs the network
        calls.append(repo_id)
        raise AssertionError("queried the hub")

    weights = tmp_path / "best.pt"
    weights.write_bytes(b"x")
    assert guarded_hub_download(hub, str(weights)) is None and calls == []  # a local file: never asked

    class ConnectionError(Exception):  # requests' exception, by name: what an offline machine raises
        pass

    def offline(repo_id, *args, **kwargs):
        calls.append(repo_id)
        raise ConnectionError("no network")

    assert guarded_hub_download(offline, "user/model") is None and calls == ["user/model"]
    with pytest.raises(AssertionError):  # other errors are not swallowed
        guarded_hub_download(hub, "user/other")
    # and yolov5's own function is wrapped with it
    import yolov5.utils.downloads as downloads

    assert downloads.attempt_download_from_hub(str(weights)) is None


def test_numpy_trapz_alias_is_local_to_yolov5_metrics():
    assert not hasattr(np, "trapz") or np.__version__.startswith("1.")
    assert metrics.np.trapz is np.trapezoid
    ap, _, _ = metrics.compute_ap(np.array([0.0, 0.5, 1.0]), np.array([1.0, 1.0, 0.5]))
    assert 0.0 < ap <= 1.0


def test_pillow_getsize_is_restored():
    from PIL import ImageFont

    font = ImageFont.load_default()
    w, h = font.getsize("abc")
    assert w > 0 and h > 0


def test_segment_run_cli_calls_main(monkeypatch):
    seen = {}
    monkeypatch.setattr(yolov5.segment.train, "main", lambda opt: seen.setdefault("opt", opt))
    monkeypatch.setattr(sys, "argv", ["yolov5"])
    yolov5.segment.train.run_cli(epochs=3)
    assert seen["opt"].epochs == 3


def test_train_is_recompiled_with_the_map50s_fix():
    wrapper = yolov5.train.train
    inner, original = wrapper._yolo_focal_inner, wrapper.__wrapped__
    assert inner is not original and inner.__code__ is not original.__code__
    assert inner.__globals__ is vars(yolov5.train)  # runs against yolov5's own module globals
    # the segment trainer has no map50s bug and keeps its own function
    seg = yolov5.segment.train.train
    assert seg._yolo_focal_inner is seg.__wrapped__


def test_retina_assigner_replaces_targets_on_that_instance_only():
    from yolo_focal_plugin.integration.retina_assigner import RetinaTargets

    model, preds, targets = model_and_batch(load_hyp(STOCK_HYP, fl_assigner="retina"))
    compute = loss_module.ComputeLoss(model)
    assert isinstance(compute.build_targets, RetinaTargets)
    assert not isinstance(loss_module.ComputeLoss.build_targets, RetinaTargets)  # the class keeps YOLOv5's
    tcls, tbox, indices, anch = compute.build_targets(preds, targets)
    positives = sum(len(b) for b, *_ in indices)
    assert positives >= len(targets)  # every GT got at least one anchor
    masks = compute.BCEobj.masks
    assert len(masks) == 3 and masks[0].shape == preds[0].shape[:4]
    loss, items = compute(preds, targets)
    assert torch.isfinite(loss).all()
    stock_model, _, _ = model_and_batch(load_hyp(STOCK_HYP))
    _, stock_items = loss_module.ComputeLoss(stock_model)(preds, targets)
    assert not torch.equal(items, stock_items)  # a different assignment gives different losses


def test_retina_assigner_refuses_segmentation():
    import yolov5.utils.segment.loss as seg_loss

    model, _, _ = model_and_batch(load_hyp(STOCK_HYP, fl_assigner="retina"))
    model.model[-1].nm = 32  # the segment loss reads it; this model is only used to construct the loss
    with pytest.raises(HypError, match="not segmentation"):
        seg_loss.ComputeLoss(model)
