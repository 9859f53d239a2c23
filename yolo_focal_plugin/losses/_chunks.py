"""How the fused kernel's work is cut and run: chunk sizes and the pool of chunk threads.

Contract: :func:`_map_chunks` returns ``[run(i, scratch) for i in range(count)]``, each worker
building its scratch once with ``make_scratch()``; which thread runs which chunk is unspecified, so
``run`` must write only its own slice. :func:`_chunk_size` and :func:`_workers` read this module's
tunables at call time: :func:`set_chunk_size` (public) and the tests (``monkeypatch`` on this
module) change them.

The chunk loop runs on a small pool of Python threads whose OpenMP thread count is set to 1 (a
thread-local setting, nothing global changes). Every op of a chunk then runs inline on its thread.
Without this, ATen's exp/log1p/sqrt (grain size 2048) and MKL's dot open an OpenMP region per op, and
on shared cores (data-loader workers, other jobs) each region's barrier can cost milliseconds: the
same 32k-element sqrt measured 8 ms instead of 80 us. The chunks themselves are the parallelism.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple, TypeVar

import torch

# Elements per chunk on CPU: big enough to amortise the ~2 us dispatch cost of each op, small enough
# that a worker's 8 float32 scratch rows (2 MiB) stay in L3. Tuned on 2-core AVX2 (docs/losses.md).
_CPU_CHUNK = 1 << 16
# More pool threads than this fight over the GIL between ops.
_MAX_WORKERS = 8
# Accelerators gain nothing from cache blocking but still bound the scratch memory.
_ACCEL_CHUNK = 1 << 22
# Below this many elements a single chunk runs on the caller's thread; no op goes parallel there anyway.
_INLINE_ELEMENTS = 2048

_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_pool_lock = threading.Lock()

S = TypeVar("S")
R = TypeVar("R")


def set_chunk_size(cpu: Optional[int] = None, accelerator: Optional[int] = None) -> Tuple[int, int]:
    """Tune the chunk sizes of the fused kernel (elements). Returns the previous ``(cpu, accelerator)``."""
    global _CPU_CHUNK, _ACCEL_CHUNK
    previous = (_CPU_CHUNK, _ACCEL_CHUNK)
    for name, value in (("cpu", cpu), ("accelerator", accelerator)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"chunk size {name!r} must be an int >= 1, got {value!r}")
    _CPU_CHUNK = cpu or _CPU_CHUNK
    _ACCEL_CHUNK = accelerator or _ACCEL_CHUNK
    return previous


def _chunk_size(device: torch.device) -> int:
    """Elements per chunk on ``device`` (the current setting)."""
    return _CPU_CHUNK if device.type == "cpu" else _ACCEL_CHUNK


def _drop_pool_after_fork() -> None:
    global _pool, _pool_size
    _pool, _pool_size = None, 0  # the child has none of the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_pool_after_fork)


def _omp_set_num_threads() -> Optional[Callable[[int], None]]:
    """``omp_set_num_threads`` of the OpenMP runtime torch uses (its bundled libgomp first), or None."""
    candidates: List[Optional[str]] = []
    libdir = os.path.join(os.path.dirname(torch.__file__), "lib")
    if os.path.isdir(libdir):
        candidates += [os.path.join(libdir, f) for f in sorted(os.listdir(libdir)) if f.startswith(("libgomp", "libiomp", "libomp"))]
    candidates.append(None)  # whatever runtime is in the global namespace
    for path in candidates:
        try:
            fn = getattr(ctypes.CDLL(path), "omp_set_num_threads")
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = None
        return fn
    return None


def _single_threaded_ops() -> None:
    """Pool-thread initializer: make every ATen/MKL op on this thread run inline."""
    torch.get_num_threads()  # let ATen initialise this thread's settings first, or it would override ours
    setter = _omp_set_num_threads()
    if setter is not None:
        setter(1)


def _workers(chunks: int, numel: int, device: torch.device) -> int:
    """Pool threads to use; 0 means run on the caller's thread."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads <= 1 or numel <= _INLINE_ELEMENTS:
        return 0
    return max(1, min(threads, _MAX_WORKERS, chunks))


def _get_pool(size: int) -> ThreadPoolExecutor:
    """The shared pool, grown (replaced) when fewer than ``size`` threads are available."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="yolo-focal-loss",
                                       initializer=_single_threaded_ops)
            _pool_size = size
        return _pool


def _map_chunks(count: int, run: Callable[[int, S], R], make_scratch: Callable[[], S],
                workers: int) -> List[Optional[R]]:
    """``[run(i, scratch) for i in range(count)]`` on ``workers`` pool threads (0: on the caller's thread)."""
    out: List[Optional[R]] = [None] * count
    counter = itertools.count()

    def loop() -> None:
        with torch.no_grad():  # grad mode is thread-local; nothing here is differentiated
            scratch = make_scratch()
            for i in iter(counter.__next__, None):
                if i >= count:
                    return
                out[i] = run(i, scratch)

    if workers == 0:
        loop()
        return out
    pool = _get_pool(workers)
    for fut in [pool.submit(loop) for _ in range(workers)]:
        fut.result()
    return out
