"""``yolo-focal demo``: BCE vs YOLOv5's focal setting vs the plugin's varifocal hyp, on generated data.

Generates a long-tailed synthetic dataset (no downloads), trains yolov5n from scratch once per
setting and training seed (a real ``python -m yolov5.train`` subprocess each, the plugin active
through its start-up hook), then prints the seeds side by side with whether the expected ordering
held in each (``seeds_table``), and writes per seed a ``yolo-focal compare`` table and a PNG of mAP per
epoch. A few CPU epochs show the mechanics, not a verdict: ``yolo-focal sweep`` with several
seeds is the tool for a verdict on your own data.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from ..hyp import resolve_hyp_path
from ..run_results import RESULTS_FILE, read_results_csv
from ..yolo_yaml import read_yaml_mapping
from .synth import SynthConfig, generate, generated_dataset

__all__ = ["DemoSetting", "DEFAULT_SETTINGS", "EXPECTED_ORDER", "ROBUST_PAIRS", "ORDER_METRICS", "OrderBreak",
           "order_pairs", "ordering_breaks", "seeds_table", "run_demo", "run_demo_seeds", "demo_dataset"]


@dataclass(frozen=True)
class DemoSetting:
    name: str
    label: str
    hyp_overrides: Dict[str, object]
    base_hyp: Optional[str] = None  # bundled hyp name; None = yolov5's hyp.scratch-low.yaml


DEFAULT_SETTINGS = (
    DemoSetting("bce", "BCE (stock YOLOv5, fl_gamma 0)", {}),
    DemoSetting("yolov5_focal", "YOLOv5 focal setting (fl_gamma 1.5 only)", {"fl_gamma": 1.5}),
    DemoSetting("plugin_varifocal", "plugin hyp.varifocal.yaml (objectness only)", {}, base_hyp="hyp.varifocal.yaml"),
)


# What the demo is expected to show, best first: the order of the means in the README's evidence
# (3 seeds, both datasets; BCE vs varifocal was within seed noise there, YOLOv5 focal far below).
# Exact figures after 30 epochs from scratch differ between machines (#12 reports best mAP50
# 0.247 / 0.023 / 0.202 on an Intel Xeon where the README had 0.435 / 0.092 / 0.271 on an AMD EPYC,
# same command and seed), so the ordering is the claim the demo checks, and it says when a seed breaks it.
EXPECTED_ORDER: Tuple[str, ...] = ("bce", "plugin_varifocal", "yolov5_focal")
# The part of that order the evidence finds beyond seed noise: YOLOv5's focal setting far below both
# (longtail64: 0.161 ± 0.017 mAP50-95 vs BCE 0.307 ± 0.022, varifocal 0.282 ± 0.032). BCE vs
# varifocal was within noise (p 0.33), and one demo seed can put varifocal first, as seed 1 did on
# mAP50 in the README's two-seed demo run; the demo reports both checks, this one as what to expect.
ROBUST_PAIRS: Tuple[Tuple[str, str], ...] = (("bce", "yolov5_focal"), ("plugin_varifocal", "yolov5_focal"))
# metrics the ordering is checked on: compare's keys of a run's best epoch
ORDER_METRICS: Tuple[str, ...] = ("mAP50", "mAP50-95")


def _stock_hyp_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("yolov5")
    if spec is None or spec.origin is None:
        raise RuntimeError("yolov5 is not installed: pip install 'yolo-focal-plugin[yolov5]'")
    return Path(spec.origin).parent / "data" / "hyps" / "hyp.scratch-low.yaml"


def setting_hyp_text(setting: DemoSetting) -> str:
    """The hyp YAML a setting trains with: its base hyp plus its overrides."""
    base = resolve_hyp_path(setting.base_hyp) if setting.base_hyp else _stock_hyp_path()
    if base is None:
        raise FileNotFoundError(f"bundled hyp {setting.base_hyp!r} not found")
    hyp = read_yaml_mapping(base)
    hyp.update(setting.hyp_overrides)
    return yaml.safe_dump(hyp, sort_keys=False)


def write_hyp(setting: DemoSetting, out_dir: Path) -> Path:
    path = out_dir / f"hyp.{setting.name}.yaml"
    path.write_text(setting_hyp_text(setting))
    return path


def finished_run(run_dir: Path, hyp_file: Path, setting: DemoSetting, epochs: int) -> bool:
    """True if ``run_dir`` already holds all ``epochs`` of this exact hyp (so it need not train again).

    The hyp written next to the run must match byte for byte: a changed bundled hyp or override
    means a new experiment, not a finished one.
    """
    if not hyp_file.is_file() or hyp_file.read_text() != setting_hyp_text(setting):
        return False
    results = read_results_csv(run_dir / RESULTS_FILE)
    return results is not None and len(results.rows) == epochs


def train_command(data: Path, hyp: Path, project: Path, name: str, epochs: int, img: int, batch: int, seed: int) -> List[str]:
    return [
        sys.executable, "-m", "yolov5.train",
        "--data", str(data), "--cfg", "yolov5n.yaml", "--weights", "", "--hyp", str(hyp),
        "--img", str(img), "--epochs", str(epochs), "--batch-size", str(batch), "--workers", "0",
        "--device", "cpu", "--project", str(project), "--name", name, "--exist-ok", "--seed", str(seed),
        "--noplots",
    ]


def demo_dataset(img: int, seed: int) -> SynthConfig:
    """Long-tailed (20x), small objects; big enough that yolov5n from scratch learns in 30 CPU epochs."""
    return SynthConfig(n_train=384, n_val=96, img_size=img, nc=5, imbalance=20.0, min_objects=1, max_objects=4,
                       min_size=max(8, img * 10 // 64), max_size=max(16, img * 26 // 64), seed=100 + seed)


def _prepare_jobs(out_dir: Path, epochs: int, batch: int, seed: int, data_cfg: SynthConfig, settings: Sequence[DemoSetting],
                  reuse: bool) -> Tuple[List[Path], List[Tuple[str, List[str], Path]]]:
    """Write the dataset and hyps of one seed; return its run directories and the (label, command, log) to train."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # reuse: never rewrite images a finished run (or another process) may still be reading
    data = (reuse and generated_dataset(out_dir / "data", data_cfg)) or generate(out_dir / "data", data_cfg)
    print(f"dataset: {data} ({data_cfg.n_train} train / {data_cfg.n_val} val images of {data_cfg.img_size} px, "
          f"nc={data_cfg.nc}, rarest class {data_cfg.imbalance:g}x rarer than the most common)", flush=True)
    run_dirs = [out_dir / "runs" / s.name for s in settings]
    jobs = []
    for setting, run_dir in zip(settings, run_dirs):
        label = f"{setting.label} [seed {seed}]"
        if reuse and finished_run(run_dir, out_dir / f"hyp.{setting.name}.yaml", setting, epochs):
            print(f"'{label}': finished run found, not retrained ({run_dir})", flush=True)
            continue
        cmd = train_command(data, write_hyp(setting, out_dir), out_dir / "runs", setting.name, epochs,
                            data_cfg.img_size, batch, seed)
        jobs.append((label, cmd, out_dir / f"{setting.name}.log"))
    return run_dirs, jobs


