"""Inspect a yolov5 source tree, and apply or revert the source patches all-or-nothing.

Order of work for ``apply``/``revert``:

1. state of every file, hunk by hunk (``unidiff``): refuse at once, touching nothing, if the tree
   is already patched, partly patched, or changed where a hunk goes;
2. dry run of every file with the backend (GNU ``patch --dry-run``, else ``git apply --check``,
   else the built-in applier);
3. snapshot of the bytes and mode of every file the patches touch, then the real run;
4. every result is compared with the exact expected text; on any failure (or Ctrl-C) every file
   is restored from the snapshot and stray ``.orig``/``.rej`` files are removed.

Backends never use fuzz: a hunk applies where its context matches exactly, or not at all.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from . import available_versions, clone_patch_sets, load_manifest, load_series, patches_dir
from .unidiff import FilePatch, PatchMismatch, parse_patch

__all__ = ["Tree", "FileStatus", "inspect_tree", "PatchError", "choose_backend", "BACKENDS", "transaction"]

STATES = ("missing", "pristine", "patched", "partial", "conflict")
FITTING = ("pristine", "patched", "partial")  # every hunk of the file fits exactly, applied or not


class PatchError(RuntimeError):
    """Refused or failed; the tree is as it was before the command."""


# --------------------------------------------------------------------------- the tree


@dataclass
class FileStatus:
    patch: str
    file_patch: FilePatch
    state: str
    identical_to: Optional[str] = None  # "pristine" / "patched": byte-identical to the manifest's file

    @property
    def path(self) -> str:
        return self.file_patch.path


@dataclass
class Tree:
    root: Path
    layout: str  # "package", "clone" or "unknown"
    version: Optional[str]
    patch_version: Optional[str]  # the patch set used (== version when supported)
    patch_dir: Optional[Path]
    files: List[FileStatus] = field(default_factory=list)
    upstream: Optional[Dict[str, str]] = None  # clone: the manifest's {"tag", "commit", "repository"}

    @property
    def fits(self) -> bool:
        """Every hunk of the patch set fits exactly (pristine, patched, or a mix): nothing in conflict or missing."""
        return bool(self.files) and all(f.state in FITTING for f in self.files)

    @property
    def supported(self) -> bool:
        if self.layout == "clone":  # chosen by fit, not by a version table: a clone has no version file
            return self.patch_dir is not None and self.fits
        return self.layout == "package" and self.version is not None and self.version == self.patch_version

    @property
    def label(self) -> str:
        """What the patch set was generated from: ``yolov5 7.0.14`` or ``ultralytics/yolov5 v7.0 (915bbf2)``."""
        if self.upstream:
            return f"{self.upstream.get('repository', 'ultralytics/yolov5')} {self.upstream['tag']} ({self.upstream['commit'][:7]})"
        return f"yolov5 {self.patch_version}"

    @property
    def state(self) -> str:
        """``pristine``, ``patched``, ``partially patched`` or ``conflict`` (incl. missing files)."""
        states = {f.state for f in self.files}
        if not states:
            return "unknown"
        if states <= {"pristine"}:
            return "pristine"
        if states <= {"patched"}:
            return "patched"
        if states <= {"pristine", "patched", "partial"}:
            return "partially patched"
        return "conflict"

    def by_state(self, *states: str) -> List[FileStatus]:
        return [f for f in self.files if f.state in states]


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None


def _layout(root: Path) -> str:
    """``package`` (pip fork: ``from yolov5.utils ...``), ``clone`` (ultralytics/yolov5 checkout) or ``unknown``.

    A clone is recognised by its shape, not by a version: ``train.py``, ``models/yolo.py`` and a
    ``utils/loss.py`` that defines ``ComputeLoss``, next to each other.
    """
    if not (root / "train.py").is_file() or not (root / "utils" / "loss.py").is_file():
        return "unknown"
    loss = _read(root / "utils" / "loss.py") or ""
    if (root / "__init__.py").is_file() and re.search(r"^from yolov5\.", loss, re.M):
        return "package"
    if (root / "models" / "yolo.py").is_file() and re.search(r"^class ComputeLoss\b", loss, re.M):
        return "clone"  # top-level `utils`, `models` (from utils.metrics import ...), run as `python train.py`
    return "unknown"


def load_patches(directory: Path) -> List[Tuple[str, FilePatch]]:
    out = []
    for name in load_series(directory):
        _, files = parse_patch((directory / name).read_text(encoding="utf-8"))
        out += [(name, fp) for fp in files]
    return out


def _file_statuses(root: Path, patch_dir: Path) -> List[FileStatus]:
    """Each file of the patch set at ``patch_dir``: its state hunk by hunk, and whether it is byte-identical."""
    digests = load_manifest(patch_dir).get("files", {})
    statuses = []
    for name, fp in load_patches(patch_dir):
        target = root / fp.path
        text = _read(target)
        status = FileStatus(name, fp, fp.state(text))
        if text is not None:
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            known = digests.get(fp.path, {})
            if digest == known.get("pristine_sha256"):
                status.identical_to = "pristine"
            elif digest == known.get("patched_sha256"):
                status.identical_to = "patched"
        statuses.append(status)
    return statuses


def _closest_clone_set(root: Path) -> Optional[Tuple[Path, List[FileStatus]]]:
    """The clone patch set whose hunks fit ``root`` exactly, else the one where the most files fit.

    Chosen by trying every set's hunks against the files (the exact-context check a dry run
    does), not by a table of versions: a clone can be at any upstream commit.
    """
    best: Optional[Tuple[int, Path, List[FileStatus]]] = None
    for directory in clone_patch_sets():
        statuses = _file_statuses(root, directory)
        fitting = sum(f.state in FITTING for f in statuses)
        if fitting == len(statuses):
            return directory, statuses
        if best is None or fitting > best[0]:
            best = (fitting, directory, statuses)
    return (best[1], best[2]) if best else None


def inspect_tree(root: Path, version_override: Optional[str] = None) -> Tree:
    """Everything ``check`` reports; ``version_override`` picks a patch set for an unsupported version.

    A pip package is matched to ``patches/yolov5-<its __version__>``; a clone to the
    ``patches/clone-*`` set whose hunks fit it (or, when none fits, the closest, to say why).
    """
    from ..integration.yolov5_hooks import read_yolov5_version

    root = Path(root).resolve()
    if not root.is_dir():
        raise PatchError(f"{root} is not a directory")
    layout = _layout(root)
    if layout == "clone":
        tree = Tree(root, layout, None, None, None)
        found = _closest_clone_set(root)
        if found is not None:
            tree.patch_dir, tree.files = found
            tree.upstream = dict(load_manifest(tree.patch_dir).get("upstream", {}))
            tree.patch_version = tree.upstream.get("tag")
        return tree
    version = read_yolov5_version(str(root / "__init__.py")) if layout == "package" else None
    versions = available_versions()
    patch_version = version if version in versions else version_override or (versions[-1] if versions else None)
    tree = Tree(root, layout, version, patch_version, patches_dir(patch_version) if patch_version else None)
    if tree.patch_dir is None or layout != "package":
        return tree
    tree.files = _file_statuses(root, tree.patch_dir)
    return tree


# --------------------------------------------------------------------------- backends


class Backend:
    name = "?"

    def available(self) -> bool:
        return True

    def describe(self) -> str:
        return self.name

    def run(self, root: Path, fp: FilePatch, reverse: bool, dry_run: bool) -> Optional[str]:
        """None on success, else the tool's message."""
        raise NotImplementedError


