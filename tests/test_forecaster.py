"""The served Forecaster: exact baseline forecasts, clear history errors, save/load round trips."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import hourly

from seqcast.core.config import ModelConfig
from seqcast.data import features
from seqcast.data.features import InputSpec
from seqcast.data.scaling import to_scaled, to_units
from seqcast.models.forecaster import Forecaster, ForecastInputError

Y = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
OFFSET, SCALE = np.array([100.0, 5.0]), np.array([10.0, 2.0])


def make_spec(**changes: object) -> InputSpec:
    """Width 2, horizon 6, shift 1, seasonal-naive reference of season 4; target y, feature x."""
    base = InputSpec(
        input_width=2,
        horizon=6,
        shift=1,
        n_targets=1,
        n_values=2,
        n_calendar=0,
        reference="seasonal_naive",
        season=4,
    )
    return dataclasses.replace(base, **changes)


def make_forecaster(predictor: object = None, **changes: object) -> Forecaster:
    """A Forecaster over hourly columns y (target) and x (feature) in non-trivial units."""
    return Forecaster(
        name="test",
        spec=make_spec(**changes),
        timestamp="timestamp",
        columns=["y", "x"],
        frequency="h",
        offset=OFFSET,
        scale=SCALE,
        predictor=predictor,
    )


def history(y: list[float] = Y, start: str = "2024-01-01 00:00") -> pd.DataFrame:
    """Raw history as a request carries it: timestamps as text, then the value columns."""
    times = hourly(len(y), start)
    return pd.DataFrame(
        {"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "y": y, "x": np.arange(len(y)) / 4}
    )


def test_seasonal_naive_forecast_in_units_with_future_timestamps() -> None:
    forecaster = make_forecaster()
    assert forecaster.min_history == 2 + 4
    assert forecaster.targets == ["y"]
    out = forecaster.forecast(history())
    assert list(out.columns) == ["timestamp", "y"]
    # Horizon 6 > season 4: the last full season (rows 4..7: 5, 9, 2, 6) repeats.
    np.testing.assert_allclose(out["y"], [5, 9, 2, 6, 5, 9], rtol=1e-12)
    assert out["timestamp"].tolist() == [f"2024-01-01 {h:02d}:00:00" for h in range(8, 14)]


def test_naive_forecast_with_shift() -> None:
    forecaster = make_forecaster(reference="naive", season=None, horizon=3, shift=2)
    assert forecaster.min_history == 2
    out = forecaster.forecast(history(start="2024-02-28 20:00"))
    np.testing.assert_allclose(out["y"], [6, 6, 6], rtol=1e-12)
    # Last observation 2024-02-29 03:00; shift 2 -> the first forecast step is 05:00.
    assert out["timestamp"].tolist() == [
        "2024-02-29 05:00:00",
        "2024-02-29 06:00:00",
        "2024-02-29 07:00:00",
    ]


def test_forecast_across_a_daylight_saving_change() -> None:
    # History in Europe/London local time up to 00:30 GMT; the clocks then jump to 02:00 BST.
    times = pd.date_range("2024-03-30 22:00", periods=6, freq="30min", tz="Europe/London")
    frame = pd.DataFrame({"timestamp": times, "y": Y[:6], "x": 0.0})
    forecaster = make_forecaster(reference="naive", season=None, horizon=3)
    forecaster.frequency = "30min"
    out = forecaster.forecast(frame)
    # Local wall-clock times (whether or not a UTC offset follows them).
    assert [stamp[:19] for stamp in out["timestamp"]] == [
        "2024-03-31 02:00:00",
        "2024-03-31 02:30:00",
        "2024-03-31 03:00:00",
    ]
    np.testing.assert_allclose(out["y"], [9, 9, 9], rtol=1e-12)


def test_forecast_timestamps_are_unambiguous_when_clocks_fall_back() -> None:
    times = pd.date_range("2024-10-26 23:00", periods=4, freq="30min", tz="Europe/London")
    frame = pd.DataFrame({"timestamp": times, "y": Y[:4], "x": 0.0})
    forecaster = make_forecaster(reference="naive", season=None, horizon=3)
    forecaster.frequency = "30min"
    stamps = forecaster.forecast(frame)["timestamp"]
    # The steps are 01:00 BST, 01:30 BST and 01:00 GMT: three distinct instants.
    assert stamps.is_unique, stamps.tolist()


def test_forecast_units_round_trips_the_scaling() -> None:
    forecaster = make_forecaster(reference="naive", season=None, horizon=2)
    values = np.column_stack([Y, np.zeros(len(Y))])
    out = forecaster.forecast_units(values, hourly(len(Y)), np.array([3, 7]))
    np.testing.assert_allclose(out[:, :, 0], [[1, 1], [6, 6]], rtol=1e-12)
    scaled = forecaster.predict_scaled(
        to_scaled(values, OFFSET, SCALE), np.zeros((10, 0)), np.array([3])
    )
    np.testing.assert_allclose(to_units(scaled, OFFSET[:1], SCALE[:1]), [[[1], [1]]], rtol=1e-12)


def check_error(frame: pd.DataFrame, **changes: object) -> str:
    """The ForecastInputError message for this history."""
    with pytest.raises(ForecastInputError) as caught:
        make_forecaster(**changes).forecast(frame)
    return str(caught.value)


def test_missing_column_is_named() -> None:
    message = check_error(history().drop(columns="x"))
    assert message == (
        "missing column(s) ['x']; expected ['timestamp', 'y', 'x'], got ['timestamp', 'y']"
    )


def test_too_little_history_counts_the_reference_season() -> None:
    message = check_error(history()[:5])
    assert message == (
        "too little history: 5 rows given, 6 needed (input width 2 + reference season 4)"
    )
    message = check_error(history()[:1], reference="naive", season=None)
    assert message == "too little history: 1 rows given, 2 needed (input width 2)"


def test_null_value_names_column_and_time() -> None:
    frame = history()
    frame.loc[5, "y"] = np.nan
    frame.loc[6, "x"] = np.nan
    message = check_error(frame)
    assert message == (
        "2 null or non-finite value(s), first in column y at 2024-01-01 05:00:00 "
        "(row 5 of the 8 sent)"
    )
    frame = history()
    frame.loc[7, "x"] = np.inf
    assert check_error(frame).endswith("column x at 2024-01-01 07:00:00 (row 7 of the 8 sent)")


def test_null_before_the_rows_the_model_reads_is_refused() -> None:
    # Every row sent is checked: an empty cell anywhere means a broken feed.
    frame = history()
    frame.loc[0, "y"] = np.nan
    assert check_error(frame) == (
        "1 null or non-finite value(s), first in column y at 2024-01-01 00:00:00 "
        "(row 0 of the 8 sent)"
    )


def test_unordered_timestamps() -> None:
    frame = history()
    frame.loc[[4, 5], "timestamp"] = frame.loc[[5, 4], "timestamp"].to_numpy()
    assert check_error(frame) == (
        "timestamps must be increasing every h with no gaps: row 4 of the 8 sent is "
        "2024-01-01 05:00:00, expected 2024-01-01 04:00:00"
    )


def test_irregular_timestamps() -> None:
    frame = history()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame.loc[6:, "timestamp"] += pd.Timedelta("30min")
    assert check_error(frame) == (
        "timestamps must be increasing every h with no gaps: row 6 of the 8 sent is "
        "2024-01-01 06:30:00, expected 2024-01-01 06:00:00"
    )


def test_unparseable_timestamp() -> None:
    frame = history()
    frame.loc[6, "timestamp"] = "half past six"
    assert check_error(frame).startswith("column timestamp: unparseable timestamp")


def test_missing_timestamp_is_named() -> None:
    frame = history()
    frame.loc[2, "timestamp"] = None  # the first of the 6 rows the forecast reads
    assert "timestamp" in check_error(frame)


def test_non_numeric_values() -> None:
    frame = history()
    frame["y"] = frame["y"].astype(object)
    frame.loc[6, "y"] = "n/a"
    assert check_error(frame) == (
        "column y: 'n/a' at 2024-01-01 06:00:00 (row 6 of the 8 sent) is not a number"
    )


def test_values_beyond_the_widened_training_range() -> None:
    # y was trained on [1, 9]: served y may lie in [1 - 8, 9 + 8], both ends included.
    ranged = dataclasses.replace(
        make_forecaster(), train_min=np.array([1.0, 0.0]), train_max=np.array([9.0, 2.0])
    )
    frame = history([3.0, 1.0, 4.0, 1.0, 5.0, -7.0, 2.0, 17.0])
    assert len(ranged.forecast(frame)) == 6
    frame.loc[7, "y"] = 17.5
    with pytest.raises(ForecastInputError) as caught:
        ranged.forecast(frame)
    assert str(caught.value) == (
        "column y: 17.5 at 2024-01-01 07:00:00 (row 7 of the 8 sent) is outside the accepted "
        "range [-7, 17] "
        "(training range [1, 9] widened by 1 times its width on each side); "
        "1 value(s) outside in all"
    )
    assert len(make_forecaster().forecast(frame)) == 6  # no recorded range: no check


def test_baseline_save_load_round_trip(tmp_path: Path) -> None:
    forecaster = make_forecaster()
    forecaster.save(tmp_path / "f")
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["forecaster.json"]
    loaded = Forecaster.load(tmp_path / "f")
    assert loaded.spec == forecaster.spec
    assert (loaded.name, loaded.timestamp, loaded.columns, loaded.frequency) == (
        "test",
        "timestamp",
        ["y", "x"],
        "h",
    )
    np.testing.assert_array_equal(loaded.offset, OFFSET)
    np.testing.assert_array_equal(loaded.scale, SCALE)
    assert loaded.predictor is None
    pd.testing.assert_frame_equal(loaded.forecast(history()), forecaster.forecast(history()))


def training_series(rows: int = 200) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """A daily-periodic hourly series with a slow feature, in units."""
    t = np.arange(rows)
    y = 100.0 + 20.0 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(0).normal(0, 1, rows)
    return np.column_stack([y, 5.0 + t / 100]), hourly(rows)


def fit_ridge(spec: InputSpec) -> object:
    """A Ridge on the spec's inputs and residuals over a small scaled training series."""
    from sklearn.linear_model import Ridge

    values, times = training_series()
    series = to_scaled(values, OFFSET, SCALE)
    cal = features.calendar(times, spec.calendar_names)
    o = np.arange(spec.context - 1, len(series) - spec.shift - spec.horizon + 1)
    x = features.flat(features.inputs(spec, series, cal, o))
    return Ridge(alpha=1.0).fit(x, features.residuals(spec, series, o).reshape(len(o), -1))


