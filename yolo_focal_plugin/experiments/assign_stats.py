"""``yolo-focal assign-stats``: how YOLOv5's target assignment and a RetinaNet IoU matcher label a dataset.

For every label of a YOLO-format dataset, placed as YOLOv5 places it in a ``--img`` training
input, the analysis counts the positives each assigner gives it, and the positive / negative /
ignored split of all anchor slots (the imbalance focal loss is meant to handle):

``yolov5``
    YOLOv5 7.0 ``ComputeLoss.build_targets`` re-implemented in pure torch (tested against the
    real one): a GT is assigned to anchor ``k`` of level ``l`` if ``max(r, 1/r) < anchor_t`` for
    both ``r = w / w_k`` and ``r = h / h_k``; it then takes its own grid cell plus the (up to) two
    neighbouring cells whose border is within half a cell of its centre. Anchors come from the
    model YAML (strides 8, 16, 32 for P3-P5 models). No slot is ignored: every slot that no GT
    claims is an objectness negative.
``retina``
    :class:`~yolo_focal_plugin.retina.RetinaMatcher` (IoU >= ``pos_iou`` positive, < ``neg_iou``
    negative, in between ignored, every GT gets a positive) on RetinaNet's P3-P7 anchors
    (9 per location, 76,725 at 640x640).
``retina_yolo_anchors``
    The same matcher on the YOLOv5 anchors placed at every grid-cell centre: what
    ``fl_assigner: retina`` trains with.

Geometry: each image is letterboxed into an ``img x img`` canvas as YOLOv5 does without mosaic
(long side resized to ``img``, centred padding); the original image size is read from the
image header (EXIF rotation honoured). Labels without an image (label-only datasets) are
assumed to come from square images. Mosaic and scale augmentation move objects but keep their
size distribution around this one, which is what the assignment depends on. Object sizes
(COCO): small ``area < 32^2``, medium ``< 96^2``, large otherwise, in canvas pixels.

Label files are read as YOLOv5 reads them: exact duplicate rows are removed, polygon rows
(segments) become their bounding box, and a file with coordinates outside [0, 1] or rows that
are not ``cls x y w h`` is skipped as corrupt. Zero-width or zero-height boxes are kept and
counted: YOLOv5 gives them no positive; the IoU matcher drops them (``drop_degenerate``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml

from ..retina import RetinaMatcher, anchors_for_image, grid_anchor_boxes, positives_per_gt

__all__ = [
    "ASSIGNERS",
    "add_arguments",
    "dataset_items",
    "load_model_anchors",
    "read_label_file",
    "run_assign_stats",
    "run_from_args",
    "yolov5_assign",
]

ASSIGNERS = ("yolov5", "retina", "retina_yolo_anchors")
SIZES = ("small", "medium", "large")
IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")  # yolov5's list
# figure bins: one bar per count up to 15, then wider groups (RetinaNet gives large boxes 50+)
HIST_EDGES = tuple(range(16)) + (16, 20, 30, 50, 100)
HIST_LABELS = tuple(str(k) for k in range(16)) + ("16-19", "20-29", "30-49", "50-99", "100+")
DEFAULT_ANCHOR_T = 4.0  # yolov5 hyp.scratch-*.yaml
_DESCRIPTIONS = {
    "yolov5": "YOLOv5 build_targets (wh ratio < anchor_t, own cell + 2 neighbour cells)",
    "retina": "IoU matcher on RetinaNet P3-P7 anchors",
    "retina_yolo_anchors": "IoU matcher on YOLOv5 anchors at cell centres (fl_assigner: retina)",
}


# ---- dataset --------------------------------------------------------------------------------

def _dataset_root(data: dict, data_yaml: Path) -> Path:
    root = data.get("path")
    if not root:
        return data_yaml.parent
    root = Path(str(root)).expanduser()
    if root.is_absolute():
        return root
    # yolov5 resolves a relative path against its own install dir; the YAML's folder and the
    # working directory are what users mean.
    for base in (data_yaml.parent, Path.cwd()):
        if (base / root).exists():
            return (base / root).resolve()
    return (data_yaml.parent / root).resolve()


def _img2label(p: Path) -> Path:
    s = str(p)
    sa, sb = "/images/", "/labels/"
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(s.rsplit(".", 1)[0] + ".txt")


def dataset_items(data_yaml: Union[str, Path], split: str = "train") -> List[Tuple[Path, Optional[Path]]]:
    """``(label file, image file or None)`` for every image of ``split`` (``train``, ``val`` or
    ``all``), following yolov5: a split is a directory, a ``.txt`` list of image paths, or a list
    of those; labels live at the image path with the last ``/images/`` replaced by ``/labels/``.
    A directory of labels with no images (label-only data) is accepted too.
    """
    data_yaml = Path(data_yaml)
    with open(data_yaml) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{data_yaml}: expected a mapping with path/train/val keys")
    splits = ("train", "val") if split == "all" else (split,)
    root = _dataset_root(data, data_yaml)
    items: List[Tuple[Path, Optional[Path]]] = []
    for name in splits:
        if name not in data or data[name] in (None, ""):
            raise ValueError(f"{data_yaml}: no '{name}' entry (keys: {sorted(data)})")
        entries = data[name] if isinstance(data[name], list) else [data[name]]
        for entry in entries:
            p = Path(str(entry)).expanduser()
            p = p if p.is_absolute() else root / p
            items.extend(_items_for(p))
    if not items:
        raise ValueError(f"{data_yaml}: split '{split}' has no images or label files")
    return items


def _items_for(p: Path) -> List[Tuple[Path, Optional[Path]]]:
    if p.is_file() and p.suffix == ".txt":
        out = []
        for line in p.read_text().splitlines():
            line = line.strip()
            if line:
                img = Path(line) if Path(line).is_absolute() else (p.parent / line)
                out.append((_img2label(img), img))
        return out
    if p.is_dir():
        images = sorted(f for f in p.rglob("*") if f.suffix.lower().lstrip(".") in IMG_FORMATS)
        if images:
            return [(_img2label(img), img) for img in images]
        label_dir = _img2label(p / "x.jpg").parent
        if label_dir.is_dir():
            return [(lab, None) for lab in sorted(label_dir.rglob("*.txt"))]
        labels_here = sorted(p.rglob("*.txt"))
        return [(lab, None) for lab in labels_here]
    raise ValueError(f"dataset split path {p} does not exist")


@dataclass
class LabelFile:
    """Parsed label file: ``rows [n, 5]`` = ``cls, xc, yc, w, h`` normalised to the image."""

    rows: np.ndarray
    duplicates: int = 0
    corrupt: str = ""


def read_label_file(path: Path) -> LabelFile:
    """Read one YOLO label file the way yolov5's ``verify_image_label`` does (see module doc)."""
    if not path.is_file():
        return LabelFile(np.zeros((0, 5), np.float32))
    lines = [ln.split() for ln in path.read_text().strip().splitlines() if ln.strip()]
    if not lines:
        return LabelFile(np.zeros((0, 5), np.float32))
    try:
        if any(len(x) > 6 for x in lines):  # segments -> boxes, as yolov5 does
            rows = []
            for x in lines:
                if len(x) == 5:
                    rows.append([float(v) for v in x])
                    continue
                xy = np.array(x[1:], dtype=np.float32).reshape(-1, 2)
                lo, hi = xy.min(0), xy.max(0)
                rows.append([float(x[0]), *((lo + hi) / 2), *(hi - lo)])
            lb = np.array(rows, dtype=np.float32)
        else:
            lb = np.array(lines, dtype=np.float32)
    except ValueError as exc:
        return LabelFile(np.zeros((0, 5), np.float32), corrupt=f"unreadable ({exc})")
    if lb.ndim != 2 or lb.shape[1] != 5:
        return LabelFile(np.zeros((0, 5), np.float32), corrupt=f"rows need 5 columns, got {lb.shape}")
    if (lb < 0).any() or (lb[:, 1:] > 1).any():
        return LabelFile(np.zeros((0, 5), np.float32), corrupt="negative or non-normalised coordinates")
    _, idx = np.unique(lb, axis=0, return_index=True)
    dup = len(lb) - len(idx)
    if dup:
        lb = lb[np.sort(idx)]
    return LabelFile(lb, duplicates=dup)


