"""The GX validation of the raw series: the shipped data passes, each defect is named once.

The second half lists bad data users met, one test each, with the exact message they get.
"""

from __future__ import annotations

import html
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqcast.core.config import Config, load_config, parse_config
from seqcast.data import validation
from seqcast.data.series import read_raw
from seqcast.data.validation import (
    ValidationFailed,
    ValidationReport,
    validate_frame,
    write_outputs,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "data/raw/test.csv"
ROWS = 200


def make_config(**data: object) -> Config:
    """params.yaml's structure for a small half-hourly demand series; `data` overrides keys."""
    raw = {
        "data": {
            "path": SOURCE,
            "timestamp": "timestamp",
            "targets": ["demand_mw"],
            "features": [],
            "frequency": "30min",
            "max_null_fraction": 0.0,
            "bounds": {"demand_mw": [0.0, 100000.0]},
            **data,
        },
        "split": {"train": 0.7, "val": 0.1, "max_gap_steps": 4},
        "window": {"input_width": 8, "horizon": 2},
    }
    return parse_config(raw)


def make_frame(rows: int = ROWS, freq: str = "30min", start: str = "2000-06-05") -> pd.DataFrame:
    """A clean series: timestamps as text, demand as numbers."""
    times = pd.date_range(start, periods=rows, freq=freq)
    return pd.DataFrame(
        {
            "timestamp": times.strftime("%Y-%m-%d %H:%M:%S"),
            "demand_mw": [20000.0 + 10.0 * i for i in range(rows)],
        }
    )


def validate(tmp_path: Path, frame: pd.DataFrame, cfg: Config | None = None) -> ValidationReport:
    """Write the frame as CSV and validate it as the stage does: through read_raw."""
    path = tmp_path / "test.csv"
    frame.to_csv(path, index=False)
    return validate_frame(read_raw(path), cfg or make_config(), source=SOURCE)


def visible_text(page: str) -> str:
    """An HTML page's text as a reader sees it, whitespace collapsed."""
    body = re.sub(r"<(script|style).*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def failed_checks(report: ValidationReport) -> list[tuple[str, str]]:
    """(check, column) of each failed expectation."""
    return [(r["check"], r["column"]) for r in report.results if not r["success"]]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """Record and refuse any attempt to reach a network host."""
    attempts: list = []
    connect = socket.socket.connect

    def guarded_connect(sock: socket.socket, address: object) -> None:
        """Refuse internet sockets; let local ones through."""
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"network disabled in tests: {address}")
        connect(sock, address)

    def guarded_getaddrinfo(*args: object, **kwargs: object) -> list:
        """Refuse name lookups."""
        attempts.append(args[0])
        raise OSError(f"network disabled in tests: {args[0]}")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield attempts
    assert attempts == [], f"something tried to reach the network: {attempts}"


def test_shipped_data_passes() -> None:
    cfg = load_config(ROOT / "params.yaml")
    report = validate_frame(read_raw(ROOT / cfg.data.path), cfg, source=cfg.data.path)
    assert report.success, report.failures
    assert report.failures == []
    summary = report.summary()
    assert summary["rows"] == 4032
    assert summary["n_failed"] == 0
    assert summary["n_expectations"] == 11
    assert summary["gaps"]["count"] == 0
    assert summary["gaps"]["steps"] == 4032
    assert summary["ignored_bounds"] == []
    assert summary["first_timestamp"] == "2000-06-05 00:00:00"
    assert summary["last_timestamp"] == "2000-08-27 23:30:00"
    report.raise_if_failed()


def test_missing_column_is_named_and_its_checks_skipped(tmp_path: Path) -> None:
    report = validate(tmp_path, make_frame().drop(columns="demand_mw"))
    assert failed_checks(report) == [("exists", "demand_mw")]
    assert report.failures == [
        f"{SOURCE}: column 'demand_mw' is missing; found columns: ['timestamp']"
    ]
    assert all(r["column"] != "demand_mw" for r in report.results if r["check"] != "exists")


def test_duplicate_timestamp(tmp_path: Path) -> None:
    frame = make_frame()
    frame = pd.concat([frame.iloc[:50], frame.iloc[[49]], frame.iloc[50:]], ignore_index=True)
    report = validate(tmp_path, frame)
    assert failed_checks(report) == [("unique", "timestamp")]
    # Data rows 49 and 50 are CSV lines 51 and 52.
    assert report.failures == [
        f"{SOURCE}: column timestamp: 2 rows share a timestamp (expected unique), "
        "e.g. line 51: '2000-06-06 00:30:00', line 52: '2000-06-06 00:30:00'"
    ]


def test_unordered_timestamps(tmp_path: Path) -> None:
    frame = make_frame()
    frame.loc[[100, 101], "timestamp"] = frame.loc[[101, 100], "timestamp"].to_numpy()
    report = validate(tmp_path, frame)
    assert failed_checks(report) == [("ordered", "timestamp")]
    assert report.failures == [
        f"{SOURCE}: column timestamp: 1 row earlier than the row before (expected increasing), "
        "e.g. line 103: '2000-06-07 02:00:00' after '2000-06-07 02:30:00'"
    ]


def test_gap_longer_than_max_gap_steps_fails_and_short_gap_is_counted(tmp_path: Path) -> None:
    frame = make_frame()
    # 12 missing steps from row 60 (fails, max_gap_steps is 4); 3 from row 120 (allowed).
    frame = frame.drop(index=[*range(60, 72), *range(120, 123)]).reset_index(drop=True)
    report = validate(tmp_path, frame, make_config(max_filled_fraction=0.1))  # 15 of 200 steps
    assert failed_checks(report) == [("gaps", "timestamp")]
    assert report.failures == [
        f"{SOURCE}: column timestamp: 1 gap longer than 4 steps (split.max_gap_steps; a gap is a "
        "run of missing steps and/or rows with an empty cell, interpolated when shorter): "
        "line 62: 12 steps missing from 2000-06-06 06:00:00"
    ]
    gaps = report.summary()["gaps"]
    assert gaps["count"] == 2
    assert gaps["missing_steps"] == 15
    assert gaps["filled_steps"] == 15
    assert gaps["steps"] == 200
    assert gaps["longest"] == 12
    example = {"steps": 12, "missing_steps": 12, "empty_rows": 0, "first": "2000-06-06 06:00:00"}
    assert gaps["examples"][0] == {"line": 62, **example}
    assert gaps["examples"][1]["line"] == 110 and gaps["examples"][1]["steps"] == 3


def test_gap_up_to_max_gap_steps_passes_but_is_reported(tmp_path: Path) -> None:
    frame = make_frame().drop(index=range(30, 34)).reset_index(drop=True)
    report = validate(tmp_path, frame)
    assert report.success, report.failures
    assert report.summary()["gaps"]["examples"] == [
        {
            "line": 32,
            "steps": 4,
            "missing_steps": 4,
            "empty_rows": 0,
            "first": "2000-06-05 15:00:00",
        }
    ]


def test_off_grid_timestamp(tmp_path: Path) -> None:
    frame = make_frame()
    frame.loc[80, "timestamp"] = "2000-06-06 16:10:00"
    report = validate(tmp_path, frame)
    assert failed_checks(report) == [("on_grid", "timestamp")]
    assert report.failures == [
        f"{SOURCE}: column timestamp: 1 timestamp off the 30min grid starting at "
        "2000-06-05 00:00:00 (expected regular spacing), e.g. line 82: '2000-06-06 16:10:00'"
    ]


def test_nulls_over_the_limit(tmp_path: Path) -> None:
    # One-step gaps, and room to fill them: only the null limit is at stake.
    cfg = make_config(max_null_fraction=0.05, max_filled_fraction=0.5)
    frame = make_frame()
    frame.loc[range(10, 110, 10), "demand_mw"] = None
    assert validate(tmp_path, frame, cfg).success  # 10 of 200 is exactly the limit
    frame.loc[111, "demand_mw"] = None
    report = validate(tmp_path, frame, cfg)
    assert failed_checks(report) == [("nulls", "demand_mw")]
    assert report.failures == [
        f"{SOURCE}: column demand_mw: 11 empty values (5.5%), more than data.max_null_fraction "
        "0.05 allows, e.g. line 12, line 22, line 32; data.max_null_fraction 0.055 would let "
        "them pass (and normalise interpolate them)"
    ]


def test_non_numeric_value(tmp_path: Path) -> None:
    frame = make_frame().astype({"demand_mw": object})
    frame.loc[17, "demand_mw"] = "n/a?"
    report = validate(tmp_path, frame)
    assert failed_checks(report) == [("numeric", "demand_mw")]
    assert report.failures == [
        f"{SOURCE}: column demand_mw: 1 non-numeric value (expected numbers), e.g. line 19: 'n/a?'"
    ]


def test_value_out_of_bounds(tmp_path: Path) -> None:
    frame = make_frame()
    frame.loc[17, "demand_mw"] = -5.0
    frame.loc[30, "demand_mw"] = 250000.0
    report = validate(tmp_path, frame)
    assert failed_checks(report) == [("bounds", "demand_mw")]
    assert report.failures == [
        f"{SOURCE}: column demand_mw: 2 values outside [0, 100000], "
        "e.g. line 19: -5.0, line 32: 250000.0"
    ]


def test_unparseable_timestamp(tmp_path: Path) -> None:
    frame = make_frame()
    frame.loc[40, "timestamp"] = "not a time"
    report = validate(tmp_path, frame)
    assert failed_checks(report) == [("parses", "timestamp")]
    assert report.failures == [
        f"{SOURCE}: column timestamp: 1 value empty or not parseable as a date/time "
        "(pandas.to_datetime, in the format of the first row), e.g. line 42: 'not a time'"
    ]


def test_weekly_calendar_frequency(tmp_path: Path) -> None:
    cfg = make_config(frequency="W-SUN")
    sundays = make_frame(rows=30, freq="W-SUN", start="2000-01-02")
    assert validate(tmp_path, sundays, cfg).success


def test_raise_if_failed_lists_every_failure(tmp_path: Path) -> None:
    frame = make_frame()
    frame.loc[17, "demand_mw"] = -5.0
    frame.loc[40, "timestamp"] = "not a time"
    report = validate(tmp_path, frame)
    with pytest.raises(ValidationFailed) as caught:
        report.raise_if_failed()
    lines = str(caught.value).splitlines()
    assert lines[0] == f"validation failed for {SOURCE}: 2 of 11 expectations"
    assert lines[1:] == report.failures
    assert isinstance(caught.value, ValueError)


def test_write_outputs_writes_summary_and_data_docs(tmp_path: Path) -> None:
    frame = make_frame()
    frame.loc[17, "demand_mw"] = -5.0
    report = validate(tmp_path, frame)
    docs = tmp_path / "reports" / "validation"
    docs.mkdir(parents=True)
    (docs / "stale.html").write_text("from an earlier run")
    write_outputs(report, report.summary(), docs)
    assert json.loads((docs / "summary.json").read_text()) == report.summary()
    assert (docs / "index.html").is_file()
    assert not (docs / "stale.html").exists()
    pages = [p.read_text() for p in docs.glob("validations/**/*.html")]
    assert len(pages) == 1
    # GX checks the user's columns under their own names, or names saying what they hold.
    assert "__" not in pages[0].replace("__none__", "")
    # The page's sections, one per GX column; the grid check compares two columns, which GX
    # files under "Table-Level Expectations".
    assert (
        "Table of Contents Overview Table-Level Expectations demand_mw demand_mw as written "
        "gap before this row (steps missing or with an empty cell) timestamp Overview"
    ) in visible_text(pages[0])
    assert "seqcast validate test.csv " in pages[0]  # the run name, not __none__
    write_outputs(report, report.summary(), docs)  # the same report can be written again
    assert (docs / "index.html").is_file()
    assert sorted(p.name for p in docs.parent.iterdir()) == ["validation"]


# --- bad data users met: one case each, with the exact message ------------------------------


def test_hourly_rows_with_frequency_30min_are_refused_with_a_hint(tmp_path: Path) -> None:
    """Half the 30min steps missing: each gap is short, but half the series would be invented."""
    report = validate(tmp_path, make_frame(rows=2016, freq="h"))
    assert failed_checks(report) == [("filled", "timestamp")]
    assert report.failures == [
        f"{SOURCE}: column timestamp: 2015 of 4031 30min steps (50.0%) would be filled by "
        "interpolation (2015 missing), more than data.max_filled_fraction 0.05 allows; "
        "rows are 1h apart: is data.frequency h?"
    ]
    gaps = report.summary()["gaps"]
    assert (gaps["steps"], gaps["filled_steps"], gaps["filled_fraction"]) == (4031, 2015, 0.499876)


def test_every_long_run_of_empty_cells_is_reported_at_once(tmp_path: Path) -> None:
    """max_null_fraction allows 59 empty cells; the gaps they make are all named in one go."""
    cfg = make_config(frequency="W-SUN", max_null_fraction=0.25, max_filled_fraction=0.25)
    frame = make_frame(rows=300, freq="W-SUN", start="2000-01-02")
    # Runs of 5, 8 and 18 empty cells (too long: max_gap_steps is 4), then 7 runs of 4.
    runs = [(10, 5), (30, 8), (100, 18), *[(150 + 10 * i, 4) for i in range(7)]]
    for start, length in runs:
        frame.loc[start : start + length - 1, "demand_mw"] = None
    assert frame["demand_mw"].isna().sum() == 59
    report = validate(tmp_path, frame, cfg)
    assert failed_checks(report) == [("gaps", "timestamp")]
    assert report.failures == [
        f"{SOURCE}: column demand_mw: 3 gaps longer than 4 steps (split.max_gap_steps; a gap is a "
        "run of missing steps and/or rows with an empty cell, interpolated when shorter): "
        "lines 12-16: 5 rows with an empty demand_mw cell from 2000-03-12 00:00:00; "
        "lines 32-39: 8 rows with an empty demand_mw cell from 2000-07-30 00:00:00; "
        "lines 102-119: 18 rows with an empty demand_mw cell from 2001-12-02 00:00:00"
    ]
    # Missing weeks and the empty cells after them are one gap: 3 + 2 steps.
    frame = frame.drop(index=[40, 41, 42]).reset_index(drop=True)
    frame.loc[[40, 41], "demand_mw"] = None
    report = validate(tmp_path, frame, cfg)
    assert report.failures[0].startswith(
        f"{SOURCE}: columns timestamp, demand_mw: 4 gaps longer than 4 "
    )
    assert report.failures[0].endswith(
        "lines 42-43: 5 steps missing or with an empty demand_mw cell from 2000-10-08 00:00:00; "
        "lines 99-116: 18 rows with an empty demand_mw cell from 2001-12-02 00:00:00"
    )


def test_saturday_weeks_with_w_sun_get_a_w_sat_hint(tmp_path: Path) -> None:
    saturdays = make_frame(rows=30, freq="W-SAT", start="2000-01-01")
    report = validate(tmp_path, saturdays, make_config(frequency="W-SUN"))
    assert failed_checks(report) == [("on_grid", "timestamp")]
    assert report.results[5]["observed"] == "30 unexpected of 30"
    assert report.failures == [
        f"{SOURCE}: column timestamp: 30 timestamps off the W-SUN grid (expected regular spacing), "
        "e.g. line 2: '2000-01-01 00:00:00', line 3: '2000-01-08 00:00:00', "
        "line 4: '2000-01-15 00:00:00'; the timestamps all fall on a Saturday: "
        "is data.frequency W-SAT?"
    ]


def test_month_ends_with_ms_get_an_me_hint(tmp_path: Path) -> None:
    month_ends = make_frame(rows=24, freq="ME", start="2000-01-31")
    report = validate(tmp_path, month_ends, make_config(frequency="MS"))
    assert report.failures == [
        f"{SOURCE}: column timestamp: 24 timestamps off the MS grid (expected regular spacing), "
        "e.g. line 2: '2000-01-31 00:00:00', line 3: '2000-02-29 00:00:00', "
        "line 4: '2000-03-31 00:00:00'; the timestamps are all month ends: is data.frequency ME?"
    ]


def trading_days() -> pd.DataFrame:
    """A year of weekdays without five market holidays."""
    days = pd.bdate_range("2024-01-01", "2024-12-31")
    holidays = pd.to_datetime(
        ["2024-01-15", "2024-02-19", "2024-05-27", "2024-07-04", "2024-12-25"]
    )
    days = days[~days.isin(holidays)]
    return pd.DataFrame({"timestamp": days.strftime("%Y-%m-%d"), "demand_mw": 100.0 + days.day})


def test_trading_days_with_frequency_d_get_a_b_or_rows_hint(tmp_path: Path) -> None:
    report = validate(tmp_path, trading_days(), make_config(frequency="D"))
    assert failed_checks(report) == [("filled", "timestamp")]
    assert report.failures == [
        f"{SOURCE}: column timestamp: 109 of 366 D steps (29.8%) would be filled by interpolation "
        "(109 missing), more than data.max_filled_fraction 0.05 allows; the timestamps are all "
        "weekdays: is data.frequency B? 5 weekdays have no row either (holidays?): if those are "
        "not missing steps, use data.frequency rows with data.step_frequency B (or the "
        "exchange, e.g. XNYS)"
    ]


def test_rows_mode_takes_trading_days_but_still_checks_empty_cells(tmp_path: Path) -> None:
    """With frequency rows nothing is missing between rows; empty cells still make gaps."""
    cfg = make_config(frequency="rows", step_frequency="B", max_null_fraction=0.1)
    frame = trading_days()
    report = validate(tmp_path, frame, cfg)
    assert report.success, report.failures
    assert [r["check"] for r in report.results].count("on_grid") == 0
    assert report.summary()["gaps"]["steps"] == 257
    frame.loc[20:25, "demand_mw"] = None
    strict = make_config(
        frequency="rows", step_frequency="B", max_null_fraction=0.1, max_filled_fraction=0.02
    )
    report = validate(tmp_path, frame, strict)
    assert failed_checks(report) == [("gaps", "timestamp"), ("filled", "timestamp")]
    assert report.failures == [
        f"{SOURCE}: column demand_mw: 1 gap longer than 4 rows (split.max_gap_steps; a gap is a "
        "run of rows with an empty cell, interpolated when shorter): lines 22-27: 6 rows with an "
        "empty demand_mw cell from 2024-01-30 00:00:00",
        f"{SOURCE}: column demand_mw: 6 of 257 rows (2.3%) have an empty cell and would be filled "
        "by interpolation, more than data.max_filled_fraction 0.02 allows",
    ]


def test_every_stage_run_is_kept_in_the_persistent_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs, pass then fail: both results and pages stay, under distinct run names.

    The params were kept from another series: their bounds for `price` are skipped, and said so.
    """
    cfg = make_config(bounds={"demand_mw": [0.0, 100000.0], "price": [0.0, 1.0]})
    root = tmp_path / "repo"
    (root / SOURCE).parent.mkdir(parents=True)
    make_frame().to_csv(root / SOURCE, index=False)
    summary = validation.validate(cfg, root)
    assert summary["ignored_bounds"] == ["price"]
    assert json.loads((root / "reports/validation/summary.json").read_text()) == summary
    out = capsys.readouterr().out
    assert out.count("price") == 1
    assert "validate: data.bounds for price ignored: not a target or feature" in out

    bad = make_frame()
    bad.loc[17, "demand_mw"] = -5.0
    bad.to_csv(root / SOURCE, index=False)
    (root / "reports").rename(root / "kept")  # the first run's outputs, out of the way
    with pytest.raises(ValidationFailed) as caught:
        validation.validate(cfg, root)
    assert not (root / "reports").exists()  # no stage output for a failing run
    results = sorted((root / "gx/results").rglob("*.json"))
    names = [p.relative_to(root / "gx/results").parts[1] for p in results]
    assert len(results) == 2 and len(set(names)) == 2
    assert all(re.fullmatch(r"seqcast validate test\.csv \d{8}T\d{6}\.\d{6}Z", n) for n in names)
    verdicts = [json.loads(p.read_text())["success"] for p in results]
    assert sorted(verdicts) == [False, True]
    page = Path(str(caught.value).splitlines()[-1].removeprefix("data docs of this run: "))
    assert page.is_file() and page.is_relative_to(root / "gx/docs")
    assert "values lie in [0, 100000]" in visible_text(page.read_text())
    index = (root / "gx/docs/index.html").read_text()
    assert all(name in index for name in names)  # the index lists both runs


def test_mixed_utc_offsets_are_reported_as_such(tmp_path: Path) -> None:
    """Local times with their offsets across a clock change: pandas refuses the whole column."""
    times = pd.date_range("2000-06-05", periods=12, freq="30min", tz="UTC")
    frame = make_frame(12)
    frame["timestamp"] = [
        t.tz_convert("Europe/London" if i < 6 else "UTC").isoformat() for i, t in enumerate(times)
    ]
    report = validate(tmp_path, frame)
    assert report.failures == [
        f"{SOURCE}: column timestamp: timestamps carry 2 different UTC offsets (+01:00, +00:00), "
        "e.g. line 8: '2000-06-05T03:00:00+00:00' after line 7: '2000-06-05T03:30:00+01:00'; "
        "every row needs the same offset: store UTC (line 8: '2000-06-05 03:00:00+00:00')"
    ]


def test_local_times_repeated_at_a_dst_change_say_store_utc(tmp_path: Path) -> None:
    london = pd.date_range("2024-10-27", periods=12, freq="30min", tz="UTC").tz_convert(
        "Europe/London"
    )
    frame = make_frame(12)
    frame["timestamp"] = london.strftime("%Y-%m-%d %H:%M:%S")  # the offsets dropped
    report = validate(tmp_path, frame)
    assert report.failures == [
        f"{SOURCE}: column timestamp: 4 rows share a timestamp (expected unique), e.g. line 2: "
        "'2024-10-27 01:00:00', line 3: '2024-10-27 01:30:00', line 4: '2024-10-27 01:00:00'; "
        "at line 4 ('2024-10-27 01:00:00' after '2024-10-27 01:30:00') the clock goes back an "
        "hour, as local time does at a daylight-saving change: store UTC or an offset, the same "
        "on every row",
        f"{SOURCE}: column timestamp: 1 row earlier than the row before (expected increasing), "
        "e.g. line 4: '2024-10-27 01:00:00' after '2024-10-27 01:30:00'",
    ]


def test_shuffled_rows_are_out_of_order_once_and_make_no_gaps(tmp_path: Path) -> None:
    report = validate(tmp_path, make_frame(40).sample(frac=1, random_state=0))
    assert failed_checks(report) == [("ordered", "timestamp")]
    assert report.failures == [
        f"{SOURCE}: column timestamp: 20 rows earlier than the row before (expected increasing), "
        "e.g. line 3: '2000-06-05 10:00:00' after '2000-06-05 11:00:00', line 5: "
        "'2000-06-05 02:00:00' after '2000-06-05 12:30:00', line 9: '2000-06-05 05:30:00' after "
        "'2000-06-05 14:00:00'"
    ]
    assert report.summary()["gaps"]["count"] == 0


def test_semicolon_separated_file_gets_a_delimiter_hint(tmp_path: Path) -> None:
    path = tmp_path / "test.csv"
    path.write_text(make_frame(12).to_csv(index=False, sep=";"))
    report = validate_frame(read_raw(path), make_config(), source=SOURCE)
    found = "found columns: ['timestamp;demand_mw']"
    assert report.failures == [
        f"{SOURCE}: column 'timestamp' is missing; {found}; the header is one column holding "
        "';': the file looks separated by ';', and seqcast reads comma-separated CSV (save it "
        "with commas, and '.' as the decimal mark)",
        f"{SOURCE}: column 'demand_mw' is missing; {found}",
    ]


def test_gap_of_empty_feature_cells_names_the_feature(tmp_path: Path) -> None:
    cfg = make_config(features=["temp"], max_null_fraction=0.5, max_filled_fraction=0.5)
    frame = make_frame(40)
    frame["temp"] = 10.0
    frame.loc[10:15, "temp"] = None
    report = validate(tmp_path, frame, cfg)
    assert report.failures == [
        f"{SOURCE}: column temp: 1 gap longer than 4 steps (split.max_gap_steps; a gap is a run "
        "of missing steps and/or rows with an empty cell, interpolated when shorter): lines "
        "12-17: 6 rows with an empty temp cell from 2000-06-05 05:00:00"
    ]


def test_max_null_fraction_refusal_names_a_value_that_passes(tmp_path: Path) -> None:
    frame = make_frame(30)
    frame.loc[[4, 9, 14, 19], "demand_mw"] = None  # 4 of 30: 0.1333...
    cfg = make_config(max_filled_fraction=0.5)
    report = validate(tmp_path, frame, cfg)
    assert report.failures == [
        f"{SOURCE}: column demand_mw: 4 empty values (13.3%), more than data.max_null_fraction "
        "0 allows, e.g. line 6, line 11, line 16; data.max_null_fraction 0.134 would let them "
        "pass (and normalise interpolate them)"
    ]
    passing = make_config(max_filled_fraction=0.5, max_null_fraction=0.134)
    assert validate(tmp_path, frame, passing).success


def trading_days_with_holidays() -> pd.DataFrame:
    """60 weekdays from 2024-01-01 without two of them (exchange holidays)."""
    days = pd.bdate_range("2024-01-01", periods=60).delete([10, 30])
    return pd.DataFrame(
        {"timestamp": days.strftime("%Y-%m-%d"), "demand_mw": 100.0 + np.arange(58)}
    )


def test_frequency_b_filling_holidays_hints_rows_with_step_frequency_b(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config(frequency="B")
    report = validate(tmp_path, trading_days_with_holidays(), cfg)
    note = (
        "2 weekdays have no row (3.3% of the 60 B steps) and would be interpolated: if those "
        "are exchange holidays rather than missing steps, use data.frequency rows with "
        "data.step_frequency B (or the exchange, e.g. XNYS)"
    )
    assert report.success and report.notes == [note]
    assert report.summary()["notes"] == [note]
    strict = validate(
        tmp_path, trading_days_with_holidays(), make_config(frequency="B", max_filled_fraction=0.01)
    )
    assert strict.failures == [
        f"{SOURCE}: column timestamp: 2 of 60 B steps (3.3%) would be filled by interpolation "
        f"(2 missing), more than data.max_filled_fraction 0.01 allows; {note}"
    ]
