"""``yolov5 train --evolve`` with the plugin's keys: mutates the numeric fl_* keys, holds the string ones.

Stock yolov5 7.0.14 fails here (AUDIT section 5): ``KeyError: 'fl_alpha'`` in generation 2,
``TypeError`` in ``print_mutation`` for string keys, and ``plot_evolve`` raises past 30 keys.
"""
from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pandas as pd
import pytest
import yaml

from yolo_focal_plugin.hyp import HypError
from yolo_focal_plugin.integration import evolve

BIN = Path(sys.executable).parent
STOCK_META = {"lr0": (1, 1e-5, 1e-1), "fl_gamma": (0, 0.0, 2.0), "anchors": (2, 2.0, 10.0), "mosaic": (1, 0.0, 1.0)}


def test_prepare_splits_numeric_and_held_keys() -> None:
    hyp = {"lr0": 0.01, "fl_gamma": 1.5, "fl_alpha": 0.25, "fl_loss": "focal", "fl_apply": "cls", "fl_norm": "mean",
           "fl_gamma_warmup": 2, "anchors": 3, "mosaic": 1.0}
    out, meta, held = evolve.prepare(hyp, STOCK_META)
    assert out is hyp  # yolov5 keeps using the same dict
    assert list(out) == ["lr0", "fl_gamma", "fl_alpha", "fl_gamma_warmup", "anchors", "mosaic"]
    assert set(meta) == set(out)  # yolov5's mutation needs exactly the same keys
    assert meta["fl_gamma"] == (1.0, 0.0, 3.0) and meta["fl_alpha"] == (1.0, 0.05, 0.95)
    assert held == {"fl_loss": "focal", "fl_apply": "cls", "fl_norm": "mean"}
    assert evolve.merge(out, held) == {**out, **held}


@pytest.mark.parametrize("alpha", ["auto", [0.2, 0.3, 0.4], -1, None])
def test_non_numeric_alpha_is_held(alpha) -> None:
    hyp = {"lr0": 0.01, "fl_gamma": 1.0, "fl_alpha": alpha}
    out, meta, held = evolve.prepare(hyp, STOCK_META)
    assert held == {"fl_alpha": alpha} and "fl_alpha" not in meta


def test_prepare_defaults_fl_gamma_drops_meta_for_absent_keys_and_validates() -> None:
    out, meta, held = evolve.prepare({"lr0": 0.01}, STOCK_META)
    assert out == {"lr0": 0.01, "fl_gamma": 0.0} and set(meta) == {"lr0", "fl_gamma"}
    with pytest.raises(HypError, match="fl_gamma"):
        evolve.prepare({"lr0": 0.01, "fl_gamma": -1.0}, STOCK_META)
    with pytest.raises(HypError, match="fl_aplha"):
        evolve.prepare({"lr0": 0.01, "fl_aplha": 0.3}, STOCK_META)


def test_annotate_appends_held_keys(tmp_path: Path) -> None:
    (tmp_path / "hyp_evolve.yaml").write_text("# header\nlr0: 0.01\nfl_alpha: 0.3\n")
    evolve.annotate(tmp_path, {"fl_loss": "qfocal", "fl_apply": "both"})
    assert yaml.safe_load((tmp_path / "hyp_evolve.yaml").read_text()) == {
        "lr0": 0.01, "fl_alpha": 0.3, "fl_loss": "qfocal", "fl_apply": "both"}


def test_the_pinned_sources_have_every_anchor() -> None:
    import yolov5.segment.train as segment_train
    import yolov5.train as detect_train

    for module in (detect_train, segment_train):
        main = getattr(module.main, "__wrapped__", module.main)
        patched = evolve._patched_source(textwrap.dedent(inspect.getsource(main)))
        assert patched is not None, module.__name__
        assert patched.count("_yolo_focal_evolve.") == 4
        compile(patched, "<check>", "exec")
    assert getattr(detect_train.main, "_yolo_focal_evolve", False)  # installed by the start-up hook