def _image_size(path: Optional[Path]) -> Optional[Tuple[int, int]]:
    """``(w, h)`` of an image from its header, EXIF rotation applied (None if unreadable)."""
    if path is None or not path.is_file():
        return None
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            try:
                if im.getexif().get(274) in (6, 8):  # rotated 90/270: yolov5's exif_size
                    w, h = h, w
            except Exception:  # noqa: BLE001 - a broken EXIF block does not change the size
                pass
        return int(w), int(h)
    except Exception:  # noqa: BLE001 - unreadable image: fall back to the square assumption
        return None


def letterbox_boxes(rows: np.ndarray, size: Optional[Tuple[int, int]], img: int) -> np.ndarray:
    """``[n, 4]`` xyxy canvas pixels of label rows ``cls xc yc w h`` (normalised to the image).

    yolov5: resize so the long side is ``img`` (``ceil(w0 * r)``), then pad to ``img x img`` with
    the image centred.
    """
    if size is None:
        nw = nh = float(img)
    else:
        w0, h0 = size
        r = img / max(w0, h0)
        nw, nh = float(math.ceil(w0 * r)), float(math.ceil(h0 * r))
    padw, padh = (img - nw) / 2, (img - nh) / 2
    xc, yc, w, h = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    return np.stack([nw * (xc - w / 2) + padw, nh * (yc - h / 2) + padh,
                     nw * (xc + w / 2) + padw, nh * (yc + h / 2) + padh], 1).astype(np.float32)


