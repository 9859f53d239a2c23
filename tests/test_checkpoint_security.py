"""Issue #15: under the plugin, ``torch.load(weights_only=True)`` runs no code from the file.

Crafted files are written by ``torch.save`` of objects whose ``__reduce__`` names the *real*
allow-listed classes (what an attacker's pickle contains); each payload would write a marker file.
Real checkpoints (pip fork detection/segmentation/classification, a v7.0 clone) must still load.
"""
from __future__ import annotations

import copy
import copyreg
import importlib
import io
import pathlib
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch
from torch import _weights_only_unpickler as wou

from conftest import BIN, explain, run, train_args
from yolo_focal_plugin.integration import install, uninstall

yolov5 = pytest.importorskip("yolov5")
import yolov5.models.yolo as yolo  # noqa: E402

REFUSED = "yolo-focal-plugin: weights_only load refused"
MODELS = Path(yolo.__file__).parent


@pytest.fixture(autouse=True)
def plugin_installed():
    install()
    yield
    install()


class Reduce:
    """Pickles as ``func(*args)`` (REDUCE), optionally followed by BUILD ``state``."""

    def __init__(self, func: Any, args: tuple, state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class NewObj:
    """Pickles as ``cls.__new__(cls, *args)`` (NEWOBJ with arguments)."""

    def __init__(self, cls: type, args: tuple) -> None:
        self.cls, self.args = cls, args

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # pickle insists that __newobj__'s class is the object's class
        return self.cls

    def __reduce__(self) -> tuple:
        return (copyreg.__newobj__, (self.cls, *self.args))


def evil_cfg(marker: Path, where: str = "activation") -> Dict[str, Any]:
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('pwned')"
    cfg = {"nc": 1, "depth_multiple": 0.33, "width_multiple": 0.25, "anchors": 3,
           "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": [[[0], 1, "Detect", ["nc", "anchors"]]]}
    if where == "activation":
        cfg["activation"] = f"({code}, nn.SiLU())[1]"
    else:  # a backbone module name, eval'd by parse_model
        cfg["backbone"] = [[-1, 1, f"({code}, Conv)[1]", [16, 3, 2]]]
    return cfg


def save(obj: Any) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def assert_refused(obj: Any, marker: Path) -> str:
    with pytest.raises(Exception) as info:
        torch.load(save(obj), weights_only=True)
    assert not marker.exists(), "the crafted file ran code during torch.load(weights_only=True)"
    assert info.type.__name__ == "UnpicklingError", info.value
    return str(info.value)


def real_object(name: str) -> Any:
    """The importable object an attacker's GLOBAL names (the allow-list key is its qualified name)."""
    module, _, qualname = name.rpartition(".")
    while module not in sys.modules:  # nested qualname, e.g. never for these, but be exact
        module, _, outer = module.rpartition(".")
        qualname = f"{outer}.{qualname}"
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# Reachable allow-list names that are functions checking their arguments, not classes.
CHECKED_CALLABLES = {"numpy.dtype", "numpy._core.multiarray.scalar", "numpy._core.multiarray._reconstruct",
                     "numpy.core.multiarray.scalar", "numpy.core.multiarray._reconstruct", "builtins.getattr",
                     "pathlib.PosixPath", "numpy.ndarray"}


def plugin_names() -> Dict[str, Any]:
    """The reachable allow-list entries the plugin adds (torch registers some of its own at import)."""
    uninstall()
    torch_own = wou._get_user_allowed_globals()
    install()
    return {name: obj for name, obj in wou._get_user_allowed_globals().items()
            if "\n" not in name and torch_own.get(name) is not obj}


# --------------------------------------------------------------------------- crafted files


@pytest.mark.parametrize("cls_name", ["DetectionModel", "SegmentationModel", "Model"])
@pytest.mark.parametrize("where", ["activation", "module name"])
def test_reduce_of_a_model_class_with_an_evil_cfg_runs_nothing(cls_name, where, tmp_path):
    marker = tmp_path / "pwned"
    message = assert_refused({"model": Reduce(getattr(yolo, cls_name), (evil_cfg(marker, where),))}, marker)
    assert REFUSED in message and "yolov5.models.yolo." in message


def test_stealthy_variant_real_state_after_the_payload_is_refused_whole(tmp_path):
    marker = tmp_path / "pwned"
    genuine = yolo.DetectionModel(str(MODELS / "yolov5n.yaml"), nc=3)
    # The payload's REDUCE, then the genuine model's state BUILT into its result: a loader that
    # let the REDUCE through would return a model identical to the real one.
    evil = Reduce(yolo.DetectionModel, (evil_cfg(marker),), state=genuine.__dict__)
    assert_refused({"epoch": -1, "model": evil, "ema": None}, marker)


def test_every_reachable_allow_listed_class_refuses_reduce_and_newobj_with_arguments(tmp_path):
    marker = tmp_path / "pwned"
    names = plugin_names()
    classes = {name: obj for name, obj in names.items() if name not in CHECKED_CALLABLES}
    assert "yolov5.models.yolo.DetectionModel" in classes and "torch.nn.modules.conv.Conv2d" in classes
    for name in classes:
        real = real_object(name)
        assert isinstance(real, type), f"{name} is allow-listed and not a class: add a test for its arguments"
        for crafted in (Reduce(real, (evil_cfg(marker),)), Reduce(real, ()), NewObj(real, (evil_cfg(marker),))):
            message = assert_refused({"x": crafted}, marker)
            assert REFUSED in message and name in message, (name, message)


def test_real_classes_are_only_under_names_no_global_can_spell():
    for name, obj in plugin_names().items():
        assert not isinstance(obj, type) or hasattr(obj, "_yolo_focal_real"), f"{name} reaches the real class {obj}"
    # torch's own defaults are neither duplicated nor shadowed
    assert not set(plugin_names()) & set(wou._get_allowed_globals())


@pytest.mark.parametrize("chain", ["forward.__globals__", "init", "other_class", "default", "builtin", "module"])
def test_getattr_only_resolves_detect_forward(chain, tmp_path):
    marker = tmp_path / "pwned"
    crafted = {
        "forward.__globals__": Reduce(getattr, (Reduce(getattr, (yolo.Detect, "forward")), "__globals__")),
        "init": Reduce(getattr, (yolo.Detect, "__init__")),
        "other_class": Reduce(getattr, (yolo.DetectionModel, "forward")),
        "default": Reduce(getattr, (yolo.Detect, "forward", None)),
        "builtin": Reduce(getattr, (torch.nn.Conv2d, "forward")),
        "module": Reduce(getattr, (yolo.Detect, "__subclasses__")),
    }[chain]
    assert REFUSED in assert_refused({"x": crafted}, marker)


def _hacked_dtype(flags: int = 63, subarray: Any = None) -> Reduce:
    return Reduce(np.dtype, ("f8", False, True), state=(3, "<", subarray, None, None, -1, -1, flags))


@pytest.mark.parametrize("case", ["object array", "object dtype", "object scalar", "flags scalar", "flags array",
                                  "subarray array", "structured", "reconstruct other type", "ndarray call",
                                  "scalar object data", "posix path object"])
def test_numpy_and_path_values_are_checked(case, tmp_path):
    from numpy._core.multiarray import _reconstruct, scalar

    marker = tmp_path / "pwned"
    crafted = {
        "object array": np.array([1, 2], dtype=object),
        "object dtype": np.dtype("O"),
        "object scalar": Reduce(scalar, (np.dtype("O"), 1)),
        "flags scalar": Reduce(scalar, (_hacked_dtype(), b"\0" * 8)),
        "flags array": Reduce(_reconstruct, (np.ndarray, (0,), b"b"),
                              state=(1, (1,), _hacked_dtype(flags=9), False, b"AAAAAAAA")),
        "subarray array": Reduce(_reconstruct, (np.ndarray, (0,), b"b"),
                                 state=(1, (1,), _hacked_dtype(0, (np.dtype("i8"), (1000,))), False, b"\0" * 8)),
        "structured": np.zeros(1, dtype=[("a", "f8")]),
        "reconstruct other type": Reduce(_reconstruct, (np.ndarray, (3,), b"b")),
        "ndarray call": Reduce(np.ndarray, ((2,), np.dtype("f8"))),
        "scalar object data": Reduce(scalar, (np.dtype("f8"), [1])),
        "posix path object": Reduce(pathlib.PosixPath, (b"/etc/passwd",)),
    }[case]
    assert REFUSED in assert_refused({"x": crafted}, marker)


def test_disabled_plugin_refuses_the_same_file(tmp_path, clean_env):
    """Control: without the plugin torch itself refuses; the plugin must not make it worse."""
    evil = tmp_path / "evil.pt"
    marker = tmp_path / "pwned"
    torch.save({"model": Reduce(yolo.DetectionModel, (evil_cfg(marker),))}, evil)
    code = f"import torch, yolov5.models.yolo\ntry:\n torch.load({str(evil)!r})\nexcept Exception as e:\n print(type(e).__name__)"
    for disable in ("1", None):
        env = dict(clean_env, **({"YOLO_FOCAL_DISABLE": disable} if disable else {}))
        proc = run([sys.executable, "-c", code], env)
        assert proc.returncode == 0 and "UnpicklingError" in proc.stdout, explain(proc)
        assert not marker.exists()


# --------------------------------------------------------------------------- real checkpoints


def train_style_ckpt(model: torch.nn.Module) -> Dict[str, Any]:
    """A checkpoint as train.py / segment/train.py write it mid-training (unstripped)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    model.train()
    out = model(torch.rand(1, 3, 64, 64))
    sum(o.sum() for o in (out if isinstance(out, (list, tuple)) else [out]) if torch.is_tensor(o)).backward()
    optimizer.step()
    for group in optimizer.param_groups:
        group["lr"] = np.interp(1, [0, 3], [0.1, 0.01])  # train.py's warmup: numpy float64
    return {"epoch": 0, "best_fitness": np.array([0.25]) * 1.0, "model": copy.deepcopy(model).half(),
            "ema": copy.deepcopy(model).half(), "updates": 7, "optimizer": optimizer.state_dict(),
            "opt": {"save_dir": "runs/train/exp", "hyp": {"lr0": 0.01}}, "git": None, "date": datetime.now().isoformat()}


def assert_same_model(loaded: torch.nn.Module, saved: torch.nn.Module) -> None:
    assert type(loaded) is type(saved)
    assert [type(m) for m in loaded.modules()] == [type(m) for m in saved.modules()]
    for (k, a), (_, b) in zip(loaded.state_dict().items(), saved.state_dict().items()):
        assert torch.equal(a, b), k


def test_detection_and_segmentation_checkpoints_load(tmp_path):
    for cfg in (MODELS / "yolov5n.yaml", MODELS / "segment" / "yolov5n-seg.yaml"):
        model = (yolo.SegmentationModel if "seg" in cfg.name else yolo.DetectionModel)(str(cfg), nc=3)
        ckpt = train_style_ckpt(model)
        torch.save(ckpt, tmp_path / "last.pt")
        loaded = torch.load(tmp_path / "last.pt", weights_only=True)
        assert_same_model(loaded["model"], ckpt["model"])
        assert loaded["best_fitness"] == ckpt["best_fitness"] and isinstance(loaded["best_fitness"], np.ndarray)
        assert loaded["optimizer"]["param_groups"][0]["lr"] == ckpt["optimizer"]["param_groups"][0]["lr"]
        assert type(loaded["optimizer"]["param_groups"][0]["lr"]) is np.float64
        if "seg" in cfg.name:
            assert loaded["model"].model[-1].detect is yolo.Detect.forward  # getattr(Detect, "forward")
        # strip_optimizer round trip: what it writes loads again, and numpy arrays pickle back as plain ndarrays
        torch.save(loaded, tmp_path / "again.pt")
        assert "CheckedNdarray" not in (tmp_path / "again.pt").read_bytes().decode("latin1")
        torch.load(tmp_path / "again.pt", weights_only=True)


def test_classification_checkpoint_loads(tmp_path):
    model = yolo.ClassificationModel(model=yolo.DetectionModel(str(MODELS / "yolov5n.yaml"), nc=3), nc=3, cutoff=10)
    # as classify/train.py saves it: opt.save_dir is a pathlib.Path there
    ckpt = {"epoch": 0, "best_fitness": 0.5, "model": copy.deepcopy(model).half(), "ema": None, "updates": 3,
            "optimizer": None, "opt": {"save_dir": tmp_path / "runs" / "exp", "model": "yolov5n"},
            "date": datetime.now().isoformat()}
    torch.save(ckpt, tmp_path / "cls.pt")
    loaded = torch.load(tmp_path / "cls.pt", weights_only=True)
    assert_same_model(loaded["model"], ckpt["model"])
    assert loaded["opt"]["save_dir"] == tmp_path / "runs" / "exp"


def test_v70_clone_checkpoints_load_and_refuse_payloads(clone_v70, tmp_path, clean_env):
    script = tmp_path / "clone_ckpt.py"
    script.write_text(textwrap.dedent(f"""
        import copy, io, sys
        sys.path.insert(0, {str(clone_v70)!r})
        import numpy as np, torch
        import models.yolo as Y
        from yolo_focal_plugin.integration.checkpoints import register_safe_globals
        register_safe_globals(Y)
        register_safe_globals(Y)  # a second call (e.g. the start-up hook's) changes nothing
        for cls, cfg in ((Y.DetectionModel, "models/yolov5n.yaml"), (Y.SegmentationModel, "models/segment/yolov5n-seg.yaml")):
            m = cls(cfg, nc=3)
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
            ckpt = {{"epoch": 0, "best_fitness": np.array([0.5]), "model": copy.deepcopy(m).half(), "ema": copy.deepcopy(m).half(),
                    "updates": 1, "optimizer": opt.state_dict(), "opt": {{}}, "git": None, "date": "d"}}
            f = io.BytesIO(); torch.save(ckpt, f); f.seek(0)
            assert b"models.yolo" in f.getvalue() and b"yolov5.models" not in f.getvalue()
            x = torch.load(f, weights_only=True)
            assert type(x["model"]) is cls and type(x["model"].model[-1]).__module__ == "models.yolo"
        class Evil:
            def __reduce__(self):
                code = "__import__('pathlib').Path({str(tmp_path / 'pwned')!r}).write_text('x')"
                return (Y.DetectionModel, ({{"nc": 1, "depth_multiple": 1, "width_multiple": 1, "anchors": 3,
                        "activation": "(" + code + ", nn.SiLU())[1]", "backbone": [], "head": []}},))
        f = io.BytesIO(); torch.save({{"model": Evil()}}, f); f.seek(0)
        try:
            torch.load(f, weights_only=True)
        except Exception as e:
            assert "yolo-focal-plugin: weights_only load refused" in str(e), e
            print("CLONE OK")
    """))
    # no __pycache__ in the session's pristine clone
    proc = run([sys.executable, str(script)], dict(clean_env, PYTHONDONTWRITEBYTECODE="1"), cwd=clone_v70)
    assert proc.returncode == 0 and "CLONE OK" in proc.stdout, explain(proc)
    assert not (tmp_path / "pwned").exists()


def test_uninstall_restores_torch_allow_list_exactly():
    uninstall()
    before = set(torch.serialization.get_safe_globals())
    install()
    assert ("yolov5.models.yolo.DetectionModel" in wou._get_user_allowed_globals())
    torch.serialization.add_safe_globals([datetime])  # someone else's entry, added after the plugin's
    uninstall()
    assert set(torch.serialization.get_safe_globals()) == before | {datetime}
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(list(before))


@pytest.mark.slow
def test_training_run_checkpoints_load_with_weights_only(tiny_data, tmp_path, clean_env):
    """best.pt/last.pt (stripped at the end) and epoch0.pt (unstripped: optimizer, numpy best_fitness)."""
    project = tmp_path / "runs"
    proc = run([str(BIN / "yolov5"), "train", *train_args(tiny_data, project, "d", extra=["--save-period", "1",
                                                                                          "--noplots"])],
               clean_env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    weights = project / "d" / "weights"
    for name in ("best.pt", "last.pt", "epoch0.pt"):
        ckpt = torch.load(weights / name, weights_only=True)
        assert type(ckpt["model"]) is yolo.DetectionModel, name
    assert ckpt["optimizer"] is not None  # epoch0.pt is the unstripped one
