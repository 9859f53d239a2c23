"""GPU check (#14): correctness, speed/memory and a yolov5s training step on a CUDA device.

Three parts, one run, markdown tables on stdout (and in ``--out``, ``.json`` or ``.md``):

1. **correctness**: ``FocalLoss``, ``QFocalLoss``, ``VFLoss`` and ``softmax_focal_loss`` on the device
   against the float64 CPU reference (the same module in float64 on CPU, which ``tests/test_losses.py``
   ties to torchvision to 1e-9), loss values and logit gradients, every reduction, gamma in
   {0, 0.5, 1.5, 2}, logits up to +-100. Modes: float32, float32 with a small chunk size (exercises
   the chunk boundaries of the fused kernel), and half-precision inputs under ``torch.autocast`` the
   way YOLOv5's training loop calls the criterion (model output in half precision, loss then scaled
   by GradScaler's initial 65536 and the batch size before ``backward``). Plus ``gradcheck`` in
   float64 on the device.
2. **speed and memory**: forward + backward of our wrappers, ``BCEWithLogitsLoss``, torchvision's
   ``sigmoid_focal_loss`` and YOLOv5's ``FocalLoss`` at YOLOv5's sizes, median of interleaved
   iterations after warm-up (CUDA events), peak memory from ``torch.cuda.max_memory_allocated``.
3. **train step**: yolov5s forward + ``ComputeLoss`` + backward + optimizer step, AMP on (CUDA), stock
   BCE vs each shipped hyp, through the plugin's real integration (``yolo_focal_plugin.patched()``).

On a machine without CUDA it runs on the CPU in a small mode (tiny sizes, few iterations) so CI can
execute it; CPU autocast stands in for CUDA autocast (float16 and bfloat16 both run on CPU in this
torch; a mode the build cannot run is skipped with a printed reason). The exit status is 1 when a
correctness check fails (a NaN/inf anywhere, an error beyond tolerance, or a gradient lost to
underflow), else 0. Speed and memory targets are printed, never enforced.

    python benchmarks/gpu_check.py                      # CUDA if available, else the CPU small mode
    python benchmarks/gpu_check.py --out gpu_check.json # also write the tables and raw rows
    python benchmarks/gpu_check.py --parts correctness --small
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import math
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from yolo_focal_plugin import losses  # noqa: E402
from yolo_focal_plugin.losses import FocalLoss, QFocalLoss, VFLoss, softmax_focal_loss  # noqa: E402

import bench_losses  # noqa: E402  (helpers: contenders, inputs, CPU peak memory)

GAMMAS: Tuple[float, ...] = (0.0, 0.5, 1.5, 2.0)
REDUCTIONS: Tuple[str, ...] = ("none", "mean", "sum")
LOSSES: Tuple[str, ...] = ("FocalLoss", "QFocalLoss", "VFLoss", "softmax_focal")
# YOLOv5's loss multiplier: GradScaler's initial scale times the batch size (ComputeLoss returns
# loss * bs). A half-precision path has to survive this upstream gradient, as the stock BCE does.
GRAD_SCALE = 65536.0
BATCH = 64
# Normalised max error allowed against the float64 reference, per mode's precision.
TOLERANCE: Dict[str, float] = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
# YOLOv5's sizes: objectness of a batch of 64 at 640 px, the class branch (80 classes on about
# 10 GTs x 9 matched cells per image), and two larger inputs.
OBJ_640_B64 = 64 * 3 * (80 * 80 + 40 * 40 + 20 * 20)
CLS_640_B64 = 64 * 10 * 9 * 80
# A gradient element this large relative to the largest must not come back as exactly 0.
LOST_FRACTION = 1e-4


# --------------------------------------------------------------------------------------------------
# part 1: correctness
# --------------------------------------------------------------------------------------------------


@dataclass
class Mode:
    """How the criterion is called: input dtype, autocast dtype (or None) and fused-kernel chunk."""

    name: str
    dtype: torch.dtype
    autocast: Optional[torch.dtype] = None
    chunk: Optional[int] = None


@dataclass
class CheckRow:
    """One correctness case; ``ok`` says whether it passed."""

    mode: str
    loss: str
    reduction: str
    gamma: float
    value_err: float
    grad_err: float
    nonfinite: int
    zeroed: int
    out_dtype: str
    tol: float
    ok: bool = field(default=False)


def correctness_inputs(n: int, seed: int = 0) -> Tuple[Tensor, Tensor, Tensor]:
    """Logits (rows, 80) with one in eight saturated at +-17, +-30 or +-100 (confidently right and
    wrong, so a half-precision 'sum' can overflow the way a real one would), a target mixing 0, 1 and
    soft values, and class indices for the softmax loss (some ignored)."""
    g = torch.Generator().manual_seed(seed)
    rows = max(1, n // 80)
    x = torch.randn(rows, 80, generator=g) * 4
    pick = torch.rand(rows, 80, generator=g) < 0.125
    extremes = torch.tensor([17.0, 30.0, 100.0])
    sat = extremes[torch.randint(3, (rows, 80), generator=g)] * torch.where(
        torch.rand(rows, 80, generator=g) < 0.5, -1.0, 1.0)
    x = torch.where(pick, sat, x)
    u = torch.rand(rows, 80, generator=g)
    t = torch.where(u < 0.8, 0.0, torch.where(u < 0.9, 1.0, torch.rand(rows, 80, generator=g)))
    labels = torch.randint(80, (rows,), generator=g)
    labels[torch.rand(rows, generator=g) < 0.1] = -100
    return x, t, labels


def criterion(loss: str, reduction: str, gamma: float) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss as YOLOv5 would hold it: a wrapper around ``BCEWithLogitsLoss(reduction=...)``."""
    if loss == "softmax_focal":
        return lambda x, y: softmax_focal_loss(x, y, gamma=gamma, reduction=reduction)
    cls = {"FocalLoss": FocalLoss, "QFocalLoss": QFocalLoss, "VFLoss": VFLoss}[loss]
    return cls(nn.BCEWithLogitsLoss(reduction=reduction), gamma=gamma)


