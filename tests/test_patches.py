"""patches/: generated from the installed yolov5, applied and reverted all-or-nothing, and a patched
copy behaves exactly as the monkey-patched original (the start-up hook standing aside).

The copies are of the installed ``site-packages/yolov5`` (1.7 MB); a patched copy is imported in a
subprocess with its parent directory first on ``PYTHONPATH``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import re
from pathlib import Path
from typing import Dict

import pytest
import yaml

from conftest import explain, run, train_args

yolov5_spec = importlib.util.find_spec("yolov5")  # located, not imported: this module never imports yolov5
if yolov5_spec is None:
    pytest.skip("yolov5 is not installed", allow_module_level=True)

from yolo_focal_plugin.cli import patch as patch_cli  # noqa: E402
from yolo_focal_plugin.integration.yolov5_hooks import source_patched_dir  # noqa: E402
from yolo_focal_plugin.sourcepatch import load_manifest, load_series, patches_dir  # noqa: E402
from yolo_focal_plugin.sourcepatch import apply as vendor_apply  # noqa: E402
from yolo_focal_plugin.sourcepatch.edits import YOLOV5_VERSION, AnchorError  # noqa: E402
from yolo_focal_plugin.sourcepatch.generate import build, render, stale_files  # noqa: E402
from yolo_focal_plugin.sourcepatch.generate import main as generate_main  # noqa: E402

INSTALLED = Path(yolov5_spec.origin).resolve().parent
PATCHES = patches_dir(YOLOV5_VERSION)
MANIFEST = load_manifest(PATCHES)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def copy_yolov5(parent: Path) -> Path:
    target = parent / "yolov5"
    shutil.copytree(INSTALLED, target, ignore=IGNORE)
    return target


def tree_bytes(root: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def cli(*argv: str, capsys=None):
    code = patch_cli.main(list(argv))
    out = capsys.readouterr().out if capsys is not None else ""
    return code, out


@pytest.fixture
def pristine(tmp_path: Path) -> Path:
    return copy_yolov5(tmp_path)


@pytest.fixture(scope="module")
def pristine_bytes() -> Dict[str, bytes]:
    return tree_bytes(INSTALLED)


@pytest.fixture(scope="module")
def patched_parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A patched copy of the installed yolov5: ``<parent>/yolov5``; put ``<parent>`` on PYTHONPATH."""
    parent = tmp_path_factory.mktemp("patched_yolov5")
    copy_yolov5(parent)
    assert patch_cli.main(["apply", str(parent / "yolov5")]) == 0
    return parent


# ------------------------------------------------------------------ generation


def test_committed_patches_are_what_the_generator_makes_from_the_installed_yolov5():
    patches, manifest = build(INSTALLED)
    assert manifest["yolov5_version"] == YOLOV5_VERSION
    stale = stale_files(PATCHES, render(patches, manifest))
    assert not stale, f"stale: {stale}; run `python -m yolo_focal_plugin.sourcepatch.generate`"


def test_every_inserted_line_is_tagged_and_only_calls_into_the_plugin():
    for name in load_series(PATCHES):
        text = (PATCHES / name).read_text()
        added = [line for line in text.splitlines() if line.startswith("+") and not line.startswith("+++")]
        assert added, name
        for line in added:
            assert line.strip() == "+" or "# yolo-focal-plugin" in line, (name, line)
        # one source of truth: no plugin logic pasted in, only imports of it and calls
        assert "import torch" not in "\n".join(added) and "class " not in "\n".join(added), name


def test_generation_fails_loudly_when_an_anchor_is_missing(tmp_path):
    source = copy_yolov5(tmp_path)
    plots = source / "utils" / "plots.py"
    plots.write_text(plots.read_text().replace("from PIL import Image, ImageDraw, ImageFont\n", "from PIL import Image\n"))
    with pytest.raises(AnchorError, match=r"utils/plots.py: getsize for Pillow >= 10: anchor found 0 times"):
        build(source)


# ------------------------------------------------------------------ apply / revert