class _ExternalBackend(Backend):
    program = ""

    def available(self) -> bool:
        return shutil.which(self.program) is not None

    def describe(self) -> str:
        try:
            out = subprocess.run([self.program, "--version"], capture_output=True, text=True, timeout=30).stdout
            return out.splitlines()[0].strip() if out else self.program
        except (OSError, subprocess.SubprocessError):
            return self.program

    def command(self, root: Path, patch_file: str, reverse: bool, dry_run: bool) -> Tuple[List[str], Dict[str, str]]:
        raise NotImplementedError

    def run(self, root: Path, fp: FilePatch, reverse: bool, dry_run: bool) -> Optional[str]:
        with tempfile.NamedTemporaryFile("w", suffix=".patch", delete=False, encoding="utf-8") as f:
            f.write(fp.text)
        try:
            cmd, env = self.command(root, f.name, reverse, dry_run)
            proc = subprocess.run(cmd, cwd=str(root), env={**os.environ, **env}, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=120)
        finally:
            os.unlink(f.name)
        if proc.returncode == 0:
            return None
        return (proc.stdout + proc.stderr).strip() or f"{cmd[0]} exited with {proc.returncode}"


class GnuPatch(_ExternalBackend):
    """GNU patch: no fuzz, no questions, no backup or reject files left behind."""

    name = program = "patch"

    def command(self, root: Path, patch_file: str, reverse: bool, dry_run: bool) -> Tuple[List[str], Dict[str, str]]:
        # -f: never ask, never guess that a patch is reversed (--batch would guess, and revert it)
        cmd = ["patch", "-p1", "-f", "--fuzz=0", "--no-backup-if-mismatch", "-r", "-", "-i", patch_file]
        cmd += ["-R"] if reverse else ["-N"]
        if dry_run:
            cmd.append("--dry-run")
        return cmd, {}


