"""What the source patches change in yolov5, as exact anchor edits (the input of ``generate.py``).

Every edit names a piece of yolov5's pristine source (the *anchor*) that must occur exactly once
in its file, and the text that replaces it. Every inserted line only *calls* into
``yolo_focal_plugin`` (the same functions the import-hook monkey-patch calls) and ends with a
``# yolo-focal-plugin`` comment, so ``grep -rn yolo-focal-plugin`` lists the whole change.

Two layouts share these edits (``specs(layout)``):

- ``package``: the pip fork ``yolov5==7.0.14`` (``from yolov5.utils.loss import ...``);
- ``clone``: a clone of ultralytics/yolov5 run as ``python train.py`` (top-level ``utils``,
  ``models``: ``from utils.loss import ...``). Edits for code the fork added and the clone does
  not have (the Hugging Face look-up, ``map50s``, ``run_cli``, the ultralytics import) are
  package-only.

To support another yolov5 version: point ``generate.py`` at that source; every anchor that no
longer matches is reported by file and purpose, fix those here, regenerate, run the tests.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

YOLOV5_VERSION = "7.0.14"
TAG = "# yolo-focal-plugin"
MARKER_LINE = "YOLO_FOCAL_PATCHED = True  # yolo-focal-plugin: the start-up hook sees this and stands aside\n"
LAYOUTS = ("package", "clone")
# A clone has no `yolov5` package for the start-up hook to recognise, so its patched loss.py says
# itself that this tree is source-patched (run log and focal_setup.yaml: "delivery: source patches").
CLONE_DECLARE_IMPORT = ("from yolo_focal_plugin.integration.source_patch import declare_clone as _yolo_focal_declare  "
                        + TAG + "\n")
CLONE_DECLARE_CALL = "_yolo_focal_declare(__file__)  " + TAG + ": a clone has no `yolov5` package for the start-up hook to see\n"


class AnchorError(RuntimeError):
    """An anchor is missing or not unique in the source the patches are generated from."""


@dataclass(frozen=True)
class Edit:
    """Replace ``anchor`` (exactly one occurrence) by ``replacement``; or apply ``transform``."""

    why: str
    anchor: str = ""
    replacement: str = ""
    transform: Optional[Callable[[str], Optional[str]]] = None  # whole-file text -> new text, None if it cannot

    def apply(self, path: str, text: str) -> str:
        if self.transform is not None:
            result = self.transform(text)
            if result is None or result == text:
                raise AnchorError(f"{path}: {self.why}: the source does not have the code this edit expects")
            return result
        count = text.count(self.anchor)
        if count != 1:
            first = self.anchor.strip().splitlines()[0] if self.anchor.strip() else repr(self.anchor)
            raise AnchorError(f"{path}: {self.why}: anchor found {count} times (expected once): {first!r}")
        return text.replace(self.anchor, self.replacement)


def after(anchor: str, text: str, why: str) -> Edit:
    return Edit(why=why, anchor=anchor, replacement=anchor + text)


def before(anchor: str, text: str, why: str) -> Edit:
    return Edit(why=why, anchor=anchor, replacement=text + anchor)


def between(head: str, tail: str, text: str, why: str) -> Edit:
    """Insert ``text`` between ``head`` and ``tail``; ``head + tail`` is the (unique) anchor."""
    return Edit(why=why, anchor=head + tail, replacement=head + text + tail)


@dataclass(frozen=True)
class PatchSpec:
    name: str  # file name in patches/yolov5-<version>/
    title: str
    description: Tuple[str, ...]  # lines of the patch header
    files: Tuple[Tuple[str, Tuple[Edit, ...]], ...]  # (path relative to the yolov5 package, edits)


# --------------------------------------------------------------------------- edits


def _module(layout: str, name: str) -> str:
    """yolov5's module ``name`` (``utils.loss``) as the layout imports it."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    return ("yolov5." if layout == "package" else "") + name


