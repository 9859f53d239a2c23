"""``run_assign_stats``: the whole analysis, from a dataset YAML to the three report files.

Reads the dataset batch by batch (:mod:`._dataset`), runs every requested assigner on each batch
(:mod:`._stats`, :mod:`._yolov5`, :mod:`yolo_focal_plugin.retina`), and writes
``assign_stats.{json,md,png}`` (:mod:`._reports`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, TypeVar, Union

import numpy as np
import torch

from ...retina import RetinaMatcher, anchors_for_image, grid_anchor_boxes
from ._dataset import dataset_items, image_size, letterbox_boxes, read_label_file
from ._reports import plot_histograms, to_markdown
from ._stats import ASSIGNERS, SIZES, AssignerCounts, count_iou_batch, count_yolov5_batch, size_bucket, summarise
from ._yolov5 import DEFAULT_ANCHOR_T, best_possible_recall, load_model_anchors

T = TypeVar("T")


def _resolve_hyp(hyp: Union[dict, str, Path, None]) -> dict:
    """The hyperparameters from a dict, a YAML path or a bundled hyp name (``{}`` for None)."""
    if hyp is None:
        return {}
    from ...yolo_yaml import load_hyp

    return load_hyp(hyp)


def _batches(items: Sequence[T], n: int) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def run_assign_stats(
    data_yaml: Path,
    img_size: int = 640,
    hyp: Union[dict, str, Path, None] = None,
    model_cfg: Union[str, Path] = "yolov5n.yaml",
    out_dir: Path = Path("runs/assign-stats"),
    *,
    split: str = "train",
    assigners: Sequence[str] = ASSIGNERS,
    pos_iou: float = 0.5,
    neg_iou: float = 0.4,
    batch_size: int = 16,
    max_images: Optional[int] = None,
    progress: bool = True,
) -> dict:
    """Run the analysis, write ``assign_stats.{json,md,png}`` into ``out_dir``, return the JSON dict.

    ``hyp`` (dict, path or bundled name) supplies ``anchor_t`` (default 4.0); ``img_size`` is
    rounded up to a multiple of the largest stride, as ``train.py`` does. ``split`` is ``train``,
    ``val`` or ``all``; ``assigners`` a non-empty subset of :data:`ASSIGNERS`; ``pos_iou`` /
    ``neg_iou`` the IoU matcher's thresholds; ``batch_size`` images are matched per step.
    The returned dict also has ``files``: the paths of the three files written.

    ``ValueError`` for an unknown assigner, ``batch_size < 1``, ``anchor_t <= 1``,
    ``img_size < 32``, a hyp file or model YAML not found, or a dataset split that cannot be read.
    Corrupt label files are skipped and counted, as yolov5 skips them.
    """
    from tqdm import tqdm

    unknown = [a for a in assigners if a not in ASSIGNERS]
    if unknown or not assigners:
        raise ValueError(f"assigners must be a non-empty subset of {ASSIGNERS}, got {list(assigners)}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    hyp_d = _resolve_hyp(hyp)
    anchor_t = float(hyp_d.get("anchor_t", DEFAULT_ANCHOR_T))
    if not anchor_t > 1:
        raise ValueError(f"anchor_t must be > 1, got {anchor_t}")
    anchor_wh, strides, model_path = load_model_anchors(model_cfg)
    requested = int(img_size)
    if requested < 32:
        raise ValueError(f"--img must be >= 32, got {img_size}")
    img = int(math.ceil(requested / max(strides)) * max(strides))
    items = dataset_items(data_yaml, split)
    if max_images is not None:
        items = items[: int(max_images)]

    grid_shapes = [(math.ceil(img / s), math.ceil(img / s)) for s in strides]
    anchors_grid = [torch.tensor(a, dtype=torch.float32) / s for a, s in zip(anchor_wh, strides)]
    yolo_slots = len(anchor_wh[0]) * sum(h * w for h, w in grid_shapes)
    matcher = RetinaMatcher(pos_iou, neg_iou, drop_degenerate=True)
    retina_anchors = anchors_for_image(img, img) if "retina" in assigners else None
    yolo_boxes = grid_anchor_boxes(img, img, anchor_wh, strides) if "retina_yolo_anchors" in assigners else None

    accs = {a: AssignerCounts() for a in assigners}
    bucket_parts, wh_parts = [], []
    n_images = n_empty = n_dup = n_square = 0
    corrupt: List[str] = []
    bar = tqdm(total=len(items), desc="assign-stats", unit="img", disable=not progress)
    for batch in _batches(items, int(batch_size)):
        boxes: List[np.ndarray] = []
        for label_path, image_path in batch:
            lf = read_label_file(label_path)
            if lf.corrupt:
                corrupt.append(f"{label_path}: {lf.corrupt}")
                continue
            size = image_size(image_path)
            n_square += size is None
            n_dup += lf.duplicates
            n_empty += len(lf.rows) == 0
            boxes.append(letterbox_boxes(lf.rows, size, img))
        if not boxes:
            bar.update(len(batch))
            continue
        n_images += len(boxes)
        counts = [len(b) for b in boxes]
        flat = np.concatenate(boxes) if sum(counts) else np.zeros((0, 4), np.float32)
        buckets = size_bucket(flat)
        bucket_parts.append(buckets)
        wh_parts.append(flat[:, 2:] - flat[:, :2])
        for name in assigners:
            acc = accs[name]
            if name == "yolov5":
                count_yolov5_batch(acc, flat, counts, img, grid_shapes, anchors_grid, anchor_t, yolo_slots)
            else:
                anchors = retina_anchors if name == "retina" else yolo_boxes
                count_iou_batch(acc, matcher, anchors, flat, counts, buckets)
        bar.update(len(batch))
    bar.close()

    buckets_all = np.concatenate(bucket_parts) if bucket_parts else np.zeros(0, np.int64)
    wh_all = np.concatenate(wh_parts) if wh_parts else np.zeros((0, 2), np.float32)
    degenerate = int(((wh_all <= 0).any(1)).sum())
    result = {
        "dataset": str(data_yaml),
        "split": split,
        "images": n_images,
        "images_without_labels": n_empty,
        "corrupt_label_files_skipped": len(corrupt),
        "corrupt_examples": corrupt[:5],
        "image_sizes": ("square assumed for all (no images found)" if n_square == n_images
                        else f"from image headers ({n_square} square-assumed)" if n_square
                        else "from image headers"),
        "img_size": img,
        "gts": int(len(buckets_all)),
        "gts_by_size": {s: int((buckets_all == i).sum()) for i, s in enumerate(SIZES)},
        "degenerate_gts": degenerate,
        "duplicate_rows_removed": n_dup,
        "settings": {
            "model_cfg": str(model_path),
            "yolov5_anchors_px": anchor_wh,
            "strides": strides,
            "anchor_t": anchor_t,
            "pos_iou": pos_iou,
            "neg_iou": neg_iou,
            "slots_per_image": {
                "yolov5": yolo_slots,
                "retina": int(retina_anchors.shape[0]) if retina_anchors is not None else None,
                "retina_yolo_anchors": int(yolo_boxes.shape[0]) if yolo_boxes is not None else None,
            },
        },
        "autoanchor_bpr": best_possible_recall(wh_all, anchor_wh, anchor_t),
        "assigners": {name: summarise(accs[name], buckets_all, name) for name in assigners},
    }
    if requested != img:
        result["settings"]["img_size_requested"] = requested
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "assign_stats.json").write_text(json.dumps(result, indent=2))
    (out_dir / "assign_stats.md").write_text(to_markdown(result))
    plot_histograms(result, out_dir / "assign_stats.png")
    result["files"] = {k: str(out_dir / f"assign_stats.{k}") for k in ("json", "md", "png")}
    return result
