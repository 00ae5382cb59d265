"""Per-series validation of a panel (issue 27): each bad series named once, the good ones go on.

Real GX throughout. The Bad input cases of the issue share one panel (one GX run), each with its
own test asserting its exact line; the cases that stop the run have panels of their own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqcast.core.config import Config, load_config, parse_config
from seqcast.data import panel_validation, validation
from seqcast.data.panel_validation import (
    PanelReport,
    clean_panel,
    read_panel,
    validate_panel_frame,
)
from seqcast.data.validation import ValidationFailed

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "data/raw/panel.csv"
M1 = ROOT / "data" / "raw" / "m1_monthly.csv"


def make_config(path: str = SOURCE, **data: object) -> Config:
    """A monthly panel's params: series_id, month, value; `data` overrides keys."""
    raw = {
        "data": {
            "path": path,
            "series": "series_id",
            "timestamp": "month",
            "targets": ["value"],
            "frequency": "MS",
            "max_filled_fraction": 0.1,
            "bounds": {"value": [0.0, 1e6]},
            **data,
        },
        "split": {"train": 0.7, "val": 0.1, "max_gap_steps": 2},
        "window": {"input_width": 3, "horizon": 2},
    }
    return parse_config(raw)


def series(name: str, months: int = 24, start: str = "2018-01-01") -> pd.DataFrame:
    """One clean monthly series in long format: month as text, value counting up from 100."""
    times = pd.date_range(start, periods=months, freq="MS")
    return pd.DataFrame(
        {
            "series_id": name,
            "month": times.strftime("%Y-%m-%d"),
            "value": 100.0 + np.arange(months),
        }
    )


def write(root: Path, frame: pd.DataFrame, name: str = "panel.csv") -> Path:
    """Write the panel under root/data/raw as CSV or Parquet (by the name's extension)."""
    path = root / "data" / "raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def line_of(frame: pd.DataFrame, name: str, month: str | None = None) -> int:
    """The CSV line of a series' row (its first row when no month is given)."""
    rows = frame.index[(frame["series_id"] == name) & (month is None or frame["month"] == month)]
    return int(rows[0]) + 2


# --- the zoo: one panel, every Bad input case one series ---------------------------------------


def zoo() -> pd.DataFrame:
    """Twenty good series and one bad series per case, in file order."""
    parts = [
        series(f"G{i:02d}", months=24 + i, start=f"{2016 + i % 3}-0{1 + i % 9}-01")
        for i in range(20)
    ]
    duplicate = series("DUP")
    duplicate.loc[5, "month"] = duplicate.loc[4, "month"]
    mixed = pd.concat(
        [
            series("MIXED", months=12),
            pd.DataFrame(
                {
                    "series_id": "MIXED",
                    "month": pd.date_range("2019-01-07", periods=8, freq="W-MON").strftime(
                        "%Y-%m-%d"
                    ),
                    "value": 200.0,
                }
            ),
        ]
    )
    one = series("ONE", months=1)
    empty = series("EMPTY", months=6).assign(value=np.nan)
    seven = pd.concat([series("7", months=12), series("7.0", months=12, start="2019-01-01")])
    no_id = series("NOID", months=1).assign(series_id=np.nan)
    gap = series("GAP").drop(index=[8, 9, 10, 11])
    text = series("TEXT").astype({"value": object})
    text.loc[3, "value"] = "abc"
    date = series("DATE")
    date.loc[6, "month"] = "2018-13-01"
    negative = series("NEG")
    negative.loc[7, "value"] = -5.0
    null = series("NULL")
    null.loc[9, "value"] = np.nan
    cases = [duplicate, mixed, one, empty, seven, no_id, gap, text, date, negative, null]
    return pd.concat(parts + cases, ignore_index=True)


@pytest.fixture(scope="module")
def zoo_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, PanelReport]:
    """The zoo validated once, through the CSV as the stage reads it."""
    frame = zoo()
    path = write(tmp_path_factory.mktemp("zoo"), frame)
    cfg = make_config(max_excluded_fraction=0.5)
    return frame, validate_panel_frame(read_panel(path, cfg), cfg, SOURCE)


def line_for(report: PanelReport, name: str) -> str:
    """The one line naming a series."""
    found = [b.line(SOURCE, lambda r: f"line {r + 2}") for b in report.excluded if b.series == name]
    assert len(found) == 1, found
    return found[0]


