"""compare: results.csv parsing (yolov5's padded format), final/best selection, outputs."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import List, Sequence

import pytest
import yaml

from yolo_focal_plugin.experiments import compare as C

KEYS = ["train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
        "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss", "val/cls_loss",
        "x/lr0", "x/lr1", "x/lr2"]


def write_run(run: Path, metrics: Sequence[Sequence[float]], hyp: dict = None, class_names: List[str] = (),
              keys: List[str] = KEYS) -> Path:
    """results.csv exactly as yolov5's CSV logger writes it ('%20s,' header, '%20.5g,' values)."""
    run.mkdir(parents=True, exist_ok=True)
    class_keys = [f"metrics/{n}_mAP" for n in class_names] + [f"metrics/{n}_mAP_50" for n in class_names]
    n = 1 + len(keys) + len(class_keys)
    with open(run / "results.csv", "w") as f:
        f.write(("%20s," * n % tuple(["epoch"] + keys + class_keys)).rstrip(",") + "\n")
        for epoch, (p, r, m50, m) in enumerate(metrics):
            vals = [0.1, 0.05, 0.02, p, r, m50, m, 0.1, 0.05, 0.02, 0.01, 0.01, 0.01]
            vals += [m * (k + 1) / 4 for k in range(len(class_names))] + [m50 / 2] * len(class_names)
            f.write(("%20.5g," * n % tuple([epoch] + vals)).rstrip(",") + "\n")
    if hyp is not None:
        (run / "hyp.yaml").write_text(yaml.safe_dump(hyp))
    return run


def test_read_results_strips_padded_columns(tmp_path):
    run = write_run(tmp_path / "exp", [(0.1, 0.2, 0.05, 0.02), (0.3, 0.4, 0.25, 0.12)])
    header = (run / "results.csv").read_text().splitlines()[0]
    assert header.startswith("               epoch,") and "   metrics/precision," in header
    d = C.read_results(run)
    assert d["epoch"] == [0.0, 1.0] and d["mAP50-95"] == [0.02, 0.12] and d["P"] == [0.1, 0.3]


def test_final_and_best_by_yolov5_fitness(tmp_path):
    # epoch 1 has the best mAP50 but epoch 2 the best fitness (0.1 mAP50 + 0.9 mAP50-95)
    a = write_run(tmp_path / "runs" / "bce", [(0.2, 0.2, 0.30, 0.10), (0.5, 0.5, 0.60, 0.20), (0.4, 0.45, 0.50, 0.25),
                                              (0.3, 0.35, 0.40, 0.15)], hyp={"fl_gamma": 0.0, "lr0": 0.01})
    b = write_run(tmp_path / "runs" / "focal", [(0.2, 0.2, 0.20, 0.05), (0.6, 0.5, 0.65, 0.30)],
                  hyp={"fl_gamma": 2.0, "fl_loss": "focal", "fl_assigner": "retina"})
    r = C.run_compare([a, b], tmp_path / "cmp")
    bce, focal = r["runs"]
    assert bce["final"] == {"P": 0.3, "R": 0.35, "mAP50": 0.4, "mAP50-95": 0.15}
    assert bce["best_epoch"] == 2 and bce["best"]["mAP50-95"] == 0.25
    assert focal["best_epoch"] == 1 and focal["epochs"] == 2
    assert bce["settings"] == "gamma=0.0" and focal["settings"] == "loss=focal gamma=2.0 assigner=retina"
    md = Path(r["files"]["md"]).read_text()
    assert "| bce | gamma=0.0 | 4 | 0.3000 | 0.3500 | 0.4000 | 0.1500 | 2 | 0.4000 | 0.4500 | 0.5000 | 0.2500 | +0.0000 |" in md
    assert "| focal |" in md and "+0.0500 |" in md
    assert json.loads(Path(r["files"]["json"]).read_text())["runs"][1]["best"]["mAP50-95"] == 0.3
    assert Path(r["files"]["png"]).read_bytes()[:4] == b"\x89PNG"


def test_labels_disambiguate_same_names(tmp_path):
    a = write_run(tmp_path / "a" / "exp", [(0.1, 0.1, 0.1, 0.1)])
    b = write_run(tmp_path / "b" / "exp", [(0.2, 0.2, 0.2, 0.2)])
    r = C.run_compare([a, b], tmp_path / "cmp")
    assert [x["label"] for x in r["runs"]] == ["a/exp", "b/exp"]
    r = C.run_compare([a, b], tmp_path / "cmp", names=["base", "focal"])
    assert [x["label"] for x in r["runs"]] == ["base", "focal"]


def test_per_class_columns_of_the_fork(tmp_path):
    a = write_run(tmp_path / "x", [(0.1, 0.1, 0.2, 0.1), (0.2, 0.2, 0.4, 0.2)], class_names=["car", "rare_bird"])
    r = C.run_compare([a], tmp_path / "cmp")
    assert r["runs"][0]["best_per_class"] == {"car": pytest.approx(0.05), "rare_bird": pytest.approx(0.1)}
    assert "| rare_bird | 0.1000 |" in Path(r["files"]["md"]).read_text()


def test_segmentation_box_columns_and_nan(tmp_path):
    box = {"metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95"}
    keys = [f"{k}(B)" if k in box else k for k in KEYS]
    assert "metrics/mAP_0.5:0.95(B)" in keys
    run = write_run(tmp_path / "seg", [(math.nan, 0.1, 0.1, 0.05), (0.2, 0.2, 0.3, 0.1)], keys=keys)
    r = C.run_compare([run], tmp_path / "cmp")
    assert r["runs"][0]["best_epoch"] == 1 and math.isnan(r["runs"][0]["curves"]["P"][0])


def test_errors_name_the_run(tmp_path):
    with pytest.raises(ValueError, match="no results.csv"):
        C.run_compare([tmp_path / "nothing"], tmp_path / "cmp")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.csv").write_text("epoch,metrics/precision\n")
    with pytest.raises(ValueError, match="no epochs"):
        C.run_compare([tmp_path / "empty"], tmp_path / "cmp")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "results.csv").write_text("epoch,metrics/precision\n0,0.1\n")
    with pytest.raises(ValueError, match="metrics/recall"):
        C.run_compare([tmp_path / "odd"], tmp_path / "cmp")
    with pytest.raises(ValueError, match="names"):
        C.run_compare([tmp_path / "odd"], tmp_path / "cmp", names=["a", "b"])


def test_cli(tmp_path, capsys):
    a = write_run(tmp_path / "r1", [(0.1, 0.2, 0.3, 0.1)])
    b = write_run(tmp_path / "r2", [(0.2, 0.3, 0.4, 0.2)])
    parser = argparse.ArgumentParser()
    C.add_arguments(parser)
    assert C.run_from_args(parser.parse_args([str(a), str(b), "--out", str(tmp_path / "o")])) == 0
    out = capsys.readouterr().out
    assert "| r1 |" in out and "| r2 |" in out and "compare_map.png" in out