def test_unknown_source_stops_evolve_with_a_clear_message(tmp_path: Path) -> None:
    module = types.ModuleType("fake_train")
    exec("def main(opt, callbacks=None):\n    return 'trained'\n", module.__dict__)
    from yolo_focal_plugin.integration.patching import PatchLedger

    ledger = PatchLedger()
    original = evolve.LEDGER
    evolve.LEDGER = ledger
    try:
        assert evolve.patch_evolve(module) is False  # no source -> guarded, never a KeyError
    finally:
        evolve.LEDGER = original
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.01\nfl_gamma: 1.0\nfl_alpha: 0.3\n")
    with pytest.raises(evolve.EvolveUnsupported, match="yolo-focal sweep"):
        module.main(types.SimpleNamespace(evolve=3, hyp=str(hyp)))
    assert module.main(types.SimpleNamespace(evolve=None, hyp=str(hyp))) == "trained"
    stock = tmp_path / "stock.yaml"
    stock.write_text("lr0: 0.01\nfl_gamma: 0.0\n")
    assert module.main(types.SimpleNamespace(evolve=3, hyp=str(stock))) == "trained"
    ledger.restore_all()


def evolve_cmd(data: Path, project: Path, hyp: str, generations: int = 2) -> list:
    return [str(BIN / "yolov5"), "train", "--data", str(data), "--cfg", "yolov5n.yaml", "--weights", "", "--hyp", hyp,
            "--img", "64", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--device", "cpu",
            "--project", str(project), "--name", "evo", "--evolve", str(generations), "--noplots", "--noautoanchor"]


@pytest.mark.slow
def test_yolov5_evolve_mutates_fl_keys_and_keeps_string_keys(tiny_data: Path, tmp_path: Path) -> None:
    # hyp.focal.yaml: numeric fl_gamma/fl_alpha/fl_gamma_warmup and string fl_loss/fl_apply/fl_norm/fl_assigner
    proc = subprocess.run(evolve_cmd(tiny_data, tmp_path, "hyp.focal.yaml"), capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "KeyError" not in out and "TypeError" not in out
    assert "yolo-focal-plugin: evolve: evolving fl_gamma=1.5, fl_alpha=0.25, fl_gamma_warmup=0; held fixed: fl_loss='focal'" in out
    run = tmp_path / "evo"
    table = pd.read_csv(run / "evolve.csv", skipinitialspace=True)
    table.columns = [c.strip() for c in table.columns]
    assert len(table) == 2
    assert {"fl_gamma", "fl_alpha", "fl_gamma_warmup"} <= set(table.columns)
    assert not {"fl_loss", "fl_apply", "fl_norm", "fl_assigner"} & set(table.columns)
    assert (table["fl_alpha"].between(0.05, 0.95)).all() and (table["fl_gamma"].between(0.0, 3.0)).all()
    assert table.iloc[0]["fl_alpha"] == 0.25 and table.iloc[0]["fl_gamma"] == 1.5  # generation 1 = the hyp
    assert (table.iloc[1, 7:] != table.iloc[0, 7:]).any()  # generation 2 is a mutation
    best = yaml.safe_load((run / "hyp_evolve.yaml").read_text())
    assert best["fl_loss"] == "focal" and best["fl_apply"] == "both" and "fl_alpha" in best  # a complete --hyp
    assert (run / "evolve.png").is_file()  # yolov5's 6x5 plot would raise past 30 keys
    # every generation trained with the held keys: the run log shows the focal criteria twice
    assert out.count("fl_loss=focal fl_gamma=") >= 2


@pytest.mark.slow
def test_yolov5_evolve_with_a_bad_fl_key_fails_before_training(tiny_data: Path, tmp_path: Path) -> None:
    hyp = tmp_path / "bad.yaml"
    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "hyps" / "hyp.focal.yaml").read_text())
    hyp.write_text(yaml.safe_dump({**base, "fl_alpha": 1.5}))
    proc = subprocess.run(evolve_cmd(tiny_data, tmp_path, str(hyp), 1), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "hyp key 'fl_alpha' has invalid value 1.5" in out
    assert "KeyError" not in out and "TypeError" not in out
    assert not (tmp_path / "evo" / "evolve.csv").exists()
