"""A strict reader and applier of unified diffs (no fuzz), used to tell pristine from patched files.

The system ``patch``/``git apply`` do the real work when they are installed (see ``apply.py``);
this module knows, hunk by hunk, whether a file is pristine, patched, partly patched or changed
where a hunk goes, and computes the exact expected result of applying or reverting, so every
write can be verified. Pure Python, stdlib only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

__all__ = ["Hunk", "FilePatch", "PatchMismatch", "parse_patch", "split_lines"]

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PatchMismatch(ValueError):
    """A hunk's lines are not in the file (as they should be before applying, or after, for a revert)."""


def split_lines(text: str) -> List[str]:
    return text.splitlines(keepends=True)


@dataclass
class Hunk:
    old_start: int  # 1-based, as in the ``@@`` header
    new_start: int
    lines: List[str] = field(default_factory=list)  # each begins with ' ', '-' or '+', newline kept

    def old(self) -> List[str]:
        return [line[1:] for line in self.lines if line[0] in " -"]

    def new(self) -> List[str]:
        return [line[1:] for line in self.lines if line[0] in " +"]

    def before_after(self, reverse: bool) -> Tuple[List[str], List[str], int]:
        if reverse:
            return self.new(), self.old(), self.new_start
        return self.old(), self.new(), self.old_start


@dataclass
class FilePatch:
    """The hunks of one file; ``path`` is relative to the yolov5 source root (``a/`` stripped)."""

    path: str
    hunks: List[Hunk]
    text: str  # this file's section of the .patch, headers included (for ``patch``/``git apply``)

    def _locate(self, lines: Sequence[str], block: Sequence[str], expected: int, lowest: int) -> Optional[int]:
        n = len(block)
        if lowest <= expected <= len(lines) - n and list(lines[expected:expected + n]) == list(block):
            return expected
        best: Optional[int] = None
        for start in range(lowest, len(lines) - n + 1):
            if list(lines[start:start + n]) == list(block):
                if best is None or abs(start - expected) < abs(best - expected):
                    best = start
        return best

    def apply(self, text: str, reverse: bool = False) -> str:
        """``text`` with every hunk applied (or reverted); :class:`PatchMismatch` if one does not fit exactly."""
        lines = split_lines(text)
        out: List[str] = []
        cursor = 0
        offset = 0
        for number, hunk in enumerate(self.hunks, 1):
            before, after, start = hunk.before_after(reverse)
            expected = max(start - 1, 0) + offset
            at = self._locate(lines, before, expected, cursor)
            if at is None:
                action = "revert" if reverse else "apply"
                raise PatchMismatch(f"{self.path}: hunk {number} of {len(self.hunks)} does not {action} "
                                    f"(lines near {start} differ from the patch)")
            out.extend(lines[cursor:at])
            out.extend(after)
            cursor = at + len(before)
            offset = at - (start - 1)
        out.extend(lines[cursor:])
        return "".join(out)

    def hunk_states(self, text: str) -> List[str]:
        """For each hunk: ``'pristine'`` (applies), ``'patched'`` (reverts) or ``'conflict'`` (neither)."""
        states = []
        for hunk in self.hunks:
            single = FilePatch(self.path, [hunk], "")
            try:
                single.apply(text)
                forward = True
            except PatchMismatch:
                forward = False
            try:
                single.apply(text, reverse=True)
                backward = True
            except PatchMismatch:
                backward = False
            states.append("pristine" if forward and not backward else "patched" if backward and not forward else "conflict")
        return states

    def state(self, text: Optional[str]) -> str:
        """``missing``, ``pristine``, ``patched``, ``partial`` (some hunks applied) or ``conflict``."""
        if text is None:
            return "missing"
        for reverse, name in ((False, "pristine"), (True, "patched")):
            try:
                self.apply(text, reverse=reverse)
                return name
            except PatchMismatch:
                pass
        states = set(self.hunk_states(text))
        return "partial" if states == {"pristine", "patched"} else "conflict"


def parse_patch(text: str) -> Tuple[str, List[FilePatch]]:
    """``(header, files)`` of a unified diff with ``--- a/PATH`` / ``+++ b/PATH`` headers."""
    lines = split_lines(text)
    header: List[str] = []
    files: List[FilePatch] = []
    i = 0
    while i < len(lines) and not (lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")):
        header.append(lines[i])
        i += 1
    while i < len(lines):
        if not lines[i].startswith("--- ") or i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
            raise ValueError(f"line {i + 1}: expected a '--- a/...' and '+++ b/...' header, got {lines[i]!r}")
        section_start = i
        target = lines[i + 1][4:].rstrip("\n").split("\t")[0]
        path = target[2:] if target.startswith("b/") else target
        i += 2
        hunks: List[Hunk] = []
        while i < len(lines) and lines[i].startswith("@@"):
            match = _HUNK.match(lines[i])
            if not match:
                raise ValueError(f"line {i + 1}: bad hunk header {lines[i]!r}")
            old_len = int(match.group(2)) if match.group(2) is not None else 1
            new_len = int(match.group(4)) if match.group(4) is not None else 1
            hunk = Hunk(int(match.group(1)), int(match.group(3)))
            i += 1
            seen_old = seen_new = 0
            while i < len(lines) and (seen_old < old_len or seen_new < new_len):
                line = lines[i]
                if line.startswith("\\"):  # "\ No newline at end of file"
                    raise ValueError(f"line {i + 1}: files without a final newline are not supported")
                if line == "\n":  # an empty context line whose leading space was stripped
                    line = " \n"
                tag = line[:1]
                if tag not in (" ", "-", "+"):
                    raise ValueError(f"line {i + 1}: unexpected line in hunk: {line!r}")
                hunk.lines.append(line)
                seen_old += tag in " -"
                seen_new += tag in " +"
                i += 1
            hunks.append(hunk)
        files.append(FilePatch(path, hunks, "".join(lines[section_start:i])))
    return "".join(header), files
