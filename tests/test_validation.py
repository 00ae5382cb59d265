"""The GX validation of the raw series: the shipped data passes, each defect is named once."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from seqcast.config import Config, load_config, parse_config
from seqcast.data import read_raw
from seqcast.validation import ValidationFailed, ValidationReport, validate_frame, write_outputs

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
    assert summary["n_expectations"] == 10
    assert summary["gaps"]["count"] == 0
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
    report = validate(tmp_path, frame)
    assert failed_checks(report) == [("gaps", "timestamp")]
    assert report.failures == [
        f"{SOURCE}: column timestamp: 1 gap longer than 4 missing steps (split.max_gap_steps), "
        "e.g. line 62: 12 steps missing from 2000-06-06 06:00:00"
    ]
    gaps = report.summary()["gaps"]
    assert gaps["count"] == 2
    assert gaps["missing_steps"] == 15
    assert gaps["longest"] == 12
    assert gaps["examples"] == [
        {"line": 62, "missing_steps": 12, "first_missing": "2000-06-06 06:00:00"},
        {"line": 110, "missing_steps": 3, "first_missing": "2000-06-07 12:00:00"},
    ]


def test_gap_up_to_max_gap_steps_passes_but_is_reported(tmp_path: Path) -> None:
    frame = make_frame().drop(index=range(30, 34)).reset_index(drop=True)
    report = validate(tmp_path, frame)
    assert report.success, report.failures
    assert report.summary()["gaps"]["examples"] == [
        {"line": 32, "missing_steps": 4, "first_missing": "2000-06-05 15:00:00"}
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
    cfg = make_config(max_null_fraction=0.05)
    frame = make_frame()
    frame.loc[range(10, 20), "demand_mw"] = None
    assert validate(tmp_path, frame, cfg).success  # 10 of 200 is exactly the limit
    frame.loc[20, "demand_mw"] = None
    report = validate(tmp_path, frame, cfg)
    assert failed_checks(report) == [("nulls", "demand_mw")]
    assert report.failures == [
        f"{SOURCE}: column demand_mw: 11 empty values (5.5%), more than data.max_null_fraction "
        "0.05 allows, e.g. line 12, line 13, line 14"
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
    mondays = make_frame(rows=30, freq="W-MON", start="2000-01-03")
    report = validate(tmp_path, mondays, cfg)
    assert failed_checks(report) == [("on_grid", "timestamp")]
    assert report.results[5]["observed"] == "30 unexpected of 30"
    assert report.failures[0].startswith(
        f"{SOURCE}: column timestamp: 30 timestamps off the W-SUN grid (expected regular spacing), "
        "e.g. line 2: '2000-01-03 00:00:00'"
    )


def test_raise_if_failed_lists_every_failure(tmp_path: Path) -> None:
    frame = make_frame()
    frame.loc[17, "demand_mw"] = -5.0
    frame.loc[40, "timestamp"] = "not a time"
    report = validate(tmp_path, frame)
    with pytest.raises(ValidationFailed) as caught:
        report.raise_if_failed()
    lines = str(caught.value).splitlines()
    assert lines[0] == f"validation failed for {SOURCE}: 2 of 10 expectations"
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
    assert "demand_mw__number" in pages[0]
    write_outputs(report, report.summary(), docs)  # the same report can be written again
    assert (docs / "index.html").is_file()
    assert sorted(p.name for p in docs.parent.iterdir()) == ["validation"]
