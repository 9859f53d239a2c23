"""Loss registry: built-ins, the decorator, unknown names, and lazy entry-point discovery."""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
import torch
from torch import nn

from yolo_focal_plugin import registry
from yolo_focal_plugin.losses import FocalLoss, QFocalLoss, VFLoss
from yolo_focal_plugin.registry import (
    ENTRY_POINT_GROUP,
    UnknownLossError,
    available_losses,
    get_loss,
    register_loss,
    unregister_loss,
)


def test_builtins():
    assert {"focal", "varifocal", "qfocal"} <= set(available_losses())
    assert get_loss("focal") is FocalLoss
    assert get_loss("varifocal") is VFLoss
    assert get_loss("qfocal") is QFocalLoss
    assert get_loss("  QFocal ") is QFocalLoss  # case and surrounding blanks do not matter
    assert available_losses() == sorted(available_losses())
    # how the integration builds a criterion from a name
    module = get_loss("varifocal")(nn.BCEWithLogitsLoss(), gamma=2.0, alpha=0.75)
    assert torch.isfinite(module(torch.randn(4, 3), torch.rand(4, 3)))


def test_unknown_name_is_key_and_value_error_listing_known_names():
    with pytest.raises(UnknownLossError) as info:
        get_loss("focla")
    err = info.value
    assert isinstance(err, KeyError) and isinstance(err, ValueError)
    assert str(err).startswith("unknown loss 'focla'; known losses: ")
    assert "focal" in str(err) and "qfocal" in str(err) and "varifocal" in str(err)
    assert err.known == available_losses()
    with pytest.raises(KeyError):
        get_loss("nope")
    with pytest.raises(ValueError):
        get_loss("nope")
    with pytest.raises(ValueError, match="non-empty string"):
        get_loss("")


@pytest.fixture
def scratch_name():
    name = "test_scratch_loss"
    yield name
    unregister_loss(name)


def test_register_decorator_and_overwrite_rules(scratch_name):
    @register_loss(scratch_name)
    class Mine(nn.Module):
        def __init__(self, loss_fcn, gamma=1.5, alpha=0.25):
            super().__init__()

    assert get_loss(scratch_name) is Mine
    assert scratch_name in available_losses()
    assert register_loss(scratch_name, Mine) is Mine  # same class again: a no-op

    class Other(nn.Module):
        pass

    with pytest.raises(ValueError, match="already registered .*override=True"):
        register_loss(scratch_name, Other)
    assert get_loss(scratch_name) is Mine
    register_loss(scratch_name.upper(), Other, override=True)
    assert get_loss(scratch_name) is Other
    with pytest.raises(ValueError, match="already registered"):
        register_loss("focal")(Other)  # built-ins are protected the same way
    with pytest.raises(TypeError, match="class"):
        register_loss(scratch_name, lambda *a: None, override=True)
    assert unregister_loss(scratch_name) is Other
    with pytest.raises(UnknownLossError):
        get_loss(scratch_name)


def _fake_distribution(root, name, entries, module_name=None, module_source=""):
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")
    if module_name:
        (root / f"{module_name}.py").write_text(textwrap.dedent(module_source))


def test_entry_points_are_listed_lazily_and_loaded_on_demand(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path, "fake_losses",
        {"poly_focal": "fake_loss_mod:PolyFocal", "broken": "fake_missing_mod:Nope", "focal": "fake_loss_mod:PolyFocal"},
        module_name="fake_loss_mod",
        module_source="""
            from torch import nn

            class PolyFocal(nn.Module):
                def __init__(self, loss_fcn, gamma=1.5, alpha=0.25):
                    super().__init__()
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        names = available_losses()
        assert "poly_focal" in names and "broken" in names
        assert "fake_loss_mod" not in sys.modules  # listing does not import third-party code
        cls = get_loss("poly_focal")
        assert cls.__name__ == "PolyFocal" and cls.__module__ == "fake_loss_mod"
        assert get_loss("poly_focal") is cls  # cached in the registry after the first load
        assert get_loss("focal") is FocalLoss  # a registered name wins over an entry point
        with pytest.raises(ImportError, match="broken.*fake_missing_mod:Nope"):
            get_loss("broken")
    finally:
        unregister_loss("poly_focal")
        sys.modules.pop("fake_loss_mod", None)


def test_registry_and_hyp_import_neither_yolov5_nor_torch():
    # In a fresh interpreter (direct or indirect imports count, unlike a search of the source text):
    # listing and validating loss names imports no torch; building a loss imports torch, never yolov5.
    import subprocess

    probe = (
        "import sys\n"
        "from yolo_focal_plugin.hyp import parse_focal_hyp\n"
        "from yolo_focal_plugin.registry import available_losses, get_loss\n"
        "parse_focal_hyp({'fl_gamma': 2.0, 'fl_loss': 'varifocal'}); available_losses()\n"
        "print('torch' in sys.modules, any(m == 'yolov5' or m.startswith('yolov5.') for m in sys.modules))\n"
        "get_loss('focal')\n"
        "print('torch' in sys.modules, any(m == 'yolov5' or m.startswith('yolov5.') for m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "True", "False"], proc.stdout + proc.stderr


def test_yolov5_focal_entry_point_is_yolov5s_own_class():
    # the unmodified stock loss, for side-by-side runs (README evidence, gamma 0.5 rows)
    from yolov5.utils.loss import FocalLoss as YoloFocal

    assert "yolov5_focal" in available_losses()
    assert get_loss("yolov5_focal") is YoloFocal