# ---- model anchors and yolov5's assignment ----------------------------------------------------

def _find_model_yaml(model_cfg: Union[str, Path]) -> Path:
    p = Path(model_cfg)
    if p.is_file():
        return p
    name = p.name if p.suffix else f"{p.name}.yaml"
    try:
        spec = importlib.util.find_spec("yolov5")  # locates the package without importing it
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        for sub in ("models", "models/hub", "models/segment"):
            cand = Path(root) / sub / name
            if cand.is_file():
                return cand
    # ValueError: the CLI turns it into a one-line message
    raise ValueError(f"model config {model_cfg!r} not found (not a file, not in yolov5's models/)")


def load_model_anchors(model_cfg: Union[str, Path]) -> Tuple[List[List[Tuple[float, float]]], List[int], Path]:
    """Anchors ``[[(w, h) x na] x nl]`` in pixels and strides ``8 * 2^l`` from a yolov5 model YAML."""
    path = _find_model_yaml(model_cfg)
    with open(path) as f:
        cfg = yaml.safe_load(f)
    anchors = cfg.get("anchors") if isinstance(cfg, dict) else None
    if not isinstance(anchors, list) or not anchors:
        raise ValueError(f"{path}: needs explicit 'anchors' (a list per level); got {anchors!r} "
                         "(an int means AutoAnchor computes them at training time)")
    levels = []
    for lvl in anchors:
        if len(lvl) % 2:
            raise ValueError(f"{path}: anchors per level must be w,h pairs, got {lvl!r}")
        levels.append([(float(lvl[i]), float(lvl[i + 1])) for i in range(0, len(lvl), 2)])
    if len({len(lvl) for lvl in levels}) != 1:
        raise ValueError(f"{path}: every level needs the same number of anchors, got {[len(v) for v in levels]}")
    strides = [8 * 2 ** i for i in range(len(levels))]  # P3/8, P4/16, P5/32 (, P6/64)
    return levels, strides, path


@dataclass
class YoloAssignment:
    """Rows of ``build_targets`` output, all ``[K]``: GT index, level, anchor, grid row/col, image."""

    gt: torch.Tensor
    level: torch.Tensor
    anchor: torch.Tensor
    gj: torch.Tensor
    gi: torch.Tensor
    image: torch.Tensor