def test_zoo_excludes_exactly_the_bad_series_and_keeps_the_good(zoo_report: tuple) -> None:
    """Every bad case is named once; the twenty good series are all kept."""
    frame, report = zoo_report
    bad = {"DUP", "MIXED", "ONE", "EMPTY", "7", "7.0", "", "GAP", "TEXT", "DATE", "NEG", "NULL"}
    assert {b.series for b in report.excluded} == bad
    assert len(report.lines) == len(bad)
    named = set(frame["series_id"].dropna())
    assert set(report.ids) == named
    assert report.summary()["n_kept"] == 20


def test_duplicate_series_timestamp(zoo_report: tuple) -> None:
    """Two rows of one series at one month: the series, the repeated row, what was expected."""
    frame, report = zoo_report
    line = line_of(frame, "DUP", "2018-05-01")
    assert line_for(report, "DUP") == (
        f"{SOURCE}: series 'DUP': line {line}: 2 rows share a timestamp, e.g. '2018-05-01' "
        "(expected one row per series and month)"
    )


def test_series_with_mixed_frequencies(zoo_report: tuple) -> None:
    """Monthly rows then weekly ones: the first weekly row is named, and the count."""
    frame, report = zoo_report
    line = line_of(frame, "MIXED", "2019-01-07")
    assert line_for(report, "MIXED") == (
        f"{SOURCE}: series 'MIXED': line {line}: 8 timestamps off the MS grid, e.g. "
        "'2019-01-07' (expected timestamps on the MS grid: mixed frequencies?)"
    )


def test_series_of_one_row(zoo_report: tuple) -> None:
    """A single row has no step: named, not an error for the panel."""
    frame, report = zoo_report
    assert line_for(report, "ONE") == (
        f"{SOURCE}: series 'ONE': line {line_of(frame, 'ONE')}: 1 row (expected at least 2, "
        "one step apart)"
    )


def test_series_all_empty(zoo_report: tuple) -> None:
    """Every value cell empty: one reason, not one per row."""
    frame, report = zoo_report
    assert line_for(report, "EMPTY") == (
        f"{SOURCE}: series 'EMPTY': line {line_of(frame, 'EMPTY')}: all 6 rows empty in value "
        "(expected numbers)"
    )


def test_id_written_as_one_number_two_ways(zoo_report: tuple) -> None:
    """'7' and '7.0': read as text two series, as numbers one; both named."""
    frame, report = zoo_report
    assert line_for(report, "7") == (
        f"{SOURCE}: series '7': line {line_of(frame, '7')}: series_id '7' is the number 7, also "
        "written '7.0': as text (as seqcast reads ids) they are 2 series, as numbers one "
        "(expected one spelling per series in series_id)"
    )
    assert line_for(report, "7.0").startswith(
        f"{SOURCE}: series '7.0': line {line_of(frame, '7.0')}: series_id '7.0' is the number 7"
    )


def test_id_a_number_in_one_row_and_text_in_another() -> None:
    """A typed frame (ingest, serving) with 7 and '7': merged as text, two as typed."""
    frame = pd.concat([series("A", 12), series("B", 12)], ignore_index=True)
    frame["series_id"] = frame["series_id"].astype(object)
    frame.loc[frame["series_id"] == "B", "series_id"] = 7
    frame.loc[20, "series_id"] = "7"
    report = validate_panel_frame(frame, make_config(max_excluded_fraction=0.5), SOURCE)
    assert report.lines == [
        f"{SOURCE}: series '7': line 14: series_id is the number 7 on line 14 and the text '7' "
        "on line 22: seqcast reads ids as text and merges them into one series, their types "
        "make them two (expected one type in series_id)"
    ]


def test_empty_id_cells(zoo_report: tuple) -> None:
    """A row without a series name is listed (not silently dropped), with its line."""
    frame, report = zoo_report
    line = int(frame.index[frame["series_id"].isna()][0]) + 2
    assert line_for(report, "") == (
        f"{SOURCE}: rows without a series name: line {line}: 1 row with an empty series_id "
        "cell (expected a series name in series_id on every row)"
    )


def test_gap_longer_than_max_gap_steps(zoo_report: tuple) -> None:
    """Four months missing: the row after the gap, its length and first missing month."""
    frame, report = zoo_report
    line = line_of(frame, "GAP", "2018-01-01") + 8  # rows 8-11 dropped: the 9th row left
    assert line_for(report, "GAP") == (
        f"{SOURCE}: series 'GAP': line {line}: a gap of 4 steps missing or with an empty cell "
        "from 2018-09-01 00:00:00 up to this row, longer than split.max_gap_steps 2 (expected "
        "at most 2) (also: filled)"
    )


