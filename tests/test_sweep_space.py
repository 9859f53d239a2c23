"""Search-space parsing and every "clear error before any training" case of ``yolo-focal sweep``."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import List

import pytest

from yolo_focal_plugin.hyp import parse_focal_hyp
from yolo_focal_plugin.sweep.space import BASELINE, SearchSpace, SweepError, Unit, parse_sets, parse_values

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
        (["--set", "obj"], "--set 'obj': expected KEY=V1,V2,... (e.g. --set obj=1,2)"),
        (["--set", "=1"], "--set '=1': the key is empty"),
        (["--set", "obj="], "--set 'obj=': no values"),
        (["--set", "obj=1,,2"], "--set 'obj=1,,2': empty value in the list"),
        (["--set", "obj=1", "--set", "obj=2"], "--set obj is given twice"),
        (["--set", "fl_gamma=1"], "--set fl_gamma: the sweep sets fl_gamma itself; use --gamma"),
        (["--set", "objj=1,2"], "--set objj: not a key of "),
        (["--set", "obj=abc"], "--set obj=abc: obj is a number in "),
        (["--set", "fl_apply=obj,objj"], "--set fl_apply=objj: hyp key 'fl_apply' has invalid value 'objj': expected one of cls, obj, both"),
        (["--set", "fl_aply=obj"], "--set fl_aply=obj: unknown hyp key(s) 'fl_aply'"),
        (["--set", "fl_gamma_warmup=0,-1"], "--set fl_gamma_warmup=-1: hyp key 'fl_gamma_warmup' has invalid value -1"),
        (["--sampler", "tpe", "--trials", "2", "--set", "fl_norm=mean,sum"], "--set fl_norm=sum: hyp key 'fl_norm' has invalid value 'sum'"),
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
    # the default base hyp, hyp.focal.yaml, has raised gains: its matched baseline and stock YOLOv5 are both planned
    assert "OK: 3 units" in out and "focal|g=1|a=0.5|s=0" in out and "baseline|s=0" in out and "stock|s=0" in out
    assert main(sweep(tmp_path, data_yaml, "--dry-run", "--no-such-yolov5-flag")) == 2
    assert "unrecognized arguments: --no-such-yolov5-flag" in capsys.readouterr().err


def test_dry_run_lists_the_units_with_their_set_values(tmp_path: Path, data_yaml: Path, capsys: pytest.CaptureFixture) -> None:
    from yolo_focal_plugin.cli import main

    args = sweep(tmp_path, data_yaml, "--gamma", "1", "--alpha", "0.5", "--set", "obj=1,2", "--set", "fl_apply=obj,both", "--dry-run")
    assert main(args) == 0
    out = capsys.readouterr().out
    # a matched baseline per obj value; obj=2 is not stock YOLOv5's gain, so a stock unit beside them
    assert "OK: 7 units (sampler=grid loss=focal gamma=1 alpha=0.5 obj=1,2 fl_apply=obj,both seeds=1 stock=yes)" in out
    units = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert units == ["baseline|obj=1|s=0", "baseline|obj=2|s=0", "stock|s=0",
                     "focal|g=1|a=0.5|obj=1|fl_apply=obj|s=0", "focal|g=1|a=0.5|obj=1|fl_apply=both|s=0",
                     "focal|g=1|a=0.5|obj=2|fl_apply=obj|s=0", "focal|g=1|a=0.5|obj=2|fl_apply=both|s=0"]
    assert not (tmp_path / "runs").exists()  # not even the SQLite file: a dry run creates nothing


def test_parser_keeps_yolov5_flags() -> None:
    from yolo_focal_plugin.cli import build_parser

    args = build_parser("sweep").parse_args(["sweep", "--data", "d.yaml", "--rect", "--optimizer", "AdamW", "--seeds", "2", "--cache"])
    assert args.train_args == ["--rect", "--optimizer", "AdamW", "--cache"]
    assert args.seeds == 2
    assert args.sets == []
    args = build_parser("sweep").parse_args(["sweep", "--data", "d.yaml", "--set", "obj=1,2", "--rect", "--set=fl_apply=obj,both"])
    assert args.sets == ["obj=1,2", "fl_apply=obj,both"] and args.train_args == ["--rect"]
    from yolo_focal_plugin.sweep.command import config_from_args

    assert list(config_from_args(args).sets) == ["obj=1,2", "fl_apply=obj,both"]


# --------------------------------------------------------------------------- --set KEY=V1,V2,...


def test_parse_sets_reads_yaml_values_dedupes_and_keeps_order() -> None:
    specs = parse_sets(["obj=4, 1,2,1.0", "fl_apply=obj,both,obj", "lr0=1e-3,0.01", "flag=true"])
    assert [s.key for s in specs] == ["obj", "fl_apply", "lr0", "flag"]
    assert specs[0].values == (4, 1, 2)  # 1.0 is 1: collapsed; the order given is kept (not sorted)
    assert all(type(v) is int for v in specs[0].values)
    assert specs[1].values == ("obj", "both")
    assert specs[2].values == (0.001, 0.01)  # YAML 1.1 reads 1e-3 as a string; it is a number here
    assert specs[3].values == (True,)
    assert specs[0].describe() == "obj=4,1,2"
    assert parse_sets(None) == parse_sets([]) == ()


@pytest.mark.parametrize(
    "sets, message",
    [
        (["obj"], "--set 'obj': expected KEY=V1,V2,..."),
        (["=1,2"], "--set '=1,2': the key is empty"),
        (["obj="], "--set 'obj=': no values"),
        (["obj= , "], "--set 'obj= , ': empty value in the list"),
        (["obj=1,,2"], "--set 'obj=1,,2': empty value in the list"),
        (["obj=1,"], "--set 'obj=1,': empty value in the list"),
        (["obj=1", "obj=2"], "--set obj is given twice"),
        (["fl_loss=focal"], "--set fl_loss: the sweep sets fl_loss itself; use --loss"),
        (["fl_gamma=1"], "--set fl_gamma: the sweep sets fl_gamma itself; use --gamma"),
        (["fl_alpha=0.5"], "--set fl_alpha: the sweep sets fl_alpha itself; use --alpha"),
        (["ob j=1"], "is not a hyp key name"),
        (["obj=null"], "'null' is not a number, a word or true/false"),
        (["obj=[1"], "cannot read the value '[1'"),
        (["obj=.nan"], "'.nan' is not a finite number"),
        (["fl_apply=a|b"], "contains '|'"),
    ],
)
def test_parse_sets_errors(sets: List[str], message: str) -> None:
    with pytest.raises(SweepError, match=re.escape(message)):
        SearchSpace.build("grid", "focal", "1", "0.25", 1, None, KNOWN, sets=sets)


def test_grid_with_sets_is_the_product_seed_major() -> None:
    space = SearchSpace.build("grid", "focal,bce", "0,1", "0.25", 2, None, KNOWN, sets=["obj=1,2", "fl_apply=obj,both"])
    units = space.planned_units()
    per_seed = 2 * 1 * 2 * 2 + 1 * 2 * 2  # focal: gamma x alpha x obj x fl_apply; bce: obj x fl_apply
    assert len(units) == space.total_units() == 2 * (2 + per_seed)  # a matched baseline per obj value and seed
    assert len({u.key for u in units}) == len(units)
    assert [u.key for u in units[4:9]] == [
        "focal|g=0|a=0.25|obj=1|fl_apply=obj|s=0",  # the last --set varies fastest
        "focal|g=0|a=0.25|obj=1|fl_apply=both|s=0",
        "focal|g=0|a=0.25|obj=2|fl_apply=obj|s=0",
        "focal|g=0|a=0.25|obj=2|fl_apply=both|s=0",
        "focal|g=1|a=0.25|obj=1|fl_apply=obj|s=0",
    ]
    assert [u.key for u in units[4 + per_seed - 4:4 + per_seed]] == [
        "bce|g=0|a=-|obj=1|fl_apply=obj|s=0", "bce|g=0|a=-|obj=1|fl_apply=both|s=0",
        "bce|g=0|a=-|obj=2|fl_apply=obj|s=0", "bce|g=0|a=-|obj=2|fl_apply=both|s=0",
    ]
    assert all(u.seed == 0 for u in units[4:4 + per_seed]) and all(u.seed == 1 for u in units[4 + per_seed:])
    # the baselines take the non-fl_* --set values only (matched, #12): fl_apply makes no other baseline
    assert [u.key for u in units[:4]] == ["baseline|obj=1|s=0", "baseline|obj=2|s=0", "baseline|obj=1|s=1", "baseline|obj=2|s=1"]
    assert "obj=1,2 fl_apply=obj,both seeds=2" in space.describe()


def test_bind_hyp_checks_keys_and_makes_numbers_floats_where_the_hyp_has_floats() -> None:
    base = {"lr0": 0.01, "obj": 1.0, "anchors": 3, "fl_apply": "obj"}
    space = SearchSpace.build("grid", "focal", "1", "0.25", 1, None, KNOWN,
                              sets=["obj=1,2", "anchors=3,4", "fl_apply=obj,both", "fl_gamma_warmup=0,10"])
    bound = space.bind_hyp(base, "hyp.yaml")
    values = {s.key: s.values for s in bound.extras}
    assert values["obj"] == (1.0, 2.0) and all(type(v) is float for v in values["obj"])  # the hyp file's type
    assert values["anchors"] == (3, 4) and all(type(v) is int for v in values["anchors"])
    assert values["fl_apply"] == ("obj", "both") and values["fl_gamma_warmup"] == (0, 10)  # fl_* keys need not be in the hyp
    assert [u.key for u in bound.grid_units()] == [u.key for u in space.grid_units()]  # 1 and 1.0: the same unit
    with pytest.raises(SweepError, match=r"--set objj: not a key of hyp\.yaml"):
        SearchSpace.build("grid", "focal", "1", "0.25", 1, None, KNOWN, sets=["objj=1"]).bind_hyp(base, "hyp.yaml")
    with pytest.raises(SweepError, match=r"--set obj=abc: obj is a number in hyp\.yaml \(1\.0\), 'abc' is not"):
        SearchSpace.build("grid", "focal", "1", "0.25", 1, None, KNOWN, sets=["obj=1,abc"]).bind_hyp(base, "hyp.yaml")
    with pytest.raises(SweepError, match=r"--set obj=true: obj is a number"):
        SearchSpace.build("grid", "focal", "1", "0.25", 1, None, KNOWN, sets=["obj=true"]).bind_hyp(base, "hyp.yaml")


def test_set_values_reach_the_units_hyp_and_the_non_fl_ones_the_baselines() -> None:
    base = {"lr0": 0.01, "obj": 1.0, "cls": 0.5, "fl_loss": "focal", "fl_gamma": 1.5, "fl_apply": "cls"}
    space = SearchSpace.build("grid", "focal", "2", "0.5", 1, None, KNOWN, sets=["obj=2", "fl_apply=both", "fl_norm=positives"])
    space = space.bind_hyp(base, "hyp.yaml")
    baseline, unit = space.planned_units()
    assert baseline.hyp(base) == {"lr0": 0.01, "obj": 2.0, "cls": 0.5, "fl_gamma": 0.0}  # BCE at the unit's own obj
    assert parse_focal_hyp(baseline.hyp(base), known_losses=KNOWN).is_stock
    hyp = unit.hyp(base)
    assert hyp == {"lr0": 0.01, "obj": 2.0, "cls": 0.5, "fl_loss": "focal", "fl_gamma": 2.0, "fl_alpha": 0.5,
                   "fl_apply": "both", "fl_norm": "positives"}
    assert base["obj"] == 1.0 and base["fl_apply"] == "cls"  # the user's hyp is not modified


def test_baselines_keep_the_assigner_matched_bce_under_the_same_assignment() -> None:
    """Like with like (#12): same gains *and* assigner. A focal setting under the RetinaNet assigner
    (from the base hyp or from --set) is compared with BCE under that assigner, never with BCE under
    YOLOv5's; the stock unit stays YOLOv5's own hyp with no fl_* key."""
    base = {"lr0": 0.01, "obj": 5.0, "cls": 3.0, "fl_assigner": "retina", "fl_norm": "positives", "fl_gamma": 1.5}
    space = SearchSpace.build("grid", "focal", "2", "0.25", 1, None, KNOWN).bind_hyp(base, "hyp.yaml")
    baseline = next(u for u in space.planned_units() if u.is_baseline)
    assert baseline.hyp(base) == {"lr0": 0.01, "obj": 5.0, "cls": 3.0, "fl_assigner": "retina", "fl_gamma": 0.0}
    parsed = parse_focal_hyp(baseline.hyp(base), known_losses=KNOWN)
    assert parsed.loss == "bce" and parsed.assigner == "retina" and parsed.norm == "mean"
    stock = Unit("stock", None, None, 0, "stock").hyp(base, {"obj": 1.0, "cls": 0.5, "fl_gamma": 0.0})
    assert stock == {"obj": 1.0, "cls": 0.5, "fl_gamma": 0.0}
    # YOLOv5's own assigner named in the hyp: the baseline is YOLOv5's hyp with no plugin key, as before
    yolov5_base = {**base, "fl_assigner": "yolov5"}
    assert Unit(BASELINE, None, None, 0, "baseline").hyp(yolov5_base) == {"lr0": 0.01, "obj": 5.0, "cls": 3.0,
                                                                          "fl_gamma": 0.0}

    swept = SearchSpace.build("grid", "focal", "2", "0.25", 1, None, KNOWN,
                              sets=["fl_assigner=yolov5,retina", "fl_apply=obj,both"]).bind_hyp({"obj": 1.0}, "hyp.yaml")
    assert [u.key for u in swept.planned_units() if u.is_baseline] == [
        "baseline|fl_assigner=yolov5|s=0", "baseline|fl_assigner=retina|s=0"]  # fl_apply makes no other
    by_setting = {u.setting: swept.baseline_extras(u.extras) for u in swept.planned_units() if not u.is_reference}
    assert by_setting["focal|g=2|a=0.25|fl_assigner=retina|fl_apply=obj"] == (("fl_assigner", "retina"),)
    assert swept.to_json()["baseline"] == "matched"  # so a resumed study reads the same rule
    # a study stored before fl_assigner made its own baseline (no "baseline" key) keeps the rule it ran with
    stored = swept.to_json()
    del stored["baseline"]
    assert SearchSpace.from_json(stored).baseline == "unmatched"


def test_unit_identity_with_set_values() -> None:
    unit = Unit("varifocal", 2.0, 0.75, 1, "grid", (("obj", 2.0), ("fl_apply", "obj")))
    assert unit.setting == "varifocal|g=2|a=0.75|obj=2|fl_apply=obj"
    assert unit.key == "varifocal|g=2|a=0.75|obj=2|fl_apply=obj|s=1"
    assert unit.slug == "varifocal-g2-a0.75-obj=2-fl_apply=obj-s1"
    assert unit.describe() == "varifocal gamma=2 alpha=0.75 obj=2 fl_apply=obj seed=1"
    assert unit.params() == {"fl_loss": "varifocal", "fl_gamma": 2.0, "fl_alpha": 0.75, "obj": 2.0, "fl_apply": "obj"}
    assert unit.with_seed(2).key == "varifocal|g=2|a=0.75|obj=2|fl_apply=obj|s=2"
    odd = Unit("focal", 1.0, 0.25, 0, "grid", (("mode", "a/b c:d"),))
    assert "/" not in odd.slug and " " not in odd.slug and ":" not in odd.slug
    # values past the 6 digits of gamma/alpha keys are still told apart (they would share a unit otherwise)
    assert Unit("focal", 1.0, 0.25, 0, "grid", (("lr0", 0.0100001),)).key != Unit("focal", 1.0, 0.25, 0, "grid", (("lr0", 0.01),)).key
    assert parse_sets(["lr0=0.01,0.0100001"])[0].values == (0.01, 0.0100001)


def test_unit_and_space_json_round_trip_and_old_json_without_sets() -> None:
    unit = Unit("focal", 1.0, 0.25, 1, "sampled", (("obj", 2.0), ("fl_apply", "both"), ("fl_gamma_warmup", 10)))
    data = json.loads(json.dumps(unit.to_json()))  # as Optuna stores user attributes
    back = Unit.from_json(data)
    assert back == unit and back.key == unit.key
    assert type(dict(back.extras)["fl_gamma_warmup"]) is int
    # a unit stored before --set existed: no "extras"; same key, and stored exactly as then
    old = {"loss": "focal", "gamma": 1.0, "alpha": 0.25, "seed": 0, "origin": "grid", "key": "focal|g=1|a=0.25|s=0",
           "setting": "focal|g=1|a=0.25"}
    loaded = Unit.from_json(old)
    assert loaded.extras == () and loaded.key == old["key"] and loaded.to_json() == old

    space = SearchSpace.build("tpe", "focal", "0:3", "0:1", 2, 5, KNOWN, sets=["obj=1,2", "fl_apply=obj,both"])
    again = SearchSpace.from_json(json.loads(json.dumps(space.to_json())), trials=5)
    assert again == space
    plain = SearchSpace.build("grid", "focal", "0,1", "0.25", 1, None, KNOWN)
    assert "set" not in plain.to_json()  # studies without --set store the same plan as before
    assert SearchSpace.from_json(plain.to_json()).extras == ()


def test_sampled_space_suggests_one_categorical_per_set_key() -> None:
    import optuna

    space = SearchSpace.build("random", "focal,bce", "0:3", "0:1", 2, 4, KNOWN, sets=["obj=1,2", "fl_apply=obj,both"])
    dists = space.distributions()
    assert dists["obj"].choices == (1, 2) and dists["fl_apply"].choices == ("obj", "both")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        unit = space.sample_unit(trial, 0)
        assert trial.distributions["obj"] == dists["obj"] and trial.distributions["fl_apply"] == dists["fl_apply"]
        assert dict(unit.extras) == {"obj": trial.params["obj"], "fl_apply": trial.params["fl_apply"]}
        seen.add((unit.loss, dict(unit.extras)["fl_apply"]))
        study.tell(trial, 0.0)
    assert {"bce", "focal"} == {loss for loss, _ in seen}  # bce settings get the --set values too


def test_a_stock_unit_is_planned_where_a_baseline_is_not_stock_yolov5() -> None:
    from dataclasses import replace

    stock = {"lr0": 0.01, "obj": 1.0, "cls": 0.5, "fl_gamma": 0.0}
    plain = SearchSpace.build("grid", "focal", "1", "0.25", 2, None, KNOWN, sets=["fl_apply=obj,both"])
    assert not plain.needs_stock({**stock, "fl_loss": "focal", "fl_gamma": 1.5}, stock)  # only fl_* differ: baseline is stock
    assert plain.needs_stock({**stock, "obj": 5.0}, stock)  # the base hyp's gain is not stock's
    gains = SearchSpace.build("grid", "focal", "1", "0.25", 2, None, KNOWN, sets=["obj=1,5"]).bind_hyp(stock, "hyp.yaml")
    assert gains.needs_stock(stock, stock)  # obj=5 from --set
    with_stock = replace(gains, stock=True)
    assert [u.key for u in with_stock.baseline_units()] == ["baseline|obj=1|s=0", "baseline|obj=5|s=0", "stock|s=0",
                                                            "baseline|obj=1|s=1", "baseline|obj=5|s=1", "stock|s=1"]
    assert with_stock.total_units() == len(with_stock.planned_units()) == 6 + 2 * 2
    unit = with_stock.baseline_units()[2]
    assert unit.is_stock and unit.params() == {} and unit.slug == "stock-s0"
    assert unit.hyp({**stock, "obj": 5.0, "fl_loss": "focal"}, {**stock, "fl_apply": "obj"}) == stock  # stock's values, no fl_*
    assert parse_focal_hyp(unit.hyp(stock, stock), known_losses=KNOWN).is_stock
    with pytest.raises(ValueError, match="needs YOLOv5's stock hyp"):
        unit.hyp(stock)
    assert SearchSpace.from_json(with_stock.to_json()) == replace(with_stock, trials=None)


def test_a_stored_space_from_before_matched_baselines_keeps_its_rule() -> None:
    new = SearchSpace.build("grid", "focal", "1", "0.25", 1, None, KNOWN, sets=["obj=1,2", "fl_apply=obj"])
    data = new.to_json()
    assert data["baseline"] == "matched" and "stock" not in data
    old = SearchSpace.from_json({k: v for k, v in data.items() if k != "baseline"})  # what studies before #12 stored
    assert old.baseline == "unmatched" and [u.key for u in old.baseline_units()] == ["baseline|s=0"]
    only_fl = SearchSpace.build("grid", "focal", "1", "0.25", 1, None, KNOWN, sets=["fl_apply=obj,both"])
    assert "baseline" not in only_fl.to_json() and SearchSpace.from_json(only_fl.to_json()).baseline == "matched"
