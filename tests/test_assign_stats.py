"""assign-stats: yolov5 build_targets emulation, label reading, geometry, reports."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from yolo_focal_plugin.experiments import assign_stats as A

P5_ANCHORS = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)], [(116, 90), (156, 198), (373, 326)]]
STRIDES = [8, 16, 32]


def _grid(img: int):
    shapes = [(img // s, img // s) for s in STRIDES]
    anchors = [torch.tensor(a, dtype=torch.float32) / s for a, s in zip(P5_ANCHORS, STRIDES)]
    return shapes, anchors


def _write_dataset(root: Path, labels: dict, split: str = "train", images: bool = False) -> Path:
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    for name, rows in labels.items():
        (root / "labels" / split / f"{name}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
    data = {"path": str(root), "train": f"images/{split}", "val": f"images/{split}", "nc": 3, "names": ["a", "b", "c"]}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


# ---- yolov5 assignment ---------------------------------------------------------------------

def test_single_box_hand_computed():
    # 64x64 canvas; GT centre (19, 27) px, 12x12. P3 (stride 8): grid xy (2.375, 3.375): the
    # fractional parts are < 0.5 and > 1 cell from the border, so the left and upper neighbours
    # join: cells (gi, gj) = (2,3), (1,3), (2,2); all three P3 anchors pass max(r, 1/r) < 4
    # (12/33 = 0.36 -> 2.75). P4: 61/12 = 5.1, 62/12 = 5.2, 119/12 -> fail. P5: all fail.
    shapes, anchors = _grid(64)
    t = torch.tensor([[0, 0, 19 / 64, 27 / 64, 12 / 64, 12 / 64]])
    res = A.yolov5_assign(t, shapes, anchors, 4.0)
    assert res.gt.tolist() == [0] * 9 and set(res.level.tolist()) == {0}
    cells = sorted(set(zip(res.gi.tolist(), res.gj.tolist())))
    assert cells == [(1, 3), (2, 2), (2, 3)]
    assert sorted(res.anchor.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_zero_width_box_gets_nothing_and_anchor_t_matters():
    shapes, anchors = _grid(64)
    t = torch.tensor([[0, 0, 0.5, 0.5, 0.0, 0.2]])
    assert A.yolov5_assign(t, shapes, anchors, 4.0).gt.numel() == 0
    t = torch.tensor([[0, 0, 0.3, 0.3, 12 / 64, 12 / 64]])
    strict = A.yolov5_assign(t, shapes, anchors, 1.5)  # only (10, 13) is within 1.5x of 12x12
    assert set(strict.anchor.tolist()) == {0}


def test_equals_real_yolov5_build_targets():
    loss = pytest.importorskip("yolov5.utils.loss")
    g = torch.Generator().manual_seed(0)
    n, bs, img = 300, 4, 128
    xy = torch.rand(n, 2, generator=g)
    wh = torch.exp(torch.empty(n, 2).uniform_(np.log(0.01), np.log(0.9), generator=g))
    edge = torch.tensor([[0.001, 0.999], [0.999, 0.001], [0.5 / 16, 0.5], [1 / 16, 1 / 16]])  # borders, exact halves
    xy[: len(edge)] = edge
    wh[5] = torch.tensor([0.0, 0.2])  # zero width
    targets = torch.cat([torch.randint(0, bs, (n, 1), generator=g).float(),
                         torch.arange(n).float()[:, None],  # class column = GT index, to trace it
                         xy, wh], 1)
    shapes, anchors = _grid(img)
    fake = SimpleNamespace(na=3, nl=3, anchors=torch.stack(anchors), hyp={"anchor_t": 4.0}, device=torch.device("cpu"))
    p = [torch.zeros(bs, 3, ny, nx, 8) for ny, nx in shapes]
    tcls, _, indices, _ = loss.ComputeLoss.build_targets(fake, p, targets)
    ours = A.yolov5_assign(targets, shapes, anchors, 4.0)
    for lvl in range(3):
        sel = ours.level == lvl
        b, a, gj, gi = indices[lvl]
        assert torch.equal(ours.image[sel], b) and torch.equal(ours.anchor[sel], a)
        assert torch.equal(ours.gj[sel], gj) and torch.equal(ours.gi[sel], gi)
        assert torch.equal(ours.gt[sel], tcls[lvl])


# ---- labels and geometry ---------------------------------------------------------------------

def test_read_label_file_like_yolov5(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.0 0.05\n")
    lf = A.read_label_file(f)
    assert lf.rows.shape == (2, 5) and lf.duplicates == 1 and not lf.corrupt
    f.write_text("2 0.1 0.2 0.3 0.2 0.3 0.4\n0 0.5 0.5 0.2 0.2\n")  # polygon row -> its box
    lf = A.read_label_file(f)
    assert lf.rows[0].tolist() == pytest.approx([2, 0.2, 0.3, 0.2, 0.2])
    f.write_text("0 0.5 0.5 1.2 0.2\n")
    assert "non-normalised" in A.read_label_file(f).corrupt
    f.write_text("0 0.5 0.5 0.2\n")
    assert "5 columns" in A.read_label_file(f).corrupt
    f.write_text("")
    assert A.read_label_file(f).rows.shape == (0, 5)
    assert A.read_label_file(tmp_path / "missing.txt").rows.shape == (0, 5)


def test_letterbox_geometry():
    rows = np.array([[0, 0.5, 0.5, 0.5, 0.5]], np.float32)
    # 200 x 100 image at --img 64: resized to 64 x 32, padded 16 px above and below
    assert A.letterbox_boxes(rows, (200, 100), 64)[0].tolist() == pytest.approx([16, 24, 48, 40])
    assert A.letterbox_boxes(rows, None, 64)[0].tolist() == pytest.approx([16, 16, 48, 48])  # square assumption


def test_dataset_items_variants(tmp_path):
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 20)).save(root / "images" / "train" / f"{i}.jpg")
        (root / "labels" / "train" / f"{i}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "train.txt").write_text("images/train/0.jpg\nimages/train/2.jpg\n")
    (root / "d.yaml").write_text(yaml.safe_dump({"path": ".", "train": "train.txt", "val": ["images/train"]}))
    items = A.dataset_items(root / "d.yaml", "train")
    assert [p.name for p, _ in items] == ["0.txt", "2.txt"] and all(i is not None for _, i in items)
    assert len(A.dataset_items(root / "d.yaml", "all")) == 5
    (root / "bad.yaml").write_text(yaml.safe_dump({"path": str(root), "train": "images/nothing"}))
    with pytest.raises(ValueError, match="does not exist"):
        A.dataset_items(root / "bad.yaml")
    with pytest.raises(ValueError, match="'val'"):
        A.dataset_items(root / "bad.yaml", "val")


def test_model_anchors_from_yaml(tmp_path):
    pytest.importorskip("yolov5")  # the bundled model YAMLs live in the yolov5 package
    anchors, strides, path = A.load_model_anchors("yolov5n.yaml")
    assert anchors == [[(float(w), float(h)) for w, h in lvl] for lvl in P5_ANCHORS] and strides == STRIDES
    anchors6, strides6, _ = A.load_model_anchors("yolov5n6")
    assert len(anchors6) == 4 and strides6 == [8, 16, 32, 64]
    bad = tmp_path / "m.yaml"
    bad.write_text("anchors: 3\n")
    with pytest.raises(ValueError, match="explicit 'anchors'"):
        A.load_model_anchors(bad)
    with pytest.raises(ValueError, match="not found"):
        A.load_model_anchors("yolov9z.yaml")


# ---- the whole analysis --------------------------------------------------------------------

@pytest.fixture
def custom_cfg(tmp_path) -> Path:
    """The P5 anchors in a local YAML: these tests must not depend on where yolov5 is installed."""
    p = tmp_path / "anchors.yaml"
    p.write_text(yaml.safe_dump({"anchors": [[v for wh in lvl for v in wh] for lvl in P5_ANCHORS]}))
    return p


def test_label_only_dataset_numbers(tmp_path, custom_cfg):
    data = _write_dataset(tmp_path / "ds", {
        "a": ["0 0.296875 0.421875 0.1875 0.1875",  # the hand-computed box: 9 yolov5 positives at --img 64
              "1 0.5 0.5 0.0 0.3"],                 # zero width: degenerate
        "b": ["2 0.5 0.5 0.9 0.9", "2 0.5 0.5 0.9 0.9"],  # duplicate row removed
        "c": [],
    })
    r = A.run_assign_stats(data, 64, {"anchor_t": 4.0}, custom_cfg, tmp_path / "out", progress=False)
    assert r["images"] == 3 and r["images_without_labels"] == 1 and r["duplicate_rows_removed"] == 1
    assert r["gts"] == 3 and r["degenerate_gts"] == 1
    assert r["image_sizes"].startswith("square assumed")
    assert r["gts_by_size"] == {"small": 2, "medium": 1, "large": 0}
    y = r["assigners"]["yolov5"]
    assert y["histogram"][0] == 1 and y["histogram"][9] >= 1  # the degenerate box and the 9-positive box
    assert y["gts_without_positive"] == 1
    assert y["anchors"]["slots"] == 3 * 3 * (64 + 16 + 4) and y["anchors"]["ignored"] == 0
    for name in ("retina", "retina_yolo_anchors"):
        s = r["assigners"][name]
        assert s["gts_without_positive"] == 1  # only the degenerate box
        a = s["anchors"]
        assert a["positive"] + a["negative"] + a["ignored"] == a["slots"]
    assert r["settings"]["slots_per_image"]["retina"] == 9 * (64 + 16 + 4 + 1 + 1)
    files = r["files"]
    assert json.loads(Path(files["json"]).read_text())["gts"] == 3
    md = Path(files["md"]).read_text()
    assert "positive : negative : ignored" in md and "| small | `retina` |" in md
    assert Path(files["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_img_rounded_up_and_hyp_file_read(tmp_path, custom_cfg):
    data = _write_dataset(tmp_path / "ds", {"a": ["0 0.5 0.5 0.3 0.3"]})
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("anchor_t: 2.0\nlr0: 0.01\n")
    r = A.run_assign_stats(data, 70, hyp, custom_cfg, tmp_path / "out", progress=False, assigners=["yolov5"])
    assert r["img_size"] == 96 and r["settings"]["img_size_requested"] == 70
    assert r["settings"]["anchor_t"] == 2.0 and list(r["assigners"]) == ["yolov5"]
    with pytest.raises(ValueError, match="assigners"):
        A.run_assign_stats(data, 64, None, custom_cfg, tmp_path / "o2", assigners=["atss"])
    with pytest.raises(ValueError, match="hyp file"):
        A.run_assign_stats(data, 64, "hyp.nothing.yaml", custom_cfg, tmp_path / "o3")
    r = A.run_assign_stats(data, 64, "hyp.focal.yaml", custom_cfg, tmp_path / "o4", progress=False, assigners=["yolov5"])
    assert r["settings"]["anchor_t"] == 4.0  # bundled hyp, found by bare name


def test_cli_on_generated_dataset(tiny_data, tmp_path, capsys, custom_cfg):
    parser = argparse.ArgumentParser()
    A.add_arguments(parser)
    args = parser.parse_args(["--data", str(tiny_data), "--img", "64", "--cfg", str(custom_cfg),
                              "--out", str(tmp_path / "stats"), "--batch", "5"])
    assert A.run_from_args(args) == 0
    out, err = capsys.readouterr()
    assert "| positives per GT (mean) |" in out and "assign_stats.png" in out
    assert "assign-stats" in err and "16/16" in err  # tqdm progress over the 16 train images
    r = json.loads((tmp_path / "stats" / "assign_stats.json").read_text())
    assert r["images"] == 16 and r["image_sizes"] == "from image headers"
    for name in ("retina", "retina_yolo_anchors"):
        assert r["assigners"][name]["gts_without_positive"] == r["degenerate_gts"]
