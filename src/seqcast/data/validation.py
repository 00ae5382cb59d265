"""Great Expectations (GX Core 1.x) checks of the raw series, built from params.yaml.

GX validates a typed copy of the file: the timestamp column as parsed date/times and each value
column as numbers, under the file's own column names, plus `<column> as written` (the cell text,
for the empty-cell and is-a-number checks). Two checks need a value pandas computes: the nearest
point of the frequency grid, and the length of each gap (a run of missing steps and/or rows with
an empty cell: what normalise would interpolate), each in a column named for what it holds.
Row references in messages are CSV line numbers: data row i (0-based) is line i + 2, assuming
one line per row, as `seqcast.data.series.read_raw` reads it.

Every run of the validate stage is kept: its GX result goes to a file store under the main
checkout (`gx/`, beside `mlruns/`), whose data docs index lists every run, pass or fail.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from seqcast.core import paths
from seqcast.core.config import Config
from seqcast.core.errors import ValidationFailed
from seqcast.core.io import atomic_dir, write_json
from seqcast.data.gx_run import GX_DOCS, record_run
from seqcast.data.gx_run import build_docs as _build_docs
from seqcast.data.gx_run import context as _context
from seqcast.data.gx_run import fixed_step as _step
from seqcast.data.gx_run import gx as _gx
from seqcast.data.gx_run import number as _num
from seqcast.data.gx_run import plural as _plural
from seqcast.data.gx_run import run_id as _run_id

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations import Expectation

SUITE = "seqcast_raw_data"
EXAMPLES = 3
GAP_EXAMPLES = 5
# GX keeps this many unexpected values per expectation, shown in the data docs.
DOCS_EXAMPLES = 20
# A number as written in a CSV cell: what float() reads, without inf, nan or digit separators.
NUMBER = r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$"


@dataclass
class ValidationReport:
    """The outcome of one validation: failures as readable lines, details for the summary."""

    success: bool
    failures: list[str]
    source: str
    rows: int
    columns: list[str]
    results: list[dict[str, Any]]
    gaps: dict[str, Any]
    first_timestamp: str | None
    last_timestamp: str | None
    ignored_bounds: list[str] = field(default_factory=list)
    # What passed but may not be what the user meant (e.g. holidays filled as missing weekdays).
    notes: list[str] = field(default_factory=list)
    run_name: str = ""
    seconds: float = 0.0
    # The ephemeral GX context holds the run's results in memory: the data docs are built from it.
    gx_context: Any = field(default=None, repr=False, compare=False)
    gx_key: Any = field(default=None, repr=False, compare=False)

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary; run-dependent values (timings, run ids) stay out for DVC diffs."""
        return {
            "source": self.source,
            "success": self.success,
            "rows": self.rows,
            "columns": list(self.columns),
            "n_expectations": len(self.results),
            "n_failed": sum(not r["success"] for r in self.results),
            "failures": list(self.failures),
            "expectations": [dict(r) for r in self.results],
            "gaps": dict(self.gaps),
            "ignored_bounds": list(self.ignored_bounds),
            "notes": list(self.notes),
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
        }

    def raise_if_failed(self, docs: Path | None = None) -> None:
        """Raise ValidationFailed listing every failed expectation (and the docs page), if any."""
        if self.success:
            return
        failed = sum(not r["success"] for r in self.results)
        header = (
            f"validation failed for {self.source}: {failed} of {len(self.results)} expectations"
        )
        where = [f"data docs of this run: {docs}"] if docs else []
        raise ValidationFailed("\n".join([header, *self.failures, *where]))


@dataclass(frozen=True)
class _Check:
    """One expectation, and what it means in the config's terms (to word its failure)."""

    kind: str
    column: str
    expectation: str
    description: str
    kwargs: dict[str, Any]


@dataclass
class _Gap:
    """A run of missing steps and/or rows with an empty cell: what normalise would interpolate."""

    first: str  # the timestamp of its first step
    missing: int = 0  # grid steps without a row
    empty: int = 0  # rows with an empty value cell
    first_empty: int | None = None
    last_empty: int | None = None
    row: int = -1  # where GX sees it: the first complete row after it (else the last row)
    columns: list[str] = field(default_factory=list)  # value columns with an empty cell in it

    @property
    def steps(self) -> int:
        """Its length in steps."""
        return self.missing + self.empty

    def add_empty(self, row: int, columns: list[str]) -> None:
        """Count data row `row`, whose cells in `columns` are empty, into the gap."""
        self.empty += 1
        self.columns += [c for c in columns if c not in self.columns]
        self.first_empty = row if self.first_empty is None else self.first_empty
        self.last_empty = row


@dataclass
class _Frame:
    """The raw frame, the typed copy GX validates, and what was derived to build it."""

    raw: pd.DataFrame
    typed: pd.DataFrame
    parsed: pd.Series
    parse_error: str | None
    gaps: list[_Gap]
    steps: int  # the steps (grid points, or rows) of the series normalise would build

    @property
    def filled(self) -> int:
        """Steps normalise would interpolate: every gap's length."""
        return sum(g.steps for g in self.gaps)


