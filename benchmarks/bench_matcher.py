"""Benchmark: RetinaMatcher against torchvision's ``box_iou`` + ``Matcher`` on the same inputs.

Per setting (images x GTs per image) and matcher, one timed run in a fresh subprocess, so the
peak memory (``ru_maxrss`` minus the resident size before the run) belongs to that run alone.

    python benchmarks/bench_matcher.py              # 16 images of 640x640, 10 / 100 / 1,000 GTs
    python benchmarks/bench_matcher.py --quick      # 4 images of 320x320, 10 / 100 GTs (seconds)

Inputs: RetinaNet anchors for the image (76,725 at 640x640); GTs with log-uniform sizes
(sqrt(w*h) in [8, 320] px), log-uniform aspect ratios in [1/3, 3], uniform centres, clipped to
the image, boxes under 2 px dropped. Both matchers use IoU 0.5 / 0.4 with low-quality matches.
"Unmatched" is the share of GTs that end with no positive anchor.

Timing is one run, wall clock, including ours building its anchor index (a cold start); the
machine's load average is printed because shared CPUs make single runs noisy.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def make_gts(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.exp(torch.empty(n).uniform_(math.log(8), math.log(320), generator=g))
    ar = torch.exp(torch.empty(n).uniform_(-math.log(3), math.log(3), generator=g))
    w, h = s * ar.sqrt(), s / ar.sqrt()
    cx, cy = torch.rand(n, generator=g) * size, torch.rand(n, generator=g) * size
    b = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).clamp(0, size)
    return b[((b[:, 2] - b[:, 0]) >= 2) & ((b[:, 3] - b[:, 1]) >= 2)]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(method: str, images: int, gts_per_image: int, size: int, seed: int, threads: int) -> Dict:
    """Runs in the child process."""
    torch.set_num_threads(threads)
    from yolo_focal_plugin.retina import RetinaMatcher, anchors_for_image, positives_per_gt

    anchors = anchors_for_image(size, size)
    gts = [make_gts(gts_per_image, size, seed * 1000 + i) for i in range(images)]
    n_gts = sum(len(g) for g in gts)
    if method == "torchvision":
        from torchvision.models.detection._utils import Matcher
        from torchvision.ops import box_iou

        matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        unmatched = 0
        for g in gts:
            m = matcher(box_iou(g, anchors))
            unmatched += int((torch.bincount(m[m >= 0], minlength=len(g)) == 0).sum())
        dt = time.perf_counter() - t0
    else:
        matcher = RetinaMatcher()
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        matches, labels = matcher.match_batch(anchors, gts)
        dt = time.perf_counter() - t0
        counts = positives_per_gt(matches, labels, [len(g) for g in gts])
        unmatched = int(sum(int((c == 0).sum()) for c in counts))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "method": method, "images": images, "gts_per_image": gts_per_image, "gts": n_gts,
        "anchors": int(anchors.shape[0]), "seconds": dt, "peak_mb": max(0.0, peak - rss0),
        "unmatched": unmatched, "unmatched_share": unmatched / max(1, n_gts), "threads": threads,
    }


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4 images of 320x320, 10 and 100 GTs")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--gts", default="10,100,1000", help="comma-separated GTs per image")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-torchvision", action="store_true")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--_child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        method, images, gts, size = args._child
        print(json.dumps(run_one(method, int(images), int(gts), int(size), args.seed, args.threads)))
        return 0
    if args.quick:
        args.images, args.size, args.gts = 4, 320, "10,100"
    settings = [int(x) for x in args.gts.split(",")]
    methods = ["ours"] + ([] if args.skip_torchvision else ["torchvision"])
    print(f"# RetinaMatcher vs torchvision: {args.images} images of {args.size}x{args.size}, "
          f"threads={args.threads}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    rows = []
    for n in settings:
        for method in methods:
            cmd = [sys.executable, __file__, "--_child", method, str(args.images), str(n), str(args.size),
                   "--seed", str(args.seed), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"  {method:11s} {n:5d} GTs/image: {r['seconds']:8.2f} s  peak {r['peak_mb']:8.1f} MB  "
                  f"unmatched {r['unmatched_share']:.2%}", flush=True)
    print("\n| GTs/image | ours s/batch | torchvision s/batch | speed-up | ours peak MB | torchvision peak MB "
          "| ours unmatched | torchvision unmatched |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in settings:
        o = next(r for r in rows if r["method"] == "ours" and r["gts_per_image"] == n)
        t = next((r for r in rows if r["method"] == "torchvision" and r["gts_per_image"] == n), None)
        tv = lambda k, f: (f.format(t[k]) if t else "-")  # noqa: E731
        speed = f"{t['seconds'] / o['seconds']:.1f}x" if t else "-"
        print(f"| {n} | {o['seconds']:.2f} | {tv('seconds', '{:.2f}')} | {speed} | {o['peak_mb']:.0f} | "
              f"{tv('peak_mb', '{:.0f}')} | {o['unmatched_share']:.2%} | {tv('unmatched_share', '{:.2%}')} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
