"""``yolo-focal demo --evidence``: does focal loss help YOLOv5 on imbalanced data? Measured, per seed.

Trains yolov5n from scratch on a generated long-tailed dataset once per (setting, seed), two at a
time, and tabulates the best-epoch mAP50-95 / mAP50 (the epoch ``best.pt`` comes from) as mean ±
std over seeds, the difference to stock BCE with Welch's t-test (the sweep report's test), and the
per-class mAP50-95, since rare classes are what focal loss is meant to help. Each setting is also
tested against its *matched* BCE (issue #12): the setting of the same table that trains BCE with the
same values except the loss (:func:`yolo_focal_plugin.hyp.matched_bce`: the same gains and assigner). Every setting is a
plain hyp a user can pass to ``yolov5 train --hyp``; each is written next to its runs.

Two datasets, so that a default is not fitted to one kind of data (``EVIDENCE_DATASETS``): the
demo's (64 px, 5 classes, 20x class imbalance, 1 : 7 positive : negative anchor slots) and a
sparser one with smaller objects (96 px, 4 classes, 50x, 1 : 25).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from .compare import best_index, read_results
from .demo import DemoSetting, demo_dataset, run_demo_seeds, setting_hyp_text
from .synth import SynthConfig
from ..hyp import PLAIN_BCE, matched_bce, parse_focal_hyp
from ..run_results import RESULTS_FILE, read_results_csv
from ..sweep.stats import mean, std, welch

__all__ = ["EVIDENCE_SETTINGS", "EVIDENCE_DATASETS", "EvidenceDataset", "Row", "select_settings", "run_evidence",
           "summarise", "plot_evidence", "matched_baselines", "load_evidence", "write_evidence"]

# Each setting isolates one candidate cause of the mAP loss, or one candidate fix
# (README, "Does focal loss help?"). The first is the reference every other row is tested against.
EVIDENCE_SETTINGS = (
    DemoSetting("bce", "BCE (stock YOLOv5)", {}),
    DemoSetting("yolov5_focal", "YOLOv5 focal: fl_gamma 1.5, alpha 0.25, both branches", {"fl_gamma": 1.5}),
    DemoSetting("yolov5_focal_gains", "same, obj gain x10 and cls gain x6 (loss scale restored)",
                {"fl_gamma": 1.5, "obj": 10.0, "cls": 3.0}),
    DemoSetting("varifocal_obj", "varifocal on objectness only (hyp.varifocal.yaml)", {}, base_hyp="hyp.varifocal.yaml"),
    DemoSetting("focal_scaled", "focal, both branches, obj gain x5 and cls gain x6 (hyp.focal.yaml, hyp.focal-scaled.yaml)",
                {}, base_hyp="hyp.focal-scaled.yaml"),
    # gamma < 1: YOLOv5's own FocalLoss class (registered as fl_loss: yolov5_focal) against the plugin's
    DemoSetting("yolov5_focal_g05_stock", "YOLOv5's own FocalLoss class, gamma 0.5, alpha 0.25 (stock code)",
                {"fl_loss": "yolov5_focal", "fl_gamma": 0.5, "fl_alpha": 0.25}),
    DemoSetting("focal_g05", "the plugin's FocalLoss, gamma 0.5, alpha 0.25 (same setting)", {"fl_gamma": 0.5}),
    # Like with like (issue #12): each focal row beside the BCE row with the same gains and assigner.
    DemoSetting("bce_gains", "BCE with hyp.focal-scaled.yaml's gains (obj 5.0, cls 3.0): focal_scaled's matched BCE",
                {"obj": 5.0, "cls": 3.0}),
    DemoSetting("retina_bce_gains", "BCE, RetinaNet IoU assigner (hyp.retina.yaml), obj 5.0, cls 3.0",
                {"obj": 5.0, "cls": 3.0}, base_hyp="hyp.retina.yaml"),
    # Shipped hyps not covered above (the unseen-data check runs every shipped hyp). focal_obj is what
    # hyp.focal.yaml was before the evidence gave it focal_scaled's values.
    DemoSetting("focal_obj", "focal 1.5 / 0.25 on objectness, YOLOv5's gains (hyp.focal.yaml before #12)",
                {"fl_apply": "obj", "obj": 1.0, "cls": 0.5}, base_hyp="hyp.focal.yaml"),
    DemoSetting("varifocal_gains", "varifocal on objectness, obj 5.0, cls 3.0: bce_gains's varifocal twin",
                {"obj": 5.0, "cls": 3.0}, base_hyp="hyp.varifocal.yaml"),
    DemoSetting("qfocal_both", "quality focal 1.5 on both branches, YOLOv5's gains (hyp.qfocal.yaml)", {},
                base_hyp="hyp.qfocal.yaml"),
    DemoSetting("retina_bce", "BCE, RetinaNet IoU assigner, YOLOv5's gains (hyp.retina.yaml)", {},
                base_hyp="hyp.retina.yaml"),
    DemoSetting("retina_focal_gains", "focal 1.5 / 0.25 both branches, RetinaNet assigner, obj 5.0, cls 3.0: "
                "retina_bce_gains's focal twin", {"fl_loss": "focal", "fl_gamma": 1.5, "fl_alpha": 0.25, "obj": 5.0,
                                                   "cls": 3.0}, base_hyp="hyp.retina.yaml"),
)


@dataclass(frozen=True)
class EvidenceDataset:
    """One generated dataset of the evidence, how it is trained, and the settings it runs by default.

    ``settings``: the setting names trained when ``--settings`` is not given (empty: all of
    ``EVIDENCE_SETTINGS``); BCE is always added as the reference.
    """
    name: str
    description: str
    config: SynthConfig
    epochs: int
    batch: int = 32
    settings: Tuple[str, ...] = ()


EVIDENCE_DATASETS: Dict[str, EvidenceDataset] = {
    d.name: d for d in (
        EvidenceDataset("longtail64", "the demo's: 64 px, 5 classes, rarest 20x rarer, objects 10-26 px, 1-4 per image",
                        demo_dataset(64, 0), 60),
        EvidenceDataset("small96", "sparser: 96 px, 4 classes, rarest 50x rarer, objects 6-16 px, 1-4 per image",
                        SynthConfig(n_train=320, n_val=128, img_size=96, nc=4, imbalance=50.0, min_objects=1,
                                    max_objects=4, min_size=6, max_size=16, seed=200), 50),
        # Transfer toward users' image sizes (issue #12): at 320 px YOLOv5's train.py scales the obj gain by
        # (320 / 640) ** 2 = 0.25 instead of 0.01 at 64 px. The demo's classes and imbalance with objects scaled
        # 5x; cut to 256 / 64 images and 30 epochs at batch 16 so that a run costs ~15 CPU minutes. The 2 x 2
        # of the 64 px finding: loss {BCE, focal both branches} x gains {stock, obj 5 / cls 3}.
        EvidenceDataset("longtail320", "transfer: 320 px, 5 classes, rarest 20x rarer, objects 50-130 px, 1-4 per image",
                        SynthConfig(n_train=256, n_val=64, img_size=320, nc=5, imbalance=20.0, min_objects=1,
                                    max_objects=4, min_size=50, max_size=130, seed=100), 30, batch=16,
                        settings=("yolov5_focal", "bce_gains", "focal_scaled")),
        # Never used to choose a value (issue #12): other classes, sizes, crowding and imbalance; trains the
        # shipped hyps only, so it checks what the README recommends on data nobody tuned on.
        EvidenceDataset("unseen64", "unseen: 64 px, 6 classes, rarest 40x rarer, objects 8-20 px, 2-6 per image",
                        SynthConfig(n_train=384, n_val=128, img_size=64, nc=6, imbalance=40.0, min_objects=2,
                                    max_objects=6, min_size=8, max_size=20, seed=300), 50,
                        settings=("focal_scaled", "varifocal_obj", "qfocal_both", "bce_gains", "retina_bce",
                                  "retina_bce_gains")),
    )
}


def select_settings(names: Optional[str], dataset: Optional[str] = None) -> List[DemoSetting]:
    """``"bce,varifocal_obj"`` -> those settings (BCE always first: it is the reference); None -> the
    dataset's default settings (all of them for a dataset that names none, or without a dataset)."""
    if not names:
        defaults = EVIDENCE_DATASETS[dataset].settings if dataset in EVIDENCE_DATASETS else ()
        if not defaults:
            return list(EVIDENCE_SETTINGS)
        names = ",".join(defaults)
    by_name = {s.name: s for s in EVIDENCE_SETTINGS}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown evidence setting(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    return [EVIDENCE_SETTINGS[0]] + [by_name[n] for n in dict.fromkeys(wanted) if n != EVIDENCE_SETTINGS[0].name]


def first_nan_epoch(run_dir: Path) -> Optional[int]:
    """The first epoch whose logged training loss is NaN/inf (None if none): the run diverged there."""
    table = read_results_csv(Path(run_dir) / RESULTS_FILE)
    if table is None:
        raise FileNotFoundError(f"{run_dir}: no {RESULTS_FILE}")
    for position, row in enumerate(table.rows):
        for j in table.loss_columns():
            value = table.number(row, j)  # a cell that is not a number is not a diverged loss
            if value is not None and not math.isfinite(value):
                return int(table.epoch(row, position))
    return None


@dataclass
class Row:
    setting: DemoSetting
    map50_95: List[float]
    map50: List[float]
    per_class: Dict[str, List[float]]
    nan_epochs: List[Optional[int]] = field(default_factory=list)
    hyp: Optional[Dict[str, object]] = None  # the hyp the runs trained with (None: unknown, no matched BCE)

    @property
    def is_bce(self) -> bool:
        """Trains plain BCE (no focal modulation, no alpha): it can be another setting's matched BCE."""
        return self.hyp is not None and parse_focal_hyp(self.hyp).loss == PLAIN_BCE

    def nan_note(self) -> str:
        """``""`` or e.g. ``"1 of 3 (from epoch 2)"``: seeds whose training loss became NaN."""
        hits = [e for e in self.nan_epochs if e is not None]
        if not hits:
            return ""
        return f"{len(hits)} of {len(self.nan_epochs)} (from epoch {', '.join(str(e) for e in hits)})"


def matched_baselines(rows: Sequence[Row]) -> Dict[str, Optional[Row]]:
    """setting name -> its matched BCE row in ``rows``: the BCE row (another one) whose
    :func:`~yolo_focal_plugin.hyp.matched_bce` equals the setting's. None for BCE rows themselves,
    rows of unknown hyp, and settings whose matched BCE was not trained in this table."""
    bce = [(b, matched_bce(b.hyp or {})) for b in rows if b.is_bce]
    out: Dict[str, Optional[Row]] = {}
    for row in rows:
        twin = None
        if row.hyp is not None and not row.is_bce:
            key = matched_bce(row.hyp)
            twin = next((b for b, b_key in bce if b_key == key), None)
        out[row.setting.name] = twin
    return out


def _delta_cells(row: Row, reference: Row) -> List[str]:
    test = welch(row.map50_95, reference.map50_95)
    diff = mean(row.map50_95) - mean(reference.map50_95)
    return [f"{diff:+.3f}", f"[{test.ci_low:+.3f}, {test.ci_high:+.3f}]" if test else "-", f"{test.p:.3f}" if test else "-"]


def summarise(rows: Sequence[Row]) -> str:
    """Markdown: one line per setting (mean ± std over seeds; Δ with Welch's 95% CI and p to the first
    row, stock BCE, and to the setting's matched BCE), then per class."""
    base = rows[0]
    matched = matched_baselines(rows)
    lines = ["| setting | seeds | best mAP50-95 | best mAP50 | Δ mAP50-95 vs BCE | 95% CI | p (Welch) "
             "| matched BCE | Δ vs matched BCE | 95% CI | p (Welch) | NaN loss |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for row in rows:
        cells = [row.setting.label, str(len(row.map50_95)),
                 f"{mean(row.map50_95):.3f} ± {std(row.map50_95):.3f}", f"{mean(row.map50):.3f} ± {std(row.map50):.3f}"]
        cells += ["(reference)", "", ""] if row is base else _delta_cells(row, base)
        twin = matched[row.setting.name]
        if twin is not None:
            cells += [twin.setting.name] + _delta_cells(row, twin)
        else:
            cells += ["(is BCE)" if row.is_bce else "-", "", "", ""]
        cells.append(row.nan_note())
        lines.append("| " + " | ".join(cells) + " |")
    classes = list(base.per_class)
    if classes:
        lines += ["", "Per-class mAP50-95 at the best epoch (mean over seeds; classes from most to least frequent):", "",
                  "| setting | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
        for row in rows:
            lines.append(f"| {row.setting.label} | " + " | ".join(f"{mean(row.per_class.get(c, [float('nan')])):.3f}"
                                                                   for c in classes) + " |")
    return "\n".join(lines) + "\n"


def plot_evidence(rows: Sequence[Row], path: Path, title: str = "") -> Path:
    """PNG: best mAP50-95 per setting (each seed a dot, mean ± std a bar) and per-class mAP50-95."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(rows[0].per_class)
    fig, (ax_all, ax_cls) = plt.subplots(1, 2, figsize=(13, 0.55 * len(rows) + 2.6),
                                         gridspec_kw={"width_ratios": [1, 1.3]})
    colours = plt.get_cmap("tab10").colors
    ys = list(range(len(rows)))[::-1]
    for y, row, colour in zip(ys, rows, colours):
        ax_all.barh(y, mean(row.map50_95), xerr=std(row.map50_95) if len(row.map50_95) > 1 else 0,
                    color=colour, alpha=0.35, capsize=3)
        diverged = [e is not None for e in row.nan_epochs] or [False] * len(row.map50_95)
        for value, nan in zip(row.map50_95, diverged):
            ax_all.plot([value], [y], "x" if nan else "o", color=colour, markersize=7 if nan else 5)
    ax_all.axvline(mean(rows[0].map50_95), color="grey", linestyle="--", linewidth=1)
    ax_all.set_yticks(ys, [r.setting.label for r in rows], fontsize=8)
    ax_all.set_xlabel("best mAP50-95 (dots: seeds, x: loss went NaN; bar: mean ± std)")
    width = 0.8 / max(1, len(rows))
    for k, (row, colour) in enumerate(zip(rows, colours)):
        xs = [c + (k - (len(rows) - 1) / 2) * width for c in range(len(classes))]
        ax_cls.bar(xs, [mean(row.per_class.get(c, [float("nan")])) for c in classes], width, color=colour,
                   label=row.setting.name)
    ax_cls.set_xticks(range(len(classes)), classes, fontsize=8)
    ax_cls.set_xlabel("class, most to least frequent")
    ax_cls.set_ylabel("mAP50-95 at the best epoch (mean over seeds)")
    ax_cls.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def run_evidence(out_dir: Path, seeds: Sequence[int] = (0, 1, 2), epochs: Optional[int] = None, img: Optional[int] = None,
                 settings: Optional[Sequence[DemoSetting]] = None, parallel: int = 2, dataset: str = "longtail64",
                 reuse: bool = True) -> str:
    """Train every (setting, seed) on one evidence dataset; write evidence.{md,json,png} in ``out_dir``.

    ``epochs``/``img`` default to the dataset's. Runs that already finished with the same hyp are
    reused (``reuse``), so adding a setting trains only that setting.
    """
    if dataset not in EVIDENCE_DATASETS:
        raise ValueError(f"unknown evidence dataset {dataset!r}; choose from {', '.join(EVIDENCE_DATASETS)}")
    spec = EVIDENCE_DATASETS[dataset]
    settings = select_settings(None, dataset) if settings is None else settings
    epochs = epochs or spec.epochs
    if img in (None, spec.config.img_size):
        data_cfg = spec.config
    elif dataset == "longtail64":
        data_cfg = demo_dataset(img, 0)  # the demo's dataset scales its objects with the image
    else:
        raise ValueError(f"--img applies to the longtail64 evidence dataset only; {dataset} is {spec.config.img_size} px")
    out_dir = Path(out_dir)
    rows = [Row(s, [], [], {}) for s in settings]
    all_run_dirs = run_demo_seeds(out_dir, seeds, epochs, spec.batch, data_cfg, settings, parallel, reuse)
    for seed in seeds:
        for row, run_dir in zip(rows, all_run_dirs[seed]):
            curves = read_results(run_dir)
            best = best_index(curves)
            row.map50_95.append(curves["mAP50-95"][best])
            row.map50.append(curves["mAP50"][best])
            row.nan_epochs.append(first_nan_epoch(run_dir))
            for key, values in curves.items():
                if key.startswith("class:") and key.endswith(":mAP50-95"):
                    row.per_class.setdefault(key.split(":")[1], []).append(values[best])
    for row, run_dir in zip(rows, all_run_dirs[seeds[0]]):
        # the hyp file written beside the runs is what they trained with (a bundled hyp may change later)
        row.hyp = yaml.safe_load((run_dir.parent.parent / f"hyp.{row.setting.name}.yaml").read_text())
    meta = {"dataset": dataset, "description": spec.description, "epochs": epochs, "batch": spec.batch,
            "img": data_cfg.img_size, "seeds": list(seeds)}
    return write_evidence(out_dir, meta, rows)


def write_evidence(out_dir: Path, meta: Dict[str, object], rows: Sequence[Row]) -> str:
    """Write ``evidence.{md,json,png}`` of one table in ``out_dir``; return the markdown.

    ``meta``: dataset, description, epochs, batch, img, seeds (as :func:`load_evidence` returns it).
    Each setting's JSON records the hyp it trained with and the name of its matched BCE.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = summarise(rows)
    matched = matched_baselines(rows)
    (out_dir / "evidence.md").write_text(markdown)
    (out_dir / "evidence.json").write_text(json.dumps(
        {**{k: v for k, v in meta.items() if k != "seeds"},
         "settings": [{"setting": r.setting.name, "label": r.setting.label, "hyp_overrides": r.setting.hyp_overrides,
                       "base_hyp": r.setting.base_hyp, "seeds": list(meta["seeds"]), "map50_95": r.map50_95,
                       "map50": r.map50, "per_class_map50_95": r.per_class, "first_nan_epoch": r.nan_epochs,
                       "hyp": r.hyp, "matched_bce": matched[r.setting.name].setting.name
                       if matched[r.setting.name] is not None else None} for r in rows]}, indent=2))
    batch = f", batch {meta['batch']}" if meta.get("batch") else ""
    plot_evidence(rows, out_dir / "evidence.png",
                  title=f"{meta['dataset']}: {meta['description']}; yolov5n from scratch, {meta['epochs']} epochs{batch}, "
                        f"seeds {list(meta['seeds'])}")
    return markdown


def load_evidence(path: Path) -> Tuple[Dict[str, object], List[Row]]:
    """``evidence.json`` -> (meta, rows), the inverse of :func:`write_evidence`.

    Files written before the trained hyp was recorded get it rebuilt from the setting's base hyp and
    overrides as the bundled hyps are now (their non-fl values have not changed since).
    """
    data = json.loads(Path(path).read_text())
    rows: List[Row] = []
    for item in data["settings"]:
        setting = DemoSetting(item["setting"], item["label"], dict(item.get("hyp_overrides") or {}), item.get("base_hyp"))
        hyp = item.get("hyp") or yaml.safe_load(setting_hyp_text(setting))
        rows.append(Row(setting, list(item["map50_95"]), list(item["map50"]),
                        {k: list(v) for k, v in (item.get("per_class_map50_95") or {}).items()},
                        list(item.get("first_nan_epoch") or []), hyp))
    meta = {k: v for k, v in data.items() if k != "settings"}
    meta["seeds"] = data["settings"][0]["seeds"] if data["settings"] else []
    return meta, rows
