"""Per-series validation of a panel in long format: one bad series does not sink the panel.

Great Expectations (GX Core 1.x) checks the whole frame at once where it is good at it (columns
present, ids not empty, timestamps parse, (series..., timestamp) unique, numbers, empty cells,
bounds); the rows it reports are mapped to their series. What is a property of one series (its
frequency grid, its gaps, its share of filled steps, its length) is array work over the panel
sorted by series then time: no Python loop per series, only one per *bad* series to word its line.

A bad series is excluded and listed (``data.bad_series: exclude``) or stops the run (``fail``).
Row references are CSV lines (data row i is line i + 2) as in the single-series messages, or
1-based rows of a Parquet file.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from seqcast.core import paths
from seqcast.core.config import Config
from seqcast.core.errors import DataError, ValidationFailed
from seqcast.core.io import atomic_dir, write_json
from seqcast.data.gx_run import (
    build_docs,
    context,
    fixed_step,
    gx,
    plural,
    record_run,
    run_id,
)
from seqcast.data.gx_run import number as _num
from seqcast.data.panel import SEPARATOR, Panel
from seqcast.data.series import file_hash

EXCLUDED = "excluded.csv"
PARQUET = (".parquet", ".pq")
# GX keeps this many unexpected rows per expectation in the stored result and its data docs;
# the full list is read once, then dropped (2 million row indices do not belong in HTML).
DOCS_EXAMPLES = 20
# pandas' default strings for an empty cell, kept for every column but the ids.
NA_TEXT = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip
NO_ROW = np.iinfo(np.int64).max
# The order in which a series' problems are named: the first is its reason.
CHECKS = (
    "id_type",
    "parses",
    "unique",
    "all_empty",
    "one_row",
    "numeric",
    "on_grid",
    "nulls",
    "bounds",
    "gaps",
    "filled",
)


@dataclass(frozen=True)
class BadSeries:
    """One excluded series: its first problem, the first row showing it, and how many rows do."""

    series: str  # "" for rows without a series name
    check: str
    reason: str
    row: int  # 0-based data row in file order
    count: int
    others: tuple[str, ...] = ()  # its other failed checks

    def line(self, source: str, where: Callable[[int], str]) -> str:
        """'data/raw/x.csv: series 'A': line 7: <reason>'."""
        who = "rows without a series name" if self.series == "" else f"series {self.series!r}"
        also = f" (also: {', '.join(self.others)})" if self.others else ""
        return f"{source}: {who}: {where(self.row)}: {self.reason}{also}"


@dataclass
class PanelReport:
    """The outcome of validating a panel: the series kept, those excluded and why."""

    source: str
    rows: int
    columns: list[str]
    ids: list[str]  # every series named in the input, sorted
    excluded: list[BadSeries]
    lines: list[str]  # one line per excluded series
    results: list[dict[str, Any]]
    first_timestamp: str | None
    last_timestamp: str | None
    seconds: dict[str, float] = field(default_factory=dict)
    gx_context: Any = field(default=None, repr=False, compare=False)
    gx_key: Any = field(default=None, repr=False, compare=False)

    @property
    def n_series(self) -> int:
        """Series named in the input."""
        return len(self.ids)

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (timings left out, so DVC diffs show data changes only)."""
        named = {b.series for b in self.excluded}
        return {
            "source": self.source,
            "panel": True,
            "rows": self.rows,
            "columns": list(self.columns),
            "n_series": self.n_series,
            "n_kept": sum(name not in named for name in self.ids),
            "n_excluded": sum(name in named for name in self.ids),
            "excluded": [
                {
                    "series": b.series,
                    "check": b.check,
                    "reason": b.reason,
                    "row": b.row,
                    "count": b.count,
                    "others": list(b.others),
                }
                for b in self.excluded
            ],
            "expectations": [dict(r) for r in self.results],
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
        }


@dataclass
class _Rows:
    """The frame as arrays: each row's series number, time and values (NaN where not a number)."""

    raw: pd.DataFrame
    ids: np.ndarray  # sorted series names
    code: np.ndarray  # (n_rows,) series number, -1 where an id cell is empty
    times: np.ndarray  # (n_rows,) datetime64[ns], NaT where it does not parse
    values: np.ndarray  # (n_rows, n_columns) float64
    empty: np.ndarray  # (n_rows, n_columns) bool: the cell is empty in the file
    parse_error: str | None


@dataclass
class _Layout:
    """The rows with a series and a time, sorted by series then time, placed on the grid."""

    rows: np.ndarray  # original row of each sorted row
    code: np.ndarray
    position: np.ndarray  # int64 step on the grid (per series for fixed steps, global otherwise)
    on_grid: np.ndarray  # bool
    first_ns: np.ndarray  # (n_series,) int64 first time of each series (fixed steps)
    grid: np.ndarray | None  # calendar frequencies: the panel's grid of datetime64[ns]


@dataclass
class _Finding:
    """One check's offending series: their numbers, first row and count."""

    check: str
    series: np.ndarray
    first: np.ndarray
    count: np.ndarray
    describe: Callable[[int, int, int], str]  # (series, row, count) -> reason


# --- reading ----------------------------------------------------------------------------------


