"""Clones of ultralytics/yolov5 (``python train.py`` inside the repository), at tag v7.0 and at the
newest upstream commit: recognised by shape, patched at import, offline, never silent.

The clones are the unmodified snapshots in ../shared/upstream (see conftest.extract_clone). Every
training run is the clone's own ``train.py`` in a subprocess, with the start-up hook as a user has it.
"""
from __future__ import annotations

import ast
import csv
import shutil
import socket
import sys
from pathlib import Path

import pytest
import yaml

from conftest import explain, run
from yolo_focal_plugin.integration.clone import clone_root_of, looks_like_clone, source_mismatches

CLONES = ("clone_v70", "clone_newest")


def clone_train_args(data: Path, project: Path, name: str, hyp: str, cfg: str = "models/yolov5n.yaml",
                     extra: tuple = ()) -> list:
    return ["--data", str(data), "--cfg", cfg, "--weights", "", "--img", "64", "--epochs", "1", "--batch-size", "8",
            "--workers", "0", "--device", "cpu", "--project", str(project), "--name", name, "--hyp", hyp, *extra]


def bad_hyp(tmp_path: Path, clone: Path, **fl_keys) -> Path:
    hyp = yaml.safe_load((clone / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    hyp.update(fl_keys)
    path = tmp_path / "bad_hyp.yaml"
    path.write_text(yaml.safe_dump(hyp))
    return path


def results_rows(run_dir: Path) -> list:
    with open(run_dir / "results.csv") as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


def compute_loss_sources(loss_py: Path) -> tuple:
    """``__init__`` and ``__call__`` source of ``ComputeLoss`` in ``loss_py``, read without importing it."""
    text = loss_py.read_text()
    cls = next(n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == "ComputeLoss")
    methods = {n.name: ast.get_source_segment(text, n) for n in cls.body if isinstance(n, ast.FunctionDef)}
    return methods["__init__"], methods["__call__"]


# --------------------------------------------------------------------------- recognition (fast)


@pytest.mark.parametrize("which", CLONES)
def test_both_snapshots_have_the_shape_the_plugin_patches(which, request):
    clone = request.getfixturevalue(which)
    assert looks_like_clone(clone)
    for loss_py in (clone / "utils" / "loss.py", clone / "utils" / "segment" / "loss.py"):
        assert source_mismatches(*compute_loss_sources(loss_py)) == [], loss_py


def test_shape_check_names_what_an_edited_compute_loss_lacks(clone_v70):
    init, call = compute_loss_sources(clone_v70 / "utils" / "loss.py")
    missing = source_mismatches(init, call.replace("self.BCEobj(", "self.objectness("))
    assert missing == ["self.BCEobj(...) called in __call__"]
    missing = source_mismatches(init.replace("h['fl_gamma']", "h.get('gamma')"), call)
    assert missing == ["h['fl_gamma'] read in __init__"]


def test_clone_root_is_found_from_a_module_file(tmp_path):
    assert clone_root_of("utils.loss", str(tmp_path / "utils" / "loss.py")) == tmp_path.resolve()
    assert clone_root_of("utils.segment.loss", str(tmp_path / "utils" / "segment" / "loss.py")) == tmp_path.resolve()
    assert clone_root_of("utils.loss", None) is None


def test_another_projects_top_level_utils_is_never_touched(tmp_path, clean_env):
    # Same module names and even a ComputeLoss class, but no train.py / models/yolo.py beside it.
    (tmp_path / "utils").mkdir()
    (tmp_path / "utils" / "__init__.py").write_text("")
    (tmp_path / "utils" / "general.py").write_text("def check_file(f, suffix=''):\n    return f\n")
    (tmp_path / "utils" / "loss.py").write_text("class ComputeLoss:\n    def __init__(self, model):\n        pass\n")
    probe = ("import utils.general, utils.loss\n"
             "print(type(utils.loss.__spec__.loader).__name__, type(utils.general.__spec__.loader).__name__,\n"
             "      hasattr(utils.loss.ComputeLoss.__init__, '_yolo_focal'), utils.general.check_file.__code__.co_filename)\n")
    proc = run([sys.executable, "-c", probe], clean_env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.split() == ["SourceFileLoader", "SourceFileLoader", "False",
                                   str(tmp_path / "utils" / "general.py")], explain(proc)


def test_a_clone_imported_as_a_library_is_patched(clone_v70, clean_env):
    probe = ("import utils.loss as L, utils.general as G\n"
             "print(getattr(L.ComputeLoss.__init__, '_yolo_focal', False), G.check_file.__code__.co_filename)\n")
    proc = run([sys.executable, "-c", probe], clean_env, cwd=clone_v70)
    assert proc.returncode == 0, explain(proc)
    patched, check_file_code = proc.stdout.split()
    assert patched == "True" and check_file_code.endswith("yolo_focal_plugin/integration/compat.py"), explain(proc)


def test_a_clone_named_yolov5_beside_the_pip_package_is_named(clone_v70, tmp_path, clean_env):
    parent = tmp_path / "work"
    shutil.copytree(clone_v70, parent / "yolov5", symlinks=True)
    proc = run([sys.executable, "-c", "import yolov5, sys; print(yolov5.__file__)"], clean_env, cwd=parent)
    assert proc.returncode == 0, explain(proc)
    assert "site-packages" in proc.stdout  # the look-alike trap is real: Python picks the pip package
    assert f"NOT the clone at {(parent / 'yolov5').resolve()}" in proc.stderr, explain(proc)


# --------------------------------------------------------------------------- refusals before any run directory


@pytest.mark.parametrize("which", CLONES)
def test_typo_key_stops_before_the_run_directory(which, request, tiny_data, tmp_path, clean_env):
    clone = request.getfixturevalue(which)
    hyp = bad_hyp(tmp_path, clone, fl_gama=2.0)
    project = tmp_path / "runs"
    proc = run([sys.executable, "train.py", *clone_train_args(tiny_data, project, "typo", str(hyp))], clean_env,
               cwd=clone)
    assert proc.returncode != 0
    assert "unknown hyp key(s) 'fl_gama'" in proc.stderr, explain(proc)
    assert not project.exists(), list(project.rglob("*"))


@pytest.mark.parametrize("which", CLONES)
def test_compute_loss_out_of_shape_is_refused_loudly(which, request, tiny_data, tmp_path, clean_env):
    clone = tmp_path / "clone"
    shutil.copytree(request.getfixturevalue(which), clone, symlinks=True)
    loss_py = clone / "utils" / "loss.py"
    loss_py.write_text(loss_py.read_text().replace("self.BCEobj", "self.objectness"))
    project = tmp_path / "runs"
    proc = run([sys.executable, "train.py", *clone_train_args(tiny_data, project, "edited", "hyp.varifocal.yaml")],
               clean_env, cwd=clone)
    assert proc.returncode != 0
    assert "UnrecognisedComputeLoss" in proc.stderr and str(loss_py.resolve()) in proc.stderr, explain(proc)
    assert "self.BCEobj(...) called in __call__ not found" in proc.stderr, explain(proc)
    assert "fl_loss" in proc.stderr and "YOLO_FOCAL_FORCE=1" in proc.stderr
    assert not project.exists()


def test_evolve_with_plugin_keys_is_refused_where_main_has_another_shape(clone_newest, tiny_data, tmp_path, clean_env):
    # The newest upstream rewrote its evolution; the plugin recognises v7.0's main() only.
    project = tmp_path / "evolve"
    proc = run([sys.executable, "train.py", *clone_train_args(tiny_data, project, "evo", "hyp.varifocal.yaml",
                                                              extra=("--evolve", "2"))], clean_env, cwd=clone_newest)
    assert proc.returncode != 0
    assert "EvolveUnsupported" in proc.stderr and "yolo-focal sweep" in proc.stderr, explain(proc)
    assert not project.exists()


@pytest.mark.slow
def test_v70_evolve_mutates_the_plugins_numeric_keys_and_holds_the_rest(clone_v70, tiny_data, tmp_path, clean_env):
    project = tmp_path / "evolve"
    proc = run([sys.executable, "train.py", *clone_train_args(tiny_data, project, "evo", "hyp.varifocal.yaml",
                                                              extra=("--evolve", "2"))], clean_env, cwd=clone_v70)
    assert proc.returncode == 0, explain(proc)
    assert "Hyperparameter evolution finished 2 generations" in proc.stdout + proc.stderr, explain(proc)
    out = proc.stdout + proc.stderr
    assert out.count("yolo-focal-plugin: fl_loss=varifocal") == 2  # each generation trained the named loss
    header = [c.strip() for c in (project / "evo" / "evolve.csv").read_text().splitlines()[0].split(",")]
    assert {"fl_gamma", "fl_alpha"} <= set(header) and "fl_loss" not in header
    evolved = yaml.safe_load((project / "evo" / "hyp_evolve.yaml").read_text())
    assert evolved["fl_loss"] == "varifocal" and evolved["fl_apply"] == "obj"  # held keys kept in the result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_ddp_rank_of_a_clone_prepares_its_run(clone_v70, tiny_data, tmp_path, clean_env):
    # Real DDP needs GPUs (each rank asserts a CUDA device right after select_device); what the plugin
    # must guarantee is that each rank interpreter runs the same checks: a typo stops both ranks.
    hyp = bad_hyp(tmp_path, clone_v70, fl_gama=2.0)
    proc = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(_free_port()), "train.py", *clone_train_args(tiny_data, tmp_path / "runs", "ddp", str(hyp))],
               clean_env, cwd=clone_v70)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert output.count("unknown hyp key(s) 'fl_gama'") >= 2, explain(proc)  # one refusal per rank
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- real training runs


@pytest.mark.slow
@pytest.mark.parametrize("which", CLONES)
def test_python_train_py_with_a_bare_hyp_name_trains_the_named_loss(which, request, tiny_data, tmp_path, clean_env):
    clone = request.getfixturevalue(which)
    project = tmp_path / "runs"
    proc = run([sys.executable, "train.py", *clone_train_args(tiny_data, project, "vf", "hyp.varifocal.yaml")],
               clean_env, cwd=clone)
    assert proc.returncode == 0, explain(proc)
    run_dir = project / "vf"
    record = yaml.safe_load((run_dir / "focal_setup.yaml").read_text())
    assert record["yolov5_layout"] == "clone" and record["yolov5_root"] == str(clone.resolve())
    assert record["delivery"] == "import hook" and record["stock"] is False
    assert record["criteria"].startswith("cls: BCEWithLogitsLoss(); obj: VFLoss(")
    assert "yolo-focal-plugin: fl_loss=varifocal" in proc.stdout + proc.stderr  # through the clone's own logger
    best = run_dir / "weights" / "best.pt"
    val = run([sys.executable, "val.py", "--weights", str(best), "--data", str(tiny_data), "--img", "64",
               "--batch-size", "8", "--workers", "0", "--device", "cpu", "--project", str(tmp_path / "val")],
              clean_env, cwd=clone)
    assert val.returncode == 0, explain(val)


STOCK_NUMPY = "import numpy\nif not hasattr(numpy, 'trapz'):\n    numpy.trapz = numpy.trapezoid\n"


@pytest.mark.slow
@pytest.mark.parametrize("which", CLONES)
def test_stock_hyp_trains_bit_identically_with_and_without_the_plugin(which, request, tiny_data, tmp_path, clean_env):
    import matplotlib

    clone = request.getfixturevalue(which)
    stock_hyp = str(clone / "data" / "hyps" / "hyp.scratch-low.yaml")
    # Stock YOLOv5 without the plugin cannot run offline on today's stack: give it what the plugin's
    # shims would (the font, np.trapz, weights_only off) so that only the loss path differs.
    font = Path(clean_env["YOLOV5_CONFIG_DIR"]) / "Arial.ttf"
    shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font)
    site = tmp_path / "stock_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(STOCK_NUMPY)
    stock_env = {**clean_env, "YOLO_FOCAL_DISABLE": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
                 "PYTHONPATH": str(site)}
    project = tmp_path / "runs"
    stock = run([sys.executable, "train.py", *clone_train_args(tiny_data, project, "stock", stock_hyp)], stock_env,
                cwd=clone)
    assert stock.returncode == 0, explain(stock)
    plugin = run([sys.executable, "train.py", *clone_train_args(tiny_data, project, "plugin", stock_hyp)], clean_env,
                 cwd=clone)
    assert plugin.returncode == 0, explain(plugin)
    assert not (project / "stock" / "focal_setup.yaml").exists()  # the plugin really was off
    assert yaml.safe_load((project / "plugin" / "focal_setup.yaml").read_text())["stock"] is True
    assert results_rows(project / "stock") == results_rows(project / "plugin")