def test_value_not_a_number(zoo_report: tuple) -> None:
    """Text in a value cell."""
    frame, report = zoo_report
    line = line_of(frame, "TEXT", "2018-04-01")
    assert line_for(report, "TEXT") == (
        f"{SOURCE}: series 'TEXT': line {line}: 1 value of value not a number, e.g. 'abc' "
        "(expected finite numbers)"
    )


def test_timestamp_not_a_date(zoo_report: tuple) -> None:
    """A month that does not parse."""
    frame, report = zoo_report
    line = line_of(frame, "DATE", "2018-13-01")
    assert line_for(report, "DATE") == (
        f"{SOURCE}: series 'DATE': line {line}: 1 timestamp empty or not a date/time, e.g. "
        "'2018-13-01' (expected a date/time)"
    )


def test_value_outside_bounds(zoo_report: tuple) -> None:
    """data.bounds per series."""
    frame, report = zoo_report
    line = line_of(frame, "NEG", "2018-08-01")
    assert line_for(report, "NEG") == (
        f"{SOURCE}: series 'NEG': line {line}: 1 value of value outside [0, 1000000] "
        "(data.bounds), e.g. -5.0"
    )


def test_empty_cell_over_max_null_fraction(zoo_report: tuple) -> None:
    """data.max_null_fraction per series (0 here)."""
    frame, report = zoo_report
    line = line_of(frame, "NULL", "2018-10-01")
    assert line_for(report, "NULL") == (
        f"{SOURCE}: series 'NULL': line {line}: 1 of 24 value cells empty (4.2%); "
        "data.max_null_fraction allows 0.0% (expected at most 0)"
    )


# --- the stage ----------------------------------------------------------------------------------


def many(n: int, bad: dict[int, str]) -> pd.DataFrame:
    """n short series with different starts and lengths, rows shuffled; `bad` spoils some."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(6, 15, size=n)
    starts = rng.integers(0, 24, size=n)
    names = np.repeat([f"s{i:04d}" for i in range(n)], lengths)
    first = pd.Timestamp("2017-01-01").to_period("M").ordinal + np.repeat(starts, lengths)
    step = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    months = pd.PeriodIndex.from_ordinals(first + step, freq="M").to_timestamp()
    frame = pd.DataFrame(
        {"series_id": names, "month": months.strftime("%Y-%m-%d"), "value": 10.0 + step}
    )
    for i, kind in bad.items():
        row = int(np.flatnonzero(names == f"s{i:04d}")[2])
        if kind == "text":
            frame["value"] = frame["value"].astype(object)
            frame.loc[row, "value"] = "oops"
        elif kind == "duplicate":
            frame.loc[row, "month"] = frame.loc[row - 1, "month"]
        elif kind == "off_grid":
            frame.loc[row, "month"] = frame.loc[row, "month"][:8] + "15"
    return frame.sample(frac=1, random_state=1).reset_index(drop=True)


def test_a_thousand_series_three_bad(tmp_path: Path) -> None:
    """Exactly the 3 bad series are excluded and named; the 997 others kept, filled, in order."""
    frame = many(1000, {17: "text", 404: "duplicate", 911: "off_grid"})
    write(tmp_path, frame)
    cfg = make_config()
    summary = validation.validate(cfg, tmp_path)
    assert [(e["series"], e["check"]) for e in summary["excluded"]] == [
        ("s0017", "numeric"),
        ("s0404", "unique"),
        ("s0911", "on_grid"),
    ]
    assert (summary["n_series"], summary["n_kept"], summary["n_excluded"]) == (1000, 997, 3)
    table = pd.read_csv(tmp_path / "reports" / "validation" / "excluded.csv")
    assert list(table["series"]) == ["s0017", "s0404", "s0911"]
    text_row = int(frame.index[frame["value"].astype(str) == "oops"][0])
    assert table.loc[0, "row"] == f"line {text_row + 2}"
    assert (tmp_path / "reports" / "validation" / "index.html").is_file()
    panel = clean_panel(cfg, tmp_path)
    assert panel.n_series == 997
    assert set(panel.ids) | {"s0017", "s0404", "s0911"} == set(frame["series_id"])
    # Every kept series comes back whole, sorted by time, its values as written.
    kept = frame[~frame["series_id"].isin(["s0017", "s0404", "s0911"])]
    assert panel.n_rows == len(kept)
    expected = kept.sort_values(["series_id", "month"])["value"].astype(float).to_numpy()
    np.testing.assert_array_equal(panel.values[:, 0], expected)


def test_gaps_are_filled_within_their_series_only(tmp_path: Path) -> None:
    """A 2-month gap is interpolated from that series' own neighbours, the grid made whole."""
    frame = pd.concat([series("A", 12), series("B", 12, start="2018-06-01")], ignore_index=True)
    frame.loc[12:23, "value"] = 1000.0 + np.arange(12) * 10
    frame = frame.drop(index=[3, 4])  # A: 2018-04 and 2018-05 missing
    write(tmp_path, frame)
    cfg = make_config(max_filled_fraction=0.2)
    summary = validation.validate(cfg, tmp_path)
    assert summary["excluded"] == []
    panel = clean_panel(cfg, tmp_path)
    assert panel.lengths.tolist() == [12, 12]
    np.testing.assert_allclose(panel.values[:12, 0], 100.0 + np.arange(12))
    assert str(panel.times[3])[:10] == "2018-04-01"


