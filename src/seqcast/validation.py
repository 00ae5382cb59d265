"""Great Expectations (GX Core 1.x) checks of the raw series, built from params.yaml.

Some checks need values pandas must compute first (parsed timestamps, grid positions, numbers), so
they run on derived columns named `<column>__<check>` added to a copy of the frame; every check
still goes through a GX checkpoint and shows in the data docs, with a plain-words description.
Row references in messages are CSV line numbers: data row i (0-based) is line i + 2, assuming
one line per row, as `seqcast.data.read_raw` reads it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from seqcast import paths
from seqcast.config import Config
from seqcast.errors import SeqcastError
from seqcast.io import atomic_dir, write_json

if TYPE_CHECKING:
    from great_expectations.core.expectation_suite_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations import Expectation

SUITE = "seqcast_raw_data"
DOCS_SITE = "seqcast"
EXAMPLES = 3
# GX keeps this many unexpected values per expectation, shown in the data docs.
DOCS_EXAMPLES = 20


class ValidationFailed(SeqcastError):
    """Raw data that failed its expectations; the message lists each failure."""


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
    seconds: float = 0.0
    # The ephemeral GX context holds the run's results in memory: the data docs are built from it.
    gx_context: Any = field(default=None, repr=False, compare=False)

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
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
        }

    def raise_if_failed(self) -> None:
        """Raise ValidationFailed listing every failed expectation, if any failed."""
        if self.success:
            return
        failed = sum(not r["success"] for r in self.results)
        header = (
            f"validation failed for {self.source}: {failed} of {len(self.results)} expectations"
        )
        raise ValidationFailed("\n".join([header, *self.failures]))


@dataclass(frozen=True)
class _Check:
    """One expectation, and what it means in the config's terms (to word its failure)."""

    kind: str
    column: str
    expectation: str
    description: str
    kwargs: dict[str, Any]


def validate_frame(frame: pd.DataFrame, cfg: Config, source: str) -> ValidationReport:
    """Run the expectation suite built from cfg on a raw frame through a GX checkpoint."""
    started = time.perf_counter()
    checked, parse_error = _derive(frame.reset_index(drop=True), cfg)
    checks = _checks(checked, cfg)
    context = _context()
    outcome = _run(context, checked, _expectations(checks), source)
    results = sorted(outcome.results, key=lambda r: r.expectation_config.meta["order"])
    rows, failures = [], []
    for result in results:
        check = checks[result.expectation_config.meta["order"]]
        rows.append(_result_row(result, check))
        if not result.success:
            failures.append(_failure_line(result, check, checked, frame, cfg, source, parse_error))
    times = _parsed(checked, cfg).dropna()
    return ValidationReport(
        success=bool(outcome.success),
        failures=failures,
        source=source,
        rows=len(frame),
        columns=[str(c) for c in frame.columns],
        results=rows,
        gaps=_gap_summary(checked, cfg),
        first_timestamp=str(times.min()) if len(times) else None,
        last_timestamp=str(times.max()) if len(times) else None,
        seconds=time.perf_counter() - started,
        gx_context=context,
    )


def validate(cfg: Config, root: Path) -> dict[str, Any]:
    """The validate stage: the raw CSV against the suite; data docs and summary on success."""
    from seqcast.data import file_hash, read_raw

    source = root / cfg.data.path
    report = validate_frame(read_raw(source), cfg, source=cfg.data.path)
    report.raise_if_failed()
    summary = report.summary() | {"raw_md5": file_hash(source)}
    write_outputs(report, summary, root / paths.VALIDATION)
    return summary


def write_outputs(report: ValidationReport, summary: dict[str, Any], folder: Path) -> None:
    """Replace folder with the GX data docs (index.html) and summary.json."""
    with atomic_dir(folder) as tmp:
        _build_docs(report.gx_context, tmp.resolve())
        # Checked before the move, so a broken build never replaces the previous docs.
        if not (tmp / "index.html").is_file():
            raise RuntimeError(f"{folder}: Great Expectations built no index.html")
        write_json(tmp / paths.VALIDATION_SUMMARY.name, summary)


# --- derived columns ------------------------------------------------------------------------


