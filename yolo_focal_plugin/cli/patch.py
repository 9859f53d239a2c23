"""``yolo-focal patch check|apply|revert PATH``: the plugin's source patches for a vendored yolov5.

PATH is a yolov5 package directory (the one holding ``__init__.py``, ``train.py``, ``utils/``),
e.g. a copy of ``site-packages/yolov5`` you ship in your repository, or the root of a clone of
ultralytics/yolov5 (``train.py``, ``models/yolo.py``, ``utils/loss.py``; run as ``python train.py``).
A package is matched to the patch set of its version; a clone to the patch set whose hunks fit it.

- ``check``: which yolov5 PATH is, whether the patches support it, and whether it is
  pristine, patched or partially patched (file by file, hunk by hunk), with a dry run.
- ``apply``: dry run first, then all-or-nothing (any failure restores every file); refuses a
  tree that is already (or partially) patched.
- ``revert``: restores the original files, byte for byte.

Exit status: 0 done (``check``: pristine or patched), 1 refused or inconsistent tree (nothing
changed), 2 not a supported yolov5 source.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import List, Optional, TextIO

from ..sourcepatch import available_versions, clone_patch_sets, load_manifest
from ..sourcepatch.apply import BACKENDS, Backend, PatchError, Tree, choose_backend, inspect_tree, transaction

OK, REFUSED, UNSUPPORTED = 0, 1, 2

HOOK_HINT = (
    "the plugin's start-up hook patches a clone at import: with yolo-focal-plugin installed in the Python that runs "
    "it, train as usual (`python train.py --hyp hyp.varifocal.yaml ...`)"
)


def patch_sets_summary() -> str:
    """``the pip fork 7.0.14 and the v7.0 clone (915bbf2)``: what source patches exist for."""
    names = [f"the pip fork {v}" for v in available_versions()]
    for directory in clone_patch_sets():
        upstream = load_manifest(directory).get("upstream", {})
        names.append(f"the {upstream.get('tag', directory.name)} clone ({str(upstream.get('commit', '?'))[:7]})")
    if not names:
        return "none are installed with the plugin"
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def clone_refusal(tree: Tree) -> str:
    """Why no source patch set fits this clone, and what to do instead."""
    parts = ["this is a clone of ultralytics/yolov5 (top-level `utils`, `models`; run as `python train.py`) "
             "that no source patch set fits exactly"]
    if tree.files:
        misfit = [f.path for f in tree.files if f.state not in ("pristine", "patched", "partial")]
        parts.append(f"the closest, {tree.patch_dir.name if tree.patch_dir else '?'} (upstream {tree.label}), "
                     f"does not fit {len(misfit)} of {len(tree.files)} files where a hunk goes: {', '.join(misfit)}")
    loss = tree.root / "utils" / "loss.py"
    if loss.is_file() and re.search(r"^\s*(from|import) ultralytics\b", loss.read_text(encoding="utf-8", errors="ignore"), re.M):
        parts.append("its utils/loss.py imports from the `ultralytics` package (upstream yolov5 after v7.0): "
                     "newer code than the patches were made for")
    parts.append(f"{HOOK_HINT}; source patches exist for {patch_sets_summary()}")
    parts.append("if the files above differ only by your own edits, restore them from upstream (or your VCS) and run again")
    return "\n  ".join(parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("action", choices=("check", "apply", "revert"), help="what to do")
    parser.add_argument("path", type=Path, help="yolov5 package directory (holds __init__.py, train.py, utils/), "
                                                "or the root of a clone of ultralytics/yolov5 (train.py, models/, utils/)")
    parser.add_argument("--force", action="store_true",
                        help="apply to a yolov5 version the patches were not generated for, if every hunk fits exactly")
    parser.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                        help="auto: GNU patch, else git apply, else the built-in applier (default: auto)")


def _say(out: TextIO, text: str = "") -> None:
    print(text, file=out)


def _describe_tree(tree: Tree, out: TextIO) -> None:
    if tree.layout == "package":
        support = "supported" if tree.supported else f"NOT supported (patches exist for {', '.join(available_versions()) or 'none'})"
        _say(out, f"yolov5 source: {tree.root} (pip package layout, version {tree.version or 'unknown'}: {support})")
    elif tree.layout == "clone":
        fit = (f"the patch set for {tree.label} fits" if tree.supported
               else "no patch set fits" + (f"; closest: {tree.label}" if tree.files else ""))
        _say(out, f"yolov5 source: {tree.root} (clone of ultralytics/yolov5, run as `python train.py`: {fit})")
    else:
        _say(out, f"yolov5 source: {tree.root} (not a yolov5 layout)")
    if not tree.files:
        return
    _say(out, f"patch set: {tree.patch_dir} ({len({f.patch for f in tree.files})} patches, {len(tree.files)} files)")
    width = max(len(f.path) for f in tree.files)
    for f in tree.files:
        note = ""
        if f.identical_to:
            note = f"  (byte-identical to the {f.identical_to} {tree.patch_version} file)"
        elif f.state in ("pristine", "patched"):
            note = "  (with local changes outside the patched lines)"
        elif f.state == "partial":
            states = f.file_patch.hunk_states((tree.root / f.path).read_text(encoding="utf-8"))
            note = f"  ({states.count('patched')} of {len(states)} hunks applied)"
        elif f.state == "conflict":
            note = "  (changed where a hunk goes: local edits, or another yolov5 version)"
        _say(out, f"  {f.path:<{width}}  {f.state:<8}{note}  [{f.patch}]")


def _unsupported(tree: Tree, force: bool) -> Optional[str]:
    """Why PATH cannot be patched (None if it can)."""
    if tree.layout == "unknown":
        return (f"{tree.root} is not a yolov5 source tree (expected a yolov5 package, or a clone with train.py, "
                "models/yolo.py and utils/loss.py defining ComputeLoss)") + (
            f"; did you mean {tree.root / 'yolov5'}?" if (tree.root / "yolov5" / "train.py").is_file() else "")
    if tree.layout == "clone":
        return None if tree.supported else clone_refusal(tree)
    if tree.patch_dir is None:
        return "no patch set is installed with the plugin"
    if not tree.supported and not force:
        return (f"found yolov5 {tree.version or 'of unknown version'} (from {tree.root / '__init__.py'}), but the patches "
                f"were generated for yolov5 {', '.join(available_versions())}; install yolov5=={tree.patch_version}, "
                "or pass --force to apply them anyway if every hunk fits exactly")
    return None


def _dry_run(tree: Tree, backend: Backend, reverse: bool) -> List[str]:
    errors = []
    for f in tree.files:
        message = backend.run(tree.root, f.file_patch, reverse, dry_run=True)
        if message:
            errors.append(f"{f.path}: {message}")
    return errors


def check(tree: Tree, backend: Backend, force: bool, out: TextIO) -> int:
    _describe_tree(tree, out)
    reason = _unsupported(tree, force)
    if reason and tree.layout != "package":
        _say(out, f"cannot patch: {reason}")
        return UNSUPPORTED
    state = tree.state
    _say(out, f"state: {state}")
    if state in ("pristine", "patched"):
        errors = _dry_run(tree, backend, reverse=state == "patched")
        verb = "apply" if state == "pristine" else "revert"
        if errors:
            _say(out, f"dry run ({backend.describe()}): does NOT {verb} cleanly:\n  " + "\n  ".join(errors))
            return REFUSED
        _say(out, f"dry run ({backend.describe()}): every hunk would {verb} cleanly")
    if reason:
        _say(out, f"cannot patch: {reason}")
        return UNSUPPORTED
    if state == "pristine":
        _say(out, f"next: yolo-focal patch apply {tree.root}")
    elif state == "patched":
        _say(out, "the plugin's start-up hook stands aside for this copy (YOLO_FOCAL_PATCHED in utils/loss.py)")
        _say(out, f"undo: yolo-focal patch revert {tree.root}")
    elif state == "partially patched":
        _say(out, f"some files are patched, others not: `yolo-focal patch revert {tree.root}` returns to pristine")
        return REFUSED
    else:
        _say(out, "some files differ from both the pristine and the patched yolov5 where a hunk goes; "
                  "restore them from the yolov5 package (or your VCS), then run check again")
        return REFUSED
    return OK


def apply(tree: Tree, backend: Backend, force: bool, out: TextIO) -> int:
    reason = _unsupported(tree, force)
    if reason:
        _say(out, f"refused: {reason}")
        return UNSUPPORTED
    state = tree.state
    if state == "patched":
        _say(out, f"refused: {tree.root} is already patched (every file; YOLO_FOCAL_PATCHED is set). Nothing changed. "
                  f"To re-apply, run `yolo-focal patch revert {tree.root}` first.")
        return REFUSED
    if state != "pristine":
        _describe_tree(tree, out)
        hint = (f"run `yolo-focal patch revert {tree.root}` first" if state == "partially patched"
                else "restore those files from the yolov5 package (or your VCS)")
        _say(out, f"refused: the tree is {state}; nothing changed; {hint}")
        return REFUSED
    if not tree.supported:
        _say(out, f"warning: yolov5 {tree.version} is not {tree.patch_version}: applying because of --force")
    try:
        changed = transaction(tree.root, tree.files, reverse=False, backend=backend)
    except PatchError as exc:
        _say(out, f"refused: {exc}")
        return REFUSED
    _say(out, f"patched {len(changed)} files in {tree.root} with {backend.describe()} "
              f"({len({f.patch for f in tree.files})} patches, dry run first):")
    for path in changed:
        _say(out, f"  {path}")
    _say(out, "the hunks call into yolo_focal_plugin, so keep the plugin installed; its start-up hook now stands aside")
    if tree.layout == "clone":
        _say(out, f"train from it: cd {tree.root} && python train.py --hyp hyp.focal.yaml ...")
    else:
        _say(out, f"train from it: PYTHONPATH={tree.root.parent} python -m yolov5.train --hyp hyp.focal.yaml ...")
    _say(out, f"undo: yolo-focal patch revert {tree.root}")
    return OK


def revert(tree: Tree, backend: Backend, out: TextIO) -> int:
    if tree.layout == "unknown" or not tree.files or (tree.layout == "clone" and not tree.supported):
        _say(out, f"refused: {_unsupported(tree, True) or 'nothing to revert'}")
        return UNSUPPORTED
    blocked = tree.by_state("partial", "conflict", "missing")
    if blocked:
        _describe_tree(tree, out)
        _say(out, "refused: these files are neither pristine nor fully patched; nothing changed: "
                  + ", ".join(f.path for f in blocked))
        return REFUSED
    items = tree.by_state("patched")
    if not items:
        _say(out, f"refused: {tree.root} is not patched (every file is pristine); nothing to revert")
        return REFUSED
    try:
        changed = transaction(tree.root, items, reverse=True, backend=backend)
    except PatchError as exc:
        _say(out, f"refused: {exc}")
        return REFUSED
    after = inspect_tree(tree.root, version_override=tree.patch_version)
    identical = [f.path for f in after.files if f.identical_to == "pristine"]
    _say(out, f"reverted {len(changed)} files in {tree.root} with {backend.describe()}; tree state: {after.state}")
    for path in changed:
        note = f"byte-identical to {tree.label}" if path in identical else "your other local changes kept"
        _say(out, f"  {path}  ({note})")
    return OK


def run_from_args(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    try:
        backend = choose_backend(args.backend)
        tree = inspect_tree(args.path)
    except PatchError as exc:
        _say(out, f"error: {exc}")
        return UNSUPPORTED
    if args.action == "check":
        return check(tree, backend, args.force, out)
    if args.action == "apply":
        return apply(tree, backend, args.force, out)
    return revert(tree, backend, out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="yolo-focal patch")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
