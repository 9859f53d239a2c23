"""The one reader of YOLOv5's hyp and dataset YAML files."""
from __future__ import annotations

import pytest

from yolo_focal_plugin.hyp import plugin_keys
from yolo_focal_plugin.yolo_yaml import YamlFileError, dataset_classes, find_hyp_file, load_hyp, read_yaml_mapping


def test_dataset_classes_follow_yolov5(tmp_path):
    assert dataset_classes({"nc": 3, "names": ["a", "b", "c"]}) == (3, ["a", "b", "c"])
    assert dataset_classes({"names": {1: "b", 0: "a"}}) == (2, ["a", "b"])  # YOLOv5 accepts an index mapping
    assert dataset_classes({"train": "x"}) == (None, None)
    data = tmp_path / "data.yaml"
    data.write_text("names: [cat, dog]\n")
    assert dataset_classes(data) == (2, ["cat", "dog"])


def test_bare_hyp_names_resolve_and_a_local_file_wins(tmp_path, monkeypatch):
    assert find_hyp_file("hyp.varifocal.yaml").parent.name == "hyps"
    assert load_hyp("hyp.varifocal.yaml")["fl_loss"] == "varifocal"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hyp.varifocal.yaml").write_text("fl_gamma: 0.5\n")
    assert load_hyp("hyp.varifocal.yaml") == {"fl_gamma": 0.5}
    hyp = {"fl_gamma": 1.0}
    assert load_hyp(hyp) is hyp  # a dict is used as it is, never re-read


def test_bad_files_are_named(tmp_path):
    with pytest.raises(YamlFileError, match="hyp file 'nope.yaml' not found"):
        load_hyp("nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(YamlFileError, match="broken.yaml: not valid YAML"):
        read_yaml_mapping(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(YamlFileError, match="list.yaml: expected a mapping of hyperparameters, found list"):
        load_hyp(listed)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_yaml_mapping(empty) == {}


def test_plugin_keys_are_every_fl_key_but_a_numeric_fl_gamma():
    assert plugin_keys({"fl_gamma": 1.5, "lr0": 0.01}) == []
    assert plugin_keys({"fl_gamma": "2", "FL_ALPHA": 0.2, "fl-loss": "focal", "fliplr": 0.5}) == ["fl_gamma", "FL_ALPHA", "fl-loss"]
