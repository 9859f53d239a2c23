"""``yolo-focal report`` numbers against a hand-computed example, and its outputs.

Hand computation (3 seeds per setting, sample std with n - 1):

* baseline           mAP50-95 0.10, 0.12, 0.14 -> mean 0.12, std 0.02
* focal g=1 a=0.25   0.15, 0.17, 0.19           -> mean 0.17, std 0.02
  Welch: se = sqrt(0.02^2/3 + 0.02^2/3) = 0.0163299, t = 0.05 / se = 3.0619,
  df = (2 * 0.0004/3)^2 / (2 * (0.0004/3)^2 / 2) = 4, so the Student-t CDF has the closed form
  F(t) = 1/2 + (s/2) * (1 + (1 - s^2)/2) with s = t / sqrt(t^2 + 4): p = 2 (1 - F(3.0619)) = 0.0376.
  95% CI: 0.05 +- t_{0.975, 4} * se = 0.05 +- 2.7764 * 0.0163299 = [0.00466, 0.09534].
* focal g=2 a=0.25   0.08, 0.12, 0.10 -> mean 0.10, std 0.02, t = -1.2247, p = 0.2879
* focal g=1 a=0.75   0.11, 0.13 and one NaN failure -> mean 0.12: difference 0, t = 0, p = 1
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import optuna
import pytest
import yaml

from yolo_focal_plugin.sweep.report import build_report, report_study, table_rows, to_markdown, write_report
from yolo_focal_plugin.sweep.space import SearchSpace, Unit
from yolo_focal_plugin.sweep.study import PLAN_ATTR, Plan, open_storage
from yolo_focal_plugin.sweep.stats import welch

BASE_HYP = {"lr0": 0.01, "cls": 0.5, "fl_loss": "focal", "fl_gamma": 1.5, "fl_alpha": 0.25, "fl_apply": "cls"}


def t_cdf_df4(t: float) -> float:
    s = t / math.sqrt(t * t + 4.0)
    return 0.5 + (s / 2.0) * (1.0 + (1.0 - s * s) / 2.0)


def plan() -> Plan:
    space = SearchSpace.build("grid", "focal", "1,2", "0.25,0.75", 3, None, ["focal", "bce"])
    return Plan(space=space.to_json(), settings={"data": "/d/data.yaml", "cfg": "yolov5n.yaml", "weights": "", "epochs": 5,
                                                  "img": 64, "batch_size": 8, "train_args": []}, base_hyp=dict(BASE_HYP))


def frozen(unit: Unit, state: str, map50_95: Optional[float] = None, reason: str = "", epochs: int = 5,
           outcome: Optional[str] = None) -> optuna.trial.FrozenTrial:
    run: Dict[str, Any] = {"outcome": outcome or {"complete": "complete", "fail": "failed", "pruned": "pruned"}[state],
                           "epochs_run": epochs, "reason": reason}
    if map50_95 is not None:
        run.update(map50_95=map50_95, map50=map50_95 + 0.1)
    states = {"complete": optuna.trial.TrialState.COMPLETE, "fail": optuna.trial.TrialState.FAIL,
              "pruned": optuna.trial.TrialState.PRUNED}
    floats = ("fl_gamma", "fl_alpha")  # the other params are categorical: fl_loss and the --set keys
    return optuna.trial.create_trial(
        state=states[state], value=map50_95 if state == "complete" else None,
        params=unit.params(), distributions={k: optuna.distributions.FloatDistribution(0, 3) if k in floats else
                                             optuna.distributions.CategoricalDistribution([v]) for k, v in unit.params().items()},
        user_attrs={"unit": unit.to_json(), "run": run},
        intermediate_values={} if state != "pruned" else {0: 0.01},
    )


def example_trials() -> List[optuna.trial.FrozenTrial]:
    trials = []
    for seed, m in enumerate((0.10, 0.12, 0.14)):
        u = Unit("baseline", None, None, seed, "baseline")
        if seed == 1:  # an interrupted attempt before the real one: must not count twice
            trials.append(frozen(u, "fail", outcome="interrupted"))
        trials.append(frozen(u, "complete", m))
    for seed, m in enumerate((0.15, 0.17, 0.19)):
        trials.append(frozen(Unit("focal", 1.0, 0.25, seed), "complete", m))
    for seed, m in enumerate((0.08, 0.12, 0.10)):
        trials.append(frozen(Unit("focal", 2.0, 0.25, seed), "complete", m, epochs=4 + seed))
    trials.append(frozen(Unit("focal", 1.0, 0.75, 0), "complete", 0.11))
    trials.append(frozen(Unit("focal", 1.0, 0.75, 1), "fail", reason="NaN loss in epoch 3 (train/cls_loss)", epochs=3))
    trials.append(frozen(Unit("focal", 1.0, 0.75, 2), "complete", 0.13))
    for seed in range(3):
        trials.append(frozen(Unit("focal", 2.0, 0.75, seed), "pruned", epochs=1))
    return trials


def test_report_numbers_match_the_hand_computed_example() -> None:
    report = build_report(example_trials(), plan(), study="hand")
    rows = {r.setting: r for r in report.rows}
    base = rows["baseline"]
    assert report.rows[0] is base
    assert base.n == 3 and base.seeds == 3  # the interrupted attempt is not a fourth run
    assert base.mean_map == pytest.approx(0.12) and base.std_map == pytest.approx(0.02)
    assert base.mean_map50 == pytest.approx(0.22)

    good = rows["focal|g=1|a=0.25"]
    se = math.sqrt(0.02 ** 2 / 3 * 2)
    t = 0.05 / se
    assert t == pytest.approx(3.0619, abs=1e-4)
    assert good.test.t == pytest.approx(t)
    assert good.test.df == pytest.approx(4.0)
    assert good.test.p == pytest.approx(2 * (1 - t_cdf_df4(t)), rel=1e-9)
    assert good.test.p == pytest.approx(0.0376, abs=1e-4)
    assert good.test.ci_low == pytest.approx(0.05 - 2.776445 * se, abs=1e-6)
    assert good.test.ci_high == pytest.approx(0.05 + 2.776445 * se, abs=1e-6)
    assert good.test.significant()

    worse = rows["focal|g=2|a=0.25"]
    assert worse.mean_map == pytest.approx(0.10) and worse.test.diff == pytest.approx(-0.02)
    assert worse.test.p == pytest.approx(2 * (1 - t_cdf_df4(1.224745)), rel=1e-5)
    assert worse.epochs == [4, 5, 6]

    partly = rows["focal|g=1|a=0.75"]
    assert (partly.n, partly.failed) == (2, 1)
    assert partly.failures == ["seed 1: NaN loss in epoch 3 (train/cls_loss)"]
    assert partly.test.diff == pytest.approx(0.0, abs=1e-12) and partly.test.p == pytest.approx(1.0)

    pruned = rows["focal|g=2|a=0.75"]
    assert (pruned.n, pruned.pruned) == (0, 3) and pruned.test is None

    assert report.best is good
    assert report.verdict.startswith("focal gamma=1 alpha=0.25 beats the baseline: mAP50-95 0.1700 vs 0.1200 (+0.0500")
    assert report.counts == {"complete": 11, "failed": 1, "pruned": 3}


def test_report_files(tmp_path: Path) -> None:
    report = build_report(example_trials(), plan(), study="hand", storage="sqlite:///x.db")
    files = write_report(report, tmp_path)
    assert set(files) == {"heatmap", "best_hyp", "markdown", "csv", "json"}
    assert files["heatmap"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(files["csv"])))
    good = next(r for r in rows if r["gamma"] == "1.0" and r["alpha"] == "0.25")
    assert float(good["map50_95_mean"]) == pytest.approx(0.17)
    assert float(good["map50_95_std"]) == pytest.approx(0.02)
    assert float(good["p_value"]) == pytest.approx(0.0376, abs=1e-4)
    assert good["significant"] == "True"
    data = json.loads(files["json"].read_text())
    assert data["best"] == "focal|g=1|a=0.25" and len(data["rows"]) == 5
    md = files["markdown"].read_text()
    assert "| focal | 1 | 0.25 | 3/3 | 0.1700 ± 0.0200 | 0.2700 ± 0.0200 | 5 | 0 | 0 | +0.0500 |" in md
    assert "yes, better" in md and "NaN loss in epoch 3" in md
    hyp = yaml.safe_load(files["best_hyp"].read_text())
    assert hyp == {**BASE_HYP, "fl_loss": "focal", "fl_gamma": 1.0, "fl_alpha": 0.25}
    assert "significant" in files["best_hyp"].read_text().splitlines()[1]


def test_report_says_plainly_when_nothing_beats_the_baseline(tmp_path: Path) -> None:
    trials = [frozen(Unit("baseline", None, None, s, "baseline"), "complete", m) for s, m in enumerate((0.30, 0.32, 0.31))]
    trials += [frozen(Unit("focal", 1.0, 0.25, s), "complete", m) for s, m in enumerate((0.20, 0.22, 0.21))]
    report = build_report(trials, plan(), study="flat")
    assert report.verdict.startswith("No setting beats the baseline: every focal-loss setting scored a lower mean")
    assert report.best.is_baseline
    files = write_report(report, tmp_path)
    hyp = yaml.safe_load(files["best_hyp"].read_text())
    assert hyp["fl_gamma"] == 0.0 and "fl_loss" not in hyp and "fl_alpha" not in hyp  # stock YOLOv5
    # higher mean but not significant: said as such
    trials = [frozen(Unit("baseline", None, None, s, "baseline"), "complete", m) for s, m in enumerate((0.30, 0.32, 0.31))]
    trials += [frozen(Unit("focal", 1.0, 0.25, s), "complete", m) for s, m in enumerate((0.29, 0.36, 0.31))]
    report = build_report(trials, plan(), study="noisy")
    assert report.verdict.startswith("No setting beats the baseline significantly. Highest mean: focal gamma=1 alpha=0.25")
    assert "includes 0" in report.verdict


def test_welch_edge_cases() -> None:
    assert welch([0.1], [0.1, 0.2]) is None  # one seed: no variance estimate
    assert welch([0.1, 0.1], [0.1, 0.1]) is None  # zero variance both sides
    r = welch([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0])
    from scipy import stats

    ref = stats.ttest_ind([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0], equal_var=False)
    assert r.t == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)


def test_report_command_reads_a_stored_study(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from yolo_focal_plugin.cli import main

    url = f"sqlite:///{tmp_path / 'hand.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="hand", direction="maximize")
    study.set_user_attr(PLAN_ATTR, plan().to_json())
    for t in example_trials():
        study.add_trial(t)
    assert main(["report", "--study", "hand", "--storage", url, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "beats the baseline" in out and (tmp_path / "out" / "heatmap.png").is_file()
    assert main(["report", "--study", "nope", "--storage", url]) == 2
    assert "no study named 'nope'; studies in this storage: hand" in capsys.readouterr().err
    assert main(["report", "--study", "hand", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"]) == 2
    assert "no such database file" in capsys.readouterr().err


# --------------------------------------------------------------------------- --set KEY=V1,V2,...

OLD_HEADER = ("| loss | gamma | alpha | runs | mAP50-95 | mAP50 | epochs | failed | pruned | Δ mAP50-95 | 95% CI | p (Welch) "
              "| significant |")
OLD_CSV_FIELDS = ["loss", "gamma", "alpha", "seeds", "n", "map50_95_mean", "map50_95_std", "map50_mean", "map50_std",
                  "epochs_min", "epochs_max", "failed", "pruned", "pending", "diff_vs_baseline", "ci95_low", "ci95_high",
                  "p_value", "significant"]


def set_plan() -> Plan:
    space = SearchSpace.build("grid", "focal", "1", "0.25", 3, None, ["focal", "bce"], sets=["obj=2,1", "fl_apply=obj,both"])
    space = space.bind_hyp({**BASE_HYP, "obj": 1.0}, "hyp.yaml")
    return Plan(space=space.to_json(), settings=dict(plan().settings), base_hyp={**BASE_HYP, "obj": 1.0})


def set_trials() -> List[optuna.trial.FrozenTrial]:
    # a matched baseline per obj value (fl_apply makes no other baseline)
    trials = [frozen(Unit("baseline", None, None, s, "baseline", (("obj", obj),)), "complete", m)
              for obj in (1.0, 2.0) for s, m in enumerate((0.10, 0.12, 0.14))]
    # stored in neither the --set order nor value order: the report has to sort them
    means = {(1.0, "both"): 0.12, (2.0, "both"): 0.13, (1.0, "obj"): 0.11, (2.0, "obj"): 0.20}
    for (obj, apply), m in means.items():
        for seed, d in enumerate((-0.01, 0.0, 0.01)):
            unit = Unit("focal", 1.0, 0.25, seed, "grid", (("obj", obj), ("fl_apply", apply)))
            trials.append(frozen(unit, "complete", m + d))
    return trials


def test_report_rows_show_the_set_values(tmp_path: Path) -> None:
    report = build_report(set_trials(), set_plan(), study="sets")
    labels = [r.label() for r in report.rows]
    # baselines first, then the --set values in the order given (obj=2 before obj=1), not one merged row
    assert labels == ["baseline (BCE) obj=2", "baseline (BCE) obj=1",
                      "focal gamma=1 alpha=0.25 obj=2 fl_apply=obj", "focal gamma=1 alpha=0.25 obj=2 fl_apply=both",
                      "focal gamma=1 alpha=0.25 obj=1 fl_apply=obj", "focal gamma=1 alpha=0.25 obj=1 fl_apply=both"]
    assert [r.n for r in report.rows] == [3, 3, 3, 3, 3, 3]
    assert report.best.label() == "focal gamma=1 alpha=0.25 obj=2 fl_apply=obj"
    assert report.verdict.startswith("focal gamma=1 alpha=0.25 obj=2 fl_apply=obj beats the baseline")
    files = write_report(report, tmp_path)
    md = files["markdown"].read_text()
    assert "| loss | gamma | alpha | obj | fl_apply | runs |" in md
    assert "| baseline | - | - | 1 | - | 3/3 |" in md  # the baseline trained its obj and no fl_apply
    assert "| focal | 1 | 0.25 | 2 | both | 3/3 | 0.1300 ± 0.0100 |" in md
    assert "obj=2,1 fl_apply=obj,both" in md and "baseline: BCE with the same values except the loss (same gains, same fl_assigner) (matched)" in md
    rows = list(csv.DictReader(open(files["csv"])))
    assert list(rows[0]) == OLD_CSV_FIELDS[:3] + ["obj", "fl_apply"] + OLD_CSV_FIELDS[3:]
    assert [(r["obj"], r["fl_apply"]) for r in rows] == [("2", ""), ("1", ""), ("2", "obj"), ("2", "both"), ("1", "obj"),
                                                         ("1", "both")]
    data = json.loads(files["json"].read_text())
    assert data["rows"][2]["set"] == {"obj": 2.0, "fl_apply": "obj"} and data["rows"][0]["set"] == {"obj": 2.0}
    assert yaml.safe_load(files["best_hyp"].read_text()) == {**BASE_HYP, "obj": 2.0, "fl_loss": "focal", "fl_gamma": 1.0,
                                                             "fl_alpha": 0.25, "fl_apply": "obj"}
    assert files["heatmap"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_heatmap_draws_one_panel_per_set_combination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.figure

    titles: List[List[str]] = []
    original = matplotlib.figure.Figure.savefig

    def savefig(fig: Any, *args: Any, **kwargs: Any) -> Any:
        titles.append([ax.get_title() for ax in fig.axes if ax.get_title()])
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    from yolo_focal_plugin.sweep.report import write_heatmap

    assert write_heatmap(build_report(set_trials(), set_plan(), study="sets"), tmp_path / "sets.png")
    assert titles[-1] == ["fl_loss: focal\nobj=2 fl_apply=obj", "fl_loss: focal\nobj=2 fl_apply=both",
                          "fl_loss: focal\nobj=1 fl_apply=obj", "fl_loss: focal\nobj=1 fl_apply=both"]
    assert write_heatmap(build_report(example_trials(), plan(), study="hand"), tmp_path / "old.png")
    assert titles[-1] == ["fl_loss: focal"]  # without --set: one panel per loss, as before


def test_a_study_without_set_reports_as_before(tmp_path: Path) -> None:
    report = build_report(example_trials(), plan(), study="hand")
    files = write_report(report, tmp_path)
    md = files["markdown"].read_text()
    assert OLD_HEADER in md and "--set" not in md
    assert "- search space: sampler=grid loss=focal gamma=1,2 alpha=0.25,0.75 seeds=3\n" in md
    assert list(csv.DictReader(open(files["csv"])))[0].keys() == set(OLD_CSV_FIELDS) and \
        next(csv.reader(open(files["csv"]))) == OLD_CSV_FIELDS
    assert all("set" not in row for row in json.loads(files["json"].read_text())["rows"])


def test_equal_means_are_not_called_lower_and_two_seeds_are_not_called_too_few() -> None:
    # issue #15: every mAP 0 (too few epochs) said "scored a lower mean" and "needs >= 2 seeds"
    # beside rows that had 2
    trials = [frozen(Unit("baseline", None, None, s, "baseline"), "complete", 0.0) for s in range(2)]
    trials += [frozen(Unit("focal", g, 0.25, s), "complete", 0.0) for g in (1.0, 2.0) for s in range(2)]
    report = build_report(trials, plan(), study="zeros")
    assert "lower" not in report.verdict
    assert report.verdict.startswith("No setting beats the baseline: every focal-loss setting scored the same mean")
    assert "Every run scored 0" in report.verdict
    cells = [row["significant"] for row in table_rows(report)[1:]]
    assert cells == ["n/a (every seed of both scored the same: no spread to test)"] * 2, cells
    # one equal, one lower: neither word alone
    trials = [frozen(Unit("baseline", None, None, s, "baseline"), "complete", m) for s, m in enumerate((0.3, 0.3))]
    trials += [frozen(Unit("focal", 1.0, 0.25, s), "complete", m) for s, m in enumerate((0.3, 0.3))]
    trials += [frozen(Unit("focal", 2.0, 0.25, s), "complete", m) for s, m in enumerate((0.1, 0.2))]
    verdict = build_report(trials, plan(), study="mixed").verdict
    assert "no focal-loss setting scored a higher mean mAP50-95 (1 the same, 1 lower)" in verdict, verdict


def test_one_seed_is_still_reported_as_too_few() -> None:
    trials = [frozen(Unit("baseline", None, None, s, "baseline"), "complete", m) for s, m in enumerate((0.3, 0.31))]
    trials += [frozen(Unit("focal", 1.0, 0.25, 0), "complete", 0.4)]
    report = build_report(trials, plan(), study="one")
    assert table_rows(report)[1]["significant"] == "n/a (needs ≥2 completed seeds each, has 1 vs 2)"
    assert "no significance test: needs ≥2 completed seeds each, has 1 vs 2" in report.verdict


# --- issue #12: each setting against BCE with the same values except the loss (same gains, same fl_assigner); stock YOLOv5 beside it ------

STOCK_HYP = {"lr0": 0.01, "obj": 1.0, "cls": 0.5, "fl_gamma": 0.0}


def matched_plan(stock: bool = False) -> Plan:
    space = SearchSpace.build("grid", "focal,varifocal", "2", "0.5", 3, None, ["focal", "varifocal", "bce"],
                              sets=["obj=5,10", "fl_apply=obj,both"])
    space = space.bind_hyp({**BASE_HYP, "obj": 1.0}, "hyp.yaml")
    if stock:
        from dataclasses import replace

        space = replace(space, stock=True)
    settings = {**plan().settings, "stock_reference": "on" if stock else "same"}
    return Plan(space=space.to_json(), settings=settings, base_hyp={**BASE_HYP, "obj": 1.0},
                **({"stock_hyp": dict(STOCK_HYP)} if stock else {}))


BASE_MAPS = {5.0: (0.30, 0.32, 0.34), 10.0: (0.10, 0.12, 0.14)}
FOCAL_MAPS = {(5.0, "obj"): (0.20, 0.23, 0.21), (5.0, "both"): (0.31, 0.35, 0.33),
              (10.0, "obj"): (0.15, 0.17, 0.19), (10.0, "both"): (0.11, 0.12, 0.16)}


def matched_trials(objs: Any = (5.0, 10.0), stock: bool = False) -> List[optuna.trial.FrozenTrial]:
    trials = [frozen(Unit("baseline", None, None, s, "baseline", (("obj", obj),)), "complete", m)
              for obj in objs for s, m in enumerate(BASE_MAPS[obj])]
    if stock:
        trials += [frozen(Unit("stock", None, None, s, "stock"), "complete", m) for s, m in enumerate((0.25, 0.26, 0.27))]
    for loss, shift in (("focal", 0.0), ("varifocal", 0.01)):
        for (obj, apply), maps in FOCAL_MAPS.items():
            trials += [frozen(Unit(loss, 2.0, 0.5, s, "grid", (("obj", obj), ("fl_apply", apply))), "complete", m + shift)
                       for s, m in enumerate(maps)]
    return trials


def test_each_setting_is_compared_with_the_bce_of_the_same_obj() -> None:
    report = build_report(matched_trials(), matched_plan(), study="matched")
    rows = {r.setting: r for r in report.rows}
    for loss, shift in (("focal", 0.0), ("varifocal", 0.01)):
        for (obj, apply), maps in FOCAL_MAPS.items():
            row = rows[f"{loss}|g=2|a=0.5|obj={obj:g}|fl_apply={apply}"]
            # against BCE with the same obj (fl_apply makes no other baseline)
            expected = welch([m + shift for m in maps], list(BASE_MAPS[obj]))
            assert row.test.diff == pytest.approx(expected.diff) and row.test.p == pytest.approx(expected.p), row.setting
    for row in report.rows[2:]:
        obj = dict(row.extras)["obj"]
        assert row.baseline is rows[f"baseline|obj={obj:g}"] and row.baseline_setting == f"baseline|obj={obj:g}"
    assert [r.label() for r in report.rows[:2]] == ["baseline (BCE) obj=5", "baseline (BCE) obj=10"]
    # obj=10 fl_apply=obj: 0.17 vs its own baseline 0.12 is a significant gain (vs obj=5's 0.32 it would be a loss)
    assert rows["focal|g=2|a=0.5|obj=10|fl_apply=obj"].test.diff == pytest.approx(0.05)
    assert report.verdict.startswith("varifocal gamma=2 alpha=0.5 obj=10 fl_apply=obj beats the baseline: "
                                     "mAP50-95 0.1800 vs 0.1200"), report.verdict
    assert table_rows(report)[0]["Δ mAP50-95"] == "(reference)"


def test_a_missing_matched_baseline_is_reported_as_missing(tmp_path: Path) -> None:
    report = build_report(matched_trials(objs=(5.0,)), matched_plan(), study="missing")
    rows = {r.setting: r for r in report.rows}
    lost = rows["focal|g=2|a=0.5|obj=10|fl_apply=obj"]
    assert lost.baseline is None and lost.baseline_missing and lost.test is None  # never obj=5's baseline
    assert lost.baseline_setting == "baseline|obj=10"
    assert rows["focal|g=2|a=0.5|obj=5|fl_apply=obj"].baseline is rows["baseline|obj=5"]
    cells = {(r["loss"], r["obj"], r["fl_apply"]): r for r in table_rows(report)}
    assert cells[("focal", "10", "obj")]["Δ mAP50-95"] == "no matched baseline (baseline|obj=10 not in the study)"
    assert cells[("focal", "10", "obj")]["p (Welch)"] == "n/a"
    assert "4 setting(s) have no matched baseline (BCE with the same values except the loss (same gains, same fl_assigner)) and are compared with nothing" \
        in report.verdict
    data = json.loads(write_report(report, tmp_path)["json"].read_text())
    by_setting = {r["setting"]: r for r in data["rows"]}
    assert by_setting["focal|g=2|a=0.5|obj=10|fl_apply=obj"]["baseline_missing"] is True
    assert by_setting["focal|g=2|a=0.5|obj=10|fl_apply=obj"]["diff_vs_baseline"] is None
    assert by_setting["focal|g=2|a=0.5|obj=5|fl_apply=obj"]["baseline"] == "baseline|obj=5"


def test_stock_yolov5_is_reported_beside_the_matched_baseline(tmp_path: Path) -> None:
    report = build_report(matched_trials(stock=True), matched_plan(stock=True), study="stock")
    assert [r.label() for r in report.rows[:3]] == ["baseline (BCE) obj=5", "baseline (BCE) obj=10",
                                                    "stock YOLOv5 (hyp.scratch-low.yaml)"]
    stock = report.stock
    assert stock.mean_map == pytest.approx(0.26) and stock.test is None and stock.baseline is None
    row = next(r for r in report.rows if r.setting == "focal|g=2|a=0.5|obj=10|fl_apply=obj")
    assert row.baseline.setting == "baseline|obj=10"  # the Welch test stays against the matched baseline
    assert row.stock_test.diff == pytest.approx(0.17 - 0.26)
    cells = table_rows(report)
    assert cells[2]["Δ mAP50-95"] == "(stock reference)" and cells[2]["obj"] == "1"  # stock's own gain
    assert cells[0]["Δ vs stock (p)"].startswith("+0.0600 (p ")  # BCE obj=5 vs stock
    files = write_report(report, tmp_path)
    md = files["markdown"].read_text()
    assert "- baseline: BCE with the same values except the loss (same gains, same fl_assigner) (matched); stock YOLOv5 beside it\n" in md
    assert "| stock | - | - | 1 | - | 3/3 | 0.2600 ± 0.0100 |" in md and "Δ vs stock (p)" in md
    assert "Stock YOLOv5 (hyp.scratch-low.yaml) beside it: 0.2600" in report.verdict
    data = json.loads(files["json"].read_text())
    assert data["baseline_rule"] == "baseline: BCE with the same values except the loss (same gains, same fl_assigner) (matched); stock YOLOv5 beside it"
    assert data["rows"][0]["diff_vs_stock"] == pytest.approx(0.06)
    assert list(csv.DictReader(open(files["csv"])))[0]["diff_vs_stock"] == "0.06"


def test_every_report_names_its_baseline_rule(tmp_path: Path) -> None:
    md = write_report(build_report(example_trials(), plan(), study="hand"), tmp_path / "a")["markdown"].read_text()
    assert "- baseline: BCE with the same values except the loss (same gains, same fl_assigner) (matched)" in md
    same = Plan(space=plan().space, settings={**plan().settings, "stock_reference": "same"}, base_hyp=dict(BASE_HYP))
    data = json.loads(write_report(build_report(example_trials(), same, study="m"), tmp_path / "b")["json"].read_text())
    assert data["baseline_rule"] == ("baseline: BCE with the same values except the loss (same gains, same fl_assigner) (matched); stock YOLOv5 beside it: "
                                     "here every baseline trains stock YOLOv5's values")


def test_a_study_made_before_matched_baselines_reports_with_its_own_rule() -> None:
    # its plan has no baseline rule and its one baseline took no --set value: every row against that one
    old = set_plan()
    old.space = {k: v for k, v in old.space.items() if k != "baseline"}
    trials = [t for t in set_trials() if t.user_attrs["unit"]["loss"] != "baseline"]
    trials += [frozen(Unit("baseline", None, None, s, "baseline"), "complete", m) for s, m in enumerate((0.10, 0.12, 0.14))]
    report = build_report(trials, old, study="old")
    assert report.verdict.startswith("focal gamma=1 alpha=0.25 obj=2 fl_apply=obj beats the baseline")
    assert all(r.baseline is report.baseline for r in report.rows if not r.is_reference)
    assert "(unmatched: the study was made before matched baselines, #12)" in to_markdown(report)
