"""The ``.pth`` start-up hook runs in every Python process on the machine: it must stay cheap and
must never stop an interpreter from starting (issue #15, section 4).

Cost is checked by its cause, the modules start-up imports, not by timing (``benchmarks/bench_startup.py``
times it). Each check runs a real interpreter start-up in a subprocess.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_MODULES = {"yolo_focal_plugin", "yolo_focal_plugin._startup", "yolo_focal_plugin.integration",
                  "yolo_focal_plugin.integration.hook"}
HEAVY = ("yolo_focal_plugin.integration.compat", "yolo_focal_plugin.integration.yolov5_hooks",
         "yolo_focal_plugin.hyp", "typing", "re", "logging", "inspect", "pathlib", "importlib.abc", "threading")


def _env(**changes: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_FOCAL")}
    env.update(changes)
    return env


def _modules_after_startup(env: Dict[str, str]) -> Set[str]:
    out = subprocess.run([sys.executable, "-c", "import sys; print('\\n'.join(sys.modules))"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_startup_imports_only_what_registering_the_finder_needs() -> None:
    active = _modules_after_startup(_env())
    baseline = _modules_after_startup(_env(YOLO_FOCAL_DISABLE="1"))
    assert "yolo_focal_plugin.integration.hook" in active, "the start-up hook did not run: is the plugin installed?"
    heavy = [m for m in HEAVY if m in active and m not in baseline]
    assert not heavy, f"start-up imported {heavy}: every Python process on the machine pays for them"
    extra = sorted(active - baseline - PLUGIN_MODULES)
    # the finder needs nothing the interpreter has not loaded; allow a few for other Python versions
    assert len(extra) <= 3, f"start-up imported {len(extra)} modules beyond YOLO_FOCAL_DISABLE=1: {extra}"


def test_documented_import_paths_still_work_lazily() -> None:
    code = (
        "import sys\n"
        "from yolo_focal_plugin.integration import (install, uninstall, installed, patched, applied_patches,\n"
        "    SUPPORTED_YOLOV5_VERSIONS, UnsupportedYolov5Version)\n"
        "import yolo_focal_plugin.integration as I\n"
        "assert '7.0.14' in SUPPORTED_YOLOV5_VERSIONS and issubclass(UnsupportedYolov5Version, RuntimeError)\n"
        "assert I.compat.APPLIED is not None and I.STATE is I.yolov5_hooks.STATE and I.LEDGER is I.patching.LEDGER\n"
        "assert applied_patches() == [] and 'yolov5' not in sys.modules\n"
        "try:\n    I.no_such_name\nexcept AttributeError as e:\n    assert 'no_such_name' in str(e)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr


def _shadow_plugin(root: Path, hook_source: str) -> None:
    """A copy of the plugin's start-up path whose hook module runs ``hook_source`` when imported."""
    package = root / "yolo_focal_plugin"
    (package / "integration").mkdir(parents=True)
    for name in ("__init__.py", "_moved.py", "env.py", "_startup.py"):  # what start-up imports before the hook
        shutil.copy(REPO / "yolo_focal_plugin" / name, package / name)
    (package / "integration" / "__init__.py").write_text("")
    (package / "integration" / "hook.py").write_text(hook_source)


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_a_hook_that_raises_base_exceptions_does_not_stop_the_interpreter(tmp_path: Path, raised: str) -> None:
    # site.py catches only Exception from a .pth line: anything else used to end in
    # "Fatal Python error: init_import_site" before the user's code ran
    _shadow_plugin(tmp_path, f"raise {raised}\n")
    proc = subprocess.run([sys.executable, "-c", "print('alive')"], env=_env(PYTHONPATH=str(tmp_path)),
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "alive", proc.stderr
    assert "yolo-focal-plugin: start-up hook disabled" in proc.stderr and raised.split("(")[0] in proc.stderr


@pytest.mark.parametrize("disable", ["0", "1"])
def test_the_pth_line_survives_a_package_that_raises_systemexit(tmp_path: Path, disable: str) -> None:
    # The package's own __init__ runs before _startup can guard anything: the .pth line guards it.
    # site.addsitedir processes the repository's .pth with site.py's own code, as at start-up (the
    # installed copy may be older than this checkout).
    shadow = tmp_path / "shadow" / "yolo_focal_plugin"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit('broken plugin')\n")
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    shutil.copy(REPO / "yolo_focal_plugin_autopatch.pth", site_dir)
    code = f"import site; site.addsitedir({str(site_dir)!r}); print('alive')"
    proc = subprocess.run([sys.executable, "-S", "-c", code],
                          env=_env(PYTHONPATH=str(tmp_path / "shadow"), YOLO_FOCAL_DISABLE=disable),
                          capture_output=True, text=True, cwd=tmp_path)  # not the checkout: '' leads sys.path
    assert proc.returncode == 0 and proc.stdout.strip() == "alive", proc.stderr
    assert "start-up hook disabled" in proc.stderr and "broken plugin" in proc.stderr