def compare(got: Tensor, ref: Tensor) -> Tuple[float, int]:
    """Max error normalised by the reference's largest magnitude, and the number of non-finite
    elements of ``got`` (a NaN compares as an infinite error)."""
    got64 = got.detach().to("cpu", torch.float64)
    ref64 = ref.detach().to("cpu", torch.float64)
    nonfinite = int((~torch.isfinite(got64)).sum())
    if nonfinite:
        return math.inf, nonfinite
    if got64.numel() == 0:
        return 0.0, 0
    scale = float(ref64.abs().max())
    err = float((got64 - ref64).abs().max())
    return (err / scale if scale > 0 else err), 0


def lost_to_underflow(got: Tensor, ref: Tensor, dtype: torch.dtype) -> int:
    """Elements that came back as 0 although their reference gradient is significant: a normal number
    of ``dtype`` and at least ``LOST_FRACTION`` of the largest one. (Smaller ones may legitimately
    vanish: float32 ``sigmoid(17) - 1`` is 0, in BCEWithLogitsLoss too.)"""
    got64 = got.detach().to("cpu", torch.float64)
    ref64 = ref.detach().to("cpu", torch.float64).abs()
    if ref64.numel() == 0:
        return 0
    floor = max(torch.finfo(dtype).tiny, LOST_FRACTION * float(ref64.max()))
    return int(((got64 == 0) & (ref64 >= floor)).sum())


def row_passes(row: CheckRow) -> bool:
    """A case passes when everything is finite, no gradient underflowed and both errors are within tol."""
    return (row.nonfinite == 0 and row.zeroed == 0 and math.isfinite(row.value_err)
            and math.isfinite(row.grad_err) and row.value_err <= row.tol and row.grad_err <= row.tol)


