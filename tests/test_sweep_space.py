"""Search-space parsing and every "clear error before any training" case of ``yolo-focal sweep``."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List

import pytest

from yolo_focal_plugin.hyp import parse_focal_hyp
from yolo_focal_plugin.sweep.space import BASELINE, SearchSpace, SweepError, Unit, parse_values

KNOWN = ("focal", "varifocal", "qfocal", "bce")


def test_parse_values_lists_and_ranges() -> None:
    assert parse_values("1, 0,0.5,1", "--gamma", 0.0).values == (0.0, 0.5, 1.0)  # sorted, deduplicated
    assert parse_values("0:2:0.5", "--gamma", 0.0).values == (0.0, 0.5, 1.0, 1.5, 2.0)
    assert parse_values("0.25:0.75:0.25", "--alpha", 0.0, 1.0).values == (0.25, 0.5, 0.75)
    spec = parse_values("0:3", "--gamma", 0.0, grid=False)
    assert (spec.kind, spec.low, spec.high, spec.step) == ("range", 0.0, 3.0, None)


@pytest.mark.parametrize(
    "text, low, high, grid, message",
    [
        ("", 0.0, math.inf, True, "--gamma is empty"),
        ("  ", 0.0, math.inf, True, "--gamma is empty"),
        ("-0.5,1", 0.0, math.inf, True, "-0.5 is outside the allowed values >= 0"),
        ("0,x", 0.0, math.inf, True, "'x' is not a number"),
        ("0,,1", 0.0, math.inf, True, "empty value"),
        ("nan", 0.0, math.inf, True, "not a finite number"),
        ("0:3", 0.0, math.inf, True, "a continuous range needs --sampler tpe"),
        ("3:1", 0.0, math.inf, False, "low 3 is above high 1"),
        ("0:1:0", 0.0, math.inf, True, "the step must be > 0"),
        ("0:1,2", 0.0, math.inf, True, "not both"),
    ],
)
def test_parse_values_errors(text: str, low: float, high: float, grid: bool, message: str) -> None:
    with pytest.raises(SweepError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_values(text, "--gamma", low, high, grid=grid)


def test_alpha_outside_unit_interval() -> None:
    with pytest.raises(SweepError, match=r"--alpha: 1.5 is outside the allowed values \[0, 1\]"):
        parse_values("0.25,1.5", "--alpha", 0.0, 1.0)
    with pytest.raises(SweepError, match=r"values must be \[0, 1\]"):
        parse_values("0:2", "--alpha", 0.0, 1.0, grid=False)


def test_space_units_always_include_the_baseline() -> None:
    space = SearchSpace.build("grid", "focal,qfocal,bce", "0,1", "0.25,0.75", 2, None, KNOWN)
    units = space.planned_units()
    keys = [u.key for u in units]
    assert len(keys) == len(set(keys)) == space.total_units() == 2 * (1 + 2 * 2 * 2 + 1)
    assert [u.key for u in units[:2]] == ["baseline|s=0", "baseline|s=1"]
    assert sum(u.loss == "bce" for u in units) == 2  # gamma/alpha mean nothing to BCE: one setting per seed
    assert units[2].seed == 0 and units[-1].seed == 1  # seed-major: the whole grid with seed 0 first
    sampled = SearchSpace.build("tpe", "focal", "0:3", "0:1", 3, 10, KNOWN)
    assert [u.loss for u in sampled.planned_units()] == [BASELINE] * 3
    assert sampled.total_units() == 3 * 11


def test_unit_hyps() -> None:
    base = {"lr0": 0.01, "fl_loss": "qfocal", "fl_gamma": 1.5, "fl_alpha": "auto", "fl_apply": "cls", "fl_norm": "positives"}
    stock = Unit(BASELINE, None, None, 0, "baseline").hyp(base)
    assert stock == {"lr0": 0.01, "fl_gamma": 0.0}
    assert parse_focal_hyp(stock, known_losses=KNOWN).is_stock
    focal = Unit("focal", 2.0, 0.5, 1).hyp(base)
    assert focal == {**base, "fl_loss": "focal", "fl_gamma": 2.0, "fl_alpha": 0.5}
    assert base["fl_loss"] == "qfocal"  # the user's hyp is not modified


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(losses="focal,foo"), "unknown loss 'foo'; known losses: bce, focal, qfocal, varifocal"),
        (dict(losses=""), "--loss is empty"),
        (dict(losses="baseline"), "'baseline' is always included"),
        (dict(seeds=0), "--seeds must be an integer >= 1"),
        (dict(trials=5), "--trials is for sampled sweeps"),
        (dict(sampler="tpe"), "--sampler tpe needs --trials N"),
        (dict(sampler="cmaes"), "--sampler: 'cmaes' is not one of grid, tpe, random"),
    ],
)
def test_space_errors(kwargs: dict, message: str) -> None:
    args = dict(sampler="grid", losses="focal", gamma="0,1", alpha="0.25", seeds=1, trials=None, known_losses=KNOWN)
    args.update(kwargs)
    with pytest.raises(SweepError, match=message.replace("(", r"\(")):
        SearchSpace.build(**args)


# --------------------------------------------------------------------------- the CLI, before any training


@pytest.fixture
def data_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "data.yaml"
    path.write_text("path: .\ntrain: images/train\nval: images/val\nnc: 3\nnames: [a, b, c]\n")
    return path


def sweep(tmp_path: Path, data: Path, *extra: str) -> List[str]:
    return ["sweep", "--data", str(data), "--project", str(tmp_path / "runs"), "--study", "s", "--epochs", "1",
            "--img", "64", "--seeds", "1", "--no-progress", *extra]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--loss", "focal,fancy"], "unknown loss 'fancy'"),
        (["--gamma=-1,0"], "--gamma: -1 is outside the allowed values >= 0"),
        (["--alpha", "0.25,1.25"], "--alpha: 1.25 is outside the allowed values [0, 1]"),
        (["--gamma", ""], "--gamma is empty"),
        (["--gamma", "0:3"], "a continuous range needs --sampler tpe or random"),
        (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open storage postgresql+psycopg://nobody@127.0.0.1:1/none"),
        (["--storage", "postgresql://u:secret@127.0.0.1:1/none"], "u:***@127.0.0.1"),
        (["--storage", "redis://localhost"], "unsupported URL scheme"),
        (["--seed", "3"], "yolov5 flag --seed cannot be passed through: the sweep sets --seed per trial; use --seeds N"),
        (["--name", "x"], "yolov5 flag --name cannot be passed through"),
        (["--evolve", "3"], "yolov5 flag --evolve cannot be passed through"),
        (["--imgsz", "320"], "use the sweep's --img"),
        (["--cfg", "nope.yaml"], "--cfg 'nope.yaml': no such file"),
        (["--hyp", "nope.yaml"], "--hyp 'nope.yaml': no such file"),
        (["--weights", "nope.pt"], "--weights 'nope.pt': no such file"),
        (["--epochs", "0"], "--epochs must be an integer >= 1"),
        (["--n-jobs", "0"], "--n-jobs must be an integer >= 1"),
        (["--study", "a/b"], "use a plain name"),
        (["--heartbeat", "10", "--grace", "5"], "--grace must be an integer number of seconds above --heartbeat"),
    ],
)
def test_bad_input_stops_before_training(tmp_path: Path, data_yaml: Path, capsys: pytest.CaptureFixture, extra: List[str], message: str) -> None:
    from yolo_focal_plugin.cli import main

    assert main(sweep(tmp_path, data_yaml, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "secret" not in err
    assert not (tmp_path / "runs" / "s").exists()  # no run directory: nothing trained


def test_bad_hyp_value_and_missing_data_stop_before_training(tmp_path: Path, data_yaml: Path, capsys: pytest.CaptureFixture) -> None:
    from yolo_focal_plugin.cli import main

    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.01\nfl_gamma: 1.0\nfl_alpha: [0.2, 0.3]\n")  # 2 per-class alphas, nc = 3
    assert main(sweep(tmp_path, data_yaml, "--hyp", str(hyp), "--alpha", "0.25")) == 2
    assert "per-class values but the dataset has nc=3" in capsys.readouterr().err
    hyp.write_text("lr0: 0.01\nfl_gama: 1.0\n")
    assert main(sweep(tmp_path, data_yaml, "--hyp", str(hyp))) == 2
    assert "unknown hyp key(s) 'fl_gama'" in capsys.readouterr().err
    assert main(sweep(tmp_path, tmp_path / "missing.yaml")) == 2
    assert "no such file (the sweep does not download datasets)" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "s").exists()


def test_pass_through_flags_are_checked_by_yolov5(tmp_path: Path, data_yaml: Path, capsys: pytest.CaptureFixture) -> None:
    from yolo_focal_plugin.cli import main

    assert main(sweep(tmp_path, data_yaml, "--gamma", "1", "--alpha", "0.5", "--dry-run", "--rect", "--cache", "ram")) == 0
    out = capsys.readouterr().out
    assert "OK: 2 units" in out and "focal|g=1|a=0.5|s=0" in out
    assert main(sweep(tmp_path, data_yaml, "--dry-run", "--no-such-yolov5-flag")) == 2
    assert "unrecognized arguments: --no-such-yolov5-flag" in capsys.readouterr().err


def test_parser_keeps_yolov5_flags() -> None:
    from yolo_focal_plugin.cli import build_parser

    args = build_parser("sweep").parse_args(["sweep", "--data", "d.yaml", "--rect", "--optimizer", "AdamW", "--seeds", "2", "--cache"])
    assert args.train_args == ["--rect", "--optimizer", "AdamW", "--cache"]
    assert args.seeds == 2