def _loss_edits(def_line: str, call_line: str, import_anchor: str, marker: bool, declare: bool = False) -> Tuple[Edit, ...]:
    return (
        after(
            import_anchor,
            "\nfrom yolo_focal_plugin.integration.yolov5_hooks import after_compute_loss, before_compute_loss  " + TAG + "\n"
            + (CLONE_DECLARE_IMPORT if declare else "")
            + ("\n" + MARKER_LINE if marker else "")
            + (CLONE_DECLARE_CALL if declare else ""),
            "import the plugin's ComputeLoss hooks" + (" and mark the tree as patched" if marker else ""),
        ),
        after(def_line, "        focal_hyp = before_compute_loss(model)  " + TAG + ": validate the fl_* keys, default fl_gamma\n",
              "validate the fl_* hyp keys before YOLOv5 reads them"),
        between("        self.anchors = m.anchors\n        self.device = device\n",
                "\n" + call_line,
                "        after_compute_loss(self, model, focal_hyp)  " + TAG + ": BCEcls/BCEobj and targets as the hyp asks\n",
                "swap BCEcls/BCEobj (and, for fl_assigner: retina, the targets) from the fl_* keys"),
    )


def _evolve_transform(text: str) -> Optional[str]:
    """The evolve changes, exactly as ``integration.evolve`` recompiles ``main`` (one source of truth)."""
    from ..integration import evolve

    return evolve._patched_source(text)


def _map50s_edit() -> Edit:
    from ..integration.compat import MAP50S_ANCHOR, MAP50S_FIX

    return after(MAP50S_ANCHOR, MAP50S_FIX, "initialise map50s so --noval/--evolve do not crash (UnboundLocalError)")


TRAIN_DEF = "def train(hyp, opt, device, callbacks):  # hyp is path/to/hyp.yaml or hyp dictionary\n"
BEFORE_TRAIN = ("    _yolo_focal_before_train(hyp, opt, callbacks)  " + TAG
                + ": fl_* keys checked before the run dir exists; epoch clock\n")
IMPORT_BEFORE_TRAIN = ("from yolo_focal_plugin.integration.yolov5_hooks import before_train as _yolo_focal_before_train  "
                       + TAG + "\n")


