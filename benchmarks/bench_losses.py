"""Speed and memory of the focal-loss family against BCEWithLogitsLoss, torchvision and YOLOv5.

Forward + backward, float32, CPU, on the same tensors for every contender, in one run::

    python benchmarks/bench_losses.py                    # 400k, 4M and 16M elements
    python benchmarks/bench_losses.py --sizes 400k,4M --reps 5
    python benchmarks/bench_losses.py --compile          # also time a torch.compile'd formula

Times are interleaved (every contender once per round) and the ratio to BCE is the median of the
per-round ratios, which keeps the figures honest on a machine shared with other jobs. Peak extra
memory is the rise of the process's peak RSS over the call (glibc is told to ``mmap`` large blocks so
that freed memory really leaves), in units of N = the size of the float32 input.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_focal_plugin.losses import FocalLoss, QFocalLoss, VFLoss  # noqa: E402

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale != 1 else text) * scale)


# --------------------------------------------------------------------------------------------------
# memory: peak RSS over a call
# --------------------------------------------------------------------------------------------------


def _mmap_large_blocks() -> bool:
    """Make glibc return freed large blocks to the OS at once, so RSS follows live tensors."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 64 * 1024))  # M_MMAP_THRESHOLD
    except OSError:
        return False


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def peak_extra_bytes(run: Callable[[], None]) -> Optional[int]:
    gc.collect()
    if not _reset_peak():
        return None
    base = _status("VmRSS")
    run()
    return _status("VmHWM") - base


# --------------------------------------------------------------------------------------------------
# contenders
# --------------------------------------------------------------------------------------------------


def contenders(with_compile: bool) -> Tuple[Dict[str, Step], Dict[str, str]]:
    """name -> step(x, t) returning a scalar loss; and name -> the peer each of ours is compared to."""
    steps: Dict[str, Step] = {"BCE": nn.BCEWithLogitsLoss()}
    peers: Dict[str, str] = {}
    try:
        import torchvision

        steps["torchvision FL"] = lambda x, t: torchvision.ops.sigmoid_focal_loss(x, t, 0.25, 1.5, "mean")
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from yolov5.utils.loss import FocalLoss as Y5FocalLoss
            from yolov5.utils.loss import QFocalLoss as Y5QFocalLoss
        steps["yolov5 FocalLoss"] = Y5FocalLoss(nn.BCEWithLogitsLoss())
        steps["yolov5 QFocalLoss"] = Y5QFocalLoss(nn.BCEWithLogitsLoss())
    except ImportError:
        pass
    steps["ours FocalLoss"] = FocalLoss(nn.BCEWithLogitsLoss())
    steps["ours QFocalLoss"] = QFocalLoss(nn.BCEWithLogitsLoss())
    steps["ours VFLoss"] = VFLoss(nn.BCEWithLogitsLoss())
    peers["ours FocalLoss"] = "yolov5 FocalLoss" if "yolov5 FocalLoss" in steps else "torchvision FL"
    peers["ours QFocalLoss"] = "yolov5 QFocalLoss"
    if with_compile:
        steps["compiled FL formula"] = compiled_focal()
        peers["compiled FL formula"] = "yolov5 FocalLoss"
    return steps, peers


def compiled_focal() -> Step:
    """The textbook formula under torch.compile (needs a C compiler); the first call pays the compile."""

    def focal(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(x)
        q = torch.sigmoid(-x)
        u = torch.lerp(p, q, t)
        bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        return (bce * u * u.sqrt() * (0.75 - 0.5 * t)).mean()

    return torch.compile(focal, dynamic=False)


def fwd_bwd(step: Step, x: torch.Tensor, t: torch.Tensor) -> None:
    x.grad = None
    step(x, t).backward()


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def make_inputs(n: int, soft: bool, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    classes = 80
    rows = max(1, n // classes)
    x = (torch.randn(rows, classes, generator=g) * 3).requires_grad_()
    if soft:
        t = torch.rand(rows, classes, generator=g)  # IoU-like soft targets
    else:
        t = (torch.rand(rows, classes, generator=g) < 0.1).float()
    return x, t


def bench_case(steps: Dict[str, Step], n: int, soft: bool, reps: int) -> Dict[str, Dict[str, float]]:
    x, t = make_inputs(n, soft)
    times: Dict[str, List[float]] = {name: [] for name in steps}
    compile_cost: Dict[str, float] = {}
    for name, step in steps.items():  # warm-up (and compile)
        t0 = time.perf_counter()
        fwd_bwd(step, x, t)
        compile_cost[name] = time.perf_counter() - t0
    for _ in range(reps):
        for name, step in steps.items():
            t0 = time.perf_counter()
            fwd_bwd(step, x, t)
            times[name].append(time.perf_counter() - t0)
    x.grad = None
    nbytes = x.numel() * 4
    out: Dict[str, Dict[str, float]] = {}
    for name, step in steps.items():
        ratios = [a / b for a, b in zip(times[name], times["BCE"])]
        mem = peak_extra_bytes(lambda: fwd_bwd(step, x, t))
        x.grad = None
        out[name] = {
            "ms": statistics.median(times[name]) * 1e3,
            "ratio_bce": statistics.median(ratios),
            "mem_n": float("nan") if mem is None else mem / nbytes,
            "first_ms": compile_cost[name] * 1e3,
        }
    return out


def format_table(results: Dict[Tuple[int, str], Dict[str, Dict[str, float]]], peers: Dict[str, str]) -> str:
    lines = ["| N | targets | loss | ms (median) | x BCE | x peer (peer) | peak extra mem (N) |",
             "|---|---|---|---|---|---|---|"]
    for (n, kind), rows in results.items():
        for name, r in rows.items():
            peer = peers.get(name)
            if peer and peer in rows:
                vs_peer = f"{r['ms'] / rows[peer]['ms']:.2f} ({peer})"
            else:
                vs_peer = "-"
            label = f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"
            lines.append(f"| {label} | {kind} | {name} | {r['ms']:.1f} | {r['ratio_bce']:.2f} | {vs_peer} | "
                         f"{r['mem_n']:.2f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="400k,4M,16M", help="comma-separated element counts (k/M suffixes)")
    parser.add_argument("--targets", default="binary,soft", help="binary, soft or both (comma-separated)")
    parser.add_argument("--reps", type=int, default=7, help="timed rounds per case (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the formula")
    parser.add_argument("--only", default=None, help="comma-separated subset of contenders (BCE always runs)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    mmap_ok = _mmap_large_blocks()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    kinds = [k.strip() for k in args.targets.split(",") if k.strip()]
    steps, peers = contenders(args.compile)
    if args.only:
        keep = {s.strip() for s in args.only.split(",")} | {"BCE"}
        steps = {k: v for k, v in steps.items() if k in keep}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.1f} at start, "
          f"mmap threshold set: {mmap_ok}")
    results: Dict[Tuple[int, str], Dict[str, Dict[str, float]]] = {}
    for n in sizes:
        for kind in kinds:
            results[(n, kind)] = bench_case(steps, n, kind == "soft", args.reps)
            print(f"  done N={n} {kind} (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    print(format_table(results, peers))
    if args.compile:
        for (n, kind), rows in results.items():
            if "compiled FL formula" in rows:
                print(f"compile + first call, N={n} {kind}: {rows['compiled FL formula']['first_ms'] / 1e3:.1f} s")
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