@contextlib.contextmanager
def chunk_size(size: Optional[int]) -> Iterator[None]:
    """Temporarily set both chunk sizes of the fused kernel (``None``: leave them)."""
    if size is None:
        yield
        return
    previous = losses.set_chunk_size(cpu=size, accelerator=size)
    try:
        yield
    finally:
        losses.set_chunk_size(cpu=previous[0], accelerator=previous[1])


def check_case(mode: Mode, loss: str, reduction: str, gamma: float, device: torch.device,
               x: Tensor, t: Tensor, labels: Tensor) -> CheckRow:
    """Run one case on ``device`` and against the float64 CPU reference of the same inputs."""
    softmax = loss == "softmax_focal"
    target = labels if softmax else t
    xin = x.to(mode.dtype)  # the values the device sees; the reference uses exactly these
    # Upstream gradient of YOLOv5 with AMP: loss * bs * GradScaler scale on a 'mean' over all
    # elements. Other reductions get the upstream that gives each element the same gradient, so a
    # half-precision gradient overflows only where the implementation, not the scale, is at fault.
    upstream = (GRAD_SCALE if mode.autocast is not None else 1.0) * BATCH
    if reduction != "mean":
        upstream /= xin.numel()
    elif softmax:  # its 'mean' divides by the number of valid rows, not elements
        upstream *= int((labels != -100).sum()) / xin.numel()
    fn = criterion(loss, reduction, gamma)

    ref_x = xin.to(torch.float64).clone().requires_grad_()
    ref_t = target if softmax else target.to(mode.dtype).to(torch.float64)
    ref = fn(ref_x, ref_t)
    (ref.sum() * upstream).backward()

    dx = xin.to(device).clone().requires_grad_()  # a fresh leaf even where .to() is a no-op
    dt = target.to(device) if softmax else target.to(mode.dtype).to(device)
    ctx = (torch.autocast(device.type, dtype=mode.autocast) if mode.autocast is not None
           else contextlib.nullcontext())
    with chunk_size(mode.chunk), ctx:
        out = fn(dx, dt)
    # Outside autocast, as YOLOv5 does: scaler.scale(loss).backward() on the float32 total.
    with chunk_size(mode.chunk):
        (out.float().sum() * upstream).backward()
    value_err, bad_value = compare(out, ref)
    grad_err, bad_grad = compare(dx.grad, ref_x.grad)
    grad_dtype = dx.grad.dtype
    row = CheckRow(mode.name, loss, reduction, gamma, value_err, grad_err, bad_value + bad_grad,
                   lost_to_underflow(dx.grad, ref_x.grad, grad_dtype), str(out.dtype).replace("torch.", ""),
                   TOLERANCE[str(mode.dtype).replace("torch.", "")])
    row.ok = row_passes(row)
    return row


def correctness_modes(device: torch.device) -> Tuple[List[Mode], List[str]]:
    """The modes this device can run, and a printed reason for each one it cannot."""
    modes = [Mode("float32", torch.float32), Mode("float32, chunk 1000", torch.float32, chunk=1000)]
    skipped: List[str] = []
    for dtype in (torch.float16, torch.bfloat16):
        name = f"autocast {str(dtype).replace('torch.', '')}"
        try:
            with torch.autocast(device.type, dtype=dtype):
                torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
        except (RuntimeError, AssertionError) as exc:
            skipped.append(f"{name} on {device.type}: not supported by this torch build ({exc})")
            continue
        if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            skipped.append(f"{name}: this GPU has no bfloat16")
            continue
        modes.append(Mode(name, dtype, autocast=dtype))
    return modes, skipped