def specs(layout: str = "package") -> List[PatchSpec]:
    """The patch series for ``layout`` (``package`` or ``clone``), in order. Each file is changed by one patch."""
    pkg = layout == "package"
    m = functools.partial(_module, layout)
    general_edits = (
        before("from ultralytics.utils.checks import check_requirements\n",
               "from yolo_focal_plugin.integration import compat as _yolo_focal_compat  " + TAG + "\n\n"
               "_yolo_focal_compat.set_offline_environment()  " + TAG + ": read by ultralytics at import\n\n",
               "offline environment before ultralytics is imported")
        if pkg else
        # v7.0 does not import ultralytics (nothing reads the offline variables): only the compat import
        before("from utils import TryExcept, emojis\n",
               "from yolo_focal_plugin.integration import compat as _yolo_focal_compat  " + TAG + "\n",
               "import the plugin's compatibility helpers"),
        after("def check_file(file, suffix=''):\n    # Search/download file (if necessary) and return path\n",
              "    bundled = _yolo_focal_compat.resolve_bundled_file(file)  " + TAG + ": --hyp hyp.focal.yaml\n"
              "    if bundled is not None:  " + TAG + "\n"
              "        return bundled  " + TAG + "\n",
              "bare names of the plugin's bundled hyps"),
        after("def check_font(font=FONT, progress=False):\n    # Download font to CONFIG_DIR if necessary\n",
              "    _yolo_focal_compat.seed_font_if_missing(font, CONFIG_DIR)  " + TAG + ": no download offline\n",
              "seed the font instead of downloading it"),
    )
    offline_files: Tuple[Tuple[str, Tuple[Edit, ...]], ...] = (("utils/general.py", general_edits),)
    if pkg:  # the fork's Hugging Face look-up; v7.0 has no attempt_download_from_hub
        offline_files += (("utils/downloads.py", (
            Edit(
                why="skip the Hugging Face look-up for local paths and offline",
                anchor="def attempt_download_from_hub(repo_id, hf_token=None, revision=None):\n",
                replacement=(
                    "def attempt_download_from_hub(repo_id, hf_token=None, revision=None):\n"
                    "    from yolo_focal_plugin.integration.compat import guarded_hub_download  " + TAG + "\n"
                    "    return guarded_hub_download(_attempt_download_from_hub, repo_id, hf_token=hf_token,  " + TAG + "\n"
                    "                                revision=revision)  " + TAG + ": local path or offline -> None\n"
                    "\n\n"
                    "def _attempt_download_from_hub(repo_id, hf_token=None, revision=None):  " + TAG + ": the original\n"
                ),
            ),
        )),)

    train_edits: Tuple[Edit, ...] = (
        # first: evolve refuses a source that already mentions its module global
        Edit(why="--evolve with the fl_* keys (integration/evolve.py)", transform=_evolve_transform),
        after(f"from {m('utils.loss')} import ComputeLoss\n",
              "from yolo_focal_plugin.integration import evolve as _yolo_focal_evolve  " + TAG + "\n"
              + IMPORT_BEFORE_TRAIN,
              "import the plugin's train and evolve helpers"),
        after(TRAIN_DEF, BEFORE_TRAIN, "call before_train at the start of train()"),
    )
    if pkg:  # the fork added map50s (and its --noval crash); v7.0's train() has neither
        train_edits += (_map50s_edit(),)
    segment_train_edits: Tuple[Edit, ...] = (
        after(f"from {m('utils.segment.loss')} import ComputeLoss\n", IMPORT_BEFORE_TRAIN,
              "import the plugin's train helper"),
        after(TRAIN_DEF, BEFORE_TRAIN, "call before_train at the start of train()"),
    )
    if pkg:  # the fork's `yolov5 segment train` entry point; a clone runs `python segment/train.py`
        segment_train_edits += (Edit(
            why="run_cli calls main (yolov5 segment train was a silent no-op)",
            anchor="    opt = parse_opt(True)\n    for k, v in kwargs.items():\n        setattr(opt, k, v)\n"
                   "\n\nif __name__ == '__main__':\n",
            replacement="    opt = parse_opt(True)\n    for k, v in kwargs.items():\n        setattr(opt, k, v)\n"
                        "    main(opt)  " + TAG + ": `yolov5 segment train` was a silent no-op\n"
                        "\n\nif __name__ == '__main__':\n",
        ),)

    return [
        PatchSpec(
            name="0001-loss-fl-keys.patch",
            title="ComputeLoss (detect and segment) reads the fl_* hyp keys",
            description=(
                "Calls the plugin before and after ComputeLoss.__init__, as its import hook does:",
                "before: validate every fl_* key (a typo stops the run) and default fl_gamma to 0.0;",
                "after: replace BCEcls/BCEobj with the focal/varifocal/qfocal/bce wrappers the hyp asks",
                "for (fl_loss, fl_gamma, fl_alpha, fl_apply, fl_norm, fl_gamma_warmup), and for",
                "fl_assigner: retina swap this instance's build_targets. A hyp without fl_* keys keeps",
                "YOLOv5's criteria (same loss values to the last bit).",
                "YOLO_FOCAL_PATCHED marks the tree as patched: the plugin's start-up hook stands aside.",
            ) + (() if pkg else (
                "A clone has no `yolov5` package for the hook to recognise: utils/loss.py also tells the",
                "plugin itself that this tree is source-patched (the run records delivery: source patches).",
            )),
            files=(
                ("utils/loss.py", _loss_edits(
                    "    def __init__(self, model, autobalance=False):\n",
                    "    def __call__(self, p, targets):  # predictions, targets\n",
                    f"from {m('utils.torch_utils')} import de_parallel\n",
                    marker=True,
                    declare=not pkg,
                )),
                ("utils/segment/loss.py", _loss_edits(
                    "    def __init__(self, model, autobalance=False, overlap=False):\n",
                    "    def __call__(self, preds, targets, masks):  # predictions, targets, model\n",
                    "from .general import crop_mask\n",
                    marker=False,
                )),
            ),
        ),
        PatchSpec(
            name="0002-train-hooks-evolve.patch",
            title=("train(): fl_* checks and epoch clock; --evolve with fl_* keys; two yolov5 bugs" if pkg
                   else "train(): fl_* checks and epoch clock; --evolve with fl_* keys"),
            description=(
                "train() (detect and segment) calls the plugin's before_train: the fl_* keys are",
                "validated before the run directory exists, and an on_train_epoch_end callback drives",
                "fl_gamma_warmup.",
                "Detect --evolve: the plugin's evolve helpers (integration/evolve.py) teach the meta table",
                "the numeric fl_* keys and hold string keys (fl_loss ...) out of the mutated vector.",
            ) + ((
                "Fixes: map50s initialised (--noval/--evolve crashed with UnboundLocalError);",
                "`yolov5 segment train` calls main() (it was a silent no-op).",
            ) if pkg else ()),
            files=(("train.py", train_edits), ("segment/train.py", segment_train_edits)),
        ),
        PatchSpec(
            name="0003-offline.patch",
            title=("Offline: no DNS probes, no font download, no Hugging Face look-up for local weights" if pkg
                   else "Offline: no font download; bundled hyps by bare name"),
            description=((
                "utils/general.py sets YOLO_OFFLINE=1, ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS=1 and",
                "YOLO_AUTOINSTALL=false (setdefault: your own values win) before ultralytics is imported;",
            ) if pkg else ()) + (
                "check_font seeds Arial.ttf from matplotlib's DejaVuSans instead of downloading it;",
                "check_file resolves the plugin's bundled hyps by bare name (--hyp hyp.focal.yaml).",
            ) + ((
                "utils/downloads.py: attempt_download_from_hub returns None for a local --weights path and",
                "when offline, instead of asking huggingface.co first and dying.",
            ) if pkg else ()),
            files=offline_files,
        ),
        PatchSpec(
            name="0004-numpy2-pillow10.patch",
            title="Current numpy and Pillow: np.trapz and FreeTypeFont.getsize",
            description=(
                "utils/metrics.py sees numpy through a view that still has trapz (numpy 2 removed it;",
                "validation died as soon as one detection was correct); your numpy is not changed.",
                "utils/plots.py restores Pillow's getsize via getbbox (Pillow >= 10 removed it; batch",
                "images were silently not drawn).",
            ),
            files=(
                ("utils/metrics.py", (
                    after(f"import torch\n\nfrom {m('utils')} import TryExcept, threaded\n",
                          "from yolo_focal_plugin.integration.compat import numpy_with_trapz as _yolo_focal_np  " + TAG + "\n\n"
                          "np = _yolo_focal_np(np)  " + TAG + ": numpy 2 removed np.trapz (compute_ap)\n",
                          "np.trapz for numpy 2"),
                )),
                ("utils/plots.py", (
                    after("from PIL import Image, ImageDraw, ImageFont\n",
                          "\nfrom yolo_focal_plugin.integration.compat import restore_pillow_getsize as _yolo_focal_getsize  " + TAG + "\n\n"
                          "_yolo_focal_getsize()  " + TAG + ": Pillow >= 10 removed getsize\n",
                          "getsize for Pillow >= 10"),
                )),
            ),
        ),
        PatchSpec(
            name="0005-checkpoints-weights-only.patch",
            title="Checkpoints load under torch's weights_only default (torch >= 2.6)",
            description=(
                "models/yolo.py allow-lists exactly what yolov5 checkpoints pickle (its module classes,",
                "the torch.nn layers, the numpy scalars of the optimizer state, and a getattr that only",
                "resolves Detect.forward for segmentation models), so strip_optimizer, --resume and",
                "val --weights best.pt work without turning weights_only off for every torch.load.",
            ),
            files=(
                ("models/yolo.py", (
                    before("\n\nif __name__ == '__main__':\n    parser = argparse.ArgumentParser()\n",
                           "\n\nfrom yolo_focal_plugin.integration.checkpoints import register_safe_globals as _yolo_focal_safe  " + TAG + "\n\n"
                           "_yolo_focal_safe(sys.modules[__name__])  " + TAG + ": weights_only loads of yolov5 checkpoints\n",
                           "register the safe globals once the model classes exist"),
                )),
            ),
        ),
    ]


def patched_files(spec_list: List[PatchSpec]) -> Dict[str, str]:
    """path -> patch name; raises if a file is changed by two patches."""
    owner: Dict[str, str] = {}
    for spec in spec_list:
        for path, _ in spec.files:
            if path in owner:
                raise AnchorError(f"{path} is changed by both {owner[path]} and {spec.name}")
            owner[path] = spec.name
    return owner
