"""RetinaNet anchors: counts, sizes, ordering, and agreement with torchvision / mmdet / detectron2."""
from __future__ import annotations

import math

import pytest
import torch

from yolo_focal_plugin.retina import (
    anchors_for_image,
    anchors_per_level,
    cell_anchors,
    grid_sizes_for_image,
    num_anchors,
)


def _size(a: torch.Tensor) -> torch.Tensor:
    return ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])).sqrt()


def test_count_dtype_and_levels_at_640():
    a = anchors_for_image(640, 640)
    assert a.shape == (76_725, 4) and a.dtype == torch.float32
    assert num_anchors(640, 640) == 76_725
    # mmdet test_retina_anchor valid-flag counts for 640x640, feature maps 80..5
    assert [t.shape[0] for t in anchors_per_level(640, 640)] == [57_600, 14_400, 3_600, 900, 225]
    assert grid_sizes_for_image(640, 640) == [(80, 80), (40, 40), (20, 20), (10, 10), (5, 5)]


def test_sizes_and_extents_match_reference_table():
    a = anchors_for_image(640, 640).double()
    s = _size(a)
    assert s.min().item() == pytest.approx(32.0, abs=1e-3)
    assert s.max().item() == pytest.approx(512 * 2 ** (2 / 3), abs=1e-3)  # 812.7493, the "[32, 813]" range
    assert s.max().item() == pytest.approx(812.7493, abs=1e-3)
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    assert w.max().item() == pytest.approx(1149.4012, abs=1e-3) and h.max().item() == pytest.approx(1149.4012, abs=1e-3)
    assert torch.minimum(w, h).min().item() == pytest.approx(22.6274, abs=1e-4)
    # the 15 distinct sizes of REFERENCE.md 5.2
    expected = sorted(b * 2 ** (k / 3) for b in (32, 64, 128, 256, 512) for k in range(3))
    got = sorted({round(v, 2) for v in s.tolist()})
    assert got == pytest.approx(expected, abs=1e-2)


def test_mmdet_base_anchor_values_and_ratio_major_order():
    p3 = cell_anchors(32)
    # ratio 0.5 (h/w), scale 1: mmdet [-22.6274, -11.3137, 22.6274, 11.3137]
    assert p3[0].tolist() == pytest.approx([-22.6274, -11.3137, 22.6274, 11.3137], abs=1e-4)
    p7 = cell_anchors(512)
    # ratio-major: index 2 is ratio 0.5 with the largest scale, mmdet's P7 max
    assert p7[2].tolist() == pytest.approx([-574.7006, -287.3503, 574.7006, 287.3503], abs=1e-4)
    # ratios outer, scales inner: sizes cycle 32, 40.3, 50.8 three times
    assert _size(p3).tolist() == pytest.approx([32, 40.3175, 50.7968] * 3, abs=1e-3)
    w, h = p3[:, 2] - p3[:, 0], p3[:, 3] - p3[:, 1]
    assert (h / w).tolist() == pytest.approx([0.5] * 3 + [1.0] * 3 + [2.0] * 3)


def test_ordering_level_row_column_cell():
    h, w = 256, 384
    a = anchors_for_image(h, w)
    levels = anchors_per_level(h, w)
    k = 9
    offs = [0]
    for t in levels[:-1]:
        offs.append(offs[-1] + t.shape[0])
    for lvl, (stride, base) in enumerate(zip((8, 16, 32, 64, 128), (32, 64, 128, 256, 512))):
        gh, gw = math.ceil(h / stride), math.ceil(w / stride)
        cells = cell_anchors(base).float()
        for i, j, c in ((0, 0, 0), (1, 2, 4), (gh - 1, gw - 1, 8)):
            row = offs[lvl] + (i * gw + j) * k + c
            shift = torch.tensor([j * stride, i * stride, j * stride, i * stride], dtype=torch.float32)
            assert torch.allclose(a[row], cells[c] + shift, atol=1e-4)


def test_torchvision_unit_case_stride5_size10():
    # torchvision test_anchor_generator: size 10, ratio 1, 15x15 image, 3x3 features -> stride 5
    a = anchors_for_image(15, 15, strides=(5,), base_sizes=(10,), scales=(1,), aspect_ratios=(1,))
    expected = [[-5, -5, 5, 5], [0, -5, 10, 5], [5, -5, 15, 5],
                [-5, 0, 5, 10], [0, 0, 10, 10], [5, 0, 15, 10],
                [-5, 5, 5, 15], [0, 5, 10, 15], [5, 5, 15, 15]]
    assert a.tolist() == expected


def test_mmdet_strides_case():
    a = anchors_for_image(20, 20, strides=(10,), base_sizes=(10,), scales=(1,), aspect_ratios=(1,))
    assert a.tolist() == [[-5, -5, 5, 5], [5, -5, 15, 5], [-5, 5, 5, 15], [5, 5, 15, 15]]