def validate_frame(frame: pd.DataFrame, cfg: Config, source: str) -> ValidationReport:
    """Run the expectation suite built from cfg on a raw frame through a GX checkpoint."""
    started = time.perf_counter()
    data = _derive(frame.reset_index(drop=True), cfg)
    checks = _checks(data, cfg)
    context = _context()
    run_id = _run_id(source)
    key, outcome = _run(context, data.typed, _expectations(checks), source, run_id)
    results = sorted(outcome.results, key=lambda r: r.expectation_config.meta["order"])
    rows, failures = [], []
    for result in results:
        check = checks[result.expectation_config.meta["order"]]
        rows.append(_result_row(result, check, data))
        if not result.success:
            failures.append(_failure_line(result, check, data, cfg, source))
    _add_hint(failures, results, checks, data, cfg)
    times = data.parsed.dropna()
    return ValidationReport(
        success=bool(outcome.success),
        failures=failures,
        source=source,
        rows=len(frame),
        columns=[str(c) for c in frame.columns],
        results=rows,
        gaps=_gap_summary(data, cfg),
        first_timestamp=str(times.min()) if len(times) else None,
        last_timestamp=str(times.max()) if len(times) else None,
        ignored_bounds=ignored_bounds(cfg),
        notes=[note] if outcome.success and (note := _holiday_hint(data, cfg)) else [],
        run_name=run_id.run_name,
        seconds=time.perf_counter() - started,
        gx_context=context,
        gx_key=key,
    )


def validate(cfg: Config, root: Path) -> dict[str, Any]:
    """The validate stage: the raw CSV against the suite; every run kept, outputs on success."""
    if cfg.data.is_panel:
        # A panel is checked per series (bad series excluded and listed): its own module.
        from seqcast.data import panel_validation

        return panel_validation.validate(cfg, root)
    from seqcast.data.series import file_hash, read_raw

    source = root / cfg.data.path
    if ignored_bounds(cfg):
        print(f"validate: {_ignored_note(cfg)}", flush=True)
    report = validate_frame(read_raw(source), cfg, source=cfg.data.path)
    page = record(report, paths.store_root(root))
    report.raise_if_failed(docs=page)
    for note in report.notes:
        print(f"validate: note: {note}", flush=True)
    summary = report.summary() | {"raw_md5": file_hash(source)}
    write_outputs(report, summary, root / paths.VALIDATION)
    every = f"; every run: {paths.store_root(root) / GX_DOCS / 'index.html'}" if page else ""
    print(f"validate: data docs in {paths.VALIDATION}/index.html{every}", flush=True)
    return summary


def ignored_bounds(cfg: Config) -> list[str]:
    """Columns of data.bounds that are neither targets nor features: not checked."""
    return sorted(set(cfg.data.bounds) - set(cfg.data.value_columns))


def _ignored_note(cfg: Config) -> str:
    """One line on the bounds that are not checked."""
    names = ", ".join(ignored_bounds(cfg))
    return f"data.bounds for {names} ignored: not a target or feature (data.targets/features)"


def write_outputs(report: ValidationReport, summary: dict[str, Any], folder: Path) -> None:
    """Replace folder with the GX data docs of this run (index.html) and summary.json."""
    with atomic_dir(folder) as tmp:
        _build_docs(report.gx_context, tmp.resolve())
        # Checked before the move, so a broken build never replaces the previous docs.
        if not (tmp / "index.html").is_file():
            raise RuntimeError(f"{folder}: Great Expectations built no index.html")
        write_json(tmp / paths.VALIDATION_SUMMARY.name, summary)


def record(report: ValidationReport, store: Path) -> Path | None:
    """Keep the run's GX result under store/gx and rebuild its docs; the run's page, or None."""
    return record_run(report.gx_context, report.gx_key, store)


# --- the typed copy -------------------------------------------------------------------------


def _grid_column(cfg: Config) -> str:
    """The column holding each timestamp rounded to the frequency grid."""
    return f"{cfg.data.timestamp} rounded to the {cfg.data.frequency} grid"


def _gap_column(cfg: Config) -> str:
    """The column holding each gap's length, on the first complete row after it."""
    what = "steps missing or with an empty cell" if cfg.data.regular else "rows with an empty cell"
    return f"gap before this row ({what})"


def _text_column(column: str) -> str:
    """The column holding a value column's cells as written in the file."""
    return f"{column} as written"


def _derive(raw: pd.DataFrame, cfg: Config) -> _Frame:
    """The typed copy GX validates, the parsed timestamps and the gaps."""
    data = cfg.data
    typed = pd.DataFrame(index=raw.index)
    parsed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    parse_error, position = None, None
    if data.timestamp in raw.columns:
        parsed, parse_error = _parse_times(raw[data.timestamp])
        typed[data.timestamp] = parsed
        if data.regular:
            position, nearest = _grid(parsed, data.frequency)
            typed[_grid_column(cfg)] = nearest
    empty = pd.DataFrame(False, index=raw.index, columns=[])
    for column in data.value_columns:
        if column not in raw.columns:
            continue
        text = _as_text(raw[column])
        number = text.where(text.str.match(NUMBER, na=False))
        typed[column] = number.astype("float64")
        typed[_text_column(column)] = text
        empty[column] = raw[column].isna()
    gaps, steps = [], len(raw)
    if data.timestamp in raw.columns:
        gaps, steps, lengths = _find_gaps(parsed, position, empty, cfg)
        typed[_gap_column(cfg)] = lengths
    return _Frame(raw, typed, parsed, parse_error, gaps, steps)


