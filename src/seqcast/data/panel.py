"""A panel of many series held as one flat array with per-series offsets, never a frame each.

Every panel stage reads and writes this one shape, so memory stays O(total rows) and per-series
work is array work (``np.add.reduceat`` over the offsets) rather than a Python loop per series.
On disk a panel is long-format Parquet (one row per series and step), sorted by series then time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seqcast.core.errors import DataError

SERIES = "series"  # the column naming each row's series in the files seqcast writes
SEPARATOR = "/"  # joins several id columns into one series name


@dataclass(frozen=True)
class Panel:
    """Series ``i`` holds rows ``offsets[i]:offsets[i + 1]`` of ``times`` and ``values``."""

    ids: np.ndarray  # (n_series,) object: each series' name, in panel order (sorted)
    offsets: np.ndarray  # (n_series + 1,) int64, offsets[0] == 0, offsets[-1] == n_rows
    times: np.ndarray  # (n_rows,) datetime64[ns], increasing within each series
    values: np.ndarray  # (n_rows, n_columns) float64: targets first, then features
    columns: tuple[str, ...]
    n_targets: int

    def __post_init__(self) -> None:
        n_rows = len(self.times)
        if self.offsets[0] != 0 or self.offsets[-1] != n_rows or len(self.values) != n_rows:
            raise ValueError("panel offsets do not cover its rows")
        if len(self.offsets) != len(self.ids) + 1:
            raise ValueError("panel needs one offset per series plus one")

    @property
    def n_series(self) -> int:
        """Number of series."""
        return len(self.ids)

    @property
    def n_rows(self) -> int:
        """Rows over all series."""
        return len(self.times)

    @property
    def lengths(self) -> np.ndarray:
        """Rows of each series."""
        return np.diff(self.offsets)

    @property
    def targets(self) -> np.ndarray:
        """The target columns of every row, (n_rows, n_targets)."""
        return self.values[:, : self.n_targets]

    def series_of_rows(self) -> np.ndarray:
        """The series number of every row, (n_rows,)."""
        return np.repeat(np.arange(self.n_series), self.lengths)

    def rows(self, i: int) -> slice:
        """The row range of series ``i``."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def index_of(self, names: list[str] | np.ndarray) -> np.ndarray:
        """Series numbers of the given names, failing on one the panel does not hold."""
        position = {name: i for i, name in enumerate(self.ids)}
        unknown = [name for name in names if name not in position]
        if unknown:
            raise KeyError(f"series not in the panel: {unknown[:5]}")
        return np.array([position[name] for name in names], dtype=np.int64)

    def take(self, series: np.ndarray | list[int]) -> Panel:
        """The panel of the given series numbers, in that order."""
        series = np.asarray(series, dtype=np.int64)
        lengths = self.lengths[series]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = _ranges(self.offsets[series], lengths)
        return Panel(
            ids=self.ids[series],
            offsets=offsets,
            times=self.times[rows],
            values=self.values[rows],
            columns=self.columns,
            n_targets=self.n_targets,
        )

    def mask_rows(self, keep: np.ndarray) -> Panel:
        """The panel of the rows where ``keep`` is true (series left with no row are dropped)."""
        counts = np.add.reduceat(keep.astype(np.int64), self.offsets[:-1]) if self.n_rows else []
        counts = np.where(self.lengths > 0, counts, 0)
        alive = counts > 0
        offsets = np.concatenate([[0], np.cumsum(counts[alive])]).astype(np.int64)
        return Panel(
            ids=self.ids[alive],
            offsets=offsets,
            times=self.times[keep],
            values=self.values[keep],
            columns=self.columns,
            n_targets=self.n_targets,
        )

    def to_frame(self, timestamp: str = "timestamp") -> pd.DataFrame:
        """Long format: series, timestamp, then the value columns."""
        frame = pd.DataFrame(self.values, columns=list(self.columns))
        frame.insert(0, timestamp, self.times)
        frame.insert(0, SERIES, np.repeat(self.ids, self.lengths))
        return frame


def from_frame(
    frame: pd.DataFrame, series: list[str] | str, timestamp: str, columns: list[str], n_targets: int
) -> Panel:
    """Build a panel from a long frame whose rows may come in any order (duplicates refused)."""
    names = series_names(frame, [series] if isinstance(series, str) else series)
    times = pd.to_datetime(frame[timestamp]).to_numpy(dtype="datetime64[ns]")
    order = np.lexsort((times, names))
    names, times = names[order], times[order]
    same = (names[1:] == names[:-1]) & (times[1:] == times[:-1])
    if same.any():
        first = int(np.flatnonzero(same)[0])
        raise DataError(f"series {names[first]!r}: timestamp {times[first]} appears twice")
    starts = np.flatnonzero(np.concatenate([[True], names[1:] != names[:-1]]))
    return Panel(
        ids=names[starts],
        offsets=np.append(starts, len(names)).astype(np.int64),
        times=times,
        values=frame[columns].to_numpy(dtype="float64")[order],
        columns=tuple(columns),
        n_targets=n_targets,
    )


def series_names(frame: pd.DataFrame, series: list[str]) -> np.ndarray:
    """Each row's series name as text: one id column as is, several joined with '/'."""
    parts = [frame[column].astype(str).to_numpy(dtype=object) for column in series]
    names = parts[0]
    for part in parts[1:]:
        names = names + SEPARATOR + part
    return np.asarray(names, dtype=object)


def save(panel: Panel, path: Path, timestamp: str = "timestamp") -> None:
    """Write the panel as long-format Parquet, atomically (a temp file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    panel.to_frame(timestamp).to_parquet(partial, index=False)
    partial.replace(path)


def load(path: Path, columns: list[str], n_targets: int, timestamp: str = "timestamp") -> Panel:
    """Read a panel that ``save`` wrote."""
    frame = pd.read_parquet(path)
    return from_frame(frame, SERIES, timestamp, columns, n_targets)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` for each pair, without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(starts - (ends - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift
