"""Model inputs: exact calendar values, relative and seasonal inputs, residual round trip."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import hourly

from seqcast.data.features import (
    InputSpec,
    calendar,
    flat,
    future_times,
    inputs,
    reference_forecast,
    residuals,
    targets,
)

TAU = 2.0 * np.pi


def sincos(phase: float) -> list[float]:
    """[sin, cos] of one cycle fraction."""
    return [np.sin(TAU * phase), np.cos(TAU * phase)]


def assert_calendar(times: list[str] | pd.DatetimeIndex, names: list[str], rows: list) -> None:
    """calendar() of the times equals the expected rows to float32 precision."""
    got = calendar(pd.DatetimeIndex(times), names)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.array(rows, dtype=np.float64), rtol=0, atol=1e-7)


def test_time_of_day_at_midnight_and_noon() -> None:
    assert_calendar(
        ["2024-01-01 00:00", "2024-01-01 06:00", "2024-01-01 12:00", "2024-01-01 18:30"],
        ["time_of_day"],
        [[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], sincos(18.5 / 24)],
    )


def test_day_of_week_from_a_known_monday() -> None:
    # 2024-01-01 is a Monday: its midnight is phase 0; Sunday 18:00 is phase (6 + 0.75) / 7.
    assert_calendar(
        ["2024-01-01 00:00", "2024-01-01 12:00", "2024-01-04 00:00", "2024-01-07 18:00"],
        ["day_of_week"],
        [[0.0, 1.0], sincos(0.5 / 7), sincos(3 / 7), sincos(6.75 / 7)],
    )


def test_day_of_year_in_leap_and_common_years() -> None:
    assert_calendar(
        [
            "2024-01-01 00:00",
            "2024-02-29 00:00",  # day 60 of 366
            "2024-12-31 00:00",  # day 366 of 366
            "2023-12-31 00:00",  # day 365 of 365
            "2023-12-31 12:00",
        ],
        ["day_of_year"],
        [[0.0, 1.0], sincos(59 / 366), sincos(365 / 366), sincos(364 / 365), sincos(364.5 / 365)],
    )


def test_calendar_column_order_and_empty_names() -> None:
    times = pd.DatetimeIndex(["2024-01-01 06:00", "2024-01-02 00:00"])
    assert_calendar(
        times,
        ["day_of_week", "time_of_day"],
        [[*sincos(0.25 / 7), *sincos(0.25)], [*sincos(1 / 7), *sincos(0.0)]],
    )
    assert calendar(times, []).shape == (2, 0)


def test_calendar_uses_local_wall_clock_time_across_daylight_saving() -> None:
    # Europe/London springs forward at 01:00 GMT on 2024-03-31: 00:30 GMT is followed by 02:00 BST.
    spring = pd.date_range("2024-03-31 00:00", periods=4, freq="30min", tz="Europe/London")
    local_hours = [0.0, 0.5, 2.0, 2.5]
    assert_calendar(spring, ["time_of_day"], [sincos(h / 24) for h in local_hours])
    # In UTC the same instants are 00:00, 00:30, 01:00, 01:30: a different calendar.
    utc = calendar(spring.tz_convert("UTC"), ["time_of_day"])
    np.testing.assert_allclose(utc[2], sincos(1.0 / 24), atol=1e-7)
    # Falling back on 2024-10-27, 01:00 and 01:30 happen twice (BST, then GMT).
    autumn = pd.date_range("2024-10-27 00:00", periods=6, freq="30min", tz="Europe/London")
    assert_calendar(
        autumn, ["time_of_day"], [sincos(h / 24) for h in [0.0, 0.5, 1.0, 1.5, 1.0, 1.5]]
    )


def test_calendar_raises_no_deprecation_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calendar(hourly(3), ["time_of_day", "day_of_week", "day_of_year"])


def test_future_times() -> None:
    last = pd.Timestamp("2024-01-01 23:30")
    assert future_times(last, "30min", horizon=3).strftime("%H:%M").tolist() == [
        "00:00",
        "00:30",
        "01:00",
    ]
    assert future_times(last, "30min", horizon=3, shift=2).strftime("%H:%M").tolist() == [
        "00:30",
        "01:00",
        "01:30",
    ]


# Twelve hourly rows from midnight; column 0 (the target) is row**2, column 1 is 100 + row.
ROWS = np.arange(12, dtype=np.float64)
SERIES = np.column_stack([ROWS**2, 100.0 + ROWS])
CAL = calendar(hourly(12), ["time_of_day"])  # row r: sin/cos of r / 24
ORIGIN = np.array([8])


def spec(reference: str = "none", season: int | None = None, n_calendar: int = 0) -> InputSpec:
    """Width 3, horizon 2, shift 1, one target among two columns."""
    return InputSpec(
        input_width=3,
        horizon=2,
        shift=1,
        n_targets=1,
        n_values=2,
        n_calendar=n_calendar,
        reference=reference,
        season=season,
        calendar_names=["time_of_day"] if n_calendar else [],
    )


def test_inputs_without_a_reference_are_raw_values() -> None:
    s = spec()
    batch = inputs(s, SERIES, CAL, ORIGIN)
    assert sorted(batch) == ["past"]
    assert batch["past"].dtype == np.float32
    assert batch["past"][0].tolist() == [[36, 106], [49, 107], [64, 108]]
    assert (s.past_width, s.future_width, s.context) == (2, 0, 3)
    assert reference_forecast(s, SERIES, ORIGIN).tolist() == [[[0], [0]]]
    assert residuals(s, SERIES, ORIGIN).tolist() == [[[81], [100]]]


def test_inputs_relative_to_the_last_observation_for_a_naive_reference() -> None:
    s = spec("naive")
    batch = inputs(s, SERIES, CAL, ORIGIN)
    assert sorted(batch) == ["past"]
    # Rows 6, 7, 8 minus row 8, for the target and the feature alike.
    assert batch["past"][0].tolist() == [[-28, -2], [-15, -1], [0, 0]]
    assert reference_forecast(s, SERIES, ORIGIN).tolist() == [[[64], [64]]]
    assert targets(s, SERIES, ORIGIN).tolist() == [[[81], [100]]]
    assert residuals(s, SERIES, ORIGIN).tolist() == [[[17], [36]]]


def test_inputs_for_a_seasonal_reference() -> None:
    s = spec("seasonal_naive", season=4)
    assert (s.past_width, s.future_width, s.context) == (3, 1, 7)
    batch = inputs(s, SERIES, CAL, ORIGIN)
    # Relative values, then target seasonal differences: rows 6, 7, 8 minus rows 2, 3, 4.
    assert batch["past"][0].tolist() == [[-28, -2, 32], [-15, -1, 40], [0, 0, 48]]
    # Future reference path: rows 9, 10 take rows 5, 6 (25, 36), relative to row 8 (64).
    assert batch["future"][0].tolist() == [[-39], [-28]]
    assert reference_forecast(s, SERIES, ORIGIN).tolist() == [[[25], [36]]]
    assert residuals(s, SERIES, ORIGIN).tolist() == [[[56], [64]]]


def test_inputs_with_calendar() -> None:
    s = spec("seasonal_naive", season=4, n_calendar=2)
    assert (s.past_width, s.future_width) == (5, 3)
    batch = inputs(s, SERIES, CAL, ORIGIN)
    expected_past = [
        [-28, -2, 32, *sincos(6 / 24)],
        [-15, -1, 40, *sincos(7 / 24)],
        [0, 0, 48, *sincos(8 / 24)],
    ]
    # Future: calendar of rows 9 and 10 first, then the reference path.
    expected_future = [[*sincos(9 / 24), -39], [*sincos(10 / 24), -28]]
    np.testing.assert_allclose(batch["past"][0], expected_past, atol=1e-6)
    np.testing.assert_allclose(batch["future"][0], expected_future, atol=1e-6)
    naive = inputs(spec("naive", n_calendar=2), SERIES, CAL, ORIGIN)
    np.testing.assert_allclose(
        naive["past"][0], [row[:2] + row[3:] for row in expected_past], atol=1e-6
    )
    np.testing.assert_allclose(naive["future"][0], [row[:2] for row in expected_future], atol=1e-6)


def test_inputs_with_shift_and_several_targets() -> None:
    # Two targets and one feature; shift 2 moves the targets and the future calendar, not the past.
    series = np.column_stack([ROWS**2, 10.0 * ROWS, 100.0 + ROWS])
    s = InputSpec(
        input_width=2,
        horizon=2,
        shift=2,
        n_targets=2,
        n_values=3,
        n_calendar=2,
        reference="seasonal_naive",
        season=3,
        calendar_names=["time_of_day"],
    )
    batch = inputs(s, series, CAL, np.array([6, 7]))
    assert batch["past"].shape == (2, 2, s.past_width) == (2, 2, 3 + 2 + 2)
    assert batch["future"].shape == (2, 2, s.future_width) == (2, 2, 2 + 2)
    # Origin 6: past rows 5, 6; seasonal differences against rows 2, 3.
    np.testing.assert_allclose(
        batch["past"][0, :, :5],
        [[25 - 36, 50 - 60, -1, 25 - 4, 50 - 20], [0, 0, 0, 36 - 9, 60 - 30]],
    )
    # Rows 8, 9 (shift 2) take rows 5, 6 from the last season; relative to row 6.
    np.testing.assert_allclose(batch["future"][0, :, 2:], [[25 - 36, 50 - 60], [0, 0]])
    np.testing.assert_allclose(
        batch["future"][0, :, :2], [sincos(8 / 24), sincos(9 / 24)], atol=1e-6
    )
    assert targets(s, series, np.array([6])).tolist() == [[[64, 80], [81, 90]]]
    assert flat(batch).shape == (2, 2 * 7 + 2 * 4)


@pytest.mark.parametrize(
    ("reference", "season"),
    [("none", None), ("naive", None), ("seasonal_naive", 4), ("seasonal_naive", 5)],
)
def test_reference_plus_residuals_is_the_target(reference: str, season: int | None) -> None:
    rng = np.random.default_rng(3)
    s = dataclasses.replace(spec(reference, season), horizon=7, shift=2)
    o = np.arange(s.context - 1, 40 - s.shift - s.horizon + 1)
    # Integer-valued floats: the round trip is exact, not just close.
    whole = rng.integers(-1000, 1000, size=(40, 2)).astype(np.float64)
    np.testing.assert_array_equal(
        reference_forecast(s, whole, o) + residuals(s, whole, o), targets(s, whole, o)
    )
    real = rng.standard_normal((40, 2)) * 1e3
    np.testing.assert_allclose(
        reference_forecast(s, real, o) + residuals(s, real, o),
        targets(s, real, o),
        rtol=0,
        atol=1e-12 * 1e3,
    )