def expected_forecast(forecaster: Forecaster, frame: pd.DataFrame) -> np.ndarray:
    """Reference plus Ridge residual, with the calendar of every row up to the last target."""
    spec = forecaster.spec
    rows = frame.iloc[-forecaster.min_history :]
    times = pd.DatetimeIndex(pd.to_datetime(rows["timestamp"]))
    series = to_scaled(rows[["y", "x"]].to_numpy(), OFFSET, SCALE)
    every = pd.date_range(times[0], periods=len(times) + spec.shift + spec.horizon - 1, freq="h")
    cal = features.calendar(every, spec.calendar_names)
    origin = np.array([len(series) - 1])
    batch = features.inputs(spec, series, cal, origin)
    residual = forecaster.predictor.predict(features.flat(batch))
    scaled = features.reference_forecast(spec, series, origin) + residual.reshape(1, -1, 1)
    return to_units(scaled, OFFSET[:1], SCALE[:1])[0, :, 0]


def ridge_forecaster(**changes: object) -> Forecaster:
    """A Forecaster with a Ridge predictor over calendar and seasonal inputs."""
    spec = make_spec(n_calendar=2, calendar_names=["time_of_day"], horizon=3, **changes)
    return make_forecaster(fit_ridge(spec), **dataclasses.asdict(spec))


