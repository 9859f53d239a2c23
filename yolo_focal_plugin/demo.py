"""``yolo-focal demo``: BCE vs YOLOv5's focal setting vs the plugin's focal hyp, on generated data.

Generates a long-tailed synthetic dataset (no downloads), trains yolov5n from scratch once per
setting with the same seed (a real ``python -m yolov5.train`` subprocess each, the plugin active
through its start-up hook), then prints a table of final/best metrics and writes a PNG of mAP per
epoch. A few CPU epochs show the mechanics, not a verdict: ``yolo-focal sweep`` with several
seeds is the tool for a verdict on your own data.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from .hyp import resolve_hyp_path
from .synth import SynthConfig, generate

__all__ = ["DemoSetting", "DEFAULT_SETTINGS", "run_demo", "add_arguments", "run_from_args"]


@dataclass(frozen=True)
class DemoSetting:
    name: str
    label: str
    hyp_overrides: Dict[str, object]
    base_hyp: Optional[str] = None  # bundled hyp name; None = yolov5's hyp.scratch-low.yaml


DEFAULT_SETTINGS = (
    DemoSetting("bce", "BCE (stock YOLOv5, fl_gamma 0)", {}),
    DemoSetting("yolov5_focal", "YOLOv5 focal setting (fl_gamma 1.5 only)", {"fl_gamma": 1.5}),
    DemoSetting("plugin_focal", "plugin hyp.focal.yaml", {}, base_hyp="hyp.focal.yaml"),
)


def _stock_hyp_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("yolov5")
    if spec is None or spec.origin is None:
        raise RuntimeError("yolov5 is not installed: pip install 'yolo-focal-plugin[yolov5]'")
    return Path(spec.origin).parent / "data" / "hyps" / "hyp.scratch-low.yaml"


def write_hyp(setting: DemoSetting, out_dir: Path) -> Path:
    base = resolve_hyp_path(setting.base_hyp) if setting.base_hyp else _stock_hyp_path()
    if base is None:
        raise FileNotFoundError(f"bundled hyp {setting.base_hyp!r} not found")
    hyp = yaml.safe_load(Path(base).read_text())
    hyp.update(setting.hyp_overrides)
    path = out_dir / f"hyp.{setting.name}.yaml"
    path.write_text(yaml.safe_dump(hyp, sort_keys=False))
    return path


def train_command(data: Path, hyp: Path, project: Path, name: str, epochs: int, img: int, batch: int, seed: int) -> List[str]:
    return [
        sys.executable, "-m", "yolov5.train",
        "--data", str(data), "--cfg", "yolov5n.yaml", "--weights", "", "--hyp", str(hyp),
        "--img", str(img), "--epochs", str(epochs), "--batch-size", str(batch), "--workers", "0",
        "--device", "cpu", "--project", str(project), "--name", name, "--exist-ok", "--seed", str(seed),
        "--noplots",
    ]


def run_demo(
    out_dir: Path,
    epochs: int = 12,
    img: int = 128,
    batch: int = 16,
    seed: int = 0,
    data_cfg: Optional[SynthConfig] = None,
    settings=DEFAULT_SETTINGS,
) -> List[Path]:
    """Train every setting; return their run directories (each with yolov5's results.csv)."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data_cfg = data_cfg or SynthConfig(n_train=160, n_val=60, img_size=img, nc=5, imbalance=20.0,
                                       min_size=max(8, img // 10), max_size=max(16, img // 3), seed=seed)
    data = generate(out_dir / "data", data_cfg)
    print(f"dataset: {data} ({data_cfg.n_train} train / {data_cfg.n_val} val images, nc={data_cfg.nc}, "
          f"rarest class {data_cfg.imbalance:g}x rarer than the most common)", flush=True)
    run_dirs = []
    for i, setting in enumerate(settings, 1):
        hyp = write_hyp(setting, out_dir)
        log = out_dir / f"{setting.name}.log"
        print(f"[{i}/{len(settings)}] training '{setting.label}' for {epochs} epochs (log: {log}) ...", flush=True)
        start = time.time()
        with open(log, "w") as f:
            proc = subprocess.run(train_command(data, hyp, out_dir / "runs", setting.name, epochs, img, batch, seed),
                                  stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy())
        if proc.returncode != 0:
            raise RuntimeError(f"training '{setting.label}' failed (exit {proc.returncode}); see {log}")
        print(f"      done in {time.time() - start:.0f} s", flush=True)
        run_dirs.append(out_dir / "runs" / setting.name)
    return run_dirs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/yolo-focal-demo"), help="output directory")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--img", type=int, default=128, help="image size (multiple of 32)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)


def run_from_args(args: argparse.Namespace) -> int:
    from .compare import run_compare

    if args.img % 32:
        raise ValueError(f"--img must be a multiple of 32, got {args.img}")
    run_dirs = run_demo(args.out, epochs=args.epochs, img=args.img, batch=args.batch, seed=args.seed)
    result = run_compare(run_dirs, Path(args.out), names=[s.label for s in DEFAULT_SETTINGS])
    print(Path(result["files"]["md"]).read_text())
    print("wrote " + ", ".join(result["files"].values()))
    return 0
