"""One sweep trial in its own interpreter: ``python -m yolo_focal_plugin.sweep.runner [options] -- <yolov5 train args>``.

``yolov5.train`` is imported (patched by the plugin, which the runner also installs explicitly, so
a wheel install without the ``.pth`` start-up hook works too) and its ``main()`` is called like its
own ``__main__`` block, with a fresh ``Callbacks()`` (the fork's default instance is shared between
runs). Compared with a plain ``python -m yolov5.train``, the runner also:

* sets torch's thread count (``--threads``), so ``--n-jobs K`` trials do not oversubscribe the cores;
* exits when its parent (the sweep worker) dies, so a SIGKILLed sweep leaves no orphan training;
* writes ``--status-file`` (JSON: ``ok``, ``error``), so the sweep records why a trial failed;
* with ``--check``, only parses the yolov5 arguments (the sweep checks pass-through flags this way
  before training anything) and prints the plugin's loss names.

Fault injection for tests: ``YOLO_FOCAL_SWEEP_FAULTS='{"<unit key>": "crash" | "nan" | "hang"}'``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
import traceback
from typing import Any, List, Optional

FAULTS_ENV = "YOLO_FOCAL_SWEEP_FAULTS"


def _watch_parent(parent: int, interval: float = 1.0) -> None:
    def loop() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(137)

    threading.Thread(target=loop, name="yolo-focal-parent-watch", daemon=True).start()


def _write_status(path: Optional[str], **data: Any) -> None:
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:500]


def _fault(key: Optional[str]) -> Optional[str]:
    raw = os.environ.get(FAULTS_ENV)
    if not raw or not key:
        return None
    try:
        return json.loads(raw).get(key)
    except (ValueError, AttributeError):
        return None


def _poison(model: Any, ni: int, *args: Any) -> None:
    """Injected NaN: weights become NaN after the first step, as in a diverging run."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.fill_(math.nan)


def known_losses() -> List[str]:
    """The plugin's loss names plus ``bce`` (``hyp.loss_names``, the one list)."""
    from ..hyp import loss_names

    return list(loss_names())


def parse_yolov5_args(train_args: List[str]) -> Any:
    """yolov5.train's own argparse over ``train_args`` (SystemExit on a bad flag, as in yolov5)."""
    import yolov5.train as yolov5_train

    saved = sys.argv
    sys.argv = ["yolov5 train", *train_args]
    try:
        return yolov5_train.parse_opt(False)
    finally:
        sys.argv = saved


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        split = argv.index("--")
        own, train_args = argv[:split], argv[split + 1:]
    else:
        own, train_args = argv, []
    parser = argparse.ArgumentParser(prog="python -m yolo_focal_plugin.sweep.runner")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--unit-key", default=None)
    parser.add_argument("--status-file", default=None)
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is no longer our parent")
    parser.add_argument("--check", action="store_true", help="parse the yolov5 arguments and exit")
    ns = parser.parse_args(own)

    if ns.parent:
        _watch_parent(ns.parent)
    if ns.threads > 0:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(ns.threads)
    try:
        fault = _fault(ns.unit_key)
        if fault == "crash":
            raise RuntimeError(f"injected crash for {ns.unit_key} ({FAULTS_ENV})")
        if fault == "hang":
            while True:
                time.sleep(1)

        import torch

        if ns.threads > 0:
            torch.set_num_threads(ns.threads)

        import yolo_focal_plugin

        yolo_focal_plugin.install()  # idempotent; also covers an install without the .pth hook
        if ns.check:
            parse_yolov5_args(train_args)
            print(json.dumps({"ok": True, "losses": known_losses(), "plugin": yolo_focal_plugin.installed()}))
            return 0

        import yolov5.train as yolov5_train
        from yolov5.utils.callbacks import Callbacks

        opt = parse_yolov5_args(train_args)
        callbacks = Callbacks()
        if fault == "nan":
            callbacks.register_action("on_train_batch_end", name="yolo_focal_injected_nan", callback=_poison)
        yolov5_train.main(opt, callbacks=callbacks)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if code:
            _write_status(ns.status_file, ok=False, error=f"yolov5 train exited with status {code} (bad arguments?)")
        else:
            _write_status(ns.status_file, ok=True)
        return code
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded, then re-raised as a status
        traceback.print_exc()
        _write_status(ns.status_file, ok=False, error=_error_text(exc))
        sys.stderr.flush()
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    _write_status(ns.status_file, ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