def serving_history() -> pd.DataFrame:
    """The last 30 rows of the training series as a request."""
    values, times = training_series()
    return pd.DataFrame(
        {"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "y": values[:, 0], "x": values[:, 1]}
    ).iloc[-30:]


def test_ridge_forecast_is_reference_plus_predicted_residual() -> None:
    forecaster = ridge_forecaster()
    out = forecaster.forecast(serving_history())
    np.testing.assert_allclose(
        out["y"], expected_forecast(forecaster, serving_history()), rtol=1e-12
    )


def test_ridge_forecast_with_shift_and_calendar() -> None:
    forecaster = ridge_forecaster(shift=2)
    out = forecaster.forecast(serving_history())
    np.testing.assert_allclose(
        out["y"], expected_forecast(forecaster, serving_history()), rtol=1e-12
    )


def test_ridge_save_load_round_trip(tmp_path: Path) -> None:
    forecaster = ridge_forecaster()
    forecaster.save(tmp_path / "f")
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["forecaster.json", "linear.pkl"]
    loaded = Forecaster.load(tmp_path / "f")
    assert loaded.spec == forecaster.spec
    pd.testing.assert_frame_equal(
        loaded.forecast(serving_history()), forecaster.forecast(serving_history())
    )


@pytest.fixture(scope="module")
def keras_backend() -> str:
    """Keras on TensorFlow unless another test already imported it under some backend."""
    from seqcast.models import training

    if "keras" not in sys.modules:
        training.use_backend("tensorflow")
    import keras

    return keras.backend.backend()


def test_keras_gru_save_load_round_trip(tmp_path: Path, keras_backend: str) -> None:
    import keras

    from seqcast.models import networks

    keras.utils.set_random_seed(0)
    spec = make_spec(n_calendar=2, calendar_names=["time_of_day"], horizon=3)
    model = networks.build("gru", spec, ModelConfig(units=4, dropout=0.0))
    forecaster = make_forecaster(model, **dataclasses.asdict(spec))
    before = forecaster.forecast(serving_history())
    forecaster.save(tmp_path / "f")
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["forecaster.json", "model.keras"]
    loaded = Forecaster.load(tmp_path / "f")
    assert loaded.spec == spec
    assert isinstance(loaded.predictor, keras.Model)
    after = loaded.forecast(serving_history())
    assert after["timestamp"].tolist() == before["timestamp"].tolist()
    np.testing.assert_allclose(after["y"], before["y"], rtol=0, atol=1e-9)
    # An untrained GRU still adds a (small, non-zero) residual to the reference.
    reference = make_forecaster(**dataclasses.asdict(spec)).forecast(serving_history())
    assert not np.allclose(before["y"], reference["y"])


@pytest.mark.parametrize(
    ("step_frequency", "expected"),
    [
        # XNYS is closed on Christmas (Wed 25 Dec 2024) and New Year's Day (Wed 1 Jan 2025).
        ("XNYS", ["12-24", "12-26", "12-27", "12-30", "12-31", "2025-01-02"]),
        ("B", ["12-24", "12-25", "12-26", "12-27", "12-30", "12-31"]),
    ],
)  # fmt: skip
def test_trading_day_forecasts_skip_the_exchange_holidays(
    step_frequency: str, expected: list[str]
) -> None:
    """Rows are trading days; an exchange calendar dates the steps after the last on sessions."""
    days = pd.bdate_range(end="2024-12-23", periods=len(Y))
    frame = history()
    frame["timestamp"] = days.strftime("%Y-%m-%d %H:%M:%S")
    forecaster = dataclasses.replace(
        make_forecaster(), frequency="rows", step_frequency=step_frequency
    )
    out = forecaster.forecast(frame)
    assert days[-1] == pd.Timestamp("2024-12-23")
    dates = [d if d.startswith("2025") else f"2024-{d}" for d in expected]
    assert out["timestamp"].tolist() == [f"{d} 00:00:00" for d in dates]


@pytest.mark.parametrize(
    "stamps",
    [
        ["2000-01-01 00:00:00", "2000-01-01 00:30:00"],
        ["2000-01-01T00:00:00", "2000-01-01T00:30:00"],
        ["2000-01-01", "2000-01-02"],
        ["2000-01-01 00:00:00+01:00", "2000-01-01 00:30:00+01:00"],
        ["2000-01-01 00:00:00", None],
    ],
)
def test_timestamps_parse_as_pandas_guesses_them(stamps: list) -> None:
    """The usual layout is tried first (faster); every layout reads as pd.to_datetime reads it."""
    from seqcast.models.forecaster import parse_times

    raw = pd.Series(stamps, name="timestamp")
    found = parse_times(raw)
    expected = pd.DatetimeIndex(pd.to_datetime(raw))
    assert found.equals(expected) and found.dtype == expected.dtype


def test_unparseable_timestamp_names_the_column() -> None:
    from seqcast.models.forecaster import parse_times

    with pytest.raises(ForecastInputError, match="column when: unparseable timestamp: "):
        parse_times(pd.Series(["2000-01-01 00:00:00", "soon"], name="when"))
