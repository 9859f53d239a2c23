"""``yolov5 train --evolve`` with the plugin's ``fl_*`` keys (``../shared/YOLOV5-AUDIT.md`` section 5).

Stock YOLOv5 7.0.14 breaks on hyp keys its evolve table does not know: a numeric new key
(``fl_alpha``) raises ``KeyError`` in generation 2, a string key (``fl_loss: focal``) raises
``TypeError`` in generation 1 (``'%20.5g' % 'focal'``), and ``fl_gamma`` is never mutated (gain 0).

The fix recompiles ``main()`` from yolov5's own source with three lines changed, each found by an
exact anchor (nothing is patched when an anchor is missing: then ``--evolve`` with ``fl_*`` keys
stops at once with a message that points to ``yolo-focal sweep``):

1. after the hyp is read: ``hyp, meta, held = _yolo_focal_evolve.prepare(hyp, meta, opt)``
   validates the ``fl_*`` keys (a bad one stops the run before generation 1), teaches ``meta``
   the numeric keys (:data:`PLUGIN_META`), and moves every key that cannot be evolved - strings
   such as ``fl_loss``/``fl_apply``/``fl_norm``/``fl_assigner``, ``fl_alpha: auto`` or a per-class
   list, ``fl_alpha: -1`` (disabled), and keys without a meta entry - out of the evolved vector;
2. ``train(hyp.copy(), ...)`` becomes ``train(_yolo_focal_evolve.merge(hyp, held), ...)``:
   every generation trains with the held keys re-injected;
3. after ``print_mutation(...)``: ``_yolo_focal_evolve.annotate(save_dir, held)`` appends the
   held keys to ``hyp_evolve.yaml``, so the result is a complete, ready ``--hyp``;
4. ``plot_evolve(evolve_csv)`` becomes ``_yolo_focal_evolve.plot(evolve_csv, hyp)``: yolov5's plot
   has a fixed 6 x 5 grid and raises ``ValueError`` past 30 hyp keys (the plugin's keys make 31+).

``evolve.csv`` keeps only numeric columns, so YOLOv5's ``np.loadtxt`` and ``print_mutation`` work.
YOLOv5 mutates by multiplying (``x * v``): a key at 0 stays at 0. Start from a hyp with
``fl_gamma > 0`` to evolve gamma, or use ``yolo-focal sweep`` to compare gammas including 0.
"""
from __future__ import annotations

import functools
import logging
import math
import re
import sys
import types
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from ..hyp import FL_KEYS, HypError, parse_focal_hyp
from .compat import recompile_function
from .patching import LEDGER

__all__ = ["PLUGIN_META", "prepare", "merge", "annotate", "patch_evolve", "EvolveUnsupported"]

LOGGER = logging.getLogger("yolov5")

# key: (mutation gain 0-1, lower limit, upper limit), as in yolov5's meta table
PLUGIN_META: Dict[str, Tuple[float, float, float]] = {
    "fl_gamma": (1.0, 0.0, 3.0),  # stock: (0, 0.0, 2.0), i.e. never mutated
    "fl_alpha": (1.0, 0.05, 0.95),
    "fl_gamma_warmup": (1.0, 0.0, 10.0),
}

GLOBAL_NAME = "_yolo_focal_evolve"
HELD = "_yolo_focal_held"

ANCHOR_HYP = (
    "            if 'anchors' not in hyp:  # anchors commented in hyp.yaml\n"
    "                hyp['anchors'] = 3\n"
)
ANCHOR_TRAIN = "            results = train(hyp.copy(), opt, device, callbacks)\n"
ANCHOR_PLOT = "        plot_evolve(evolve_csv)\n"
ANCHOR_PRINT = re.compile(r"^( +)print_mutation\((?:[^\n]*), hyp\.copy\(\), save_dir, opt\.bucket\)\n", re.M)
SWEEP_HINT = (
    "use `yolo-focal sweep --gamma ... --alpha ...` to search the focal-loss keys "
    "(grid or TPE on Optuna, several seeds, a report against the BCE baseline)"
)