@pytest.mark.slow
def test_v70_segment_train_py_trains_the_named_loss(clone_v70, tiny_seg_data, tmp_path, clean_env):
    project = tmp_path / "runs"
    proc = run([sys.executable, "segment/train.py",
                *clone_train_args(tiny_seg_data, project, "seg", "hyp.varifocal.yaml",
                                  cfg="models/segment/yolov5n-seg.yaml")], clean_env, cwd=clone_v70)
    assert proc.returncode == 0, explain(proc)
    record = yaml.safe_load((project / "seg" / "focal_setup.yaml").read_text())
    assert record["criteria"].startswith("cls: BCEWithLogitsLoss(); obj: VFLoss(")
    assert (project / "seg" / "weights" / "best.pt").is_file()



def test_uninstall_and_install_in_a_process_that_imported_a_clone(clone_v70, clean_env):
    probe = ("import utils.loss as L, yolo_focal_plugin as P\n"
             "P.uninstall(); print(hasattr(L.ComputeLoss.__init__, '_yolo_focal'))\n"
             "P.install(); print(getattr(L.ComputeLoss.__init__, '_yolo_focal', False))\n")
    proc = run([sys.executable, "-c", probe], clean_env, cwd=clone_v70)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.split() == ["False", "True"], explain(proc)