def yolov5_assign(
    targets: torch.Tensor,
    grid_shapes: Sequence[Tuple[int, int]],
    anchors_grid: Sequence[torch.Tensor],
    anchor_t: float,
) -> YoloAssignment:
    """YOLOv5 7.0 ``ComputeLoss.build_targets`` without the model, keeping the GT index.

    ``targets [n, 6]``: ``image, cls, xc, yc, w, h`` normalised to the input canvas.
    ``grid_shapes[l] = (ny, nx)``; ``anchors_grid[l] [na, 2]``: anchors in grid units
    (pixels / stride, float32 like ``Detect.anchors``). The operations are yolov5's, in yolov5's
    order, so the rows equal ``indices`` of the real one (checked in the tests).
    """
    na, nt = anchors_grid[0].shape[0], targets.shape[0]
    out = {k: [] for k in ("gt", "level", "anchor", "gj", "gi", "image")}
    gain = torch.ones(8)
    ai = torch.arange(na).float().view(na, 1).repeat(1, nt)
    gid = torch.arange(nt).float().view(1, nt).repeat(na, 1)
    t_all = torch.cat((targets.float().repeat(na, 1, 1), ai[..., None], gid[..., None]), 2)
    g = 0.5
    off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]]).float() * g
    for i, ((ny, nx), anchors) in enumerate(zip(grid_shapes, anchors_grid)):
        gain[2:6] = torch.tensor([nx, ny, nx, ny], dtype=torch.float32)
        t = t_all * gain
        if nt:
            r = t[..., 4:6] / anchors[:, None]
            j = torch.max(r, 1 / r).max(2)[0] < anchor_t
            t = t[j]
            gxy = t[:, 2:4]
            gxi = gain[[2, 3]] - gxy
            j, k = ((gxy % 1 < g) & (gxy > 1)).T
            l, m = ((gxi % 1 < g) & (gxi > 1)).T
            j = torch.stack((torch.ones_like(j), j, k, l, m))
            t = t.repeat((5, 1, 1))[j]
            offsets = (torch.zeros_like(gxy)[None] + off[:, None])[j]
        else:
            t = t_all[0]
            offsets = 0
        b = t[:, 0].long()
        gxy = t[:, 2:4]
        a = t[:, 6].long()
        gij = (gxy - offsets).long()
        gi, gj = gij.T
        out["gt"].append(t[:, 7].long())
        out["level"].append(torch.full_like(a, i))
        out["anchor"].append(a)
        out["gj"].append(gj.clamp(0, ny - 1))
        out["gi"].append(gi.clamp(0, nx - 1))
        out["image"].append(b)
    return YoloAssignment(**{k: torch.cat(v) for k, v in out.items()})


# ---- statistics ---------------------------------------------------------------------------------

def size_bucket(boxes: np.ndarray) -> np.ndarray:
    """0 small (area < 32^2), 1 medium (< 96^2), 2 large: COCO's rule on canvas pixels."""
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    return np.where(area < 32 ** 2, 0, np.where(area < 96 ** 2, 1, 2))


@dataclass
class _Acc:
    per_gt: List[np.ndarray] = field(default_factory=list)
    slots: int = 0
    pos: int = 0
    ign: int = 0
    ign_by_size: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    shared_pos: int = 0


def _summary(acc: _Acc, buckets: np.ndarray, name: str) -> dict:
    per_gt = np.concatenate(acc.per_gt) if acc.per_gt else np.zeros(0, np.int64)
    n = len(per_gt)
    neg = acc.slots - acc.pos - acc.ign
    hist = np.bincount(per_gt, minlength=1) if n else np.zeros(1, np.int64)

    def stats(sel: np.ndarray) -> dict:
        k = per_gt[sel]
        return {
            "gts": int(sel.sum()),
            "positives_per_gt_mean": float(k.mean()) if len(k) else None,
            "positives_per_gt_median": float(np.median(k)) if len(k) else None,
            "gts_without_positive": int((k == 0).sum()),
            "share_without_positive": float((k == 0).mean()) if len(k) else None,
            "positives": int(k.sum()),
            "histogram": np.bincount(k, minlength=1).tolist() if len(k) else [0],
        }

    out = {"description": _DESCRIPTIONS[name], **stats(np.ones(n, bool))}
    out["anchors"] = {
        "slots": acc.slots, "positive": acc.pos, "negative": neg, "ignored": acc.ign,
        "negatives_per_positive": neg / acc.pos if acc.pos else None,
        "ignored_per_positive": acc.ign / acc.pos if acc.pos else None,
        "share_positive": acc.pos / acc.slots if acc.slots else None,
        "ratio": f"1 : {neg / acc.pos:.1f} : {acc.ign / acc.pos:.2f}" if acc.pos else "no positives",
    }
    out["histogram"] = hist.tolist()
    out["by_size"] = {}
    for s, size in enumerate(SIZES):
        st = stats(buckets == s)
        st["ignored_attributed"] = int(acc.ign_by_size[s])
        out["by_size"][size] = st
    if name == "yolov5":
        out["anchors"]["positive_slots_shared_by_several_gts"] = acc.shared_pos
        out["anchors"]["assignments"] = int(per_gt.sum())
    return out