class EvolveUnsupported(HypError):
    """``--evolve`` cannot handle this hyp with this yolov5 (the source anchors were not found)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _evolvable(key: str, value: Any) -> bool:
    if not _is_number(value):
        return False
    if key == "fl_alpha" and float(value) == -1.0:  # -1 means "disabled": a flag, not a weight
        return False
    return True


def prepare(hyp: Dict[str, Any], meta: Mapping[str, Tuple[float, float, float]], opt: Any = None) -> Tuple[Dict[str, Any], Dict[str, Tuple[float, float, float]], Dict[str, Any]]:
    """Split ``hyp`` into the evolved numeric keys and the held ones; extend ``meta`` to match.

    Returns ``(hyp, meta, held)``: ``hyp`` (same dict, held keys removed) and ``meta`` have
    exactly the same keys, which is what yolov5's mutation code needs.
    """
    hyp.setdefault("fl_gamma", 0.0)  # stock meta has fl_gamma; a hyp without it would KeyError
    parse_focal_hyp(hyp)  # HypError names the key, the value and what is allowed
    meta = dict(meta)
    for key, spec in PLUGIN_META.items():
        if key in hyp and _evolvable(key, hyp[key]):
            meta[key] = spec
    held: Dict[str, Any] = {}
    for key in list(hyp):
        if key in meta and _evolvable(key, hyp[key]):
            continue
        held[key] = hyp.pop(key)
    missing = [k for k in meta if k not in hyp]
    for key in missing:
        del meta[key]
    evolved_fl = [k for k in hyp if k in FL_KEYS]
    parts = [f"evolving {', '.join(f'{k}={hyp[k]:g}' for k in evolved_fl) or 'no fl_* key'}"]
    if held:
        parts.append(f"held fixed: {', '.join(f'{k}={v!r}' for k, v in held.items())}")
    if missing:
        parts.append(f"not in this hyp, not evolved: {', '.join(missing)}")
    LOGGER.info("yolo-focal-plugin: evolve: " + "; ".join(parts))
    if hyp.get("fl_gamma", 0.0) == 0.0:
        LOGGER.info(
            "yolo-focal-plugin: evolve: fl_gamma is 0 and evolve mutates by multiplying, so it stays 0 "
            "(stock BCE); start from a hyp with fl_gamma > 0, or " + SWEEP_HINT
        )
    return hyp, meta, held


def merge(hyp: Mapping[str, Any], held: Mapping[str, Any]) -> Dict[str, Any]:
    """One generation's hyp: the mutated numeric keys plus the held ones."""
    out = dict(hyp)
    out.update(held)
    return out


def annotate(save_dir: Any, held: Mapping[str, Any]) -> None:
    """Append the held keys to ``hyp_evolve.yaml`` (rewritten by yolov5 each generation)."""
    if not held:
        return
    path = Path(save_dir) / "hyp_evolve.yaml"
    if not path.is_file():
        return
    import yaml

    with open(path, "a") as f:
        f.write("# yolo-focal-plugin: keys held fixed during evolution (not mutated)\n")
        yaml.safe_dump(dict(held), f, sort_keys=False)


def _yolov5_attr(module: str, name: str) -> Any:
    """``name`` from the yolov5 this process runs: ``yolov5.<module>`` (pip fork) or ``<module>`` (a clone's
    top-level ``utils``, run as ``python train.py``, where ``yolov5`` may not even be installed)."""
    import importlib

    for qualified in ("yolov5." + module, module):
        loaded = sys.modules.get(qualified)
        if loaded is not None and hasattr(loaded, name):
            return getattr(loaded, name)
    return getattr(importlib.import_module("yolov5." + module), name)