@pytest.mark.parametrize("tool", ["patch", "git"])
def test_patch_files_apply_cleanly_with_the_system_tools(pristine, tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    for name in load_series(PATCHES):
        if tool == "patch":
            cmd = ["patch", "-p1", "--dry-run", "--fuzz=0", "-f", "-i", str(PATCHES / name)]
        else:
            cmd = ["git", "apply", "--check", str(PATCHES / name)]
        env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(pristine.parent)}
        proc = subprocess.run(cmd, cwd=pristine, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("backend", ["patch", "git", "python"])
def test_apply_refuse_twice_then_revert_byte_identical(pristine, pristine_bytes, backend, capsys):
    if backend != "python" and shutil.which(backend) is None:
        pytest.skip(f"{backend} not installed")
    assert tree_bytes(pristine) == pristine_bytes
    code, out = cli("apply", str(pristine), "--backend", backend, capsys=capsys)
    assert code == 0, out
    assert f"patched {len(MANIFEST['files'])} files" in out
    patched = tree_bytes(pristine)
    for path, digests in MANIFEST["files"].items():
        assert hashlib.sha256(patched[path]).hexdigest() == digests["patched_sha256"], path
    assert source_patched_dir(str(pristine / "__init__.py")) == pristine
    assert not [p for p in pristine.rglob("*") if p.suffix in (".orig", ".rej") or p.name.endswith(".tmp")]

    code, out = cli("apply", str(pristine), "--backend", backend, capsys=capsys)
    assert code == 1 and "already patched" in out and "Nothing changed" in out
    assert tree_bytes(pristine) == patched

    code, out = cli("check", str(pristine), capsys=capsys)
    assert code == 0 and "state: patched" in out and "stands aside" in out

    code, out = cli("revert", str(pristine), "--backend", backend, capsys=capsys)
    assert code == 0, out
    assert "tree state: pristine" in out and out.count("byte-identical to yolov5 7.0.14") == len(MANIFEST["files"])
    assert tree_bytes(pristine) == pristine_bytes  # every file, not only the patched ones
    assert source_patched_dir(str(pristine / "__init__.py")) is None

    code, out = cli("revert", str(pristine), capsys=capsys)
    assert code == 1 and "not patched" in out


def test_check_a_pristine_copy(pristine, capsys):
    code, out = cli("check", str(pristine), capsys=capsys)
    assert code == 0, out
    assert "version 7.0.14: supported" in out and "state: pristine" in out
    assert "every hunk would apply cleanly" in out and out.count("byte-identical to the pristine") == len(MANIFEST["files"])


def test_partially_patched_tree_is_reported_refused_and_revertible(pristine, pristine_bytes, capsys):
    assert cli("apply", str(pristine), capsys=capsys)[0] == 0
    (pristine / "utils" / "plots.py").write_bytes(pristine_bytes["utils/plots.py"])  # one file back to pristine
    code, out = cli("check", str(pristine), capsys=capsys)
    assert code == 1 and "state: partially patched" in out
    before = tree_bytes(pristine)
    code, out = cli("apply", str(pristine), capsys=capsys)
    assert code == 1 and "refused: the tree is partially patched" in out
    assert tree_bytes(pristine) == before
    code, out = cli("revert", str(pristine), capsys=capsys)
    assert code == 0, out
    assert tree_bytes(pristine) == pristine_bytes


def test_half_applied_file_is_reported_by_hunk(pristine, capsys):
    train = pristine / "train.py"
    text = train.read_text()
    train.write_text(text.replace("    maps = np.zeros(nc)  # mAP per class\n",
                                  "    maps = np.zeros(nc)  # mAP per class\n    map50s = np.zeros(nc)  # yolo-focal-plugin: --noval fix\n"))
    code, out = cli("check", str(pristine), capsys=capsys)
    assert code == 1 and "state: partially patched" in out
    assert re.search(r"train.py +partial +\(1 of \d+ hunks applied\)", out), out


def test_local_edit_where_a_hunk_goes_refuses_and_changes_nothing(pristine, capsys):
    plots = pristine / "utils" / "plots.py"
    plots.write_text(plots.read_text().replace("import seaborn as sn\n", "import seaborn as sns  # local edit\n"))
    before = tree_bytes(pristine)
    code, out = cli("apply", str(pristine), capsys=capsys)
    assert code == 1 and "utils/plots.py" in out and "conflict" in out
    assert tree_bytes(pristine) == before


def test_local_edit_elsewhere_is_kept_through_apply_and_revert(pristine, capsys):
    general = pristine / "utils" / "general.py"
    general.write_text(general.read_text() + "\n# my vendored tweak\n")
    before = tree_bytes(pristine)
    code, out = cli("apply", str(pristine), capsys=capsys)
    assert code == 0, out
    assert general.read_text().endswith("# my vendored tweak\n")
    code, out = cli("revert", str(pristine), capsys=capsys)
    assert code == 0 and "utils/general.py  (your other local changes kept)" in out
    assert tree_bytes(pristine) == before


class _FailingBackend(vendor_apply.Backend):
    """Writes files through a real backend, then fails (or is interrupted) on the n-th real write."""

    def __init__(self, inner, fail_on: str, exc=None):
        self.inner, self.fail_on, self.exc, self.name = inner, fail_on, exc, "failing"

    def run(self, root, fp, reverse, dry_run):
        if not dry_run and fp.path == self.fail_on:
            if self.exc is not None:
                raise self.exc
            self.inner.run(root, fp, reverse, dry_run)  # the file is written, then the tool "fails"
            return "simulated failure"
        return self.inner.run(root, fp, reverse, dry_run)


@pytest.mark.parametrize("exc", [None, KeyboardInterrupt()], ids=["tool-fails", "ctrl-c"])
def test_failure_half_way_rolls_every_file_back(pristine, pristine_bytes, monkeypatch, capsys, exc):
    inner = vendor_apply.choose_backend("auto")
    failing = _FailingBackend(inner, "utils/metrics.py", exc)  # 7th of 9 files: 6 already written
    monkeypatch.setattr(patch_cli, "choose_backend", lambda name: failing)
    if exc is None:
        code, out = cli("apply", str(pristine), capsys=capsys)
        assert code == 1 and "simulated failure" in out and "rolled back" in out
    else:
        with pytest.raises(KeyboardInterrupt):
            cli("apply", str(pristine))
    assert tree_bytes(pristine) == pristine_bytes
    assert not [p for p in pristine.rglob("*") if p.suffix in (".orig", ".rej") or p.name.endswith(".tmp")]


def test_other_version_is_named_and_refused_unless_forced(pristine, capsys):
    init = pristine / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "7.0.14"', '__version__ = "7.0.13"'))
    before = tree_bytes(pristine)
    code, out = cli("check", str(pristine), capsys=capsys)
    assert code == 2 and "version 7.0.13: NOT supported" in out and "found yolov5 7.0.13" in out
    code, out = cli("apply", str(pristine), capsys=capsys)
    assert code == 2 and "found yolov5 7.0.13" in out and "--force" in out
    assert tree_bytes(pristine) == before
    code, out = cli("apply", str(pristine), "--force", capsys=capsys)
    assert code == 0 and "warning: yolov5 7.0.13 is not 7.0.14" in out
    code, out = cli("revert", str(pristine), capsys=capsys)
    assert code == 0 and tree_bytes(pristine) == before


def test_unknown_clone_and_wrong_directory_are_explained(tmp_path, capsys):
    clone = tmp_path / "yolov5-clone"
    (clone / "utils").mkdir(parents=True)
    (clone / "models").mkdir()
    (clone / "train.py").write_text("from utils.loss import ComputeLoss\n")
    (clone / "models" / "yolo.py").write_text("from models.common import *\n")
    (clone / "utils" / "loss.py").write_text("from utils.metrics import bbox_iou\n\n\nclass ComputeLoss:\n    pass\n")
    code, out = cli("check", str(clone), capsys=capsys)
    assert code == 2 and "clone of ultralytics/yolov5" in out and "no source patch set fits" in out
    code, out = cli("apply", str(clone), capsys=capsys)
    assert code == 2 and "start-up hook patches a clone at import" in out

    (clone / "models" / "yolo.py").unlink()  # not the shape of a clone any more
    code, out = cli("check", str(clone), capsys=capsys)
    assert code == 2 and "is not a yolov5 source tree" in out

    copy_yolov5(tmp_path / "site")
    code, out = cli("apply", str(tmp_path / "site"), capsys=capsys)
    assert code == 2 and f"did you mean {tmp_path / 'site' / 'yolov5'}" in out


def test_patch_is_a_yolo_focal_command(pristine):
    proc = subprocess.run([str(Path(sys.executable).parent / "yolo-focal"), "patch", "check", str(pristine)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "state: pristine" in proc.stdout, proc.stdout + proc.stderr


# ------------------------------------------------------------------ the patched copy at work

LOSS_SCRIPT = r"""
import json, os, sys
from pathlib import Path

import torch
import yaml

import yolov5
import yolov5.utils.general as general
import yolov5.utils.loss as loss
import yolov5.utils.segment.loss as seg_loss
from yolov5.models.yolo import Model, SegmentationModel

import yolo_focal_plugin
from yolo_focal_plugin.hyp import resolve_hyp_path
from yolo_focal_plugin.integration.yolov5_hooks import STATE

PLUGIN = os.environ.get("YOLO_FOCAL_DISABLE") != "1"
if PLUGIN:  # only to look at what is wrapped; the stock run skips these imports (seconds on a busy CPU)
    import yolov5.train, yolov5.segment.train
cases = json.loads(sys.argv[1])
torch.set_num_threads(1)  # same arithmetic in every process, and no thread thrashing on a busy CPU
torch.set_grad_enabled(False)
root = Path(yolov5.__file__).parent
stock = yaml.safe_load((root / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
kinds = {case.get("model", "detect") for case in cases.values()}
torch.manual_seed(0)
models = {}
if "detect" in kinds:
    models["detect"] = Model(str(root / "models" / "yolov5n.yaml"), ch=3, nc=3).train()
if "segment" in kinds:
    models["segment"] = SegmentationModel(str(root / "models" / "segment" / "yolov5n-seg.yaml"), ch=3, nc=3).train()
torch.manual_seed(1)
imgs = torch.rand(2, 3, 64, 64)
preds = {kind: model(imgs) for kind, model in models.items()}  # the hyp does not change the forward pass
targets = torch.tensor([[0, 0, 0.30, 0.30, 0.20, 0.25], [0, 2, 0.70, 0.60, 0.30, 0.20],
                        [1, 1, 0.50, 0.50, 0.15, 0.15], [1, 0, 0.20, 0.80, 0.25, 0.20]])
masks = torch.zeros(4, 16, 16)
for i, (_, _, x, y, w, h) in enumerate(targets.tolist()):
    masks[i, int((y - h / 2) * 16):int((y + h / 2) * 16), int((x - w / 2) * 16):int((x + w / 2) * 16)] = 1.0

out = {"file": yolov5.__file__, "losses": {}}
for name, case in cases.items():
    hyp = dict(stock) if "file" not in case else yaml.safe_load(resolve_hyp_path(case["file"]).read_text())
    hyp.update(case.get("set", {}))
    for key in case.get("drop", []):
        hyp.pop(key)
    kind = case.get("model", "detect")
    model = models[kind]
    model.hyp = hyp
    model.class_weights = torch.tensor([0.2, 0.8, 2.0])
    if kind == "detect":
        compute = loss.ComputeLoss(model)
        total, items = compute(preds[kind], targets)
    else:
        compute = seg_loss.ComputeLoss(model, overlap=False)
        total, items = compute(preds[kind], targets, masks)
    out["losses"][name] = {"total": total.tolist(), "items": items.tolist(),
                           "criteria": [type(compute.BCEcls).__name__, type(compute.BCEobj).__name__]}

def wrapped():
    return dict(
        init_wrapped=[getattr(m.ComputeLoss.__init__, "_yolo_focal", False) for m in (loss, seg_loss)],
        train_wrapped=[hasattr(m.train, "__wrapped__") for m in (yolov5.train, yolov5.segment.train)] if PLUGIN else None,
        check_font_wrapped=hasattr(general.check_font, "__wrapped__"),
    )

out.update(wrapped(), marker=getattr(loss, "YOLO_FOCAL_PATCHED", False), source_patched=STATE.source_patched)
if PLUGIN:
    yolo_focal_plugin.install()  # a source-patched yolov5 must make install() stand aside too
    out.update(installed=yolo_focal_plugin.installed(), after_install=wrapped())
print("RESULT " + json.dumps(out))
"""

STOCK_CASES = {
    "stock": {},
    "stock_segment": {"model": "segment"},
}
PLUGIN_CASES = {
    "stock_without_fl_gamma": {"drop": ["fl_gamma"]},
    "focal": {"file": "hyp.focal.yaml"},
    "varifocal": {"file": "hyp.varifocal.yaml"},
    "qfocal": {"file": "hyp.qfocal.yaml"},
    "bce_positives": {"set": {"fl_loss": "bce", "fl_norm": "positives"}},
    "focal_both_auto_alpha_warmup": {"set": {"fl_loss": "focal", "fl_gamma": 2.0, "fl_alpha": "auto",
                                             "fl_apply": "both", "fl_gamma_warmup": 3}},
    "retina": {"file": "hyp.retina.yaml"},
    "retina_focal": {"file": "hyp.retina.yaml", "set": {"fl_loss": "focal", "fl_gamma": 1.5, "fl_alpha": 0.25}},
    "qfocal_segment": {"file": "hyp.qfocal.yaml", "model": "segment"},
}


def _start(script: Path, cases: dict, env: Dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), json.dumps(cases)], env=env, cwd=script.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> tuple:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, explain(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), stdout + stderr


def test_patched_copy_gives_the_monkey_patched_losses_and_stock_losses(patched_parent, tmp_path, clean_env):
    script = tmp_path / "losses.py"
    script.write_text(LOSS_SCRIPT)
    every_case = {**STOCK_CASES, **PLUGIN_CASES}
    # three interpreters side by side: patched copy, monkey-patched original, stock original
    procs = {
        "patched": _start(script, every_case, {**clean_env, "PYTHONPATH": str(patched_parent)}),
        "monkey": _start(script, every_case, clean_env),
        "stock": _start(script, STOCK_CASES,
                        {**clean_env, "YOLO_FOCAL_DISABLE": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}),
    }
    (patched, patched_log), (monkey, _), (stock, _) = (_result(procs[k]) for k in ("patched", "monkey", "stock"))

    assert Path(patched["file"]).parent == patched_parent / "yolov5"  # the copy was imported
    assert Path(monkey["file"]).parent == Path(stock["file"]).parent == Path(yolov5_spec.origin).parent
    # the start-up hook stood aside for the patched copy: nothing wrapped twice, no second shim
    assert patched["marker"] is True and patched["source_patched"] == str(patched_parent / "yolov5")
    assert patched["init_wrapped"] == [False, False] and patched["train_wrapped"] == [False, False]
    assert patched["check_font_wrapped"] is False
    assert patched["installed"] is False and patched["after_install"] == {k: patched[k] for k in patched["after_install"]}
    assert "is source-patched (YOLO_FOCAL_PATCHED); the start-up hook stands aside" in patched_log
    # ... while the original was monkey-patched, and stock really was stock
    assert monkey["init_wrapped"] == [True, True] and monkey["marker"] is False
    assert stock["init_wrapped"] == [False, False]

    for name in every_case:
        assert patched["losses"][name] == monkey["losses"][name], name  # bit for bit
    for name in STOCK_CASES:
        assert patched["losses"][name] == stock["losses"][name], name
    # the fl_* cases really changed the loss (the comparison above is not stock vs stock)
    criteria = {name: tuple(patched["losses"][name]["criteria"]) for name in every_case}
    assert criteria["stock"] == ("BCEWithLogitsLoss", "BCEWithLogitsLoss")
    assert criteria["focal"] == ("FocalLoss", "FocalLoss")  # hyp.focal.yaml: both branches
    assert criteria["varifocal"] == ("BCEWithLogitsLoss", "VFLoss") and criteria["qfocal"] == ("QFocalLoss", "QFocalLoss")
    assert criteria["qfocal_segment"] == ("QFocalLoss", "QFocalLoss")
    for name in ("focal", "varifocal", "qfocal", "retina", "bce_positives"):
        assert patched["losses"][name]["items"] != patched["losses"]["stock"]["items"], name


@pytest.mark.slow
def test_one_epoch_from_the_patched_copy_with_hyp_focal_offline(patched_parent, tiny_data, tmp_path, clean_env):
    project = tmp_path / "runs"
    env = {**clean_env, "PYTHONPATH": str(patched_parent)}  # empty YOLOV5_CONFIG_DIR: the font must be seeded
    proc = run([sys.executable, "-m", "yolov5.train", *train_args(tiny_data, project, "patched", hyp="hyp.focal.yaml")],
               env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    run_dir = project / "patched"
    assert (run_dir / "weights" / "best.pt").is_file() and (run_dir / "results.csv").is_file()
    record = yaml.safe_load((run_dir / "focal_setup.yaml").read_text())
    assert record["delivery"] == "source patches" and record["stock"] is False
    assert "obj: FocalLoss" in record["criteria"]
    assert any("Arial.ttf" in shim for shim in record["shims"]), record["shims"]  # seeded, not downloaded
    log = proc.stdout + proc.stderr
    assert "the start-up hook stands aside" in log
    assert str(patched_parent / "yolov5") in log  # yolov5 ran from the copy
    assert (run_dir / "train_batch0.jpg").is_file()  # Pillow getsize restored by the patched plots.py


# ------------------------------------------------------------------ a clone of ultralytics/yolov5

CLONE_PATCHES = PATCHES.parent / "clone-v7.0"
CLONE_MANIFEST = load_manifest(CLONE_PATCHES)
V70_COMMIT = "915bbf294bb74c859f0b41f1c23bc395014ea679"


def copy_clone(source: Path, parent: Path) -> Path:
    target = parent / "yolov5"
    shutil.copytree(source, target, ignore=IGNORE)
    return target


@pytest.fixture
def clone70(clone_v70: Path, tmp_path: Path) -> Path:
    """A private copy of the pristine v7.0 clone (the session fixture is shared)."""
    return copy_clone(clone_v70, tmp_path)


@pytest.fixture(scope="module")
def clone70_bytes(clone_v70: Path) -> Dict[str, bytes]:
    return tree_bytes(clone_v70)


def test_committed_clone_patches_are_what_the_generator_makes_from_the_v70_clone(clone_v70, capsys):
    assert CLONE_MANIFEST["layout"] == "clone"
    assert CLONE_MANIFEST["upstream"] == {"repository": "ultralytics/yolov5", "tag": "v7.0", "commit": V70_COMMIT}
    patches, manifest = build(clone_v70, layout="clone", upstream={"tag": "v7.0", "commit": V70_COMMIT})
    stale = stale_files(CLONE_PATCHES, render(patches, manifest))
    assert not stale, f"stale: {stale}; run scripts/make_patches.py --clone ... --tag v7.0 --commit {V70_COMMIT}"
    # the command line the docs give (scripts/make_patches.py runs the same main)
    args = ["--clone", str(clone_v70), "--tag", "v7.0", "--commit", V70_COMMIT, "--check"]
    assert generate_main(args) == 0, capsys.readouterr().err
    assert generate_main([*args, "--out", str(PATCHES)]) == 1  # --check can fail: the pip set is not the clone's
    assert "is stale" in capsys.readouterr().err


def test_clone_patches_only_call_the_plugin_and_skip_what_v70_does_not_have():
    text = "".join((CLONE_PATCHES / name).read_text() for name in load_series(CLONE_PATCHES))
    added = [line for line in text.splitlines() if line.startswith("+") and not line.startswith("+++")]
    for line in added:
        assert line.strip() == "+" or "# yolo-focal-plugin" in line, line
    assert "import torch" not in "\n".join(added) and "class " not in "\n".join(added)
    assert "+YOLO_FOCAL_PATCHED = True" in text  # the marker the start-up hook looks for
    assert "yolov5." not in "\n".join(added)  # clone imports: utils.*, models.*
    # v7.0 has no Hugging Face look-up, no map50s, no run_cli: no hunk may pretend otherwise
    assert "utils/downloads.py" not in CLONE_MANIFEST["files"]
    assert "map50s" not in text and "run_cli" not in text


@pytest.mark.parametrize("backend", ["patch", "git", "python"])
def test_clone_apply_refuse_twice_then_revert_byte_identical(clone70, clone70_bytes, backend, capsys):
    if backend != "python" and shutil.which(backend) is None:
        pytest.skip(f"{backend} not installed")
    code, out = cli("check", str(clone70), capsys=capsys)
    assert code == 0 and "clone of ultralytics/yolov5" in out and "v7.0 (915bbf2) fits" in out, out
    assert "state: pristine" in out and "every hunk would apply cleanly" in out

    code, out = cli("apply", str(clone70), "--backend", backend, capsys=capsys)
    assert code == 0, out
    assert f"patched {len(CLONE_MANIFEST['files'])} files" in out and "python train.py" in out
    patched = tree_bytes(clone70)
    for path, digests in CLONE_MANIFEST["files"].items():
        assert hashlib.sha256(patched[path]).hexdigest() == digests["patched_sha256"], path
    # what the start-up hook looks for in a clone: the pip set's marker, in utils/loss.py
    assert re.search(r"^YOLO_FOCAL_PATCHED = True\b", patched["utils/loss.py"].decode(), re.M)
    assert not [p for p in clone70.rglob("*") if p.suffix in (".orig", ".rej") or p.name.endswith(".tmp")]

    code, out = cli("apply", str(clone70), "--backend", backend, capsys=capsys)
    assert code == 1 and "already patched" in out and "Nothing changed" in out
    assert tree_bytes(clone70) == patched

    code, out = cli("revert", str(clone70), "--backend", backend, capsys=capsys)
    assert code == 0, out
    assert "tree state: pristine" in out
    assert out.count("byte-identical to ultralytics/yolov5 v7.0") == len(CLONE_MANIFEST["files"])
    assert tree_bytes(clone70) == clone70_bytes  # every file of the clone, not only the patched ones

    code, out = cli("revert", str(clone70), capsys=capsys)
    assert code == 1 and "not patched" in out


def test_clone_with_a_file_changed_where_a_hunk_goes_is_refused_and_left_alone(clone70, capsys):
    plots = clone70 / "utils" / "plots.py"
    plots.write_text(plots.read_text().replace("from PIL import Image, ImageDraw, ImageFont\n",
                                               "from PIL import Image, ImageDraw, ImageFont  # local edit\n"))
    before = tree_bytes(clone70)
    code, out = cli("apply", str(clone70), capsys=capsys)
    assert code == 2, out
    assert "does not fit 1 of 8 files where a hunk goes: utils/plots.py" in out
    assert "restore them from upstream" in out and "start-up hook patches a clone at import" in out
    assert tree_bytes(clone70) == before  # all or nothing: the 7 files that fit were not touched either
    code, out = cli("check", str(clone70), capsys=capsys)
    assert code == 2 and re.search(r"utils/plots.py +conflict", out), out


@pytest.mark.parametrize("exc", [None, KeyboardInterrupt()], ids=["tool-fails", "ctrl-c"])
def test_clone_failure_half_way_rolls_every_file_back(clone70, clone70_bytes, monkeypatch, capsys, exc):
    failing = _FailingBackend(vendor_apply.choose_backend("auto"), "utils/metrics.py", exc)  # 6 files written before
    monkeypatch.setattr(patch_cli, "choose_backend", lambda name: failing)
    if exc is None:
        code, out = cli("apply", str(clone70), capsys=capsys)
        assert code == 1 and "rolled back" in out
    else:
        with pytest.raises(KeyboardInterrupt):
            cli("apply", str(clone70))
    assert tree_bytes(clone70) == clone70_bytes


def test_partly_patched_clone_is_reported_and_revertible(clone70, clone70_bytes, capsys):
    assert cli("apply", str(clone70), capsys=capsys)[0] == 0
    (clone70 / "models" / "yolo.py").write_bytes(clone70_bytes["models/yolo.py"])
    code, out = cli("check", str(clone70), capsys=capsys)
    assert code == 1 and "state: partially patched" in out and "v7.0 (915bbf2) fits" in out
    code, out = cli("apply", str(clone70), capsys=capsys)
    assert code == 1 and "refused: the tree is partially patched" in out
    code, out = cli("revert", str(clone70), capsys=capsys)
    assert code == 0, out
    assert tree_bytes(clone70) == clone70_bytes


def test_newest_upstream_clone_is_refused_with_the_reason_and_the_start_up_hook(clone_newest, tmp_path, capsys):
    clone = copy_clone(clone_newest, tmp_path)
    before = tree_bytes(clone)
    for action in ("check", "apply", "revert"):
        code, out = cli(action, str(clone), capsys=capsys)
        assert code == 2, (action, out)
        assert "clone of ultralytics/yolov5" in out and "no source patch set fits" in out
        assert "imports from the `ultralytics` package" in out  # why
        assert "the plugin's start-up hook patches a clone at import" in out  # what to do instead
        assert "python train.py --hyp hyp.varifocal.yaml" in out
        assert "source patches exist for the pip fork 7.0.14 and the v7.0 clone" in out
    assert tree_bytes(clone) == before


@pytest.mark.slow
def test_one_epoch_from_a_patched_v70_clone_then_revert(clone70, clone70_bytes, tiny_data, tmp_path, clean_env, capsys):
    code, out = cli("apply", str(clone70), capsys=capsys)
    assert code == 0, out
    project = tmp_path / "runs"
    hyp = Path(__file__).resolve().parents[1] / "hyps" / "hyp.varifocal.yaml"
    args = train_args(tiny_data, project, "clone", hyp=str(hyp))
    args[args.index("--cfg") + 1] = "models/yolov5n.yaml"  # the clone's own model file, as its users run it
    # empty YOLOV5_CONFIG_DIR (clean_env): the font must be seeded, not downloaded
    proc = run([sys.executable, "train.py", *args], clean_env, cwd=clone70)
    assert proc.returncode == 0, explain(proc)
    run_dir = project / "clone"
    assert (run_dir / "weights" / "best.pt").is_file() and (run_dir / "results.csv").is_file()
    record = yaml.safe_load((run_dir / "focal_setup.yaml").read_text())
    assert record["delivery"] == "source patches" and record["stock"] is False
    assert "obj: VFLoss" in record["criteria"] and "cls: BCEWithLogitsLoss" in record["criteria"]
    assert any("Arial.ttf" in shim for shim in record["shims"]), record["shims"]
    log = proc.stdout + proc.stderr
    assert f"yolov5 at {clone70} is source-patched (YOLO_FOCAL_PATCHED); the start-up hook stands aside" in log
    # wrapped once: a start-up hook that also wrapped the patched ComputeLoss would log its setup twice
    assert len(re.findall(r"^yolo-focal-plugin: fl_loss=varifocal .*\| cls: ", log, re.M)) == 1, log[-4000:]
    assert (run_dir / "train_batch0.jpg").is_file()  # Pillow getsize restored by the patched plots.py

    code, out = cli("revert", str(clone70), capsys=capsys)
    assert code == 0, out
    assert tree_bytes(clone70) == clone70_bytes


CLONE_PLOT_SCRIPT = r"""
import sys
sys.path.insert(0, ".")  # the clone's root, as for its train.py
import numpy as np
import utils.metrics, utils.plots  # the clone's own modules, as its train.py imports them
from yolo_focal_plugin.integration import evolve

hyp = {"lr0": 0.01, "fl_gamma": 1.5, "fl_alpha": 0.25}
rows = np.random.default_rng(0).random((4, 7 + len(hyp)))
header = ",".join([f"m{i}" for i in range(7)] + list(hyp))
np.savetxt(sys.argv[1], rows, delimiter=",", header=header, comments="")
evolve.plot(sys.argv[1], hyp)
print("LOADED_YOLOV5", "yolov5" in sys.modules)
"""


def test_evolve_plot_in_a_clone_uses_the_clone_not_the_pip_package(clone_v70, tmp_path, clean_env):
    """The patched clone's --evolve ends in the plugin's plot: it must not need (or import) the pip fork."""
    script = tmp_path / "plot.py"
    script.write_text(CLONE_PLOT_SCRIPT)
    proc = run([sys.executable, str(script), str(tmp_path / "evolve.csv")], clean_env, cwd=clone_v70)
    assert proc.returncode == 0, explain(proc)
    assert "LOADED_YOLOV5 False" in proc.stdout, proc.stdout
    assert (tmp_path / "evolve.png").is_file()