def _resolve_hyp(hyp: Union[dict, str, Path, None]) -> dict:
    if hyp is None:
        return {}
    if isinstance(hyp, dict):
        return hyp
    from ..hyp import resolve_hyp_path

    p = Path(hyp)
    if not p.is_file():
        p = resolve_hyp_path(hyp) or p
    if not p.is_file():
        raise ValueError(f"hyp file {hyp!r} not found (a path or a bundled name such as hyp.focal.yaml)")
    with open(p) as f:
        return yaml.safe_load(f) or {}


def _batches(items: Sequence, n: int) -> Iterable[Sequence]:
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
    rounded up to a multiple of the largest stride, as ``train.py`` does.
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

    accs = {a: _Acc() for a in assigners}
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
            size = _image_size(image_path)
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
                _yolo_batch(acc, flat, counts, img, grid_shapes, anchors_grid, anchor_t, yolo_slots)
            else:
                anchors = retina_anchors if name == "retina" else yolo_boxes
                _iou_batch(acc, matcher, anchors, flat, counts, buckets)
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
        "autoanchor_bpr": _bpr(wh_all, anchor_wh, anchor_t),
        "assigners": {name: _summary(accs[name], buckets_all, name) for name in assigners},
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


def _yolo_batch(acc: _Acc, flat, counts, img, grid_shapes, anchors_grid, anchor_t, yolo_slots) -> None:
    n = len(flat)
    image = np.repeat(np.arange(len(counts)), counts)
    xywh = np.stack([(flat[:, 0] + flat[:, 2]) / 2, (flat[:, 1] + flat[:, 3]) / 2,
                     flat[:, 2] - flat[:, 0], flat[:, 3] - flat[:, 1]], 1) / img
    targets = torch.from_numpy(np.concatenate([image[:, None], np.zeros((n, 1)), xywh], 1).astype(np.float32))
    res = yolov5_assign(targets, grid_shapes, anchors_grid, anchor_t)
    acc.per_gt.append(np.bincount(res.gt.numpy(), minlength=n)[:n])
    acc.slots += yolo_slots * len(counts)
    if res.gt.numel():
        key = torch.stack([res.image, res.level, res.anchor, res.gj, res.gi], 1)
        _, cnt = torch.unique(key, dim=0, return_counts=True)
        acc.pos += int(cnt.numel())
        acc.shared_pos += int((cnt > 1).sum())


def _iou_batch(acc: _Acc, matcher: RetinaMatcher, anchors, flat, counts, buckets) -> None:
    parts = np.split(flat, np.cumsum(counts)[:-1]) if counts else []
    gts = [torch.from_numpy(p.astype(np.float32)).reshape(-1, 4) for p in parts]
    matches, labels = matcher.match_batch(anchors, gts)
    pos_counts = positives_per_gt(matches, labels, counts)
    acc.per_gt.append(torch.cat(pos_counts).numpy() if pos_counts else np.zeros(0, np.int64))
    acc.slots += int(labels.numel())
    acc.pos += int((labels == 1).sum())
    ign = labels == -1
    acc.ign += int(ign.sum())
    start = 0
    for b, c in enumerate(counts):
        m = matches[b][ign[b]].numpy()
        if len(m):
            acc.ign_by_size += np.bincount(buckets[start:start + c][m], minlength=3)
        start += c


def _bpr(wh: np.ndarray, anchor_wh, thr: float) -> Optional[float]:
    """YOLOv5 AutoAnchor's best possible recall (without its random 0.9-1.1 scaling)."""
    ok = (wh > 0).all(1)
    if not ok.any():
        return None
    w = torch.from_numpy(wh[ok]).float()
    k = torch.tensor([a for lvl in anchor_wh for a in lvl], dtype=torch.float32)
    r = w[:, None] / k[None]
    best = torch.min(r, 1 / r).min(2)[0].max(1)[0]
    return float((best > 1 / thr).float().mean())