def _as_text(column: pd.Series) -> pd.Series:
    """A column's cells as text (missing where empty): numbers read by read_csv as they print."""
    return column.map(lambda v: None if pd.isna(v) else str(v), na_action="ignore").astype(object)


def _parse_times(raw: pd.Series) -> tuple[pd.Series, str | None]:
    """Timestamps parsed the way seqcast.data.series parses them; NaT where that would fail."""
    try:
        with warnings.catch_warnings():
            # "Could not infer format" is noise here: the unparseable rows are reported instead.
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(raw, errors="coerce")
    except (ValueError, TypeError) as err:
        # errors="coerce" still raises for whole-column problems such as mixed time zones.
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]"), str(err)
    if not pd.api.types.is_datetime64_any_dtype(parsed):
        # pandas 2.x returns mixed UTC offsets as objects where pandas 3 raises: the same error.
        return (
            pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]"),
            "Mixed timezones detected. Pass utc=True in to_datetime or tz='UTC' in DatetimeIndex",
        )
    return parsed, None


def _grid(parsed: pd.Series, frequency: str) -> tuple[pd.Series, pd.Series]:
    """Each timestamp's position in steps (fractional off the grid), and its nearest grid point."""
    valid = parsed.dropna()
    if valid.empty:
        return pd.Series(np.nan, index=parsed.index), parsed.copy()
    step = _step(frequency)
    if step is not None:
        # seqcast.data.series anchors the grid at the first timestamp, so positions count from it.
        position = ((parsed - valid.iloc[0]) / step).astype("float64")
        return position, valid.iloc[0] + position.round() * step
    offset = to_offset(frequency)
    grid = pd.date_range(
        offset.rollback(valid.min()), offset.rollforward(valid.max()) + offset, freq=offset
    )
    times, points = valid.to_numpy(), grid.to_numpy().astype(valid.to_numpy().dtype)
    below = np.searchsorted(points, times, side="right") - 1
    fraction = (times - points[below]) / (points[below + 1] - points[below])
    position = pd.Series(below + fraction, index=valid.index, dtype="float64")
    nearest = pd.Series(points[np.round(position.to_numpy()).astype(int)], index=valid.index)
    return position.reindex(parsed.index), nearest.reindex(parsed.index)


def _find_gaps(
    parsed: pd.Series, position: pd.Series | None, empty: pd.DataFrame, cfg: Config
) -> tuple[list[_Gap], int, pd.Series]:
    """The gaps, the series' length in steps, and each gap's length on the row after it."""
    if position is None:  # rows mode: each row is the next step, in file order
        order, missing = list(empty.index), [0] * len(empty)
    else:
        # Steps are grid points: an off-grid row is a grid failure and fills no step.
        valid = position[position == position.round()]
        # In time order, each step once: a misplaced or repeated row is an order or uniqueness
        # failure, and the steps it holds are not missing (shuffled rows have no gaps).
        forward = valid.sort_values(kind="stable").drop_duplicates()
        between = forward - forward.shift() - 1
        order, missing = list(forward.index), between.fillna(0).astype(int).tolist()
    lengths = pd.Series(np.nan, index=empty.index)
    lengths[order] = 0.0
    names = list(empty.columns)
    cells = empty.to_numpy()
    is_empty = [[names[j] for j in np.flatnonzero(row)] for row in cells]
    step = to_offset(cfg.data.frequency) if cfg.data.regular else None
    gaps: list[_Gap] = []
    run: _Gap | None = None
    previous: int | None = None
    for row, skipped in zip(order, missing, strict=True):
        if skipped:
            run = run or _Gap(first=str(parsed[previous] + step))
            run.missing += skipped
        if is_empty[row]:
            run = run or _Gap(first=_label(parsed, row))
            run.add_empty(row, is_empty[row])
        elif run is not None:
            run.row = row
            gaps.append(run)
            run = None
        previous = row
    if run is not None:  # empty cells up to the last row: no complete row after them
        run.row = previous
        gaps.append(run)
    for gap in gaps:
        lengths[gap.row] = gap.steps
    return gaps, len(order) + sum(missing), lengths


def _label(parsed: pd.Series, row: int) -> str:
    """A row's timestamp, or its CSV line when the timestamp did not parse."""
    return f"line {_line(row)}" if pd.isna(parsed[row]) else str(parsed[row])


# --- the suite ------------------------------------------------------------------------------


def _checks(data: _Frame, cfg: Config) -> list[_Check]:
    """The checks for this config, skipping column checks of missing columns."""
    columns = data.raw.columns
    checks = [
        _Check("exists", c, "ExpectColumnToExist", f"column `{c}` is present", {"column": c})
        for c in [cfg.data.timestamp, *cfg.data.value_columns]
    ]
    if cfg.data.timestamp in columns:
        checks += _timestamp_checks(data, cfg)
    for column in cfg.data.value_columns:
        if column in columns:
            checks += _value_checks(column, cfg)
    return checks