def plot(evolve_csv: Any, hyp: Mapping[str, Any]) -> None:
    """yolov5's ``plot_evolve`` with as many panel rows as there are evolved keys.

    The results columns come first in ``evolve.csv`` (7 for detect, 12 for segment): the offset is
    the number of columns minus the number of evolved hyp keys.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    fitness = _yolov5_attr("utils.metrics", "fitness")
    hist2d = _yolov5_attr("utils.plots", "hist2d")

    evolve_csv = Path(evolve_csv)
    data = pd.read_csv(evolve_csv)
    keys = [str(x).strip() for x in data.columns]
    x = data.values
    first = max(0, len(keys) - len(hyp))
    f = fitness(x)
    j = int(f.argmax())
    n = len(keys) - first
    rows = max(1, math.ceil(n / 5))
    fig = plt.figure(figsize=(10, 2 * rows), tight_layout=True)
    print(f"Best results from row {j} of {evolve_csv}:")
    for i, k in enumerate(keys[first:]):
        v = x[:, first + i]
        mu = v[j]
        plt.subplot(rows, 5, i + 1)
        plt.scatter(v, f, c=hist2d(v, f, 20), cmap="viridis", alpha=0.8, edgecolors="none")
        plt.plot(mu, f.max(), "k+", markersize=15)
        plt.title(f"{k} = {mu:.3g}", fontdict={"size": 9})
        if i % 5 != 0:
            plt.yticks([])
        print(f"{k:>15}: {mu:.3g}")
    out = evolve_csv.with_suffix(".png")
    fig.savefig(out, dpi=200)
    plt.close(fig)
    print(f"Saved {out}")


def _patched_source(source: str) -> Optional[str]:
    """``main``'s source with the three changes, or None if any anchor is not found exactly once."""
    if (
        source.count(ANCHOR_HYP) != 1
        or source.count(ANCHOR_TRAIN) != 1
        or source.count(ANCHOR_PLOT) != 1
        or len(ANCHOR_PRINT.findall(source)) != 1
    ):
        return None
    if GLOBAL_NAME in source:
        return None  # already patched
    indent = "        "
    source = source.replace(
        ANCHOR_HYP,
        ANCHOR_HYP + f"{indent}hyp, meta, {HELD} = {GLOBAL_NAME}.prepare(hyp, meta, opt)  # yolo-focal-plugin\n",
    )
    source = source.replace(
        ANCHOR_TRAIN,
        f"            results = train({GLOBAL_NAME}.merge(hyp, {HELD}), opt, device, callbacks)  # yolo-focal-plugin\n",
    )
    source = source.replace(ANCHOR_PLOT, f"        {GLOBAL_NAME}.plot(evolve_csv, hyp)  # yolo-focal-plugin\n")
    source = ANCHOR_PRINT.sub(
        lambda m: m.group(0) + f"{m.group(1)}{GLOBAL_NAME}.annotate(save_dir, {HELD})  # yolo-focal-plugin\n",
        source,
    )
    return source


def _needs_plugin(hyp_path: Any) -> bool:
    """True if the hyp has keys stock evolve cannot handle (``hyp.plugin_keys``)."""
    from ..hyp import plugin_keys
    from ..yolo_yaml import load_hyp

    try:
        return bool(plugin_keys(load_hyp(hyp_path)))
    except ValueError:  # unreadable: yolov5 reports it in its own words
        return False


def _guard(train_module: types.ModuleType, reason: str) -> None:
    """No recompiled main: ``--evolve`` with plugin keys stops at once with a clear message."""
    original = train_module.main

    @functools.wraps(original)
    def main(opt: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(opt, "evolve", None) and _needs_plugin(getattr(opt, "hyp", "")):
            raise EvolveUnsupported(
                f"yolov5 --evolve cannot mutate the plugin's fl_* keys with this yolov5 ({reason}); {SWEEP_HINT}"
            )
        return original(opt, *args, **kwargs)

    LEDGER.set(train_module, "main", main, f"{train_module.__name__}.main (evolve guard)")


def patch_evolve(train_module: types.ModuleType) -> bool:
    """Make ``train_module.main``'s ``--evolve`` handle the ``fl_*`` keys. True if recompiled, False if guarded."""
    original = train_module.main
    try:
        main = recompile_function(original, _patched_source)
    except (OSError, TypeError) as exc:
        _guard(train_module, f"no source for main(): {exc}")
        return False
    if main is None:
        _guard(train_module, "its main() does not have the evolve code the plugin was verified against")
        return False
    # the recompiled main refers to this module by GLOBAL_NAME; set it before main can run
    LEDGER.set(train_module, GLOBAL_NAME, sys.modules[__name__], f"{train_module.__name__}.{GLOBAL_NAME}")
    main.__wrapped__ = original  # type: ignore[attr-defined]
    main._yolo_focal_evolve = True  # type: ignore[attr-defined]
    LEDGER.set(train_module, "main", main, f"{train_module.__name__}.main (evolve with fl_* keys)")
    return True