def _name(column: str, check: str) -> str:
    """The derived column holding `check` for `column`."""
    return f"{column}__{check}"


def _derive(frame: pd.DataFrame, cfg: Config) -> tuple[pd.DataFrame, str | None]:
    """Copy the frame and add the derived columns the checks need; also any parse error."""
    checked = frame.copy()
    ts = cfg.data.timestamp
    parse_error = None
    if ts in checked.columns:
        parsed, parse_error = _parse_times(checked[ts])
        position = _grid_positions(parsed, cfg.data.frequency)
        off_grid = position.notna() & (position != np.round(position))
        checked[_name(ts, "parsed")] = parsed
        # The raw text of off-grid rows and null elsewhere, so GX and the docs show the bad values.
        checked[_name(ts, "off_grid")] = checked[ts].where(off_grid)
        checked[_name(ts, "missing_steps")] = _missing_steps(position)
    for column in cfg.data.value_columns:
        if column not in checked.columns:
            continue
        raw = checked[column]
        number = pd.to_numeric(raw, errors="coerce")
        checked[_name(column, "non_numeric")] = raw.where(raw.notna() & number.isna())
        checked[_name(column, "number")] = number.astype("float64")
    return checked, parse_error


def _parse_times(raw: pd.Series) -> tuple[pd.Series, str | None]:
    """Timestamps parsed the way seqcast.data parses them; NaT where that would fail."""
    try:
        with warnings.catch_warnings():
            # "Could not infer format" is noise here: the unparseable rows are reported instead.
            warnings.simplefilter("ignore", UserWarning)
            return pd.to_datetime(raw, errors="coerce"), None
    except (ValueError, TypeError) as err:
        # errors="coerce" still raises for whole-column problems such as mixed time zones.
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]"), str(err)


def _grid_positions(parsed: pd.Series, frequency: str) -> pd.Series:
    """Each timestamp's position in frequency steps; fractional when off the grid."""
    valid = parsed.dropna()
    if valid.empty:
        return pd.Series(np.nan, index=parsed.index)
    step = _step(frequency)
    if step is None:
        return _calendar_positions(parsed, to_offset(frequency))
    # seqcast.data anchors the grid at the first timestamp, so positions count from it.
    return ((parsed - valid.iloc[0]) / step).astype("float64")


def _step(frequency: str) -> pd.Timedelta | None:
    """The fixed length of one step, or None for calendar frequencies (W-SUN, MS, B)."""
    try:
        return pd.Timedelta(to_offset(frequency))
    except ValueError:
        return None


def _calendar_positions(parsed: pd.Series, offset: pd.DateOffset) -> pd.Series:
    """Positions on a calendar grid (weeks, months, business days), anchored like date_range."""
    valid = parsed.dropna()
    grid = pd.date_range(
        offset.rollback(valid.min()), offset.rollforward(valid.max()) + offset, freq=offset
    ).to_numpy()
    times = valid.to_numpy()
    below = np.searchsorted(grid, times, side="right") - 1
    fraction = (times - grid[below]) / (grid[below + 1] - grid[below])
    return pd.Series(below + fraction, index=valid.index, dtype="float64").reindex(parsed.index)


def _missing_steps(position: pd.Series) -> pd.Series:
    """Grid steps skipped since the latest earlier row; NaN unless time moved forward."""
    valid = position.dropna()
    # Measured from the latest earlier time, so one misplaced row is an order failure only,
    # not also a gap before the row after it.
    previous = valid.cummax().shift()
    # Grid points strictly between the two positions, whether or not either is on the grid.
    missing = (np.ceil(valid) - np.floor(previous) - 1).where(valid > previous)
    return missing.reindex(position.index)


def _parsed(checked: pd.DataFrame, cfg: Config) -> pd.Series:
    """The parsed timestamps, or an empty series when the column is missing."""
    name = _name(cfg.data.timestamp, "parsed")
    return checked[name] if name in checked.columns else pd.Series(dtype="datetime64[ns]")


# --- the suite ------------------------------------------------------------------------------


