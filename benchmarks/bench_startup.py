"""What the ``.pth`` start-up hook costs every Python process: ``python -c pass`` with and without it.

    python benchmarks/bench_startup.py              # 20 rounds
    python benchmarks/bench_startup.py --rounds 50

Runs the interpreter this script runs under (use the environment the plugin is installed in), once
with the plugin active and once with ``YOLO_FOCAL_DISABLE=1`` per round, interleaved so that load on
a shared machine hits both alike, and prints the median of each, the difference and the ratio.
Issue #15 measured 92 ms against 20 ms before the start-up path was trimmed; the target is a
difference of a few ms. ``tests/test_startup.py`` guards the cause (which modules start-up imports),
not the time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List


def _time_once(env: Dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - start


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="interpreter starts per variant (default 20)")
    args = parser.parse_args(argv)
    active = {k: v for k, v in os.environ.items() if k != "YOLO_FOCAL_DISABLE"}
    disabled = {**active, "YOLO_FOCAL_DISABLE": "1"}
    check = subprocess.run([sys.executable, "-c", "import sys; print('yolo_focal_plugin' in sys.modules)"],
                           env=active, capture_output=True, text=True, check=True).stdout.strip()
    if check != "True":
        sys.exit(f"the start-up hook is not active for {sys.executable}: install the plugin in this environment")
    _time_once(active), _time_once(disabled)  # warm the page cache and the .pyc files
    times: Dict[str, List[float]] = {"plugin": [], "disabled": []}
    for _ in range(args.rounds):
        times["plugin"].append(_time_once(active))
        times["disabled"].append(_time_once(disabled))
    plugin, base = statistics.median(times["plugin"]), statistics.median(times["disabled"])
    print(f"python -c pass, median of {args.rounds} ({sys.executable}):")
    print(f"  with the plugin          {plugin * 1e3:7.1f} ms")
    print(f"  YOLO_FOCAL_DISABLE=1     {base * 1e3:7.1f} ms")
    print(f"  difference               {(plugin - base) * 1e3:+7.1f} ms   ratio {plugin / base:.2f}x")


if __name__ == "__main__":
    main()