def _train(jobs: Sequence[Tuple[str, List[str], Path]], epochs: int, parallel: int) -> None:
    """Run the training commands ``parallel`` at a time (torch threads divided); stop all at the first failure."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // parallel))}
    pending = list(enumerate(jobs, 1))
    running: List[tuple] = []
    start = time.time()
    while pending or running:
        while pending and len(running) < parallel:
            i, (label, cmd, log) = pending.pop(0)
            print(f"[{i}/{len(jobs)}] training '{label}' for {epochs} epochs (log: {log})", flush=True)
            handle = open(log, "w")
            running.append((label, subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env), handle, log))
        time.sleep(1)
        for entry in list(running):
            label, proc, handle, log = entry
            if proc.poll() is None:
                continue
            handle.close()
            running.remove(entry)
            if proc.returncode != 0:
                for _, other, other_handle, _ in running:
                    other.terminate()
                    other_handle.close()
                raise RuntimeError(f"training '{label}' failed (exit {proc.returncode}); see {log}")
            print(f"      '{label}' done after {time.time() - start:.0f} s", flush=True)


def run_demo(
    out_dir: Path,
    epochs: int = 30,
    img: int = 64,
    batch: int = 32,
    seed: int = 0,
    data_cfg: Optional[SynthConfig] = None,
    settings=DEFAULT_SETTINGS,
    parallel: int = 2,
    reuse: bool = False,
) -> List[Path]:
    """Train every setting, ``parallel`` at a time (one torch thread each); return the run directories.

    ``reuse``: keep a run that already finished all ``epochs`` with the same hyp (``finished_run``),
    so an interrupted or extended experiment trains only what is missing.
    """
    return run_demo_seeds(out_dir, [seed], epochs, batch, data_cfg or demo_dataset(img, seed), settings, parallel,
                          reuse, per_seed_dirs=False)[seed]


def run_demo_seeds(
    out_dir: Path,
    seeds: Sequence[int],
    epochs: int,
    batch: int,
    data_cfg: SynthConfig,
    settings: Sequence[DemoSetting],
    parallel: int = 2,
    reuse: bool = False,
    per_seed_dirs: bool = True,
) -> Dict[int, List[Path]]:
    """``run_demo`` for several training seeds (same data, at ``data_cfg.img_size``), all trainings in one
    queue: with one setting to train per seed, seeds still run side by side. Seed ``n`` lives in
    ``out_dir/seed<n>``."""
    out_dir = Path(out_dir).resolve()
    run_dirs: Dict[int, List[Path]] = {}
    jobs: List[Tuple[str, List[str], Path]] = []
    for seed in seeds:
        seed_dir = out_dir / f"seed{seed}" if per_seed_dirs else out_dir
        run_dirs[seed], seed_jobs = _prepare_jobs(seed_dir, epochs, batch, seed, data_cfg, settings, reuse)
        jobs += seed_jobs
    _train(jobs, epochs, parallel)
    return run_dirs


def _short(setting: DemoSetting) -> str:
    """The label without its parenthesised detail: "YOLOv5 focal setting", for sentences."""
    return setting.label.split(" (")[0]


@dataclass(frozen=True)
class OrderBreak:
    """One place where a seed contradicts an expected order: ``higher`` should have beaten ``lower`` on ``metric``."""
    seed: int
    metric: str
    higher: DemoSetting
    lower: DemoSetting
    higher_value: float
    lower_value: float

    def describe(self) -> str:
        return (f"seed {self.seed}, {self.metric}: {_short(self.higher)} {self.higher_value:.3f} is not above "
                f"{_short(self.lower)} {self.lower_value:.3f}")


def order_pairs(order: Sequence[str]) -> List[Tuple[str, str]]:
    """``("a", "b", "c")`` -> ``[("a", "b"), ("b", "c")]``: a best-first order as (higher, lower) pairs."""
    return list(zip(order, order[1:]))


def ordering_breaks(settings: Sequence[DemoSetting], best_by_seed: Mapping[int, Sequence[Mapping[str, float]]],
                    pairs: Sequence[Tuple[str, str]] = tuple(order_pairs(EXPECTED_ORDER)),
                    metrics: Sequence[str] = ORDER_METRICS) -> Optional[List[OrderBreak]]:
    """Every (seed, metric, pair) where the pair's ``higher`` setting's best-epoch value is not above ``lower``'s.

    ``best_by_seed[seed][i]`` is the best epoch's metrics of ``settings[i]`` (compare's ``run["best"]``);
    ``pairs`` are (higher, lower) setting names. Pairs naming a setting that was not trained are
    skipped; None when no pair is left (nothing to check). A tie or a NaN counts as a break:
    neither is "better".
    """
    position = {s.name: i for i, s in enumerate(settings)}
    checked = [(position[hi], position[lo]) for hi, lo in pairs if hi in position and lo in position]
    if not checked:
        return None
    breaks: List[OrderBreak] = []
    for seed, bests in best_by_seed.items():
        for metric in metrics:
            for hi, lo in checked:
                a, b = bests[hi][metric], bests[lo][metric]
                if not a > b:  # written this way so that NaN breaks the order too
                    breaks.append(OrderBreak(seed, metric, settings[hi], settings[lo], a, b))
    return breaks


def _ranks(values: Sequence[float]) -> List[int]:
    """1 = highest; NaN last. Equal values share the better place."""
    key = [-v if not math.isnan(v) else math.inf for v in values]
    return [1 + sum(k < mine for k in key) for mine in key]


def seeds_table(settings: Sequence[DemoSetting], best_by_seed: Mapping[int, Sequence[Mapping[str, float]]],
                expected_order: Sequence[str] = EXPECTED_ORDER, robust_pairs: Sequence[Tuple[str, str]] = ROBUST_PAIRS,
                epochs: Optional[int] = None) -> str:
    """Markdown: one row per setting, best mAP50 and mAP50-95 of each seed side by side, their mean and
    the setting's place in each seed; below it, whether ``expected_order`` held in every seed, whether
    its ``robust_pairs`` (the part beyond seed noise) did, and a note that exact figures vary by machine.

    ``best_by_seed[seed][i]`` holds ``settings[i]``'s best-epoch ``mAP50`` and ``mAP50-95``.
    """
    seeds = list(best_by_seed)
    if not seeds:
        raise ValueError("no seeds to tabulate")
    for seed, bests in best_by_seed.items():
        if len(bests) != len(settings):
            raise ValueError(f"seed {seed}: {len(bests)} results for {len(settings)} settings")
    several = len(seeds) > 1  # a mean of one seed would repeat its column
    header = ["setting"]
    for metric in ORDER_METRICS:
        header += [f"best {metric} seed {seed}" for seed in seeds] + ([f"{metric} mean"] if several else [])
    header += [f"place seed {seed}" for seed in seeds]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    # place by mAP50-95 (what the best epoch is chosen by, mostly); mAP50's place added where it differs
    places = {seed: {m: _ranks([b[m] for b in best_by_seed[seed]]) for m in ORDER_METRICS} for seed in seeds}
    for i, setting in enumerate(settings):
        cells = [setting.label]
        for metric in ORDER_METRICS:
            values = [best_by_seed[seed][i][metric] for seed in seeds]
            cells += [f"{v:.3f}" for v in values] + ([f"{sum(values) / len(values):.3f}"] if several else [])
        for seed in seeds:
            p50_95, p50 = places[seed]["mAP50-95"][i], places[seed]["mAP50"][i]
            cells.append(str(p50_95) if p50 == p50_95 else f"{p50_95} (mAP50: {p50})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Best epoch: the one yolov5's best.pt comes from (fitness 0.1 mAP50 + 0.9 mAP50-95). "
              "Place: 1 = highest best mAP50-95 in that seed; mAP50's place in brackets where it differs."]
    by_name = {s.name: s for s in settings}

    def verdict(claim: str, breaks: Optional[List[OrderBreak]]) -> None:
        """Append whether ``claim`` held in every seed; nothing when it names settings not trained here."""
        if breaks is None:
            return
        if breaks:
            lines.append(f"{claim} did NOT hold in every seed: " + "; ".join(b.describe() for b in breaks) + ".")
        elif several:
            lines.append(f"{claim} held in every seed ({', '.join(str(seed) for seed in seeds)}).")
        else:
            lines.append(f"{claim} held in seed {seeds[0]} (one seed only: --seeds 0,1 shows whether it repeats).")

    metrics = " and ".join(f"best {m}" for m in ORDER_METRICS)
    # the claim first: the pairs the evidence separates beyond seed noise, then the full order of its means
    robust = [(hi, lo) for hi, lo in robust_pairs if hi in by_name and lo in by_name]
    if robust:
        pairs_text = " and ".join(f"{_short(by_name[hi])} > {_short(by_name[lo])}" for hi, lo in robust)
        verdict(f"Expected (beyond seed noise in the README's 3-seed evidence): {pairs_text}, on {metrics}:",
                ordering_breaks(settings, best_by_seed, robust))
    present = [n for n in expected_order if n in by_name]
    if len(present) > 1:
        verdict(f"Full order of the evidence's means, {' > '.join(_short(by_name[n]) for n in present)}:",
                ordering_breaks(settings, best_by_seed, order_pairs(present)))
        if robust:
            lines.append("Its other steps were within seed noise in the evidence, so they can flip from one seed to the next.")
    span = f"{epochs} epochs" if epochs else "a few epochs"
    lines.append(f"Exact figures vary by machine: {span} from scratch are the steep part of the learning curve and "
                 "float summation differs between CPUs and torch builds, so the same command and seed give other "
                 "numbers elsewhere. What to expect is the order, not the figures; `yolo-focal demo --evidence` "
                 "(3 seeds, two datasets, 50-60 epochs) is the evidence.")
    return "\n".join(lines) + "\n"