def _timestamp_checks(data: _Frame, cfg: Config) -> list[_Check]:
    """Parsing, uniqueness, order, grid, gap and filled-share checks of the series' steps."""
    ts, frequency = cfg.data.timestamp, cfg.data.frequency
    max_gap, limit = cfg.split.max_gap_steps, cfg.data.max_filled_fraction
    column = {"column": ts}
    checks = [
        _Check("parses", ts, "ExpectColumnValuesToNotBeNull",
               f"`{ts}` values parse as date/times (pandas.to_datetime)", column),
        _Check("unique", ts, "ExpectColumnValuesToBeUnique", f"`{ts}` values are unique", column),
        # Not strict: with the uniqueness check that makes them strictly increasing, and a
        # duplicate is reported once rather than twice.
        _Check("ordered", ts, "ExpectColumnValuesToBeIncreasing",
               f"`{ts}` values increase (strictly, given they are unique)", column),
    ]  # fmt: skip
    if cfg.data.regular:
        anchor = "the first timestamp" if _step(frequency) is not None else "its anchors"
        checks.append(
            _Check("on_grid", ts, "ExpectColumnPairValuesToBeEqual",
                   f"`{ts}` values lie on the {frequency} grid from {anchor}: each equals itself "
                   "rounded to the grid", {"column_A": ts, "column_B": _grid_column(cfg)})
        )  # fmt: skip
    unit = f"{frequency} steps" if cfg.data.regular else "rows"
    what = "missing steps and/or rows" if cfg.data.regular else "rows"
    gaps = _gap_column(cfg)
    checks += [
        _Check("gaps", ts, "ExpectColumnValuesToBeBetween",
               f"no gap is longer than {max_gap} {unit} (split.max_gap_steps; a gap is a run of "
               f"{what} with an empty value, interpolated by normalise; the column holds its "
               "length on the first complete row after it)",
               {"column": gaps, "min_value": 0, "max_value": max_gap}),
        _Check("filled", ts, "ExpectColumnSumToBeBetween",
               f"at most {limit:.1%} of the {data.steps} {unit} ({_allowed(limit, data.steps)}) "
               "are in gaps, to be filled by interpolation (data.max_filled_fraction)",
               {"column": gaps, "min_value": 0, "max_value": _allowed(limit, data.steps)}),
    ]  # fmt: skip
    return checks


def _allowed(fraction: float, steps: int) -> int:
    """The most filled steps data.max_filled_fraction allows, as seqcast.data.series tests it."""
    allowed = int(np.floor(fraction * steps))
    # The float product can land a hair off an exact count: settle it the way the ratio tests.
    if (allowed + 1) / max(steps, 1) <= fraction:
        return allowed + 1
    return allowed if allowed / max(steps, 1) <= fraction else allowed - 1


def _value_checks(column: str, cfg: Config) -> list[_Check]:
    """Numeric, null-fraction and bounds checks of one target or feature column."""
    limit = cfg.data.max_null_fraction
    text = _text_column(column)
    checks = [
        _Check("numeric", column, "ExpectColumnValuesToMatchRegex",
               f"`{column}` values are finite numbers as written (a regular expression of "
               "decimal and scientific notation)", {"column": text, "regex": NUMBER}),
        _Check("nulls", column, "ExpectColumnValuesToNotBeNull",
               f"`{column}` is at most {limit:.1%} empty (data.max_null_fraction)",
               {"column": text, "mostly": _mostly(limit)}),
    ]  # fmt: skip
    if column in cfg.data.bounds:
        low, high = cfg.data.bounds[column]
        checks.append(
            _Check("bounds", column, "ExpectColumnValuesToBeBetween",
                   f"`{column}` values lie in [{_num(low)}, {_num(high)}] (data.bounds)",
                   {"column": column, "min_value": low, "max_value": high})
        )  # fmt: skip
    return checks


def _expectations(checks: list[_Check]) -> list[Expectation]:
    """GX expectations for the checks; meta carries each one's position back to its check."""
    gxe = _gx().expectations
    return [
        getattr(gxe, c.expectation)(description=c.description, meta={"order": i}, **c.kwargs)
        for i, c in enumerate(checks)
    ]


def _mostly(max_null_fraction: float) -> float:
    """GX's `mostly` for a null limit, a hair lower so float rounding cannot fail an exact match."""
    # GX tests (n - nulls) / n >= mostly; e.g. 1 - 0.7 is 0.30000000000000004, above 3 / 10.
    return max(0.0, 1.0 - max_null_fraction - 1e-12)


# --- running GX -----------------------------------------------------------------------------


def _run(
    context: AbstractDataContext, typed: pd.DataFrame, expectations: list, source: str, run_id: Any
) -> tuple[Any, ExpectationSuiteValidationResult]:
    """Validate the frame through datasource, asset, batch, validation definition and checkpoint."""
    gx = _gx()
    # The asset name ends up in data-docs file names: keep it a plain file name.
    asset_name = Path(source).name or "data"
    asset = context.data_sources.add_pandas("raw").add_dataframe_asset(asset_name)
    batch = asset.add_batch_definition_whole_dataframe("whole file")
    suite = context.suites.add(
        gx.ExpectationSuite(name=SUITE, expectations=expectations, notes=f"Raw data: {source}")
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{SUITE} on {source}", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="seqcast_validate",
            validation_definitions=[definition],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": DOCS_EXAMPLES},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": typed}, run_id=run_id)
    key, outcome = next(iter(result.run_results.items()))
    # The docs header reads the asset name from the batch spec, which a dataframe batch lacks.
    outcome.meta.setdefault("batch_spec", {})["data_asset_name"] = source
    context.validation_results_store.set(key, outcome)
    return key, outcome


