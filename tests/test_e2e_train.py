"""End to end: real yolov5 training runs on generated data through every entry point, offline.

Each run is 1-2 epochs of yolov5n at 64 px on 16 images: enough to go through data loading,
the patched loss, validation, checkpointing, ``strip_optimizer`` and plotting.
"""
from __future__ import annotations

import csv
import socket
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import BIN, explain, run, train_args

pytestmark = pytest.mark.slow


def setup_record(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "focal_setup.yaml").read_text())


def results_rows(run_dir: Path) -> list:
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def assert_finished(run_dir: Path) -> None:
    assert (run_dir / "weights" / "best.pt").is_file()
    assert (run_dir / "results.csv").is_file()
    assert (run_dir / "hyp.yaml").is_file()


def test_yolo_focal_train_then_yolov5_val_on_best_pt(tiny_data, tmp_path, clean_env):
    project = tmp_path / "runs"
    # bare hyp name from an unrelated working directory: resolved to the bundled file
    proc = run([str(BIN / "yolo-focal"), "train", *train_args(tiny_data, project, "focal", hyp="hyp.focal.yaml")],
               clean_env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    run_dir = project / "focal"
    assert_finished(run_dir)
    record = setup_record(run_dir)
    assert record["stock"] is False
    assert "cls: FocalLoss" in record["criteria"] and "obj: FocalLoss" in record["criteria"]  # hyp.focal.yaml: both
    assert any("Arial.ttf" in s for s in record["shims"]), record["shims"]  # fresh config dir: font was seeded
    assert "yolo-focal-plugin: fl_loss=focal" in proc.stdout + proc.stderr  # the run log says what it did
    assert (run_dir / "train_batch0.jpg").is_file()  # Pillow getsize shim: batch images are drawn

    # `--weights best.pt` relative: the fork would ask Hugging Face first and die offline
    val = run([str(BIN / "yolov5"), "val", "--weights", "best.pt", "--data", str(tiny_data), "--img", "64",
               "--device", "cpu", "--project", str(tmp_path / "val"), "--name", "v"], clean_env, cwd=run_dir / "weights")
    assert val.returncode == 0, explain(val)
    assert "all" in val.stdout + val.stderr  # the metrics table was printed


def test_plain_yolov5_cli_with_noval_and_qfocal(tiny_data, tmp_path, clean_env):
    project = tmp_path / "runs"
    proc = run([str(BIN / "yolov5"), "train", *train_args(tiny_data, project, "q", hyp="hyp.qfocal.yaml", epochs=2,
                                                        extra=["--noval"])], clean_env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)  # stock fork: UnboundLocalError map50s
    assert_finished(project / "q")
    assert len(results_rows(project / "q")) == 2
    record = setup_record(project / "q")
    assert "cls: QFocalLoss" in record["criteria"] and "obj: QFocalLoss" in record["criteria"]


def test_python_m_yolov5_train_with_varifocal(tiny_data, tmp_path, clean_env):
    project = tmp_path / "runs"
    proc = run([sys.executable, "-m", "yolov5.train", *train_args(tiny_data, project, "v", hyp="hyp.varifocal.yaml")],
               clean_env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert_finished(project / "v")
    assert "obj: VFLoss" in setup_record(project / "v")["criteria"]


def test_yolov5_segment_train_is_not_a_no_op(tiny_seg_data, tmp_path, clean_env):
    project = tmp_path / "runs"
    args = train_args(tiny_seg_data, project, "seg", hyp="hyp.qfocal.yaml")
    args[args.index("yolov5n.yaml")] = "yolov5n-seg.yaml"
    proc = run([str(BIN / "yolov5"), "segment", "train", *args], clean_env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert_finished(project / "seg")  # also proves segment checkpoints load under weights_only
    assert "obj: QFocalLoss" in setup_record(project / "seg")["criteria"]


def test_retina_assigner_trains(tiny_data, tmp_path, clean_env):
    project = tmp_path / "runs"
    proc = run([str(BIN / "yolov5"), "train", *train_args(tiny_data, project, "retina", hyp="hyp.retina.yaml",
                                                        extra=["--noplots"])], clean_env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert_finished(project / "retina")
    record = setup_record(project / "retina")
    assert "RetinaMatcher" in record["criteria"] and "IgnoreMasked" in record["criteria"]


def test_python_api_install_then_run(tiny_data, tmp_path, clean_env):
    script = tmp_path / "train_api.py"
    script.write_text(textwrap.dedent(f"""
        import yolo_focal_plugin
        yolo_focal_plugin.install()
        import yolov5.train
        yolov5.train.run(data={str(tiny_data)!r}, cfg="yolov5n.yaml", weights="", imgsz=64, epochs=1, batch_size=8,
                         workers=0, device="cpu", project={str(tmp_path / "runs")!r}, name="api", hyp="hyp.focal.yaml")
    """))
    env = {**clean_env, "YOLO_FOCAL_DISABLE": "1"}  # no start-up hook: install() alone must do it
    proc = run([sys.executable, str(script)], env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert "obj: FocalLoss" in setup_record(tmp_path / "runs" / "api")["criteria"]


STOCK_RUNNER = """
import sys
import numpy as np
# The only changes stock yolov5 7.0.14 needs to run at all on this stack (numpy 2; torch>=2.6 loads
# via TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD in the environment; the font is pre-seeded in the config dir).
np.trapz = np.trapezoid
import yolov5.train
opt = yolov5.train.parse_opt(True)
for key, value in zip(sys.argv[1::2], sys.argv[2::2]):
    setattr(opt, key, int(value) if value.lstrip("-").isdigit() else value)
yolov5.train.main(opt)
"""


def test_stock_hyp_trains_bit_identically_to_yolov5_without_plugin(tiny_data, tmp_path, clean_env):
    import shutil

    import matplotlib

    config = Path(clean_env["YOLOV5_CONFIG_DIR"])
    shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", config / "Arial.ttf")
    common = dict(data=str(tiny_data), cfg="yolov5n.yaml", weights="", imgsz=64, epochs=1, batch_size=8,
                  workers=0, device="cpu", project=str(tmp_path / "runs"), seed=0)
    script = tmp_path / "stock_train.py"
    script.write_text(STOCK_RUNNER)

    def argv(name):
        out = []
        for k, v in {**common, "name": name}.items():
            out += [k, v]
        return [str(x) for x in out]

    stock_env = {**clean_env, "YOLO_FOCAL_DISABLE": "1", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    stock = run([sys.executable, str(script), *argv("stock")], stock_env, cwd=tmp_path)
    assert stock.returncode == 0, explain(stock)
    plugin = run([sys.executable, str(script), *argv("plugin")], clean_env, cwd=tmp_path)
    assert plugin.returncode == 0, explain(plugin)
    assert setup_record(tmp_path / "runs" / "plugin")["stock"] is True
    assert not (tmp_path / "runs" / "stock" / "focal_setup.yaml").exists()  # the plugin really was off
    stock_rows = results_rows(tmp_path / "runs" / "stock")
    plugin_rows = results_rows(tmp_path / "runs" / "plugin")
    assert stock_rows == plugin_rows


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"fl_gamma": -1.0}, "'fl_gamma' has invalid value -1.0: expected a finite float >= 0"),
        # issue #15: each of these got past validation, and the run died later (or trained BCE)
        ({"FL_GAMMA": 2.0}, "unknown hyp key(s) 'FL_GAMMA' (did you mean 'fl_gamma'?)"),
        ({"fl_loss": "varifocal", "fl_alpha": "auto", "fl_apply": "obj"}, "'fl_alpha' has invalid value 'auto'"),
        ({"fl_loss": "yolov5_focal", "fl_alpha": None}, "'fl_alpha' has invalid value None: fl_loss: yolov5_focal"),
        ({"fl_gamma": 1.0e300}, "'fl_gamma' has invalid value 1e+300: expected a finite float >= 0 and <= 1e+06"),
    ],
    ids=["negative-gamma", "capitalised-key", "auto-varifocal-obj", "stock-focal-null-alpha", "huge-gamma"],
)
def test_invalid_hyp_stops_before_any_run_directory(tiny_data, tmp_path, clean_env, changes, message):
    bad = tmp_path / "bad.yaml"
    hyp = yaml.safe_load(Path(__file__).resolve().parents[1].joinpath("hyps", "hyp.focal.yaml").read_text())
    hyp.update(changes)
    bad.write_text(yaml.safe_dump(hyp))
    project = tmp_path / "runs"
    proc = run([str(BIN / "yolo-focal"), "train", *train_args(tiny_data, project, "bad", hyp=str(bad))], clean_env,
               cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr, explain(proc)
    assert not (project / "bad").exists()
    assert "Traceback" not in proc.stderr, explain(proc)  # a message, not a crash


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ranks_started_by_torch_distributed_run_are_patched(tmp_path, clean_env):
    # Real DDP training needs GPUs (yolov5 asserts cuda devices per rank); what the plugin must
    # guarantee is that every rank interpreter it starts patches itself.
    probe = tmp_path / "rank_probe.py"
    probe.write_text(
        "import os, yolov5.utils.loss as L\n"
        "print('rank', os.environ['RANK'], 'patched', getattr(L.ComputeLoss.__init__, '_yolo_focal', False))\n"
    )
    proc = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(_free_port()), str(probe)], clean_env, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert "rank 0 patched True" in proc.stdout and "rank 1 patched True" in proc.stdout, explain(proc)