def gradcheck_rows(device: torch.device) -> List[Dict[str, object]]:
    """``torch.autograd.gradcheck`` in float64 on the device, every loss, gamma > 0, two reductions."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 8, generator=g, dtype=torch.float64) * 3
    x[0, :4] = torch.tensor([20.0, -20.0, 35.0, -35.0], dtype=torch.float64)
    t = torch.where(torch.rand(6, 8, generator=g) < 0.7, 0.0, torch.rand(6, 8, generator=g)).double()
    labels = torch.randint(8, (6,), generator=g)
    rows: List[Dict[str, object]] = []
    for loss in LOSSES:
        for gamma in (0.5, 1.5, 2.0):
            for reduction in ("mean", "sum"):
                fn = criterion(loss, reduction, gamma)
                target = (labels if loss == "softmax_focal" else t).to(device)
                xi = x.to(device).requires_grad_()
                try:
                    ok = bool(torch.autograd.gradcheck(lambda a: fn(a, target), (xi,), eps=1e-6, atol=1e-6,
                                                       rtol=1e-4, raise_exception=False))
                except RuntimeError:
                    ok = False
                rows.append({"loss": loss, "gamma": gamma, "reduction": reduction, "ok": ok})
    return rows


def run_correctness(device: torch.device, n: int) -> Tuple[List[CheckRow], List[str], List[Dict[str, object]]]:
    """Every mode x loss x reduction x gamma, plus the gradcheck rows."""
    x, t, labels = correctness_inputs(n)
    modes, skipped = correctness_modes(device)
    rows = [check_case(mode, loss, reduction, gamma, device, x, t, labels)
            for mode in modes for loss in LOSSES for reduction in REDUCTIONS for gamma in GAMMAS]
    return rows, skipped, gradcheck_rows(device)


def correctness_table(rows: Sequence[CheckRow]) -> str:
    lines = ["| mode | loss | reduction | gamma | out dtype | value err | grad err | NaN/inf | significant grads "
             "lost (=0) | tol | ok |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.mode} | {r.loss} | {r.reduction} | {r.gamma:g} | {r.out_dtype} | {r.value_err:.2e} | "
                     f"{r.grad_err:.2e} | {r.nonfinite} | {r.zeroed} | {r.tol:g} | {'yes' if r.ok else '**NO**'} |")
    return "\n".join(lines)


def correctness_summary(rows: Sequence[CheckRow]) -> str:
    """Per mode: the worst errors and the NaN/inf and underflow counts over all its cases."""
    lines = ["| mode | cases | max value err | max grad err | NaN/inf | significant grads lost (=0) | failed |",
             "|---|---|---|---|---|---|---|"]
    for mode in dict.fromkeys(r.mode for r in rows):
        rs = [r for r in rows if r.mode == mode]
        lines.append(f"| {mode} | {len(rs)} | {max(r.value_err for r in rs):.2e} | "
                     f"{max(r.grad_err for r in rs):.2e} | {sum(r.nonfinite for r in rs)} | "
                     f"{sum(r.zeroed for r in rs)} | {sum(not r.ok for r in rs)} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# part 2: speed and memory
# --------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, run: Callable[[], None]) -> Callable[[], float]:
    """Start ``run`` and return a callable giving its time in ms (CUDA events; wall clock on CPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        return lambda: start.elapsed_time(end)
    t0 = time.perf_counter()
    run()
    elapsed = (time.perf_counter() - t0) * 1e3
    return lambda: elapsed


def peak_extra(device: torch.device, run: Callable[[], None]) -> Optional[int]:
    """Bytes allocated above the starting point at the peak of ``run``."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    return bench_losses.peak_extra_bytes(run)


def run_speed(device: torch.device, sizes: Sequence[Tuple[str, int]], warmup: int, iters: int,
              amp: Optional[torch.dtype]) -> List[Dict[str, object]]:
    """Interleaved forward + backward of every contender; median ms and median per-iteration ratio to BCE."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps, _ = bench_losses.contenders(False)
    modes: List[Tuple[str, torch.dtype, Optional[torch.dtype]]] = [("float32", torch.float32, None)]
    if amp is not None:
        modes.append((f"autocast {str(amp).replace('torch.', '')}", amp, amp))
    if device.type == "cpu":
        bench_losses._mmap_large_blocks()  # so that peak RSS follows live tensors
    rows: List[Dict[str, object]] = []
    for label, n in sizes:
        for mode, dtype, cast in modes:
            x0, t0 = bench_losses.make_inputs(n, soft=False)
            x = x0.detach().to(device=device, dtype=dtype).requires_grad_()
            t = t0.to(device=device, dtype=dtype)
            del x0, t0
            ctx = (lambda: torch.autocast(device.type, dtype=cast)) if cast else contextlib.nullcontext

            def step(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
                x.grad = None
                with ctx():
                    loss = fn(x, t)
                loss.float().backward()

            for _ in range(warmup):
                for fn in steps.values():
                    step(fn)
            times: Dict[str, List[float]] = {name: [] for name in steps}
            for _ in range(iters):
                pending = {name: _timed(device, lambda fn=fn: step(fn)) for name, fn in steps.items()}
                _sync(device)
                for name, read in pending.items():
                    times[name].append(read())
            mems = {name: peak_extra(device, lambda fn=fn: step(fn)) for name, fn in steps.items()}
            x.grad = None
            for name in steps:
                ratio = statistics.median(a / b for a, b in zip(times[name], times["BCE"]))
                mem = mems[name]
                rows.append({"size": label, "n": x.numel(), "mode": mode, "loss": name,
                             "ms": statistics.median(times[name]), "x_bce": ratio,
                             "mem_n": None if mem is None else mem / (x.numel() * x.element_size()),
                             "mem_x_bce": (None if mem is None or not mems["BCE"] else mem / mems["BCE"])})
            del x, t
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def speed_table(rows: Sequence[Dict[str, object]]) -> str:
    def f(v: object, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    lines = ["| size | N | mode | loss | ms (median) | x BCE time | peak extra mem (N) | x BCE mem |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = f"**{r['loss']}**" if str(r["loss"]).startswith("ours") else r["loss"]
        lines.append(f"| {r['size']} | {r['n']:,} | {r['mode']} | {name} | {f(r['ms'], '.3f')} | "
                     f"{f(r['x_bce'], '.2f')} | {f(r['mem_n'], '.2f')} | {f(r['mem_x_bce'], '.2f')} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# part 3: yolov5s training step
# --------------------------------------------------------------------------------------------------


def train_hyp(hyp: Dict[str, object], img: int, nc: int, nl: int) -> Dict[str, object]:
    """The hyp as yolov5's train.py hands it to the model: gains rescaled to layers, classes, image size."""
    h = dict(hyp)
    h["box"] = float(h["box"]) * 3 / nl
    h["cls"] = float(h["cls"]) * nc / 80 * 3 / nl
    h["obj"] = float(h["obj"]) * (img / 640) ** 2 * 3 / nl
    h["label_smoothing"] = 0.0
    return h


def run_train_step(device: torch.device, img: int, batch: int, warmup: int, iters: int,
                   amp: Optional[torch.dtype], cfg: str = "yolov5s.yaml", nc: int = 80) -> List[Dict[str, object]]:
    """Median step time (forward + ComputeLoss + backward + optimizer step) per hyp vs stock BCE."""
    import yaml

    import yolo_focal_plugin
    from yolo_focal_plugin.hyp import bundled_hyp_dir, bundled_hyps

    with yolo_focal_plugin.patched():
        import yolov5
        from yolov5.models.yolo import Model
        from yolov5.utils.loss import ComputeLoss
        from yolov5.utils.torch_utils import smart_optimizer

        import bench_train_step  # its batch maker; it installs the plugin, which patched() undoes on exit

        stock = yaml.safe_load((Path(yolov5.__file__).parent / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
        settings = {"stock BCE (hyp.scratch-low)": stock}
        for name in bundled_hyps():
            settings[name] = yaml.safe_load((bundled_hyp_dir() / name).read_text())
        torch.manual_seed(0)
        with contextlib.redirect_stdout(sys.stderr):
            base = Model(str(Path(yolov5.__file__).parent / "models" / cfg), ch=3, nc=nc).to(device)
        nl = base.model[-1].nl
        imgs, targets = bench_train_step.make_batch(img, batch, nc, per_image=10)
        imgs, targets = imgs.to(device), targets.to(device)
        cases = {}
        for name, hyp in settings.items():
            model = copy.deepcopy(base).train()
            h = train_hyp(hyp, img, nc, nl)
            model.nc, model.hyp, model.class_weights = nc, h, torch.ones(nc, device=device)
            optimizer = smart_optimizer(model, "SGD", h["lr0"], h["momentum"], h["weight_decay"])
            scaler = torch.amp.GradScaler(device.type, enabled=amp is not None)
            cases[name] = {"model": model, "loss": ComputeLoss(model), "opt": optimizer, "scaler": scaler,
                           "skipped": 0, "finite": True, "last": math.nan}

        def step(case: Dict[str, object]) -> None:
            model, scaler = case["model"], case["scaler"]
            ctx = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
            with ctx:
                loss, _ = case["loss"](model(imgs), targets)  # loss * batch size, as in train.py
            scale_before = scaler.get_scale() if scaler.is_enabled() else None
            scaler.scale(loss).backward()
            scaler.unscale_(case["opt"])
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
            scaler.step(case["opt"])
            scaler.update()
            case["opt"].zero_grad()
            # GradScaler lowers its scale exactly when it found an inf/NaN gradient and skipped the step.
            if scale_before is not None and scaler.get_scale() < scale_before:
                case["skipped"] += 1
            case["finite"] = case["finite"] and bool(torch.isfinite(loss).all())
            case["last"] = float(loss.detach().float().sum())

        for _ in range(warmup):
            for case in cases.values():
                step(case)
        times: Dict[str, List[float]] = {name: [] for name in cases}
        for _ in range(iters):
            for name, case in cases.items():
                _sync(device)
                t0 = time.perf_counter()
                step(case)
                _sync(device)
                times[name].append((time.perf_counter() - t0) * 1e3)
    stock_ms = statistics.median(times["stock BCE (hyp.scratch-low)"])
    return [{"hyp": name, "ms": statistics.median(times[name]),
             "x_stock": statistics.median(times[name]) / stock_ms, "loss_finite": case["finite"],
             "skipped_steps": case["skipped"], "steps": warmup + iters, "last_loss": case["last"]}
            for name, case in cases.items()]


def train_table(rows: Sequence[Dict[str, object]]) -> str:
    lines = ["| hyp | step ms (median) | x stock BCE | loss finite | steps skipped by GradScaler |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['hyp']} | {r['ms']:.1f} | {r['x_stock']:.3f} | {'yes' if r['loss_finite'] else '**NO**'} | "
                     f"{r['skipped_steps']} of {r['steps']} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Sizes and iteration counts of one run."""

    small: bool
    check_n: int
    speed_sizes: List[Tuple[str, int]]
    warmup: int
    iters: int
    img: int
    batch: int
    train_warmup: int
    train_iters: int


def make_plan(small: bool) -> Plan:
    if small:
        return Plan(True, 80 * 32, [("obj (tiny)", 80 * 250), ("cls (tiny)", 80 * 50)], 1, 3, 64, 2, 1, 1)
    return Plan(False, 80 * 4096, [("obj 640px b64", OBJ_640_B64), ("cls 640px b64", CLS_640_B64),
                                   ("16M", 16_000_000), ("64M", 64_000_000)], 10, 50, 640, 64, 3, 20)


def header(device: torch.device, plan: Plan) -> Dict[str, object]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": f"{device} ({name})", "torch": torch.__version__,
            "cuda": torch.version.cuda, "mode": "small" if plan.small else "full",
            "threads": torch.get_num_threads()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--small", action="store_true", help="tiny sizes and few iterations (default on CPU)")
    parser.add_argument("--full", action="store_true", help="full sizes even on CPU (slow)")
    parser.add_argument("--parts", default="correctness,speed,train", help="comma-separated subset")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations (speed part)")
    parser.add_argument("--amp", default="auto", choices=["auto", "off", "float16", "bfloat16"],
                        help="autocast dtype of the speed and train parts (auto: float16 on CUDA; off on CPU, "
                             "as YOLOv5's check_amp)")
    parser.add_argument("--out", default=None, help="also write the results: .json (tables + rows) or .md")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    plan = make_plan(small=args.small or (device.type != "cuda" and not args.full))
    if args.iters:
        plan.iters = args.iters
    amp = {"auto": torch.float16 if device.type == "cuda" else None, "off": None,
           "float16": torch.float16, "bfloat16": torch.bfloat16}[args.amp]
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    meta = header(device, plan)
    out: Dict[str, object] = {"meta": meta, "tables": {}, "failures": []}
    text = [f"# GPU check\n\n{', '.join(f'{k}: {v}' for k, v in meta.items())}\n"]

    def emit(title: str, table: str) -> None:
        out["tables"][title] = table  # type: ignore[index]
        text.append(f"## {title}\n\n{table}\n")
        print(f"## {title}\n\n{table}\n", flush=True)

    print(text[0], flush=True)
    failures: List[str] = out["failures"]  # type: ignore[assignment]
    if "correctness" in parts:
        rows, skipped, grad_rows = run_correctness(device, plan.check_n)
        out["correctness"] = [asdict(r) for r in rows]
        out["gradcheck"] = grad_rows
        out["skipped_modes"] = skipped
        for reason in skipped:
            print(f"skipped: {reason}", flush=True)
        emit("Correctness summary (vs float64 CPU reference)", correctness_summary(rows))
        emit("Correctness, every case", correctness_table(rows))
        gc_failed = [r for r in grad_rows if not r["ok"]]
        emit("gradcheck (float64, on device)", f"{len(grad_rows) - len(gc_failed)} of {len(grad_rows)} passed"
             + "".join(f"\n- failed: {r}" for r in gc_failed))
        failures += [f"{r.mode} {r.loss} {r.reduction} gamma={r.gamma:g}" for r in rows if not r.ok]
        failures += [f"gradcheck {r}" for r in gc_failed]
    if "speed" in parts:
        rows_s = run_speed(device, plan.speed_sizes, plan.warmup, plan.iters, amp)
        out["speed"] = rows_s
        emit("Speed and memory (forward + backward; target: ours <= 1.10x BCE time, <= 1.00x BCE memory)",
             speed_table(rows_s))
    if "train" in parts:
        rows_t = run_train_step(device, plan.img, plan.batch, plan.train_warmup, plan.train_iters, amp)
        out["train"] = rows_t
        emit(f"Train step, yolov5s {plan.img} px, batch {plan.batch}, AMP "
             f"{str(amp).replace('torch.', '') if amp else 'off'} (target <= 1.03x)", train_table(rows_t))
        failures += [f"train step {r['hyp']}: non-finite loss" for r in rows_t if not r["loss_finite"]]
    verdict = "PASS" if not failures else f"FAIL ({len(failures)}): " + "; ".join(failures[:20])
    text.append(f"Correctness verdict: {verdict}\n")
    print(f"Correctness verdict: {verdict}", flush=True)
    if args.out:
        path = Path(args.out)
        path.write_text(json.dumps(out, indent=1, default=str) if path.suffix == ".json" else "\n".join(text))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
