"""The one reader of a YOLOv5 run's ``results.csv``, YOLOv5's fitness, and the best epoch.

Used by the sweep (``sweep.trial``: live tailing of a run being trained, salvage of a dead
worker's run) and by the experiments (``compare``, ``evidence``, ``demo``). Pure standard
library on purpose: no numpy, torch or yolov5, so importing it costs nothing in the sweep's
parent process.

YOLOv5's CSV logger writes the header with ``'%20s,'`` and the values with ``'%20.5g,'``, so the
column names carry leading spaces (stripped here) and the values have 5 significant digits.
Segmentation runs name the box metrics ``metrics/precision(B)`` ...; :meth:`ResultsTable.index`
finds either form.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

__all__ = [
    "RESULTS_FILE", "PRECISION", "RECALL", "MAP50", "MAP50_95", "LOSS_PREFIX",
    "ResultsTable", "results_path", "read_results_csv", "parse_number", "fitness", "best_epoch_index",
]

RESULTS_FILE = "results.csv"
PRECISION = "metrics/precision"
RECALL = "metrics/recall"
MAP50 = "metrics/mAP_0.5"
MAP50_95 = "metrics/mAP_0.5:0.95"
LOSS_PREFIX = "train/"  # train/box_loss, train/obj_loss, train/cls_loss (train/seg_loss in segmentation)
BOX_SUFFIX = "(B)"  # segmentation runs: box metrics; their mask metrics end in (M)

# yolov5.utils.metrics.fitness: weights of [P, R, mAP50, mAP50-95]
_FITNESS_WEIGHTS = (0.0, 0.0, 0.1, 0.9)


def parse_number(text: Optional[str]) -> Optional[float]:
    """``float(text)`` (padding allowed, ``nan`` and ``inf`` included), or None when it is not a number."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class ResultsTable:
    """A ``results.csv`` as written: stripped column names and the non-blank rows' cells as text.

    A row may be shorter or longer than ``columns`` (a hand-edited or truncated file); the
    accessors treat a missing cell as not a number.
    """

    path: Path
    columns: Tuple[str, ...]
    rows: Tuple[Tuple[str, ...], ...]

    def index(self, name: str) -> Optional[int]:
        """Position of column ``name``, or of its segmentation form ``name(B)``; None when absent."""
        for candidate in (name, name + BOX_SUFFIX):
            if candidate in self.columns:
                return self.columns.index(candidate)
        return None

    def number(self, row: Sequence[str], column: Optional[int]) -> Optional[float]:
        """The cell's value; None when the column is absent, the row too short or the cell not a number."""
        if column is None or column >= len(row):
            return None
        return parse_number(row[column])

    def value(self, row: Sequence[str], column: Optional[int]) -> float:
        """:meth:`number`, with NaN for a cell that holds no number."""
        number = self.number(row, column)
        return math.nan if number is None else number

    def epoch(self, row: Sequence[str], position: int) -> float:
        """The row's ``epoch`` cell; ``position`` (the row's place, from 0) when the file has no epoch column."""
        column = self.index("epoch")
        return float(position) if column is None else self.value(row, column)

    def loss_columns(self) -> List[int]:
        """Positions of the training-loss columns (``train/...``), in file order."""
        return [j for j, name in enumerate(self.columns) if name.startswith(LOSS_PREFIX)]


def results_path(run: Union[str, Path]) -> Path:
    """``run/results.csv`` for a run directory; ``run`` itself for anything else (a CSV path)."""
    run = Path(run)
    return run / RESULTS_FILE if run.is_dir() else run


def read_results_csv(path: Union[str, Path], drop_unfinished_row: bool = False) -> Optional[ResultsTable]:
    """Read a YOLOv5 ``results.csv`` (or the one in a run directory); None when there is no such file.

    ``drop_unfinished_row``: for a run still training, ignore a last line without its newline
    (YOLOv5 may be writing it). Blank rows are left out. An empty file gives a table without
    columns or rows. Read errors other than a missing file propagate (``OSError``).
    """
    path = results_path(path)
    if not path.is_file():
        return None
    text = path.read_text()
    lines = text.splitlines()
    if drop_unfinished_row and text and not text.endswith("\n"):
        lines = lines[:-1]
    records = list(csv.reader(lines))
    if not records:
        return ResultsTable(path, (), ())
    columns = tuple(name.strip() for name in records[0])
    rows = tuple(tuple(cells) for cells in records[1:] if any(cell.strip() for cell in cells))
    return ResultsTable(path, columns, rows)


def fitness(precision: float, recall: float, map50: float, map50_95: float) -> float:
    """YOLOv5's fitness, ``0.1 * mAP50 + 0.9 * mAP50-95``, computed as YOLOv5 does it.

    YOLOv5 weighs all four metrics, P and R with 0, so a NaN precision or recall makes the
    fitness NaN there too (and such an epoch is never ``best.pt``).
    """
    metrics = (precision, recall, map50, map50_95)
    return sum(w * m for w, m in zip(_FITNESS_WEIGHTS, metrics))


def best_epoch_index(fitnesses: Sequence[float]) -> Optional[int]:
    """Position of the best epoch: the highest finite fitness, the first one on ties; None if none is finite.

    A NaN fitness is never best, as in YOLOv5 (``fi > best_fitness`` is false for NaN). On exact
    ties YOLOv5's ``train.py`` saves ``best.pt`` again (``if best_fitness == fi``), so its
    ``best.pt`` is the last tied epoch; the first is kept here because the CSV's values are
    rounded to 5 significant digits, so a tie in the file need not be one in training, and the
    readers this module replaced (whose numbers the README publishes) all picked the first.
    """
    best: Optional[int] = None
    for position, value in enumerate(fitnesses):
        if math.isfinite(value) and (best is None or value > fitnesses[best]):
            best = position
    return best