def test_bad_series_fail_writes_nothing(tmp_path: Path) -> None:
    """bad_series: fail stops the run with one line per bad series; the last outputs stay."""
    good = pd.concat([series(f"S{i}") for i in range(5)], ignore_index=True)
    path = write(tmp_path, good)
    cfg = make_config(bad_series="fail")
    validation.validate(cfg, tmp_path)
    summary = tmp_path / "reports" / "validation" / "summary.json"
    before = summary.read_text()
    bad = good.copy()
    bad.loc[30, "month"] = bad.loc[29, "month"]
    bad.loc[50, "value"] = -1.0
    bad.to_csv(path, index=False)
    with pytest.raises(ValidationFailed) as failed:
        validation.validate(cfg, tmp_path)
    lines = str(failed.value).splitlines()
    assert lines[:3] == [
        f"validation failed for {SOURCE}: 2 of 5 series fail (data.bad_series: fail; exclude "
        "would leave them out and go on)",
        f"{SOURCE}: series 'S1': line 31: 2 rows share a timestamp, e.g. '2018-06-01' "
        "(expected one row per series and month)",
        f"{SOURCE}: series 'S2': line 52: 1 value of value outside [0, 1000000] (data.bounds), "
        "e.g. -1.0",
    ]
    # Every run is kept in the GX history (not an output): the failed one too, with its page.
    assert lines[3].startswith(f"data docs of this run: {tmp_path / 'gx' / 'docs'}")
    assert summary.read_text() == before
    assert not (tmp_path / "reports" / "validation" / "excluded.csv").read_text().count("S1")


def test_more_than_max_excluded_fraction_fails(tmp_path: Path) -> None:
    """2 of 10 series bad with max_excluded_fraction 0.1: the run fails naming count and key."""
    frame = pd.concat([series(f"S{i}") for i in range(10)], ignore_index=True)
    frame.loc[[30, 60], "value"] = "x"
    write(tmp_path, frame)
    with pytest.raises(ValidationFailed) as failed:
        validation.validate(make_config(), tmp_path)
    lines = str(failed.value).splitlines()
    assert lines[0] == (
        f"validation failed for {SOURCE}: 2 of 10 series (20.0%) would be excluded, more than "
        "data.max_excluded_fraction 0.1 allows"
    )
    assert [line.split(":")[1] for line in lines[1:3]] == [" series 'S1'", " series 'S2'"]
    assert not (tmp_path / "reports").exists()


def test_missing_id_column_is_one_line(tmp_path: Path) -> None:
    """The id column missing stops the run whatever bad_series says: one line naming it."""
    write(tmp_path, series("A").rename(columns={"series_id": "store"}))
    with pytest.raises(ValidationFailed) as failed:
        validation.validate(make_config(), tmp_path)
    assert str(failed.value).splitlines() == [
        f"validation failed for {SOURCE}:",
        f"{SOURCE}: column 'series_id' (data.series) is missing; found columns: "
        "['store', 'month', 'value']",
    ]


def test_id_column_empty_on_every_row(tmp_path: Path) -> None:
    """An id column with no name at all: one line, no series to list."""
    write(tmp_path, series("A").assign(series_id=np.nan))
    with pytest.raises(ValidationFailed) as failed:
        validation.validate(make_config(), tmp_path)
    assert str(failed.value) == (
        f"{SOURCE}: column 'series_id' (data.series) is empty on every row (expected a series "
        "name on each row)"
    )


