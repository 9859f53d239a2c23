"""Benchmark: RetinaMatcher's batch and per-image forms against torchvision's ``box_iou`` + ``Matcher``.

Three methods on the same inputs, each in a fresh subprocess, so the peak memory
(``ru_maxrss`` minus the resident size before the run) belongs to that run alone:

* ``batch``: ``RetinaMatcher().match_batch(anchors, gts)``, the whole batch in one call;
* ``per-image``: ``[RetinaMatcher()(anchors, g) for g in gts]``, a fresh matcher per image, the
  form users write first (it reuses the anchor index through the process-wide cache);
* ``torchvision``: ``Matcher(0.5, 0.4, allow_low_quality_matches=True)(box_iou(g, anchors))`` per image.

    python benchmarks/bench_matcher.py              # 16 images of 640x640, 10 / 100 / 1,000 GTs
    python benchmarks/bench_matcher.py --quick      # 4 images of 320x320, 10 / 100 GTs (seconds)

Inputs: RetinaNet anchors for the image (76,725 at 640x640); GTs with log-uniform sizes
(sqrt(w*h) in [8, 320] px), log-uniform aspect ratios in [1/3, 3], uniform centres, clipped to
the image, boxes under 2 px dropped. Both matchers use IoU 0.5 / 0.4 with low-quality matches.
"Unmatched" is the share of GTs that end with no positive anchor.

Timing is wall clock. The first run includes ours building its anchor index (a cold start);
``--repeat N`` reports the fastest of N runs (later runs reuse the index). The machine's load
average is printed because shared CPUs make single runs noisy: read the ratios, which come from
runs made one after the other.
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


METHODS = ("batch", "per-image", "torchvision")


def run_one(method: str, images: int, gts_per_image: int, size: int, seed: int, threads: int,
            repeat: int = 1) -> Dict:
    """Runs in the child process."""
    torch.set_num_threads(threads)
    from yolo_focal_plugin.retina import RetinaMatcher, anchors_for_image, positives_per_gt

    anchors = anchors_for_image(size, size)
    gts = [make_gts(gts_per_image, size, seed * 1000 + i) for i in range(images)]
    n_gts = sum(len(g) for g in gts)
    if method == "torchvision":
        from torchvision.models.detection._utils import Matcher
        from torchvision.ops import box_iou

        tv = Matcher(0.5, 0.4, allow_low_quality_matches=True)

        def once() -> int:
            unmatched = 0
            for g in gts:
                m = tv(box_iou(g, anchors))
                unmatched += int((torch.bincount(m[m >= 0], minlength=len(g)) == 0).sum())
            return unmatched
    elif method in ("batch", "per-image"):
        def once() -> int:
            if method == "batch":
                matches, labels = RetinaMatcher().match_batch(anchors, gts)
                counts = positives_per_gt(matches, labels, [len(g) for g in gts])
            else:
                counts = [positives_per_gt(*RetinaMatcher()(anchors, g), len(g)) for g in gts]
            return int(sum(int((c == 0).sum()) for c in counts))
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    rss0 = _rss_mb()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        unmatched = once()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "method": method, "images": images, "gts_per_image": gts_per_image, "gts": n_gts,
        "anchors": int(anchors.shape[0]), "seconds": min(times), "first_seconds": times[0],
        "peak_mb": max(0.0, peak - rss0), "unmatched": unmatched,
        "unmatched_share": unmatched / max(1, n_gts), "threads": threads,
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
    p.add_argument("--repeat", type=int, default=1, help="report the fastest of N runs per method")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--_child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        method, images, gts, size = args._child
        print(json.dumps(run_one(method, int(images), int(gts), int(size), args.seed, args.threads, args.repeat)))
        return 0
    if args.quick:
        args.images, args.size, args.gts = 4, 320, "10,100"
    settings = [int(x) for x in args.gts.split(",")]
    methods = [m for m in METHODS if not (args.skip_torchvision and m == "torchvision")]
    print(f"# RetinaMatcher (batch, per-image) vs torchvision: {args.images} images of {args.size}x{args.size}, "
          f"threads={args.threads}, repeat={args.repeat}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs\n")
    rows = []
    for n in settings:
        for method in methods:
            cmd = [sys.executable, __file__, "--_child", method, str(args.images), str(n), str(args.size),
                   "--seed", str(args.seed), "--threads", str(args.threads), "--repeat", str(args.repeat)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"  {method:11s} {n:5d} GTs/image: {r['seconds']:8.3f} s  peak {r['peak_mb']:8.1f} MB  "
                  f"unmatched {r['unmatched_share']:.2%}", flush=True)
    print("\n| GTs/image | batch s | per-image s | torchvision s | per-image / batch | torchvision / batch "
          "| torchvision / per-image | batch, per-image, torchvision peak MB | unmatched: ours, torchvision |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in settings:
        r = {row["method"]: row for row in rows if row["gts_per_image"] == n}
        b, i, t = r["batch"], r["per-image"], r.get("torchvision")
        assert b["unmatched"] == i["unmatched"], "batch and per-image forms disagree"
        cells = [str(n), f"{b['seconds']:.3f}", f"{i['seconds']:.3f}", f"{t['seconds']:.2f}" if t else "-",
                 f"{i['seconds'] / b['seconds']:.2f}x",
                 f"{t['seconds'] / b['seconds']:.1f}x" if t else "-",
                 f"{t['seconds'] / i['seconds']:.1f}x" if t else "-",
                 f"{b['peak_mb']:.0f}, {i['peak_mb']:.0f}, " + (f"{t['peak_mb']:.0f}" if t else "-"),
                 f"{b['unmatched_share']:.2%}, " + (f"{t['unmatched_share']:.2%}" if t else "-")]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