class GitApply(_ExternalBackend):
    """``git apply``; discovery stops at the tree itself, so a tree inside your repository is fine."""

    name = program = "git"

    def command(self, root: Path, patch_file: str, reverse: bool, dry_run: bool) -> Tuple[List[str], Dict[str, str]]:
        cmd = ["git", "apply", "-p1", "--whitespace=nowarn"]
        if reverse:
            cmd.append("-R")
        if dry_run:
            cmd.append("--check")
        # without this, from a subdirectory of a repository git apply resolves paths against the
        # repository's top and silently skips the files outside the current directory
        return cmd + [patch_file], {"GIT_CEILING_DIRECTORIES": str(root.parent)}


class PythonApply(Backend):
    """The built-in applier (``unidiff``): exact context, no fuzz; used when neither tool is installed."""

    name = "python"

    def describe(self) -> str:
        found = [b.name for b in BACKENDS.values() if isinstance(b, _ExternalBackend) and b.available()]
        return "the built-in applier" + ("" if found else " (neither GNU patch nor git is on PATH)")

    def run(self, root: Path, fp: FilePatch, reverse: bool, dry_run: bool) -> Optional[str]:
        target = root / fp.path
        text = _read(target)
        if text is None:
            return f"{fp.path}: no such file"
        try:
            new = fp.apply(text, reverse=reverse)
        except PatchMismatch as exc:
            return str(exc)
        if not dry_run:
            _write_atomic(target, new.encode("utf-8"))
        return None


BACKENDS: Dict[str, Backend] = {"patch": GnuPatch(), "git": GitApply(), "python": PythonApply()}


def choose_backend(name: str = "auto") -> Backend:
    if name != "auto":
        backend = BACKENDS[name]
        if not backend.available():
            raise PatchError(f"backend {name!r} is not available: {backend.program!r} is not on PATH")
        return backend
    for backend in BACKENDS.values():
        if backend.available():
            return backend
    return BACKENDS["python"]


# --------------------------------------------------------------------------- transaction


def _write_atomic(target: Path, data: bytes, mode: Optional[int] = None) -> None:
    mode = mode if mode is not None else (target.stat().st_mode & 0o7777 if target.exists() else None)
    fd, tmp = tempfile.mkstemp(dir=str(target.parent), prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _strays(root: Path, paths: Sequence[str]) -> List[Path]:
    found = []
    for path in paths:
        target = root / path
        found += [p for p in target.parent.glob(target.name + ".*") if p.suffix in (".orig", ".rej")]
    return found


def transaction(root: Path, items: Sequence[FileStatus], reverse: bool, backend: Backend) -> List[str]:
    """Apply (or revert) every file in ``items``, or none of them. Returns the changed paths."""
    root = Path(root)
    expected: Dict[str, bytes] = {}
    for item in items:  # 1. exact expected results (the state check already passed; this re-reads)
        text = _read(root / item.path)
        if text is None:
            raise PatchError(f"{item.path}: no such file")
        try:
            expected[item.path] = item.file_patch.apply(text, reverse=reverse).encode("utf-8")
        except PatchMismatch as exc:
            raise PatchError(f"nothing changed: {exc}") from None
    errors = []  # 2. dry run with the backend
    for item in items:
        message = backend.run(root, item.file_patch, reverse, dry_run=True)
        if message:
            errors.append(f"{item.path}: {message}")
    if errors:
        raise PatchError(f"dry run with {backend.name} failed, nothing changed:\n  " + "\n  ".join(errors))
    paths = [item.path for item in items]
    snapshot = {p: ((root / p).read_bytes(), (root / p).stat().st_mode & 0o7777) for p in paths}  # 3.
    strays_before = set(_strays(root, paths))
    try:
        for item in items:
            message = backend.run(root, item.file_patch, reverse, dry_run=False)
            if message:
                raise PatchError(f"{backend.name} failed on {item.path} after a clean dry run: {message}")
        for path in paths:  # 4. verify
            if (root / path).read_bytes() != expected[path]:
                raise PatchError(f"{path}: {backend.name} produced different bytes than the patch describes")
    except BaseException as exc:
        for path, (data, mode) in snapshot.items():
            if not (root / path).exists() or (root / path).read_bytes() != data:
                _write_atomic(root / path, data, mode)
        for stray in set(_strays(root, paths)) - strays_before:
            stray.unlink()
        if isinstance(exc, PatchError):
            raise PatchError(f"{exc}\nrolled back: every file is as it was before") from None
        raise
    return paths
