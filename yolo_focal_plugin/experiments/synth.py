"""Generate small, class-imbalanced detection datasets in YOLO format. Deterministic, no downloads.

Each class is a distinct (shape, colour) pair drawn on a noisy, cluttered background. Class
frequencies follow a geometric long tail: class k is drawn with probability proportional to
``imbalance ** (-k / (nc - 1))``, so the rarest class is ``imbalance`` times rarer than the most
common one. Object sizes are uniform in ``[min_size, max_size]`` pixels (small objects by
default). Layout written::

    out/images/{train,val}/000000.png
    out/labels/{train,val}/000000.txt   # rows: cls xc yc w h, normalised to [0, 1]
                                        # (segments=True: cls x1 y1 x2 y2 ... polygon, for segment training)
    out/data.yaml                       # path, train, val, nc, names
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from PIL import Image, ImageDraw

__all__ = ["SynthConfig", "class_probabilities", "generate", "generated_dataset", "add_arguments", "run_from_args"]

SHAPES = ("rectangle", "ellipse", "triangle", "diamond", "cross", "ring", "bar", "star")
COLOURS: Tuple[Tuple[int, int, int], ...] = (
    (230, 60, 50), (40, 160, 70), (50, 90, 220), (235, 200, 40),
    (170, 60, 200), (30, 190, 200), (240, 130, 30), (250, 250, 250),
)


@dataclass(frozen=True)
class SynthConfig:
    n_train: int = 200
    n_val: int = 60
    img_size: int = 160
    nc: int = 5
    imbalance: float = 20.0
    min_objects: int = 1
    max_objects: int = 6
    min_size: int = 8
    max_size: int = 28
    seed: int = 0
    segments: bool = False

    def validate(self) -> None:
        checks = [
            (self.n_train >= 1, "n_train must be >= 1"),
            (self.n_val >= 1, "n_val must be >= 1"),
            (self.img_size >= 32, "img_size must be >= 32"),
            (1 <= self.nc <= len(SHAPES) * len(COLOURS), f"nc must be in [1, {len(SHAPES) * len(COLOURS)}]"),
            (self.imbalance >= 1.0, "imbalance must be >= 1 (1 = balanced)"),
            (1 <= self.min_objects <= self.max_objects, "need 1 <= min_objects <= max_objects"),
            (4 <= self.min_size <= self.max_size < self.img_size, "need 4 <= min_size <= max_size < img_size"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid synthetic dataset setting: {message} ({self})")


def class_probabilities(nc: int, imbalance: float) -> np.ndarray:
    """p_k proportional to imbalance ** (-k / (nc - 1)); p_0 / p_{nc-1} == imbalance."""
    if nc == 1:
        return np.ones(1)
    weights = imbalance ** (-np.arange(nc) / (nc - 1))
    return weights / weights.sum()


def _class_style(k: int) -> Tuple[str, Tuple[int, int, int]]:
    # Shapes cycle fastest so neighbouring (frequent vs rare) classes differ in shape and colour.
    return SHAPES[k % len(SHAPES)], COLOURS[(k * 3) % len(COLOURS)]


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: Sequence[float], colour: Tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    if shape == "rectangle":
        draw.rectangle(box, fill=colour)
    elif shape == "ellipse":
        draw.ellipse(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "cross":
        draw.rectangle((x0, cy - h / 6, x1, cy + h / 6), fill=colour)
        draw.rectangle((cx - w / 6, y0, cx + w / 6, y1), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(min(w, h) / 5)))
    elif shape == "bar":
        draw.rectangle((x0, y0, x1, y0 + h / 3), fill=colour)
        draw.rectangle((x0, y1 - h / 3, x1, y1), fill=colour)
    else:  # star: two overlapping triangles
        draw.polygon([(cx, y0), (x1, y1 - h / 4), (x0, y1 - h / 4)], fill=colour)
        draw.polygon([(cx, y1), (x1, y0 + h / 4), (x0, y0 + h / 4)], fill=colour)


Label = Tuple[int, Tuple[float, ...]]


def _image(rng: np.random.Generator, cfg: SynthConfig, probs: np.ndarray) -> Tuple[Image.Image, List[Label]]:
    s = cfg.img_size
    base = rng.integers(40, 110, size=3)
    noise = rng.normal(0, 18, size=(s, s, 3))
    background = np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):  # grey clutter so background is not trivially empty
        x, y = rng.integers(0, s, size=2)
        r = int(rng.integers(3, 12))
        g = int(rng.integers(60, 160))
        draw.line((int(x), int(y), int(x + rng.integers(-3, 4) * r), int(y + rng.integers(-3, 4) * r)), fill=(g, g, g), width=2)

    labels: List[Label] = []
    placed: List[Tuple[float, float, float, float]] = []
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        k = int(rng.choice(cfg.nc, p=probs))
        for _attempt in range(20):  # avoid heavy overlap, so every label is visible
            w = float(rng.uniform(cfg.min_size, cfg.max_size))
            h = float(np.clip(w * rng.uniform(0.7, 1.4), cfg.min_size, cfg.max_size))
            x0 = float(rng.uniform(0, s - w))
            y0 = float(rng.uniform(0, s - h))
            box = (x0, y0, x0 + w, y0 + h)
            if all(_iou(box, other) < 0.1 for other in placed):
                break
        else:
            continue
        shape, colour = _class_style(k)
        _draw(draw, shape, box, colour)
        placed.append(box)
        if cfg.segments:
            coords = tuple(float(np.clip(v / s, 0, 1)) for point in _polygon(shape, box) for v in point)
        else:
            coords = ((box[0] + box[2]) / 2 / s, (box[1] + box[3]) / 2 / s, w / s, h / s)
        labels.append((k, coords))
    return image, labels


def _polygon(shape: str, box: Sequence[float]) -> List[Tuple[float, float]]:
    """Outline of the drawn shape (bounding box for the composite ones), for segmentation labels."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    if shape in ("ellipse", "ring"):
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        return [(cx + (x1 - x0) / 2 * np.cos(a), cy + (y1 - y0) / 2 * np.sin(a)) for a in t]
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def generate(out_dir: Path, cfg: Optional[SynthConfig] = None) -> Path:
    """Write the dataset to ``out_dir`` and return the path of its ``data.yaml``.

    Same config, same bytes: images and labels depend only on ``cfg`` (including ``seed``).
    """
    cfg = cfg or SynthConfig()
    cfg.validate()
    out_dir = Path(out_dir).resolve()
    # synth.json is written last: while it is missing the directory is not a complete dataset
    (out_dir / "synth.json").unlink(missing_ok=True)
    probs = class_probabilities(cfg.nc, cfg.imbalance)
    counts: Dict[str, List[int]] = {}
    for split, n, offset in (("train", cfg.n_train, 0), ("val", cfg.n_val, 1_000_003)):
        rng = np.random.default_rng(cfg.seed * 7_919 + offset)
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "labels" / split).mkdir(parents=True, exist_ok=True)
        per_class = [0] * cfg.nc
        for i in range(n):
            image, labels = _image(rng, cfg, probs)
            image.save(out_dir / "images" / split / f"{i:06d}.png")
            with open(out_dir / "labels" / split / f"{i:06d}.txt", "w") as f:
                for k, coords in labels:
                    f.write(f"{k} " + " ".join(f"{v:.6f}" for v in coords) + "\n")
                    per_class[k] += 1
        counts[split] = per_class
    names = [f"{_class_style(k)[0]}{k}" for k in range(cfg.nc)]
    data = {"path": str(out_dir), "train": "images/train", "val": "images/val", "nc": cfg.nc, "names": names}
    with open(out_dir / "data.yaml", "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    with open(out_dir / "synth.json", "w") as f:
        json.dump({"config": asdict(cfg), "class_probabilities": probs.tolist(), "label_counts": counts}, f, indent=2)
    return out_dir / "data.yaml"


def generated_dataset(out_dir: Path, cfg: SynthConfig) -> Optional[Path]:
    """``data.yaml`` of a complete dataset that ``generate(out_dir, cfg)`` already wrote, else None.

    Lets a caller skip rewriting images that other processes may be reading (same config, same bytes).
    """
    out_dir = Path(out_dir).resolve()
    manifest, data_yaml = out_dir / "synth.json", out_dir / "data.yaml"
    try:
        written = json.loads(manifest.read_text()).get("config")
    except (OSError, ValueError):
        return None
    return data_yaml if written == asdict(cfg) and data_yaml.is_file() else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SynthConfig()
    parser.add_argument("out", type=Path, help="output directory")
    for name, value in asdict(defaults).items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", help="write polygon (segmentation) labels")
        else:
            parser.add_argument(flag, type=type(value), default=value, help=f"default {value}")


def run_from_args(args: argparse.Namespace) -> int:
    cfg = SynthConfig(**{k: getattr(args, k) for k in asdict(SynthConfig())})
    data_yaml = generate(args.out, cfg)
    with open(Path(args.out) / "synth.json") as f:
        counts = json.load(f)["label_counts"]
    print(f"wrote {data_yaml}")
    print(f"labels per class (train): {counts['train']}")
    print(f"labels per class (val):   {counts['val']}")
    return 0