# --- reading the results --------------------------------------------------------------------


def _result_row(result: Any, check: _Check, data: _Frame) -> dict[str, Any]:
    """One expectation's result for the summary: name, column, success, short observed value."""
    config = result.expectation_config
    return {
        "name": config.type,
        "check": check.kind,
        "column": check.column,
        "gx_column": config.kwargs.get("column") or config.kwargs.get("column_B"),
        "success": bool(result.success),
        "observed": _observed(result, check, data),
    }


def _observed(result: Any, check: _Check, data: _Frame) -> str:
    """A few words on what GX saw."""
    error = _exception(result)
    if error:
        return f"error: {error}"
    if check.kind == "exists":
        return "present" if result.success else "missing"
    details = result.result or {}
    if check.kind == "filled":
        return f"{_num(details.get('observed_value') or 0)} filled of {data.steps} steps"
    if "unexpected_count" in details:
        return f"{details['unexpected_count']} unexpected of {details.get('element_count', '?')}"
    return str(details.get("observed_value", ""))


def _exception(result: Any) -> str | None:
    """The message of an exception GX caught while checking, if any."""
    info = result.exception_info or {}
    # GX reports one dict, or one per metric keyed by metric id.
    infos = [info] if "raised_exception" in info else list(info.values())
    for item in infos:
        if isinstance(item, dict) and item.get("raised_exception"):
            return str(item.get("exception_message"))
    return None


def _failure_line(result: Any, check: _Check, data: _Frame, cfg: Config, source: str) -> str:
    """One readable line for a failed expectation: file, column, what was expected, examples."""
    error = _exception(result)
    if error:
        name = result.expectation_config.type
        return f"{source}: column {check.column}: {name} could not run: {error}"
    if check.kind == "exists":
        found = [str(c) for c in data.raw.columns]
        needed = [cfg.data.timestamp, *cfg.data.value_columns]
        first = next(c for c in needed if c not in found)  # the hint once, on the first
        hint = _delimiter_hint(found) if check.column == first else ""
        return f"{source}: column {check.column!r} is missing; found columns: {found}{hint}"
    details = result.result or {}
    count = int(details.get("unexpected_count") or 0)
    rows = sorted(int(i) for i in details.get("partial_unexpected_index_list") or [])
    what = _DESCRIBE[check.kind](count, rows, check.column, data, cfg)
    if check.kind == "parses" and data.parse_error and not _offset_change(data.raw[check.column]):
        what += f" (pandas: {data.parse_error})"
    return f"{source}: {_columns(check, data, cfg)}: {what}"


def _columns(check: _Check, data: _Frame, cfg: Config) -> str:
    """'column x' or 'columns x, y': for a gap failure, the columns whose cells are missing."""
    if check.kind not in ("gaps", "filled"):
        return f"column {check.column}"
    gaps = data.gaps
    if check.kind == "gaps":
        gaps = [g for g in gaps if g.steps > cfg.split.max_gap_steps]
    # A missing step lacks its timestamp; an empty cell is the value column's.
    names = [cfg.data.timestamp] if any(g.missing for g in gaps) else []
    names += [c for c in cfg.data.value_columns if any(c in g.columns for g in gaps)]
    names = names or [check.column]
    return f"column {names[0]}" if len(names) == 1 else f"columns {', '.join(names)}"


# Separators a CSV saved elsewhere may use (e.g. `;` where the comma is the decimal mark).
_DELIMITERS = (";", "\t", "|")


def _delimiter_hint(found: list[str]) -> str:
    """'; the header reads as one column holding `;`: ...' when the file is not comma-separated."""
    if len(found) != 1:
        return ""
    for delimiter in _DELIMITERS:
        if delimiter in found[0]:
            shown = "tab" if delimiter == "\t" else repr(delimiter)
            return (
                f"; the header is one column holding {shown}: the file looks separated by "
                f"{shown}, and seqcast reads comma-separated CSV (save it with commas, and "
                "'.' as the decimal mark)"
            )
    return ""


def _examples(rows: list[int], show: Callable[[int], str]) -> str:
    """', e.g. line 5: ..., line 9: ...' for the first few rows."""
    if not rows:
        return ""
    return ", e.g. " + ", ".join(f"line {_line(i)}: {show(i)}" for i in rows[:EXAMPLES])


def _line(row: int) -> int:
    """The CSV line of 0-based data row `row` (line 1 is the header)."""
    return row + 2


def _raw(data: _Frame, column: str, row: int) -> str:
    """A raw cell as it reads in the file: quoted text, or 'empty'."""
    value = data.raw[column].iloc[row]
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "empty"
    return repr(value) if isinstance(value, str) else str(value)