def read_panel(path: Path, cfg: Config) -> pd.DataFrame:
    """Read a long-format panel, CSV or Parquet by extension, ids as written (text in a CSV)."""
    if not path.exists():
        raise DataError(f"{path}: raw data file not found")
    try:
        if path.suffix.lower() in PARQUET:
            frame = pd.read_parquet(path, engine="pyarrow")
        else:
            # Ids as text: read as numbers, '7' and '7.0' would merge and '007' lose its zeros;
            # and only an empty id cell is empty: a series may be called NA or NULL.
            others = [cfg.data.timestamp, *cfg.data.value_columns]
            frame = pd.read_csv(
                path,
                skipinitialspace=True,
                float_precision="round_trip",
                dtype=dict.fromkeys(cfg.data.series, str),
                keep_default_na=False,
                na_values={c: [""] for c in cfg.data.series} | dict.fromkeys(others, NA_TEXT),
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise DataError(f"{path}: not a readable {_kind(path)}: {err}") from None
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    return frame.reset_index(drop=True)


def _kind(path: Path) -> str:
    """'Parquet file' or 'CSV'."""
    return "Parquet file" if path.suffix.lower() in PARQUET else "CSV"


def _where_in(source: str) -> Callable[[int], str]:
    """How a data row is named: its CSV line, or its 1-based row in a Parquet file."""
    if Path(source).suffix.lower() in PARQUET:
        return lambda row: f"row {row + 1}"
    return lambda row: f"line {row + 2}"


def _columns_missing(frame: pd.DataFrame, cfg: Config, source: str) -> list[str]:
    """One line per configured column the file lacks, naming the key that asks for it."""
    data = cfg.data
    keys = [(c, "data.series") for c in data.series] + [(data.timestamp, "data.timestamp")]
    keys += [(c, "data.targets") for c in data.targets]
    keys += [(c, "data.features") for c in data.features]
    found = [str(c) for c in frame.columns]
    return [
        f"{source}: column {c!r} ({key}) is missing; found columns: {found}"
        for c, key in keys
        if c not in frame.columns
    ]


def _arrays(frame: pd.DataFrame, cfg: Config) -> _Rows:
    """Series numbers, parsed times and numeric values of every row, vectorised."""
    data = cfg.data
    code, ids = _series_codes(frame, data.series)
    times, error = _parse_times(frame[data.timestamp])
    columns = data.value_columns
    values = np.empty((len(frame), len(columns)), dtype=np.float64)
    empty = np.empty((len(frame), len(columns)), dtype=bool)
    for j, column in enumerate(columns):
        cells = frame[column]
        empty[:, j] = cells.isna().to_numpy()
        values[:, j] = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
    values[~np.isfinite(values)] = np.nan  # inf is not a measurement: a non-numeric cell
    return _Rows(
        raw=frame,
        ids=ids,
        code=code,
        times=times,
        values=values,
        empty=empty,
        parse_error=error,
    )


def _series_codes(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's series number (-1 where an id cell is empty) and the sorted series names.

    Text work is done on each column's distinct values, not on every row: a panel has far
    fewer series than rows.
    """
    codes, texts = [], []
    for column in columns:
        code, uniques = pd.factorize(frame[column])  # an empty cell (NaN) gets -1
        if not len(uniques):  # every cell empty
            codes.append(code)
            texts.append(np.zeros(0, dtype=object))
            continue
        # Ids are text: 7 and '7' are one id (a typed column that mixes them is flagged).
        same, text = pd.factorize(np.asarray(pd.Index(uniques).astype(str), dtype=object))
        text = np.asarray(text, dtype=object)
        blank = np.asarray(pd.Index(text).str.strip() == "", dtype=bool)
        code = np.where(code < 0, -1, same[np.maximum(code, 0)])
        codes.append(np.where((code < 0) | blank[np.maximum(code, 0)], -1, code))
        texts.append(text)
    named = np.all([c >= 0 for c in codes], axis=0)
    if len(codes) == 1:
        combo, inverse = np.unique(codes[0][named], return_inverse=True)
        combo = combo[:, None]
    else:
        stacked = np.stack([c[named] for c in codes], axis=1)
        combo, inverse = np.unique(stacked, axis=0, return_inverse=True)
    names = texts[0][combo[:, 0]] if len(combo) else np.zeros(0, dtype=object)
    for k in range(1, len(codes)):
        names = names + SEPARATOR + texts[k][combo[:, k]]
    order = np.argsort(names, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    series = np.full(len(frame), -1, dtype=np.int64)
    series[named] = rank[inverse.ravel()]
    return series, names[order]


def _parse_times(cells: pd.Series) -> tuple[np.ndarray, str | None]:
    """Timestamps as naive datetime64[ns] (UTC if they carry an offset); NaT where they fail."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format": reported
            parsed = pd.to_datetime(cells, errors="coerce")
            if not pd.api.types.is_datetime64_any_dtype(parsed):  # mixed UTC offsets
                parsed = pd.to_datetime(cells, errors="coerce", utc=True)
    except (ValueError, TypeError) as err:
        return np.full(len(cells), np.datetime64("NaT"), dtype="datetime64[ns]"), str(err)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.to_numpy(dtype="datetime64[ns]"), None


# --- the grid, vectorised ---------------------------------------------------------------------


def _layout(rows: _Rows, cfg: Config) -> _Layout:
    """Sort rows with a series and a time by (series, time, row) and place them on the grid."""
    valid = (rows.code >= 0) & ~np.isnat(rows.times)
    index = np.flatnonzero(valid)
    ns = rows.times[index].astype(np.int64)
    order = np.lexsort((index, ns, rows.code[index]))
    index, ns, code = index[order], ns[order], rows.code[index][order]
    n_series = len(rows.ids)
    first_ns = np.zeros(n_series, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if len(code) else np.array([], int)
    first_ns[code[starts]] = ns[starts]
    grid = None
    frequency = cfg.data.frequency
    step = fixed_step(frequency) if cfg.data.regular else None
    if not cfg.data.regular:  # rows mode: each row is the next step of its series
        position = np.arange(len(code)) - np.repeat(starts, np.diff(np.r_[starts, len(code)]))
        on_grid = np.ones(len(code), dtype=bool)
    elif step is not None:
        # A fixed step: each series' grid starts at its own first timestamp, as series.py does.
        relative = ns - first_ns[code]
        on_grid = relative % step.value == 0
        position = relative // step.value
    else:
        offset = to_offset(frequency)
        low = pd.Timestamp(ns.min()).normalize() if len(ns) else pd.Timestamp(0)
        high = pd.Timestamp(ns.max()) if len(ns) else pd.Timestamp(0)
        grid_index = pd.date_range(
            offset.rollback(low), offset.rollforward(high) + offset, freq=offset
        )
        grid = grid_index.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        position = np.minimum(np.searchsorted(grid, ns), len(grid) - 1)
        on_grid = grid[position] == ns
        grid = grid.astype("datetime64[ns]")
    return _Layout(index, code, position.astype(np.int64), on_grid, first_ns, grid)


def _grid_times(layout: _Layout, code: np.ndarray, position: np.ndarray, cfg: Config) -> np.ndarray:
    """The time of grid step `position` of series `code`."""
    if layout.grid is not None:
        return layout.grid[position]
    step = fixed_step(cfg.data.frequency)
    return (layout.first_ns[code] + position * step.value).astype("datetime64[ns]")


def _runs(layout: _Layout, rows: _Rows) -> dict[str, np.ndarray]:
    """Per series: trimmed rows, gap runs (missing steps and/or empty rows) and their lengths.

    Only rows on the grid, once per step, count; leading and trailing empty rows are trimmed
    (there is nothing to interpolate from), so a series' first and last kept rows hold values.
    """
    keep = layout.on_grid.copy()
    same = np.r_[False, (layout.code[1:] == layout.code[:-1])]
    duplicate = same & np.r_[False, layout.position[1:] == layout.position[:-1]]
    keep &= ~duplicate
    sorted_rows = layout.rows[keep]
    code = layout.code[keep]
    position = layout.position[keep]
    hollow = np.isnan(rows.values[sorted_rows]).any(axis=1)
    n_series = len(rows.ids)
    # Trim: the first and last row of each series with every value present.
    full = np.flatnonzero(~hollow)
    first_full = np.full(n_series, NO_ROW, dtype=np.int64)
    last_full = np.full(n_series, -1, dtype=np.int64)
    np.minimum.at(first_full, code[full], full)
    np.maximum.at(last_full, code[full], full)
    at = np.arange(len(code))
    inside = (at >= first_full[code]) & (at <= last_full[code])
    sorted_rows, code, position, hollow = (
        sorted_rows[inside],
        code[inside],
        position[inside],
        hollow[inside],
    )
    start = np.r_[True, code[1:] != code[:-1]]
    missing = np.where(start, 0, np.diff(position, prepend=0) - 1)
    # A run opens at a series' first row or after a row with values; it closes at the next
    # row with values, whose missing steps before it belong to the run.
    label = np.cumsum(start | np.r_[True, ~hollow[:-1]]) - 1
    length = np.bincount(
        label, weights=missing + hollow, minlength=label[-1] + 1 if len(label) else 0
    )
    closing = np.flatnonzero(~hollow)  # each run's last row (trimmed series end with values)
    return {
        "rows": sorted_rows,
        "code": code,
        "position": position,
        "missing": missing,
        "hollow": hollow,
        "label": label,
        "length": length.astype(np.int64),
        "closing": closing,
        "first_full": first_full,
    }


# --- checks -----------------------------------------------------------------------------------


def _finding(
    check: str, code: np.ndarray, row: np.ndarray, describe: Callable[[int, int, int], str]
) -> _Finding:
    """Group offending rows by series: each series' first row and count."""
    code, row = np.asarray(code, dtype=np.int64), np.asarray(row, dtype=np.int64)
    series, inverse, count = np.unique(code, return_inverse=True, return_counts=True)
    first = np.full(len(series), NO_ROW, dtype=np.int64)
    np.minimum.at(first, inverse, row)
    return _Finding(check, series, first, count, describe)


def _vectorised_findings(rows: _Rows, layout: _Layout, runs: dict, cfg: Config) -> list[_Finding]:
    """Per-series checks of lengths, the grid, gaps and the filled share, over the sorted panel."""
    data, raw = cfg.data, rows.raw
    n_series = len(rows.ids)
    ts = data.timestamp
    findings = []
    named = rows.code >= 0
    size = np.bincount(rows.code[named], minlength=n_series)
    first_row = np.full(n_series, NO_ROW, dtype=np.int64)
    np.minimum.at(first_row, rows.code[named], np.flatnonzero(named))
    single = np.flatnonzero(size == 1)
    findings.append(
        _finding(
            "one_row",
            single,
            first_row[single],
            lambda s, r, n: "1 row (expected at least 2, one step apart)",
        )
    )
    all_empty = np.bincount(
        rows.code[named], weights=rows.empty[named].all(axis=1), minlength=n_series
    )
    hollow = np.flatnonzero((all_empty == size) & (size > 0))
    findings.append(
        _finding(
            "all_empty",
            hollow,
            first_row[hollow],
            lambda s, r, n: (
                f"all {plural(int(size[s]), 'row')} empty in {', '.join(data.value_columns)} "
                "(expected numbers)"
            ),
        )
    )
    off = ~layout.on_grid
    expected = _grid_words(cfg)
    findings.append(
        _finding(
            "on_grid",
            layout.code[off],
            layout.rows[off],
            lambda s, r, n: (
                f"{plural(n, 'timestamp')} off the {data.frequency} grid, e.g. "
                f"{_cell(raw, ts, r)} (expected {expected}: mixed frequencies?)"
            ),
        )
    )
    if not data.regular:
        return findings
    length, closing, code = runs["length"], runs["closing"], runs["code"]
    # Each run's closing row: where its gap ends (the first row with values after it).
    run_code = code[closing]
    run_row = runs["rows"][closing]
    long = length > cfg.split.max_gap_steps
    starts = {}
    if long.any():
        # Where each series' first long gap starts: the step after the row before the run.
        first_long = np.unique(run_code[long], return_index=True)[1]
        for k in np.flatnonzero(long)[first_long]:
            opens = int(np.flatnonzero(runs["label"] == k)[0]) - 1
            step = _grid_times(
                layout, code[opens : opens + 1], runs["position"][opens : opens + 1] + 1, cfg
            )
            starts[int(run_code[k])] = (int(length[k]), pd.Timestamp(step[0]))
    max_gap = cfg.split.max_gap_steps

    def gap_words(s: int, r: int, n: int) -> str:
        steps, begins = starts[s]
        more = f" ({n} such gaps)" if n > 1 else ""
        return (
            f"a gap of {steps} steps missing or with an empty cell from {begins} up to this row, "
            f"longer than split.max_gap_steps {max_gap} (expected at most {max_gap}){more}"
        )

    findings.append(_finding("gaps", run_code[long], run_row[long], gap_words))
    filled = np.bincount(run_code, weights=length, minlength=n_series)
    steps = np.bincount(code, minlength=n_series) + np.bincount(
        code, weights=runs["missing"], minlength=n_series
    )
    share = filled / np.maximum(steps, 1)
    limit = data.max_filled_fraction
    over = np.flatnonzero((share > limit + 1e-12) & (steps > 0))
    first_gap = np.full(n_series, NO_ROW, dtype=np.int64)
    gapped = length > 0
    np.minimum.at(first_gap, run_code[gapped], run_row[gapped])

    def filled_words(s: int, r: int, n: int) -> str:
        return (
            f"{int(filled[s])} of {int(steps[s])} {data.frequency} steps ({share[s]:.1%}) missing "
            f"or with an empty cell, to be interpolated; data.max_filled_fraction allows "
            f"{limit:.1%} (expected at most {int(np.floor(limit * steps[s] + 1e-9))})"
        )

    findings.append(_finding("filled", over, first_gap[over], filled_words))
    findings[-1].count[:] = filled[over].astype(np.int64)
    return findings


def _grid_words(cfg: Config) -> str:
    """What the grid is, in words."""
    frequency = cfg.data.frequency
    step = fixed_step(frequency)
    if step is not None:
        return f"steps of {frequency} from the series' first timestamp"
    return f"timestamps on the {frequency} grid"


def _id_findings(rows: _Rows, cfg: Config, where: Callable[[int], str]) -> list[_Finding]:
    """Ids written as a number and as text (7, '7'), or as one number two ways ('7', '7.0')."""
    findings = []
    for column in cfg.data.series:
        findings += _merged_ids(rows, column, where) + _split_ids(rows, cfg, column)
    return findings


def _merged_ids(rows: _Rows, column: str, where: Callable[[int], str]) -> list[_Finding]:
    """Typed cells (Parquet, a frame): 7 and '7' are one series as text, two as typed."""
    cells = rows.raw[column]
    # infer_dtype runs in C: a CSV's ids (all text) or a typed column skip the per-cell look.
    if pd.api.types.infer_dtype(cells, skipna=True) not in ("mixed", "mixed-integer"):
        return []
    named = rows.code >= 0
    text = cells.map(type, na_action="ignore").eq(str).to_numpy()
    kinds = pd.DataFrame({"code": rows.code, "text": text})[named]
    mixed = kinds.groupby("code")["text"].nunique()
    mixed = mixed[mixed > 1].index.to_numpy()
    if not len(mixed):
        return []
    n_series = len(rows.ids)
    number_row = _first_where(rows.code, named & ~text, n_series)
    text_row = _first_where(rows.code, named & text, n_series)

    def merged(s: int, r: int, n: int) -> str:
        a, b = int(number_row[s]), int(text_row[s])
        return (
            f"{column} is the number {cells.iloc[a]!r} on {where(a)} and the text "
            f"{cells.iloc[b]!r} on {where(b)}: seqcast reads ids as text and merges them into "
            f"one series, their types make them two (expected one type in {column})"
        )

    first = _first_where(rows.code, named, n_series)
    return [_finding("id_type", mixed, first[mixed], merged)]


def _split_ids(rows: _Rows, cfg: Config, column: str) -> list[_Finding]:
    """The same number written two ways ('7', '7.0'): as text two series, as numbers one."""
    spelled = pd.Series(rows.ids, dtype=object)
    if len(cfg.data.series) > 1:
        spelled = spelled.str.split(SEPARATOR, regex=False).str[cfg.data.series.index(column)]
    number = pd.to_numeric(spelled, errors="coerce")
    groups = pd.DataFrame({"number": number, "text": spelled}).dropna()
    ways = groups.groupby("number")["text"].transform("nunique")
    split = groups.index[ways > 1].to_numpy()
    if not len(split):
        return []
    spellings = groups.loc[split].groupby("number")["text"].agg(lambda t: sorted(set(t)))

    def split_words(s: int, r: int, n: int) -> str:
        others = [t for t in spellings[number[s]] if t != spelled[s]]
        return (
            f"{column} {spelled[s]!r} is the number {_num(number[s])}, also written "
            f"{' and '.join(repr(t) for t in others)}: as text (as seqcast reads ids) they are "
            f"{len(others) + 1} series, as numbers one (expected one spelling per series in "
            f"{column})"
        )

    named = rows.code >= 0
    first = _first_where(rows.code, named, len(rows.ids))
    return [_finding("id_type", split, first[split], split_words)]


def _first_where(code: np.ndarray, mask: np.ndarray, n_series: int) -> np.ndarray:
    """Each series' first row where mask holds."""
    first = np.full(n_series, NO_ROW, dtype=np.int64)
    np.minimum.at(first, code[mask], np.flatnonzero(mask))
    return first


def _cell(raw: pd.DataFrame, column: str, row: int) -> str:
    """A raw cell as it reads in the file: quoted text, or 'empty'."""
    value = raw[column].iloc[row]
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "empty"
    return repr(value) if isinstance(value, str) else str(value)


# --- GX on the whole frame --------------------------------------------------------------------


def _not_a_number(column: str) -> str:
    """The column holding a value column's cells that are written but are not finite numbers."""
    return f"{column} cells that are not numbers"


def _gx_frame(rows: _Rows, cfg: Config) -> pd.DataFrame:
    """What GX checks: the id columns as written, times parsed, values as numbers and as text."""
    data = cfg.data
    typed = pd.DataFrame({c: rows.raw[c] for c in data.series})
    typed[data.timestamp] = rows.times
    for j, column in enumerate(data.value_columns):
        typed[column] = rows.values[:, j]
        wrong = ~rows.empty[:, j] & np.isnan(rows.values[:, j])
        typed[_not_a_number(column)] = rows.raw[column].where(wrong)
    return typed


def _expectations(cfg: Config) -> list[tuple[str, str, dict[str, Any], str]]:
    """(check, expectation, kwargs, description) for each whole-frame check."""
    data = cfg.data
    ts = data.timestamp
    checks = [
        (
            "id",
            "ExpectColumnValuesToNotBeNull",
            {"column": c},
            f"`{c}` names the series of every row (data.series)",
        )
        for c in data.series
    ]
    checks += [
        ("parses", "ExpectColumnValuesToNotBeNull", {"column": ts},
         f"`{ts}` values parse as date/times (pandas.to_datetime)"),
        ("unique", "ExpectCompoundColumnsToBeUnique", {"column_list": [*data.series, ts]},
         f"one row per series and `{ts}`"),
    ]  # fmt: skip
    for column in data.value_columns:
        checks += [
            ("numeric", "ExpectColumnValuesToBeNull", {"column": _not_a_number(column)},
             f"`{column}` cells are finite numbers or empty"),
            ("nulls", "ExpectColumnValuesToNotBeNull",
             {"column": column, "mostly": max(0.0, 1.0 - data.max_null_fraction - 1e-12)},
             f"`{column}` is at most {data.max_null_fraction:.1%} empty over the panel "
             "(data.max_null_fraction; checked per series too)"),
        ]  # fmt: skip
        if column in data.bounds:
            low, high = data.bounds[column]
            checks.append(
                ("bounds", "ExpectColumnValuesToBeBetween",
                 {"column": column, "min_value": low, "max_value": high},
                 f"`{column}` values lie in [{_num(low)}, {_num(high)}] (data.bounds)")
            )  # fmt: skip
    return checks


def _run_gx(
    typed: pd.DataFrame, cfg: Config, source: str
) -> tuple[Any, Any, list[dict], list[Any]]:
    """Run the whole-frame suite; the context, result key, each expectation's row, failing rows."""
    gxe = gx().expectations
    checks = _expectations(cfg)
    expectations = [
        getattr(gxe, name)(description=words, meta={"order": i, "check": check}, **kwargs)
        for i, (check, name, kwargs, words) in enumerate(checks)
    ]
    gx_context = context()
    key, outcome = _run_complete(gx_context, typed, expectations, source)
    results, unexpected = [], [np.zeros(0, dtype=np.int64)] * len(checks)
    for result in outcome.results:
        order = result.expectation_config.meta["order"]
        details = result.result or {}
        unexpected[order] = np.asarray(details.get("unexpected_index_list") or [], dtype=np.int64)
        # Keep the stored result (and its docs) small: a few rows, not every index.
        for name in ("unexpected_index_list", "unexpected_list", "unexpected_index_query"):
            details.pop(name, None)
        for name in ("partial_unexpected_index_list", "partial_unexpected_list"):
            if name in details:
                details[name] = details[name][:DOCS_EXAMPLES]
        results.append(
            {
                "name": result.expectation_config.type,
                "check": checks[order][0],
                "kwargs": {k: v for k, v in checks[order][2].items() if k != "mostly"},
                "success": bool(result.success),
                "unexpected_rows": int(details.get("unexpected_count") or 0),
            }
        )
    gx_context.validation_results_store.set(key, outcome)
    results.sort(key=lambda r: [c[0] for c in checks].index(r["check"]))
    return gx_context, key, results, unexpected


def _run_complete(gx_context: Any, typed: pd.DataFrame, expectations: list, source: str) -> Any:
    """The single-series GX run (datasource, suite, checkpoint), asking for every failing row."""
    # The single-series run asks for a summary; a panel needs every failing row, to map rows
    # to series.
    module = gx()
    asset = gx_context.data_sources.add_pandas("raw").add_dataframe_asset(
        Path(source).name or "data"
    )
    batch = asset.add_batch_definition_whole_dataframe("whole file")
    suite = gx_context.suites.add(
        module.ExpectationSuite(
            name="seqcast_panel", expectations=expectations, notes=f"Panel: {source}"
        )
    )
    definition = gx_context.validation_definitions.add(
        module.ValidationDefinition(name=f"seqcast_panel on {source}", data=batch, suite=suite)
    )
    checkpoint = gx_context.checkpoints.add(
        module.Checkpoint(
            name="seqcast_validate_panel",
            validation_definitions=[definition],
            result_format={"result_format": "COMPLETE", "partial_unexpected_count": DOCS_EXAMPLES},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": typed}, run_id=run_id(source))
    key, outcome = next(iter(result.run_results.items()))
    outcome.meta.setdefault("batch_spec", {})["data_asset_name"] = source
    return key, outcome


def _gx_findings(rows: _Rows, results: list[dict], unexpected: list, cfg: Config) -> list[_Finding]:
    """Map the rows GX found to their series."""
    data, raw = cfg.data, rows.raw
    n_series = len(rows.ids)
    named = rows.code >= 0
    size = np.bincount(rows.code[named], minlength=n_series)
    findings = []
    by_check: dict[str, list[tuple[dict, np.ndarray]]] = {}
    for result, found in zip(results, unexpected, strict=True):
        by_check.setdefault(result["check"], []).append((result, found))
    for _result, found in by_check.get("parses", []):
        found = found[rows.code[found] >= 0]
        findings.append(
            _finding(
                "parses",
                rows.code[found],
                found,
                lambda s, r, n: (
                    f"{plural(n, 'timestamp')} empty or not a date/time, e.g. "
                    f"{_cell(raw, data.timestamp, r)} (expected a date/time)"
                ),
            )
        )
    for _result, found in by_check.get("unique", []):
        found = found[(rows.code[found] >= 0) & ~np.isnat(rows.times[found])]
        findings.append(
            _finding(
                "unique",
                rows.code[found],
                found,
                lambda s, r, n: (
                    f"{n} rows share a timestamp, e.g. {_cell(raw, data.timestamp, r)} "
                    f"(expected one row per series and {data.timestamp})"
                ),
            )
        )
    for j, column in enumerate(data.value_columns):
        numeric = [
            f
            for r, f in by_check.get("numeric", [])
            if r["kwargs"]["column"] == _not_a_number(column)
        ]
        for found in numeric:
            found = found[rows.code[found] >= 0]
            findings.append(
                _finding(
                    "numeric",
                    rows.code[found],
                    found,
                    lambda s, r, n, c=column: (
                        f"{plural(n, 'value')} of {c} not a number, e.g. "
                        f"{_cell(raw, c, r)} (expected finite numbers)"
                    ),
                )
            )
        for result, found in by_check.get("nulls", []):
            if result["kwargs"]["column"] != column:
                continue
            # GX returns the empty and the non-numeric cells (both NaN): count the empty ones.
            found = found[(rows.code[found] >= 0) & rows.empty[found, j]]
            empties = np.bincount(rows.code[found], minlength=n_series)
            share = empties / np.maximum(size, 1)
            limit = data.max_null_fraction
            over = (share > limit + 1e-12) & (empties < size)  # all empty: its own check
            keep = over[rows.code[found]]
            findings.append(
                _finding(
                    "nulls",
                    rows.code[found][keep],
                    found[keep],
                    lambda s, r, n, c=column, limit=limit, share=share: (
                        f"{n} of {size[s]} {c} "
                        f"cells empty ({share[s]:.1%}); data.max_null_fraction allows {limit:.1%} "
                        f"(expected at most {int(np.floor(limit * size[s] + 1e-9))})"
                    ),
                )
            )
        for result, found in by_check.get("bounds", []):
            if result["kwargs"]["column"] != column:
                continue
            found = found[rows.code[found] >= 0]
            low, high = data.bounds[column]
            findings.append(
                _finding(
                    "bounds",
                    rows.code[found],
                    found,
                    lambda s, r, n, c=column, j=j, low=low, high=high: (
                        f"{plural(n, 'value')} of {c} outside [{_num(low)}, {_num(high)}] "
                        f"(data.bounds), e.g. {float(rows.values[r, j])!r}"
                    ),
                )
            )
    return findings


# --- the verdict ------------------------------------------------------------------------------


def _bad_series(rows: _Rows, findings: list[_Finding]) -> list[BadSeries]:
    """One entry per bad series (its first problem in CHECKS order), sorted by series name."""
    problems: dict[int, list[tuple[int, int, int, _Finding]]] = {}
    for finding in findings:
        rank = CHECKS.index(finding.check)
        for s, row, count in zip(finding.series, finding.first, finding.count, strict=True):
            problems.setdefault(int(s), []).append((rank, int(row), int(count), finding))
    bad = []
    for s in sorted(problems):  # a loop over bad series only, to word their lines
        found = sorted(problems[s], key=lambda p: (p[0], p[1]))
        _, row, count, finding = found[0]
        others = tuple(dict.fromkeys(p[3].check for p in found[1:] if p[3].check != finding.check))
        bad.append(
            BadSeries(
                series=str(rows.ids[s]),
                check=finding.check,
                reason=finding.describe(s, row, count),
                row=row,
                count=count,
                others=others,
            )
        )
    return bad


def _no_name(rows: _Rows, cfg: Config) -> list[BadSeries]:
    """Rows whose id cell is empty: no series to put them in, listed as one entry."""
    empty = np.flatnonzero(rows.code < 0)
    if not len(empty):
        return []
    columns = " or ".join(cfg.data.series)
    return [
        BadSeries(
            series="",
            check="id",
            reason=f"{plural(len(empty), 'row')} with an empty {columns} cell "
            f"(expected a series name in {columns} on every row)",
            row=int(empty[0]),
            count=len(empty),
        )
    ]


def validate_panel_frame(frame: pd.DataFrame, cfg: Config, source: str) -> PanelReport:
    """Validate a long-format panel: missing columns fail the run, bad series are listed."""
    frame = frame.reset_index(drop=True)
    missing = _columns_missing(frame, cfg, source)
    if missing:
        raise ValidationFailed("\n".join([f"validation failed for {source}:", *missing]))
    where = _where_in(source)
    started = time.perf_counter()
    rows = _arrays(frame, cfg)
    if not len(rows.ids):
        columns = ", ".join(repr(c) for c in cfg.data.series)
        raise ValidationFailed(
            f"{source}: column {columns} (data.series) is empty on every row "
            "(expected a series name on each row)"
        )
    layout = _layout(rows, cfg)
    runs = _runs(layout, rows)
    findings = _id_findings(rows, cfg, where) + _vectorised_findings(rows, layout, runs, cfg)
    vectorised = time.perf_counter() - started
    started = time.perf_counter()
    gx_context, key, results, unexpected = _run_gx(_gx_frame(rows, cfg), cfg, source)
    gx_seconds = time.perf_counter() - started
    started = time.perf_counter()
    findings += _gx_findings(rows, results, unexpected, cfg)
    excluded = _no_name(rows, cfg) + _bad_series(rows, findings)
    times = rows.times[~np.isnat(rows.times)]
    vectorised += time.perf_counter() - started
    return PanelReport(
        source=source,
        rows=len(frame),
        columns=[str(c) for c in frame.columns],
        ids=[str(i) for i in rows.ids],
        excluded=excluded,
        lines=[b.line(source, where) for b in excluded],
        results=results,
        first_timestamp=str(pd.Timestamp(times.min())) if len(times) else None,
        last_timestamp=str(pd.Timestamp(times.max())) if len(times) else None,
        seconds={"vectorised": vectorised, "gx": gx_seconds},
        gx_context=gx_context,
        gx_key=key,
    )


def verdict(report: PanelReport, cfg: Config, docs: Path | None = None) -> None:
    """Raise ValidationFailed if bad series stop the run: bad_series fail, or too many excluded."""
    if not report.excluded:
        return
    data = cfg.data
    named = sum(b.series != "" for b in report.excluded)
    header = None
    if data.bad_series == "fail":
        header = (
            f"validation failed for {report.source}: {named} of {report.n_series} series fail "
            "(data.bad_series: fail; exclude would leave them out and go on)"
        )
    elif named > data.max_excluded_fraction * report.n_series + 1e-9 or named == report.n_series:
        header = (
            f"validation failed for {report.source}: {named} of {report.n_series} series "
            f"({named / report.n_series:.1%}) would be excluded, more than "
            f"data.max_excluded_fraction {_num(data.max_excluded_fraction)} allows"
        )
    if header:
        where = [f"data docs of this run: {docs}"] if docs else []
        raise ValidationFailed("\n".join([header, *report.lines, *where]))


def validate(cfg: Config, root: Path) -> dict[str, Any]:
    """The validate stage for a panel: bad series excluded (and listed) or the run stopped."""
    source = root / cfg.data.path
    report = validate_panel_frame(read_panel(source, cfg), cfg, source=cfg.data.path)
    # Every run is kept in the GX history under the main checkout, pass or fail.
    page = record_run(report.gx_context, report.gx_key, paths.store_root(root))
    verdict(report, cfg, docs=page)
    for line in report.lines:
        print(f"validate: excluded: {line}", flush=True)
    summary = report.summary() | {"raw_md5": file_hash(source)}
    write_outputs(report, summary, root / paths.VALIDATION)
    kept = summary["n_kept"]
    print(
        f"validate: {kept} of {report.n_series} series kept, {summary['n_excluded']} excluded "
        f"({paths.VALIDATION / EXCLUDED}); data docs in {paths.VALIDATION}/index.html",
        flush=True,
    )
    return summary


def write_outputs(report: PanelReport, summary: dict[str, Any], folder: Path) -> None:
    """Replace folder with the data docs, summary.json and excluded.csv, all or nothing."""
    with atomic_dir(folder) as tmp:
        if report.gx_context is not None:
            build_docs(report.gx_context, tmp.resolve())
        write_json(tmp / paths.VALIDATION_SUMMARY.name, summary)
        table = pd.DataFrame(
            [
                (b.series, b.reason, _where_in(report.source)(b.row), b.check, b.count)
                for b in report.excluded
            ],
            columns=["series", "reason", "row", "check", "count"],
        )
        table.to_csv(tmp / EXCLUDED, index=False)


# --- the cleaned panel ------------------------------------------------------------------------


def clean_panel(cfg: Config, root: Path) -> Panel:
    """The validated panel: excluded series dropped, each series on its grid with gaps filled."""
    source = root / cfg.data.path
    summary_path = root / paths.VALIDATION_SUMMARY
    if not summary_path.is_file():
        raise DataError(f"{summary_path}: missing; run the validate stage first")
    summary = json.loads(summary_path.read_text())
    if summary.get("raw_md5") != file_hash(source):
        raise DataError(f"{cfg.data.path}: changed since it was validated; run validate again")
    frame = read_panel(source, cfg)
    rows = _arrays(frame, cfg)
    excluded = {e["series"] for e in summary.get("excluded", [])}
    dropped = np.isin(rows.ids, list(excluded))
    layout = _layout(rows, cfg)
    runs = _runs(layout, rows)
    _refuse_unvalidated(rows, layout, dropped, cfg)
    keep = ~dropped[runs["code"]]
    code, position, source_rows = runs["code"][keep], runs["position"][keep], runs["rows"][keep]
    if not len(code):
        raise DataError(f"{cfg.data.path}: no series left after validation")
    alive = np.unique(code)
    # Each series spans its grid from its first to its last row: every step once, gaps NaN.
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    ends = np.r_[starts[1:], len(code)] - 1
    first, last = position[starts], position[ends]
    lengths = (last - first + 1).astype(np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    series_of = np.repeat(np.arange(len(alive)), lengths)
    step = np.arange(offsets[-1]) - offsets[:-1][series_of] + first[series_of]
    times = _grid_times(layout, alive[series_of], step, cfg)
    values = np.full((offsets[-1], len(cfg.data.value_columns)), np.nan)
    local = np.searchsorted(alive, code)
    values[offsets[local] + position - first[local]] = rows.values[source_rows]
    _interpolate(values)
    return Panel(
        ids=rows.ids[alive],
        offsets=offsets,
        times=times,
        values=values,
        columns=tuple(cfg.data.value_columns),
        n_targets=len(cfg.data.targets),
    )


def _refuse_unvalidated(rows: _Rows, layout: _Layout, dropped: np.ndarray, cfg: Config) -> None:
    """Fail, naming the series, on a kept row validation would have refused (a stale report)."""
    named = rows.code >= 0
    bad = named & np.isnat(rows.times) & ~dropped[np.maximum(rows.code, 0)]
    off = layout.rows[~layout.on_grid & ~dropped[layout.code]]
    same = layout.code[1:] == layout.code[:-1]
    twice = layout.rows[1:][same & (layout.position[1:] == layout.position[:-1])]
    twice = twice[~dropped[rows.code[twice]]]
    found = np.concatenate([np.flatnonzero(bad), off, twice])
    if len(found):
        row = int(found.min())
        where = _where_in(cfg.data.path)(row)
        raise DataError(
            f"{cfg.data.path}: series {rows.ids[rows.code[row]]!r}: {where}: "
            "a timestamp that is empty, off the grid or repeated, in a series validation kept; "
            "run validate again"
        )


def _interpolate(values: np.ndarray) -> None:
    """Fill NaN linearly in place; each series starts and ends with values, so none crosses."""
    flat = np.arange(len(values), dtype=np.float64)
    for j in range(values.shape[1]):
        hole = np.isnan(values[:, j])
        if hole.any():
            values[hole, j] = np.interp(flat[hole], flat[~hole], values[~hole, j])
