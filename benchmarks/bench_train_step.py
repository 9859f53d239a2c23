"""Step time of yolov5n (forward + ComputeLoss + backward) with stock BCE and each plugin loss.

One process, one model, one fixed batch; settings are interleaved round by round so machine load
hits them alike, and the median per setting is compared with stock BCE. Target: <= 1.05x.

    python benchmarks/bench_train_step.py                 # 640 px, batch 8
    python benchmarks/bench_train_step.py --img 320 --batch 16 --rounds 15
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
import yaml

import yolo_focal_plugin
from yolo_focal_plugin.hyp import resolve_hyp_path

yolo_focal_plugin.install()
import yolov5  # noqa: E402
from yolov5.models.yolo import Model  # noqa: E402
from yolov5.utils.loss import ComputeLoss  # noqa: E402

STOCK = Path(yolov5.__file__).parent / "data" / "hyps" / "hyp.scratch-low.yaml"


def settings() -> dict:
    stock = yaml.safe_load(STOCK.read_text())
    out = {"stock BCE": stock, "YOLOv5 focal (fl_gamma 1.5)": {**stock, "fl_gamma": 1.5}}
    for name in ("hyp.focal.yaml", "hyp.qfocal.yaml", "hyp.varifocal.yaml", "hyp.retina.yaml"):
        out[name] = yaml.safe_load(resolve_hyp_path(name).read_text())
    return out


def make_batch(img: int, batch: int, nc: int, per_image: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.rand(batch, 3, img, img, generator=g)
    rows = []
    for b in range(batch):
        for _ in range(per_image):
            wh = 0.02 + 0.3 * torch.rand(2, generator=g)
            xy = wh / 2 + (1 - wh) * torch.rand(2, generator=g)
            rows.append([b, int(torch.randint(nc, (1,), generator=g)), *xy.tolist(), *wh.tolist()])
    return imgs, torch.tensor(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--img", type=int, default=640)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--nc", type=int, default=80)
    parser.add_argument("--objects", type=int, default=10, help="ground truths per image")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = Model(str(Path(yolov5.__file__).parent / "models" / "yolov5n.yaml"), ch=3, nc=args.nc)
    base.class_weights = torch.ones(args.nc)
    imgs, targets = make_batch(args.img, args.batch, args.nc, args.objects)
    cases = {}
    for name, hyp in settings().items():
        model = copy.deepcopy(base).train()
        model.hyp = dict(hyp)
        cases[name] = (model, ComputeLoss(model))

    def step(model, compute_loss) -> float:
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, _ = compute_loss(model(imgs), targets)
        loss.backward()
        return time.perf_counter() - start

    for model, compute_loss in cases.values():  # warm-up: allocator, thread pools
        step(model, compute_loss)
    times = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (model, compute_loss) in cases.items():
            times[name].append(step(model, compute_loss))

    stock = statistics.median(times["stock BCE"])
    print(f"yolov5n, {args.img} px, batch {args.batch}, nc {args.nc}, {args.objects} GTs/image, "
          f"{args.threads} threads, median of {args.rounds} interleaved rounds")
    print(f"| setting | step ms | ratio to stock BCE |\n|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1000:.0f} | {median / stock:.3f}x |")


if __name__ == "__main__":
    main()