def test_parquet_input_and_two_id_columns(tmp_path: Path) -> None:
    """Parquet (pyarrow) by extension; two id columns name a series; rows as Parquet rows."""
    frame = pd.concat([series("A"), series("B")], ignore_index=True)
    frame.insert(0, "store", np.where(frame["series_id"] == "A", 1, 2))
    frame.loc[40, "value"] = 2e6
    write(tmp_path, frame, "panel.parquet")
    cfg = make_config(
        path="data/raw/panel.parquet", series=["store", "series_id"], max_excluded_fraction=0.5
    )
    summary = validation.validate(cfg, tmp_path)
    assert [e["series"] for e in summary["excluded"]] == ["2/B"]
    table = pd.read_csv(tmp_path / "reports" / "validation" / "excluded.csv")
    assert table.loc[0, "row"] == "row 41"
    panel = clean_panel(cfg, tmp_path)
    assert panel.ids.tolist() == ["1/A"] and panel.lengths.tolist() == [24]


def test_clean_panel_refuses_a_changed_file(tmp_path: Path) -> None:
    """The report drops series by name: a file changed since then is refused, not trusted."""
    path = write(tmp_path, pd.concat([series("A"), series("B")], ignore_index=True))
    cfg = make_config()
    validation.validate(cfg, tmp_path)
    path.write_text(path.read_text() + "C,2019-01-01,5\n")
    with pytest.raises(Exception, match="changed since it was validated; run validate again"):
        clean_panel(cfg, tmp_path)


def test_m1_slice_validates_clean(tmp_path: Path) -> None:
    """The first 30 series of the shipped M1 panel, with the example params: nothing excluded."""
    frame = pd.read_csv(M1, dtype={"series_id": str})
    first = frame["series_id"].drop_duplicates().iloc[:30]
    write(tmp_path, frame[frame["series_id"].isin(first)], "m1_monthly.csv")
    cfg = load_config(ROOT / "examples" / "m1_panel.yaml")
    summary = panel_validation.validate(cfg, tmp_path)
    assert (summary["n_series"], summary["n_excluded"]) == (30, 0)
    panel = clean_panel(cfg, tmp_path)
    assert panel.ids.tolist() == sorted(first)
    assert str(panel.times.max())[:7] == "2019-12"
    assert json.loads((tmp_path / "reports/validation/summary.json").read_text())["panel"]


def test_fixed_step_grid_per_series_with_features(tmp_path: Path) -> None:
    """Hourly: each series on its own grid from its first row; a feature's gap filled per column."""
    a = pd.DataFrame(
        {
            "series_id": "A",
            "month": pd.date_range("2024-01-01 00:00", periods=10, freq="h"),
            "value": np.arange(10.0),
            "temp": np.arange(10.0) * 2,
        }
    )
    b = a.assign(series_id="B", month=a["month"] + pd.Timedelta("30min"))  # its own grid
    c = a.assign(series_id="C")
    c.loc[4, "month"] = c.loc[4, "month"] + pd.Timedelta("15min")
    frame = pd.concat([a, b, c], ignore_index=True)
    frame.loc[3, "temp"] = np.nan  # A: one empty feature cell, filled from A's own rows
    frame["month"] = frame["month"].dt.strftime("%Y-%m-%d %H:%M:%S")
    write(tmp_path, frame)
    cfg = make_config(
        frequency="h",
        features=["temp"],
        bounds={},
        max_null_fraction=0.2,
        max_filled_fraction=0.2,
        max_excluded_fraction=0.5,
    )
    summary = validation.validate(cfg, tmp_path)
    assert [(e["series"], e["check"], e["row"]) for e in summary["excluded"]] == [
        ("C", "on_grid", 24)
    ]
    assert summary["excluded"][0]["reason"] == (
        "1 timestamp off the h grid, e.g. '2024-01-01 04:15:00' (expected steps of h from the "
        "series' first timestamp: mixed frequencies?)"
    )
    panel = clean_panel(cfg, tmp_path)
    assert panel.ids.tolist() == ["A", "B"]
    np.testing.assert_array_equal(panel.values[:10, 1], np.arange(10.0) * 2)
    assert str(panel.times[10]) == "2024-01-01T00:30:00.000000000"
