"""Reading a YOLO-format dataset and placing its labels in the training canvas, as YOLOv5 does.

Three steps, each YOLOv5's own rule (``yolov5/utils/dataloaders.py``):

* :func:`dataset_items`: which label files (and images) a split of a dataset YAML names;
* :func:`read_label_file`: one label file as ``verify_image_label`` reads it (duplicates removed,
  polygons to boxes, out-of-range files reported as corrupt);
* :func:`letterbox_boxes`: the boxes in canvas pixels after ``letterbox`` without augmentation
  (long side resized to ``img``, padding centred); the original size comes from
  :func:`image_size`, the image header with EXIF rotation applied.

NumPy and PyYAML only; PIL is imported when an image header is read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")  # yolov5's list

DatasetItem = Tuple[Path, Optional[Path]]
"""``(label file, image file or None)``; ``None`` for label-only datasets."""


def _dataset_root(data: dict, data_yaml: Path) -> Path:
    """The folder the YAML's relative split paths start from (its ``path`` key, else its own folder)."""
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
    """yolov5's ``img2label_paths``: the last ``/images/`` becomes ``/labels/``, the suffix ``.txt``."""
    s = str(p)
    sa, sb = "/images/", "/labels/"
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(s.rsplit(".", 1)[0] + ".txt")


def dataset_items(data_yaml: Union[str, Path], split: str = "train") -> List[DatasetItem]:
    """``(label file, image file or None)`` for every image of ``split`` (``train``, ``val`` or
    ``all``), following yolov5: a split is a directory, a ``.txt`` list of image paths, or a list
    of those; labels live at the image path with the last ``/images/`` replaced by ``/labels/``.
    A directory of labels with no images (label-only data) is accepted too.

    Raises ``ValueError`` for an unreadable YAML, a missing split key, a split path that does not
    exist, or a split with nothing in it.
    """
    from ...yolo_yaml import read_yaml_mapping

    data_yaml = Path(data_yaml)
    data = read_yaml_mapping(data_yaml, "a mapping with path/train/val keys")
    splits = ("train", "val") if split == "all" else (split,)
    root = _dataset_root(data, data_yaml)
    items: List[DatasetItem] = []
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


def _items_for(p: Path) -> List[DatasetItem]:
    """The items of one split entry: a ``.txt`` list of images, or a folder of images or of labels."""
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
    """Read one YOLO label file the way yolov5's ``verify_image_label`` does.

    A missing or empty file gives no rows. Exact duplicate rows are removed (counted in
    ``duplicates``); rows longer than 6 values are polygons and become their bounding box. A file
    with unparsable rows, rows that are not ``cls x y w h``, negative values or coordinates above
    1 gives no rows and a reason in ``corrupt``: yolov5 skips such a file. Zero-width or
    zero-height boxes are kept.
    """
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


def image_size(path: Optional[Path]) -> Optional[Tuple[int, int]]:
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