# ---- reports ------------------------------------------------------------------------------------

def _fmt(v, pct: bool = False, nd: int = 2) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else (f"{v:.{nd}f}" if isinstance(v, float) else f"{v:,}")


def to_markdown(r: dict) -> str:
    names = list(r["assigners"])
    lines = [
        f"# Target assignment statistics: `{r['dataset']}` ({r['split']})",
        "",
        f"{r['images']:,} images, {r['gts']:,} ground truths at --img {r['img_size']} "
        f"(small {r['gts_by_size']['small']:,} / medium {r['gts_by_size']['medium']:,} / "
        f"large {r['gts_by_size']['large']:,}); image sizes {r['image_sizes']}. "
        f"anchor_t {r['settings']['anchor_t']}, IoU thresholds {r['settings']['pos_iou']} / "
        f"{r['settings']['neg_iou']}, anchors from `{Path(r['settings']['model_cfg']).name}`.",
        "",
    ]
    notes = []
    if r["degenerate_gts"]:
        notes.append(f"{r['degenerate_gts']} zero-width/height boxes: no assigner gives them a positive "
                     "(counted as without positive).")
    if r["corrupt_label_files_skipped"]:
        notes.append(f"{r['corrupt_label_files_skipped']} corrupt label files skipped, as yolov5 would.")
    if r["duplicate_rows_removed"]:
        notes.append(f"{r['duplicate_rows_removed']} duplicate label rows removed, as yolov5 does.")
    bpr = r.get("autoanchor_bpr")
    if bpr is not None and bpr <= 0.98:
        notes.append(f"AutoAnchor best possible recall is {bpr:.3f} <= 0.98: `yolov5 train` would try new "
                     "k-means anchors (unless --noautoanchor), so its assignment would differ from the yolov5 column.")
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    head = "| | " + " | ".join(f"`{n}`" for n in names) + " |"
    lines += [head, "|---|" + "---:|" * len(names)]
    a = r["assigners"]

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(a[n]) for n in names) + " |")

    row("positives per GT (mean)", lambda s: _fmt(s["positives_per_gt_mean"]))
    row("positives per GT (median)", lambda s: _fmt(s["positives_per_gt_median"], nd=1))
    row("GTs without a positive", lambda s: f"{_fmt(s['gts_without_positive'])} ({_fmt(s['share_without_positive'], True)})")
    row("anchor slots per image", lambda s: _fmt(s["anchors"]["slots"] // max(1, r["images"])))
    row("positive : negative : ignored", lambda s: s["anchors"]["ratio"])
    row("positive share of slots", lambda s: _fmt(s["anchors"]["share_positive"], True) if s["anchors"]["share_positive"] is None
        else f"{s['anchors']['share_positive']:.3%}")
    lines += ["", "By object size (COCO: small < 32², medium < 96² px at --img):", ""]
    lines += ["| size | assigner | GTs | positives/GT | without positive | ignored anchors |", "|---|---|---:|---:|---:|---:|"]
    for size in SIZES:
        for n in names:
            s = a[n]["by_size"][size]
            ign = "-" if n == "yolov5" else _fmt(s["ignored_attributed"])
            lines.append(f"| {size} | `{n}` | {_fmt(s['gts'])} | {_fmt(s['positives_per_gt_mean'])} | "
                         f"{_fmt(s['gts_without_positive'])} ({_fmt(s['share_without_positive'], True)}) | {ign} |")
    if "yolov5" in a:
        y = a["yolov5"]["anchors"]
        lines += ["", f"yolov5: {y['positive_slots_shared_by_several_gts']:,} of {y['positive']:,} positive slots are "
                  "claimed by several GTs (the objectness target keeps one IoU; box and class losses count each)."]
    lines += ["", "Assigners: " + "; ".join(f"`{n}` = {a[n]['description']}" for n in names) + ".", ""]
    return "\n".join(lines)


def _binned(hist: Sequence[int]) -> np.ndarray:
    h = np.asarray(hist, dtype=float)
    edges = list(HIST_EDGES) + [max(len(h), HIST_EDGES[-1] + 1)]
    return np.array([h[lo:hi].sum() for lo, hi in zip(edges[:-1], edges[1:])])


def plot_histograms(r: dict, path: Path) -> Path:
    """2 x 2 panels (all / small / medium / large): share of GTs with k positives, per assigner."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    names = list(r["assigners"])
    colours = {"yolov5": "#1f77b4", "retina": "#ff7f0e", "retina_yolo_anchors": "#2ca02c"}
    fig = Figure(figsize=(14, 9), dpi=110)
    axes = fig.subplots(2, 2)
    panels = [("all sizes", None)] + [(f"{s} ({'< 32²' if s == 'small' else '< 96²' if s == 'medium' else '≥ 96²'} px)", s)
                                      for s in SIZES]
    width = 0.84 / len(names)
    x = np.arange(len(HIST_LABELS))
    for ax, (title, size) in zip(axes.ravel(), panels):
        n_gts = r["gts"] if size is None else r["gts_by_size"][size]
        top = 0.0
        for i, name in enumerate(names):
            s = r["assigners"][name] if size is None else r["assigners"][name]["by_size"][size]
            share = _binned(s["histogram"]) / max(1, n_gts)
            top = max(top, float(share.max()))
            mean, none = s["positives_per_gt_mean"], s["share_without_positive"]
            label = f"{name}: mean {mean:.1f}, none {none:.1%}" if mean is not None else f"{name}: no GTs"
            ax.bar(x + (i - (len(names) - 1) / 2) * width, share, width, color=colours[name], label=label)
        ax.set_title(f"{title}: {n_gts:,} GTs", fontsize=12)
        ax.set_xlabel("positive anchors per ground truth", fontsize=10)
        ax.set_ylabel("share of ground truths", fontsize=10)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xticks(x)
        ax.set_xticklabels(HIST_LABELS, rotation=45, ha="right", fontsize=9)
        ax.set_xlim(-0.6, len(HIST_LABELS) - 0.4)
        ax.set_ylim(0, max(top, 0.01) * 1.5)  # head room for the legend
        ax.set_yticks([t for t in ax.get_yticks() if t <= 1.0 + 1e-9])
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=9, loc="upper left", framealpha=0.9)
    ratios = "   ".join(f"{n} {r['assigners'][n]['anchors']['ratio']}" for n in names)
    fig.suptitle(f"Positive anchors per ground truth at --img {r['img_size']} ({r['images']:,} images, "
                 f"{r['gts']:,} GTs)\npositive : negative : ignored anchor slots:   {ratios}", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path)
    return Path(path)


# ---- CLI ---------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset YAML (path/train/val/nc/names)")
    parser.add_argument("--img", "--img-size", dest="img", type=int, default=640, help="training input size (default 640)")
    parser.add_argument("--hyp", default=None, help="hyp YAML or bundled name; anchor_t is read from it (default 4.0)")
    parser.add_argument("--cfg", default="yolov5n.yaml", help="model YAML with the anchors (default yolov5n.yaml)")
    parser.add_argument("--out", type=Path, default=Path("runs/assign-stats"), help="output directory")
    parser.add_argument("--split", choices=("train", "val", "all"), default="train")
    parser.add_argument("--assigners", default=",".join(ASSIGNERS), help=f"comma-separated subset of {','.join(ASSIGNERS)}")
    parser.add_argument("--pos-iou", type=float, default=0.5)
    parser.add_argument("--neg-iou", type=float, default=0.4)
    parser.add_argument("--batch", type=int, default=16, help="images matched per step")
    parser.add_argument("--max-images", type=int, default=None, help="only the first N images")
    parser.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    result = run_assign_stats(
        args.data, args.img, args.hyp, args.cfg, args.out,
        split=args.split, assigners=[a.strip() for a in args.assigners.split(",") if a.strip()],
        pos_iou=args.pos_iou, neg_iou=args.neg_iou, batch_size=args.batch,
        max_images=args.max_images, progress=not args.no_progress,
    )
    print(Path(result["files"]["md"]).read_text())
    print("wrote " + ", ".join(result["files"].values()))
    return 0