def _parses(count: int, rows: list[int], column: str, data: _Frame, cfg: Config) -> str:
    """Message for timestamps that are empty or do not parse."""
    change = _offset_change(data.raw[column]) if data.parse_error else None
    if change:
        row, before, offsets = change
        utc = pd.Timestamp(str(data.raw[column].iloc[row])).tz_convert("UTC")
        return (
            f"timestamps carry {len(offsets)} different UTC offsets ({', '.join(offsets)}), "
            f"e.g. line {_line(row)}: {_raw(data, column, row)} after line {_line(before)}: "
            f"{_raw(data, column, before)}; every row needs the same offset: store UTC "
            f"(line {_line(row)}: '{utc:%Y-%m-%d %H:%M:%S}+00:00')"
        )
    shown = _examples(rows, lambda i: _raw(data, column, i))
    how = "pandas.to_datetime, in the format of the first row"
    return f"{_plural(count, 'value')} empty or not parseable as a date/time ({how}){shown}"


def _unique(count: int, rows: list[int], column: str, data: _Frame, cfg: Config) -> str:
    """Message for repeated timestamps."""
    shown = _examples(rows, lambda i: _raw(data, column, i))
    back = _clock_back(data.parsed, cfg)
    dst = ""
    if back is not None:
        dst = (
            f"; at line {_line(back)} ({_raw(data, column, back)} after "
            f"{_raw(data, column, back - 1)}) the clock goes back an hour, as local time does "
            "at a daylight-saving change: store UTC or an offset, the same on every row"
        )
    return f"{count} rows share a timestamp (expected unique){shown}{dst}"


def _clock_back(parsed: pd.Series, cfg: Config) -> int | None:
    """The first row where local time repeats an hour (one step after an hour back), if any."""
    times = parsed.dropna()
    gaps = times.diff().dropna()
    step = _step(cfg.data.frequency) if cfg.data.regular else None
    if step is None and len(gaps):
        step = gaps.mode().iloc[0]  # rows or a calendar frequency: the usual spacing
    hour = pd.Timedelta("1h")
    if step is None or step > hour:
        return None  # steps of a day or more do not see the repeated hour
    back = gaps[gaps == step - hour]
    return None if back.empty else int(back.index[0])


def _offset_change(raw: pd.Series) -> tuple[int, int, list[str]] | None:
    """(row, row before, offsets) where the UTC offset first changes, if the cells carry several.

    pandas refuses a column of mixed offsets as a whole ("Mixed timezones detected"), which
    would otherwise read as every value being unparseable.
    """
    offsets: list[str] = []
    previous: tuple[int, str] | None = None
    change = None
    for row, cell in raw.dropna().items():
        try:
            stamp = pd.Timestamp(str(cell))
        except (ValueError, TypeError):
            continue
        offset = "no offset" if stamp.tzinfo is None else stamp.strftime("%z")
        offset = offset if len(offset) != 5 else f"{offset[:3]}:{offset[3:]}"
        if offset not in offsets:
            offsets.append(offset)
        if previous is not None and change is None and offset != previous[1]:
            change = (int(row), previous[0])
        previous = (int(row), offset)
    if change is None or len(offsets) < 2:
        return None
    return (*change, offsets)


def _ordered(count: int, rows: list[int], column: str, data: _Frame, cfg: Config) -> str:
    """Message for timestamps earlier than the row before them."""
    parsed = data.parsed.dropna()

    def show(i: int) -> str:
        before = parsed.index[parsed.index.get_loc(i) - 1]
        return f"{_raw(data, column, i)} after {_raw(data, column, before)}"

    shown = _examples(rows, show)
    return f"{_plural(count, 'row')} earlier than the row before (expected increasing){shown}"


def _on_grid(count: int, rows: list[int], column: str, data: _Frame, cfg: Config) -> str:
    """Message for timestamps off the frequency grid."""
    parsed = data.parsed.dropna()
    shown = _examples(rows, lambda i: _raw(data, column, i))
    # A fixed-length grid starts at the first timestamp; a calendar one (W-SUN, MS) at its anchors.
    start = f" starting at {parsed.iloc[0]}" if _step(cfg.data.frequency) is not None else ""
    grid = f"{cfg.data.frequency} grid{start}"
    return f"{_plural(count, 'timestamp')} off the {grid} (expected regular spacing){shown}"


def _gaps(count: int, rows: list[int], column: str, data: _Frame, cfg: Config) -> str:
    """Message for gaps longer than split.max_gap_steps: every one counted, the first few shown."""
    max_gap = cfg.split.max_gap_steps
    long = [g for g in data.gaps if g.steps > max_gap]
    shown = "; ".join(_gap_text(g) for g in long[:GAP_EXAMPLES])
    more = f"; and {len(long) - GAP_EXAMPLES} more" if len(long) > GAP_EXAMPLES else ""
    what = "missing steps and/or rows" if cfg.data.regular else "rows"
    unit = "steps" if cfg.data.regular else "rows"
    return (
        f"{_plural(count, 'gap')} longer than {max_gap} {unit} (split.max_gap_steps; a gap is a "
        f"run of {what} with an empty cell, interpolated when shorter): {shown}{more}"
    )


