"""Shared fixtures: tiny generated datasets and a runner for real yolov5 subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

from yolo_focal_plugin.experiments.synth import SynthConfig, generate

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]

# Smallest settings that still give yolov5 targets on every level: 64 px images, objects 8-20 px.
TINY = SynthConfig(n_train=16, n_val=8, img_size=64, nc=3, imbalance=6.0, min_objects=1, max_objects=4,
                   min_size=8, max_size=20, seed=0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("tiny_data"), TINY)


@pytest.fixture(scope="session")
def tiny_seg_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("tiny_seg_data"), SynthConfig(**{**TINY.__dict__, "segments": True}))


@pytest.fixture
def clean_env(tmp_path: Path) -> Dict[str, str]:
    """Environment for a subprocess: an empty yolov5 config dir, so nothing cached (fonts) helps."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_FOCAL", "PYTEST_"))}
    config = tmp_path / "yolov5_config"
    config.mkdir()
    env["YOLOV5_CONFIG_DIR"] = str(config)
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "2")
    return env


def train_args(data: Path, project: Path, name: str, hyp: Optional[str] = None, epochs: int = 1,
               extra: Sequence[str] = ()) -> List[str]:
    args = ["--data", str(data), "--cfg", "yolov5n.yaml", "--weights", "", "--img", "64", "--epochs", str(epochs),
            "--batch-size", "8", "--workers", "0", "--device", "cpu", "--project", str(project), "--name", name]
    if hyp:
        args += ["--hyp", hyp]
    return args + list(extra)


def run(cmd: Sequence[str], env: Dict[str, str], cwd: Optional[Path] = None, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), env=env, cwd=str(cwd) if cwd else None, capture_output=True, text=True, timeout=timeout)
    return proc


def explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout (tail)\n{proc.stdout[-3000:]}\n--- stderr (tail)\n{proc.stderr[-6000:]}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skip means something the project should have installed is missing: fail the run."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for report in skipped:
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
            reporter.write_line(f"CI: skipped test counts as a failure: {report.nodeid}: {reason}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --------------------------------------------------------------------------- upstream clones

# Unmodified `git archive` snapshots of ultralytics/yolov5 (../shared/upstream/README.md); each unpacks to yolov5/.
UPSTREAM_ENV = "YOLO_FOCAL_UPSTREAM_DIR"
UPSTREAM_SNAPSHOTS = {
    "v7.0": "ultralytics-yolov5-v7.0.tar.gz",
    "newest": "ultralytics-yolov5-5081342.tar.gz",
}


def upstream_dir() -> Path:
    return Path(os.environ.get(UPSTREAM_ENV) or REPO.parent / "shared" / "upstream")


def extract_clone(which: str, destination: Path) -> Path:
    """Unpack the ``which`` snapshot under ``destination``; returns the clone's root (``.../yolov5``).

    Skips (a failure in CI, see pytest_sessionfinish) when the snapshot is not there.
    """
    import tarfile

    archive = upstream_dir() / UPSTREAM_SNAPSHOTS[which]
    if not archive.is_file():
        pytest.skip(f"upstream snapshot {archive} not found (set {UPSTREAM_ENV} to the folder holding it)")
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    root = destination / "yolov5"
    assert (root / "train.py").is_file(), f"{archive} did not unpack to yolov5/train.py"
    return root


@pytest.fixture(scope="session")
def clone_v70(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine clone of ultralytics/yolov5 at tag v7.0 (shared by the session: copy it before editing)."""
    return extract_clone("v7.0", tmp_path_factory.mktemp("clone_v70"))


@pytest.fixture(scope="session")
def clone_newest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine clone of ultralytics/yolov5 at the newest snapshot (shared: copy it before editing)."""
    return extract_clone("newest", tmp_path_factory.mktemp("clone_newest"))