def _checks(checked: pd.DataFrame, cfg: Config) -> list[_Check]:
    """The checks for this config, skipping column checks of missing columns."""
    data = cfg.data
    checks = [
        _Check("exists", c, "ExpectColumnToExist", f"column `{c}` is present", {"column": c})
        for c in [data.timestamp, *data.value_columns]
    ]
    if data.timestamp in checked.columns:
        checks += _timestamp_checks(cfg)
    for column in data.value_columns:
        if column in checked.columns:
            checks += _value_checks(column, cfg)
    return checks


def _timestamp_checks(cfg: Config) -> list[_Check]:
    """Parsing, uniqueness, order, grid and gap checks of the timestamp column."""
    ts, frequency, max_gap = cfg.data.timestamp, cfg.data.frequency, cfg.split.max_gap_steps
    parsed = {"column": _name(ts, "parsed")}
    return [
        _Check("parses", ts, "ExpectColumnValuesToNotBeNull",
               f"`{ts}` values parse as date/times (pandas.to_datetime)", parsed),
        _Check("unique", ts, "ExpectColumnValuesToBeUnique", f"`{ts}` values are unique", parsed),
        # Not strict: with the uniqueness check that makes them strictly increasing, and a
        # duplicate is reported once rather than twice.
        _Check("ordered", ts, "ExpectColumnValuesToBeIncreasing",
               f"`{ts}` values increase (strictly, given they are unique)", parsed),
        _Check("on_grid", ts, "ExpectColumnValuesToBeNull",
               f"`{ts}` values lie on the {frequency} grid from the first timestamp "
               "(the column holds the off-grid values)", {"column": _name(ts, "off_grid")}),
        _Check("gaps", ts, "ExpectColumnValuesToBeBetween",
               f"at most {max_gap} missing {frequency} steps between rows (split.max_gap_steps; "
               "shorter gaps are interpolated later)",
               {"column": _name(ts, "missing_steps"), "min_value": 0, "max_value": max_gap}),
    ]  # fmt: skip