def _gap_text(gap: _Gap) -> str:
    """'line 62: 12 steps missing from 2000-06-06 06:00:00', or the lines with empty cells."""
    if not gap.empty:
        return f"line {_line(gap.row)}: {_plural(gap.steps, 'step')} missing from {gap.first}"
    first, last = _line(int(gap.first_empty)), _line(int(gap.last_empty))
    lines = f"line {first}" if first == last else f"lines {first}-{last}"
    cell = f"an empty {' or '.join(gap.columns)} cell"
    if not gap.missing:
        return f"{lines}: {_plural(gap.steps, 'row')} with {cell} from {gap.first}"
    return f"{lines}: {gap.steps} steps missing or with {cell} from {gap.first}"


def _filled(count: int, rows: list[int], column: str, data: _Frame, cfg: Config) -> str:
    """Message for more filled steps than data.max_filled_fraction allows."""
    limit, filled, steps = cfg.data.max_filled_fraction, data.filled, data.steps
    share = filled / max(steps, 1)
    allows = f"more than data.max_filled_fraction {limit:g} allows"
    if not cfg.data.regular:
        return (
            f"{filled} of {steps} rows ({share:.1%}) have an empty cell and would be filled by "
            f"interpolation, {allows}"
        )
    missing = sum(g.missing for g in data.gaps)
    parts = [f"{missing} missing"] if missing else []
    parts += [f"{_plural(filled - missing, 'row')} with an empty cell"] if filled > missing else []
    return (
        f"{filled} of {steps} {cfg.data.frequency} steps ({share:.1%}) would be filled by "
        f"interpolation ({', '.join(parts)}), {allows}"
    )


def _numeric(count: int, rows: list[int], column: str, data: _Frame, cfg: Config) -> str:
    """Message for values that are not numbers."""
    shown = _examples(rows, lambda i: _raw(data, column, i))
    return f"{_plural(count, 'non-numeric value')} (expected numbers){shown}"


def _nulls(count: int, rows: list[int], column: str, data: _Frame, cfg: Config) -> str:
    """Message for too many empty values."""
    limit = cfg.data.max_null_fraction
    share = count / max(len(data.raw), 1)
    lines = ", ".join(f"line {_line(i)}" for i in rows[:EXAMPLES])
    return (
        f"{_plural(count, 'empty value')} ({share:.1%}), more than data.max_null_fraction "
        f"{limit:g} allows{', e.g. ' + lines if lines else ''}; data.max_null_fraction "
        f"{_passing(share)} would let them pass (and normalise interpolate them)"
    )


def _passing(share: float) -> str:
    """The observed share to 3 decimals, rounded up unless exact (so that it passes the check)."""
    short = round(share, 3)
    if short < share - 1e-12:  # the check's own slack (_mostly)
        short = math.ceil(share * 1000) / 1000
    return _num(short)


def _bounds(count: int, rows: list[int], column: str, data: _Frame, cfg: Config) -> str:
    """Message for values outside data.bounds."""
    low, high = cfg.data.bounds[column]
    numbers = data.typed[column]
    shown = _examples(rows, lambda i: repr(float(numbers.iloc[i])))
    return f"{_plural(count, 'value')} outside [{_num(low)}, {_num(high)}]{shown}"


_DESCRIBE: dict[str, Callable[[int, list[int], str, _Frame, Config], str]] = {
    "parses": _parses,
    "unique": _unique,
    "ordered": _ordered,
    "on_grid": _on_grid,
    "gaps": _gaps,
    "filled": _filled,
    "numeric": _numeric,
    "nulls": _nulls,
    "bounds": _bounds,
}


def _gap_summary(data: _Frame, cfg: Config) -> dict[str, Any]:
    """All gaps, allowed or not, and the share of steps they fill."""
    gaps = data.gaps
    return {
        "count": len(gaps),
        "longest": max((g.steps for g in gaps), default=0),
        "max_allowed": cfg.split.max_gap_steps,
        "steps": data.steps,
        "filled_steps": data.filled,
        "missing_steps": sum(g.missing for g in gaps),
        "empty_rows": sum(g.empty for g in gaps),
        "filled_fraction": round(data.filled / max(data.steps, 1), 6),
        "max_filled_fraction": cfg.data.max_filled_fraction,
        "examples": [_gap_example(g) for g in gaps[:EXAMPLES]],
    }


def _gap_example(gap: _Gap) -> dict[str, Any]:
    """One gap for the summary: where GX reports it, its length and make-up, its first step."""
    example = {
        "line": _line(gap.row),
        "steps": gap.steps,
        "missing_steps": gap.missing,
        "empty_rows": gap.empty,
        "first": gap.first,
    }
    if gap.empty:
        example["empty_lines"] = [_line(int(gap.first_empty)), _line(int(gap.last_empty))]
    return example


# --- frequency hints ------------------------------------------------------------------------

# Failures that a wrong data.frequency explains; the hint goes on the first of them.
_GRID_CHECKS = ("on_grid", "gaps", "filled")
_CALENDAR_WORDS = {
    "MS": "are all month starts",
    "ME": "are all month ends",
    "QS": "are all quarter starts",
    "QE": "are all quarter ends",
    "YS": "are all year starts",
    "YE": "are all year ends",
    "B": "are all weekdays",
}