def test_detectron2_cases_scale_major_and_offset():
    kw = dict(strides=(4,), sizes=[[32, 64]], aspect_ratios=(0.25, 1, 4), grid_sizes=[(1, 2)], order="scale_major")
    a = anchors_for_image(4, 8, **kw)
    assert a[:4].tolist() == [[-32, -8, 32, 8], [-16, -16, 16, 16], [-8, -32, 8, 32], [-64, -16, 64, 16]]
    assert torch.equal(a[6:], a[:6] + torch.tensor([4.0, 0, 4.0, 0]))
    centred = anchors_for_image(4, 8, offset=0.5, **kw)
    assert centred[0].tolist() == [-30, -6, 34, 10]


def _torchvision_anchors(h: int, w: int, sizes, ratios=(0.5, 1.0, 2.0)) -> torch.Tensor:
    tv = pytest.importorskip("torchvision.models.detection.anchor_utils")
    from torchvision.models.detection.image_list import ImageList

    gen = tv.AnchorGenerator(tuple(tuple(s) for s in sizes), (tuple(ratios),) * len(sizes))
    images = ImageList(torch.zeros(1, 3, h, w), [(h, w)])
    feats = [torch.zeros(1, 1, gh, gw) for gh, gw in grid_sizes_for_image(h, w)]
    return gen(images, feats)[0]


@pytest.mark.parametrize("hw", [(640, 640), (512, 768)])
def test_agrees_with_torchvision_up_to_whole_pixel_rounding(hw):
    h, w = hw
    ours = anchors_for_image(h, w)
    # 1) same float sizes: torchvision == our cell anchors rounded to whole pixels, exactly
    float_sizes = [[b * 2 ** (k / 3) for k in range(3)] for b in (32, 64, 128, 256, 512)]
    tv = _torchvision_anchors(h, w, float_sizes)
    assert tv.shape == ours.shape
    rounded = torch.cat([
        (t - t[:9].repeat(t.shape[0] // 9, 1)) + cell_anchors(b).round().float().repeat(t.shape[0] // 9, 1)
        for t, b in zip(anchors_per_level(h, w), (32, 64, 128, 256, 512))
    ])
    assert torch.equal(tv, rounded)
    assert (tv - ours).abs().max() <= 0.5 + 1e-4
    # 2) torchvision's RetinaNet defaults truncate sizes to int (812.75 -> 812): same rule with them
    tv_sizes = [[x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))] for x in (32, 64, 128, 256, 512)]
    tv_default = _torchvision_anchors(h, w, tv_sizes)
    ours_int = anchors_for_image(h, w, sizes=tv_sizes)
    assert (tv_default - ours_int).abs().max() <= 0.5 + 1e-4
    # and the float-size anchors are within rounding + truncation (<= 0.75 px / sqrt(2) * 2^(1/2))
    assert (tv_default - ours).abs().max() <= 1.1


def test_nominal_strides_when_not_divisible():
    # 600x800: P7 grid is ceil(600/128)=5 x ceil(800/128)=7; torchvision would use stride 600//5=120
    levels = anchors_per_level(600, 800)
    assert levels[-1].shape[0] == 5 * 7 * 9
    cx = (levels[-1][:, 0] + levels[-1][:, 2]) / 2
    assert sorted({round(v, 2) for v in cx.tolist()}) == [128.0 * j for j in range(7)]


def test_every_parameter_is_overridable():
    a = anchors_for_image(64, 64, strides=(8, 16), base_sizes=(16, 48), scales=(1.0, 1.5),
                          aspect_ratios=(1.0,), offset=0.5, dtype=torch.float64)
    assert a.dtype == torch.float64 and a.shape[0] == 2 * (64 + 16)
    assert a[0].tolist() == [-4.0, -4.0, 12.0, 12.0]  # centre (4, 4), size 16
    assert a[1].tolist() == [-8.0, -8.0, 16.0, 16.0]  # size 24


@pytest.mark.parametrize("kwargs, match", [
    (dict(strides=(8, 16), base_sizes=(32,)), "one entry per level"),
    (dict(scales=(0.0,)), "scales"),
    (dict(aspect_ratios=(-1.0,)), "aspect_ratios"),
    (dict(order="size_first"), "order"),
    (dict(grid_sizes=[(1, 1)]), "grid_sizes"),
    (dict(offset=float("nan")), "offset"),
])
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        anchors_for_image(64, 64, **kwargs)


def test_grid_anchor_boxes_follow_yolov5_prediction_layout():
    from yolo_focal_plugin.retina import grid_anchor_boxes

    wh = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)]]
    boxes = grid_anchor_boxes(64, 64, wh, (8, 16))
    assert boxes.shape == (3 * 64 + 3 * 16, 4)
    # level 0, anchor a, cell (i, j) is row (a * 8 + i) * 8 + j; centre ((j + .5) * 8, (i + .5) * 8)
    a, i, j = 2, 5, 3
    assert boxes[(a * 8 + i) * 8 + j].tolist() == [28 - 16.5, 44 - 11.5, 28 + 16.5, 44 + 11.5]
    # level 1 starts after 3 * 64 rows: anchor 1, cell (0, 1): centre (24, 8), 62 x 45
    assert boxes[192 + (1 * 4 + 0) * 4 + 1].tolist() == [24 - 31, 8 - 22.5, 24 + 31, 8 + 22.5]
    with pytest.raises(ValueError, match="one list per level"):
        grid_anchor_boxes(64, 64, wh, (8,))