def _value_checks(column: str, cfg: Config) -> list[_Check]:
    """Numeric, null-fraction and bounds checks of one target or feature column."""
    limit = cfg.data.max_null_fraction
    checks = [
        _Check("numeric", column, "ExpectColumnValuesToBeNull",
               f"`{column}` values are numbers (the column holds the non-numeric values)",
               {"column": _name(column, "non_numeric")}),
        _Check("nulls", column, "ExpectColumnValuesToNotBeNull",
               f"`{column}` is at most {limit:.1%} empty (data.max_null_fraction)",
               {"column": column, "mostly": _mostly(limit)}),
    ]  # fmt: skip
    if column in cfg.data.bounds:
        low, high = cfg.data.bounds[column]
        checks.append(
            _Check("bounds", column, "ExpectColumnValuesToBeBetween",
                   f"`{column}` values lie in [{_num(low)}, {_num(high)}] (data.bounds)",
                   {"column": _name(column, "number"), "min_value": low, "max_value": high})
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


def _gx() -> ModuleType:
    """Import GX with analytics off; deferred so importing seqcast stays fast."""
    # Read by GX when it starts; the context config below also turns analytics off.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx
    import great_expectations.expectations  # noqa: F401  (so gx.expectations is loaded)

    return gx


def _context() -> AbstractDataContext:
    """A fresh in-memory GX context: no analytics, no progress bars, no default docs site."""
    gx = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _run(
    context: AbstractDataContext, checked: pd.DataFrame, expectations: list, source: str
) -> ExpectationSuiteValidationResult:
    """Validate the frame through datasource, asset, batch, validation definition and checkpoint."""
    gx = _gx()
    # The asset name ends up in data-docs file names: keep it a plain file name.
    asset = context.data_sources.add_pandas("raw").add_dataframe_asset(Path(source).name or "data")
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
    result = checkpoint.run(batch_parameters={"dataframe": checked})
    return next(iter(result.run_results.values()))


def _build_docs(context: AbstractDataContext, folder: Path) -> None:
    """Build the context's data docs (suite and validation pages, index.html) into folder."""
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(folder),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    context.add_data_docs_site(DOCS_SITE, site)
    try:
        context.build_data_docs(site_names=[DOCS_SITE])
    finally:
        # Sites are named uniquely per context: drop it so write_outputs can run again.
        context.delete_data_docs_site(DOCS_SITE)


# --- reading the results --------------------------------------------------------------------


def _result_row(result: Any, check: _Check) -> dict[str, Any]:
    """One expectation's result for the summary: name, column, success, short observed value."""
    config = result.expectation_config
    return {
        "name": config.type,
        "check": check.kind,
        "column": check.column,
        "gx_column": config.kwargs.get("column"),
        "success": bool(result.success),
        "observed": _observed(result, check),
    }


def _observed(result: Any, check: _Check) -> str:
    """A few words on what GX saw."""
    error = _exception(result)
    if error:
        return f"error: {error}"
    if check.kind == "exists":
        return "present" if result.success else "missing"
    details = result.result or {}
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


def _failure_line(
    result: Any,
    check: _Check,
    checked: pd.DataFrame,
    frame: pd.DataFrame,
    cfg: Config,
    source: str,
    parse_error: str | None,
) -> str:
    """One readable line for a failed expectation: file, column, what was expected, examples."""
    error = _exception(result)
    if error:
        name = result.expectation_config.type
        return f"{source}: column {check.column}: {name} could not run: {error}"
    if check.kind == "exists":
        found = [str(c) for c in frame.columns]
        return f"{source}: column {check.column!r} is missing; found columns: {found}"
    details = result.result or {}
    count = int(details.get("unexpected_count", 0))
    rows = sorted(int(i) for i in details.get("partial_unexpected_index_list") or [])
    what = _DESCRIBE[check.kind](count, rows, check.column, checked, cfg)
    if check.kind == "parses" and parse_error:
        what += f" (pandas: {parse_error})"
    return f"{source}: column {check.column}: {what}"


def _examples(rows: list[int], show: Callable[[int], str]) -> str:
    """', e.g. line 5: ..., line 9: ...' for the first few rows."""
    if not rows:
        return ""
    return ", e.g. " + ", ".join(f"line {_line(i)}: {show(i)}" for i in rows[:EXAMPLES])


def _line(row: int) -> int:
    """The CSV line of 0-based data row `row` (line 1 is the header)."""
    return row + 2


def _plural(count: int, word: str, plural: str | None = None) -> str:
    """'1 value', '2 values'."""
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _num(value: float) -> str:
    """A number as a person writes it: 100000, not 100000.0 or 1e+05."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _raw(checked: pd.DataFrame, column: str, row: int) -> str:
    """A raw cell as it reads in the file: quoted text, or 'empty'."""
    value = checked[column].iloc[row]
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "empty"
    return repr(value) if isinstance(value, str) else str(value)


def _parses(count: int, rows: list[int], column: str, checked: pd.DataFrame, cfg: Config) -> str:
    """Message for timestamps that are empty or do not parse."""
    shown = _examples(rows, lambda i: _raw(checked, column, i))
    how = "pandas.to_datetime, in the format of the first row"
    return f"{_plural(count, 'value')} empty or not parseable as a date/time ({how}){shown}"


def _unique(count: int, rows: list[int], column: str, checked: pd.DataFrame, cfg: Config) -> str:
    """Message for repeated timestamps."""
    shown = _examples(rows, lambda i: _raw(checked, column, i))
    return f"{count} rows share a timestamp (expected unique){shown}"


def _ordered(count: int, rows: list[int], column: str, checked: pd.DataFrame, cfg: Config) -> str:
    """Message for timestamps earlier than the row before them."""
    parsed = checked[_name(column, "parsed")].dropna()

    def show(i: int) -> str:
        before = parsed.index[parsed.index.get_loc(i) - 1]
        return f"{_raw(checked, column, i)} after {_raw(checked, column, before)}"

    shown = _examples(rows, show)
    return f"{_plural(count, 'row')} earlier than the row before (expected increasing){shown}"


def _on_grid(count: int, rows: list[int], column: str, checked: pd.DataFrame, cfg: Config) -> str:
    """Message for timestamps off the frequency grid."""
    parsed = checked[_name(column, "parsed")].dropna()
    shown = _examples(rows, lambda i: _raw(checked, column, i))
    # A fixed-length grid starts at the first timestamp; a calendar one (W-SUN, MS) at its anchors.
    start = f" starting at {parsed.iloc[0]}" if _step(cfg.data.frequency) is not None else ""
    grid = f"{cfg.data.frequency} grid{start}"
    return f"{_plural(count, 'timestamp')} off the {grid} (expected regular spacing){shown}"


def _gaps(count: int, rows: list[int], column: str, checked: pd.DataFrame, cfg: Config) -> str:
    """Message for gaps longer than split.max_gap_steps."""
    max_gap = cfg.split.max_gap_steps
    shown = _examples(rows, lambda i: _gap_text(checked, column, cfg, i))
    gaps = _plural(count, "gap")
    return f"{gaps} longer than {max_gap} missing steps (split.max_gap_steps){shown}"


def _gap_text(checked: pd.DataFrame, column: str, cfg: Config, row: int) -> str:
    """'12 steps missing from 2000-06-07 10:00:00' for the gap before `row`."""
    gap = _gap(checked, column, cfg, row)
    return f"{_plural(gap['missing_steps'], 'step')} missing from {gap['first_missing']}"


def _gap(checked: pd.DataFrame, column: str, cfg: Config, row: int) -> dict[str, Any]:
    """The gap before `row`: its line, size and first missing timestamp."""
    latest = checked[_name(column, "parsed")].dropna().cummax().shift()
    before = latest[row]
    missing = int(checked[_name(column, "missing_steps")].iloc[row])
    first = before + to_offset(cfg.data.frequency)
    return {"line": _line(row), "missing_steps": missing, "first_missing": str(first)}


def _numeric(count: int, rows: list[int], column: str, checked: pd.DataFrame, cfg: Config) -> str:
    """Message for values that are not numbers."""
    shown = _examples(rows, lambda i: _raw(checked, column, i))
    return f"{_plural(count, 'non-numeric value')} (expected numbers){shown}"


def _nulls(count: int, rows: list[int], column: str, checked: pd.DataFrame, cfg: Config) -> str:
    """Message for too many empty values."""
    limit = cfg.data.max_null_fraction
    share = count / max(len(checked), 1)
    lines = ", ".join(f"line {_line(i)}" for i in rows[:EXAMPLES])
    return (
        f"{_plural(count, 'empty value')} ({share:.1%}), more than data.max_null_fraction "
        f"{limit:g} allows{', e.g. ' + lines if lines else ''}"
    )


def _bounds(count: int, rows: list[int], column: str, checked: pd.DataFrame, cfg: Config) -> str:
    """Message for values outside data.bounds."""
    low, high = cfg.data.bounds[column]
    numbers = checked[_name(column, "number")]
    shown = _examples(rows, lambda i: repr(float(numbers.iloc[i])))
    return f"{_plural(count, 'value')} outside [{_num(low)}, {_num(high)}]{shown}"


_DESCRIBE: dict[str, Callable[[int, list[int], str, pd.DataFrame, Config], str]] = {
    "parses": _parses,
    "unique": _unique,
    "ordered": _ordered,
    "on_grid": _on_grid,
    "gaps": _gaps,
    "numeric": _numeric,
    "nulls": _nulls,
    "bounds": _bounds,
}


def _gap_summary(checked: pd.DataFrame, cfg: Config) -> dict[str, Any]:
    """All gaps, allowed or not: how many, how many steps, the first few."""
    ts = cfg.data.timestamp
    name = _name(ts, "missing_steps")
    if name not in checked.columns:
        return {"count": 0, "missing_steps": 0, "longest": 0, "max_allowed": None, "examples": []}
    missing = checked[name]
    rows = [int(i) for i in np.flatnonzero((missing > 0).to_numpy())]
    return {
        "count": len(rows),
        "missing_steps": int(missing[missing > 0].sum()),
        "longest": int(missing.max()) if rows else 0,
        "max_allowed": cfg.split.max_gap_steps,
        "examples": [_gap(checked, ts, cfg, i) for i in rows[:EXAMPLES]],
    }