def _add_hint(
    failures: list[str], results: list[Any], checks: list[_Check], data: _Frame, cfg: Config
) -> None:
    """Append a frequency hint to the first grid, gap or filled failure, when one fits better."""
    if not cfg.data.regular:
        return
    failed = [checks[r.expectation_config.meta["order"]].kind for r in results if not r.success]
    lines = [i for i, line in enumerate(failures) if failed[i] in _GRID_CHECKS]
    if not lines:
        return
    hint = _frequency_hint(data.parsed, cfg) or _holiday_hint(data, cfg)
    if not hint and "filled" in failed and sum(g.missing for g in data.gaps) * 2 > data.filled:
        hint = f"is data.frequency {cfg.data.frequency} right?"
    if hint:
        failures[lines[0]] += f"; {hint}"


def _holiday_hint(data: _Frame, cfg: Config) -> str:
    """With data.frequency B, weekdays without a row (holidays?) that normalise would fill."""
    if cfg.data.frequency != "B":
        return ""
    missing = sum(g.missing for g in data.gaps)
    if not missing:
        return ""
    return (
        f"{_plural(missing, 'weekday has', 'weekdays have')} no row "
        f"({missing / max(data.steps, 1):.1%} of the {data.steps} B steps) and would be "
        "interpolated: if those are exchange holidays rather than missing steps, use "
        "data.frequency rows with data.step_frequency B (or the exchange, e.g. XNYS)"
    )


def _frequency_hint(parsed: pd.Series, cfg: Config) -> str:
    """'the timestamps all fall on a Saturday: is data.frequency W-SAT?', or '' if none fits."""
    times = pd.DatetimeIndex(parsed.dropna().unique()).sort_values()
    if len(times) < 3:
        return ""
    candidates = _candidates(times, cfg.data.frequency)
    fits = [(m, i, c) for i, c in enumerate(candidates) if (m := _missing_on(times, c)) is not None]
    if not fits:
        return ""
    missing, _, best = min(fits)
    if best == candidates[0]:
        return ""  # the configured frequency fits as well as any: the data has real gaps
    step = _step(best)
    if step is not None:
        why = f"rows are {_spacing(step)} apart"
    elif best.startswith("W-"):
        why = f"the timestamps all fall on a {times[0].day_name()}"
    else:
        why = f"the timestamps {_CALENDAR_WORDS[best.split('-')[0]]}"
    hint = f"{why}: is data.frequency {best}?"
    if best == "B" and missing:
        hint += (
            f" {_plural(missing, 'weekday has', 'weekdays have')} no row either (holidays?): if "
            "those are not missing steps, use data.frequency rows with data.step_frequency B "
            "(or the exchange, e.g. XNYS)"
        )
    return hint


def _candidates(times: pd.DatetimeIndex, configured: str) -> list[str]:
    """The configured frequency, then others the timestamps might follow, without duplicates."""
    first = times[0]
    month = first.strftime("%b").upper()
    quarter_start = pd.Timestamp(2000, (first.month - 1) % 3 + 1, 1).strftime("%b").upper()
    quarter_end = pd.Timestamp(2000, (first.month - 1) % 3 + 10, 1).strftime("%b").upper()
    spacing = pd.Series(np.diff(times.asi8)).mode()
    aliases = [
        configured,
        f"W-{first.day_name()[:3].upper()}",
        "MS",
        "ME",
        f"QS-{quarter_start}",
        f"QE-{quarter_end}",
        f"YS-{month}",
        f"YE-{month}",
        "B",
        "D",
    ]
    if len(spacing):
        aliases.append(_alias(pd.Timedelta(int(spacing.iloc[0]), unit=times.unit)))
    seen, unique = set(), []
    for alias in aliases:
        name = to_offset(alias).freqstr
        if name not in seen:
            seen.add(name)
            unique.append(alias)
    return unique


def _missing_on(times: pd.DatetimeIndex, alias: str) -> int | None:
    """Grid steps without a row if the timestamps lie on alias's grid from the first, else None."""
    step = _step(alias)
    if step is not None:
        if step <= pd.Timedelta(0):
            return None
        span = np.asarray((times - times[0]) / step, dtype="float64")
        if not np.array_equal(span, np.round(span)):
            return None
        return int(span[-1]) + 1 - len(times)
    # The grid seqcast.data.series builds: date_range from the first row, which must lie on it.
    grid = pd.date_range(times[0], times[-1], freq=alias)
    if not times.isin(grid).all():
        return None
    return len(grid) - len(times)


def _alias(step: pd.Timedelta) -> str:
    """The pandas alias of a fixed step: 30min, h, 2h, D, 7D."""
    if step >= pd.Timedelta("1D") and step % pd.Timedelta("1D") == pd.Timedelta(0):
        days = step // pd.Timedelta("1D")
        return "D" if days == 1 else f"{days}D"
    return to_offset(step).freqstr


def _spacing(step: pd.Timedelta) -> str:
    """'1h', '30min', '1 day', '7 days'."""
    if step % pd.Timedelta("1D") == pd.Timedelta(0):
        return _plural(step // pd.Timedelta("1D"), "day")
    alias = to_offset(step).freqstr
    return alias if alias[0].isdigit() else f"1{alias}"
