"""A served statistical rival forecasts what the evaluation scored at the same origin (issue 26).

The refit keeps the series the rival was evaluated on; a request's rows extend it, so the states
are filtered from the first fit row, not from the fit's initial state through the rows sent.
Real statsforecast fits and a real MLflow SQLite store for the pyfunc; no mocks.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from seqcast.data.features import InputSpec
from seqcast.models import serving, statistical
from seqcast.models.forecaster import Forecaster, ForecastInputError

ROWS, FIT = 300, 200
SPEC = InputSpec(input_width=24, horizon=6, shift=2, n_targets=1, n_values=1, n_calendar=0)
TIMES = pd.date_range("2024-01-01", periods=ROWS, freq="h")
NAMES = ["autoets", "autotheta"]


def series() -> np.ndarray:
    """Level, trend, a 12-step season and noise: both rivals model the season."""
    rng = np.random.default_rng(3)
    t = np.arange(ROWS)
    return 50 + 0.05 * t + 5 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1.5, ROWS)


def served(
    name: str, y: np.ndarray, kept: int | None = FIT, seasons: tuple[int, ...] = (12,)
) -> Forecaster:
    """A rival fit on the first FIT rows, keeping the first `kept` rows (None: none kept)."""
    rival = statistical.fit(name, y[:FIT, None], list(seasons))
    if kept is not None:
        rival.keep_history(y[:kept, None], TIMES[:kept])
    return Forecaster(
        name=name, spec=SPEC, timestamp="timestamp", columns=["y"], frequency="h",
        offset=np.array([50.0]), scale=np.array([5.0]), predictor=rival,
    )  # fmt: skip


def request(y: np.ndarray, origin: int, first: int | None = None) -> pd.DataFrame:
    """The rows a client sends up to origin: the last min_history, or every row from `first`."""
    first = origin + 1 - SPEC.context if first is None else first
    rows = slice(first, origin + 1)
    return pd.DataFrame({"timestamp": TIMES[rows].strftime("%Y-%m-%d %H:%M:%S"), "y": y[rows]})


def evaluated(forecaster: Forecaster, y: np.ndarray, origin: int) -> np.ndarray:
    """The forecast the evaluation computes at origin on the whole series."""
    found = forecaster.predictor.forecast_targets(y[:, None], np.array([origin]), 6, shift=2)
    return found[0, :, 0]


@pytest.mark.parametrize(
    ("name", "seasons"),
    # autoets with a season past its limit of 24: MSTL's seasonal part removed first.
    [("autoets", (12,)), ("autotheta", (12,)), ("autoets", (36,))],
)
@pytest.mark.parametrize("origin", [FIT - 1, FIT + 10])
def test_served_forecast_equals_the_evaluated_one(name: str, seasons: tuple, origin: int) -> None:
    y = series()
    forecaster = served(name, y, seasons=seasons)
    # Every row since the fit end when the origin is past it: the last min_history rows would
    # leave a gap (test_a_gap_after_the_kept_series_is_refused_and_named).
    first = FIT - 20 if origin >= FIT else None
    answer = forecaster.forecast(request(y, origin, first))
    np.testing.assert_allclose(answer["y"], evaluated(forecaster, y, origin), rtol=0, atol=1e-9)
    # The gap this closes: from the fit's initial state through the rows sent only.
    alone = served(name, y, kept=None, seasons=seasons).forecast(request(y, origin, first))
    assert np.abs(alone["y"] - answer["y"]).max() > 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_the_last_min_history_rows_of_a_kept_series_give_the_evaluated_forecast(
    name: str,
) -> None:
    """refit.all_rows false: the rows after the fit are kept too; the last min_history suffice."""
    y = series()
    forecaster = served(name, y, kept=ROWS)
    answer = forecaster.forecast(request(y, ROWS - 1))
    np.testing.assert_allclose(answer["y"], evaluated(forecaster, y, ROWS - 1), atol=1e-9, rtol=0)


def test_rows_sent_win_after_the_fit_end_and_give_way_over_the_fit_rows() -> None:
    y = series()
    forecaster = served("autoets", y, kept=ROWS)
    sent = request(y, ROWS - 1, first=FIT - 10)
    sent.loc[2, "y"] += 7.0  # a fit row: the kept value is the one the model was fit on
    sent.loc[len(sent) - 20, "y"] += 7.0  # after the fit end: the client's value is used
    revised = y.copy()
    revised[ROWS - 20] += 7.0
    np.testing.assert_allclose(
        forecaster.forecast(sent)["y"], evaluated(forecaster, revised, ROWS - 1), atol=1e-9, rtol=0
    )


def test_a_gap_after_the_kept_series_is_refused_and_named() -> None:
    y = series()
    forecaster = served("autotheta", y)
    with pytest.raises(ForecastInputError) as err:
        forecaster.forecast(request(y, FIT + 30))
    assert str(err.value) == (
        "a gap between the series the model was fit on (up to 2024-01-09 07:00:00) and the "
        "rows sent (from 2024-01-09 15:00:00): the 7 step(s) 2024-01-09 08:00:00 .. "
        "2024-01-09 14:00:00 are missing; send every row from 2024-01-09 08:00:00 on "
        "(or refit the model)"
    )


def test_rows_off_the_kept_grid_are_refused() -> None:
    y = series()
    sent = request(y, FIT + 13)
    sent["timestamp"] = (TIMES[FIT - 10 : FIT + 14] + pd.Timedelta("30min")).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    with pytest.raises(ForecastInputError) as err:
        served("autoets", y).forecast(sent)
    assert str(err.value) == (
        "the row sent at 2024-01-09 07:30:00 is off the h grid of the series the model was fit "
        "on: its step after 2024-01-09 07:00:00 is 2024-01-09 08:00:00"
    )


@pytest.mark.parametrize("name", NAMES)
def test_saved_logged_and_loaded_it_serves_the_same(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    y = series()
    forecaster = served(name, y, kept=ROWS)
    forecaster.save(tmp_path / "f")
    loaded = Forecaster.load(tmp_path / "f")
    # The fingerprint reads the kept series: the same after loading, another without it.
    assert loaded.fingerprint() == forecaster.fingerprint()
    assert served(name, y, kept=None).fingerprint() != forecaster.fingerprint()
    assert served(name, y, kept=ROWS - 1).fingerprint() != forecaster.fingerprint()
    sent = request(y, ROWS - 1)
    pd.testing.assert_frame_equal(loaded.forecast(sent), forecaster.forecast(sent))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("rival", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = serving.log_forecaster(tmp_path / "f", input_example=sent)
    answer = mlflow.pyfunc.load_model(info.model_uri).predict(sent)
    np.testing.assert_allclose(answer["y"], evaluated(forecaster, y, ROWS - 1), atol=1e-9, rtol=0)


@pytest.mark.parametrize("modeltype", ["STM", "OTM", "DSTM", "DOTM"])
def test_theta_closed_form_states_are_statsforecasts_own(modeltype: str) -> None:
    """The served and evaluated AutoTheta read states in closed form: theta.cpp's, to 1e-9."""
    from statsforecast._lib import theta as _theta
    from statsforecast.theta import switch_theta

    from seqcast.models import theta

    y = 100 + np.cumsum(np.random.default_rng(2).normal(0, 1, 600))
    alpha, slope, initial = 0.37, 2.3, 99.0
    _, _, full, _ = _theta.pegels_resid(y, switch_theta(modeltype), initial, alpha, slope, 3)
    ours = theta.end_states(y, alpha, initial, modeltype.startswith("D"))
    # What a forecast reads: level and mean, and the trend (A_n, B_n). The static models' trend
    # is the line of the whole series passed, so only its last row is the prefix's.
    for column, found in enumerate(ours):
        expected = full[:, column] if column < 2 or modeltype.startswith("D") else full[-1, column]
        found = found if column < 2 or modeltype.startswith("D") else found[-1]
        np.testing.assert_allclose(found, expected, rtol=1e-11, atol=1e-9)


def test_a_gap_policy_interpolates_every_step_after_the_kept_series() -> None:
    """With a gap policy the steps since the kept series are read and judged, not min_history."""
    y = series()
    forecaster = served("autotheta", y)
    forecaster.gap_policy = {
        "max_gap_steps": 2, "max_null_fraction": 0.05, "max_filled_fraction": 0.1, "bounds": {},
    }  # fmt: skip
    sent = request(y, FIT + 40, first=FIT - 20)
    sent = sent.drop(index=25).reset_index(drop=True)  # row FIT + 5: before the last 24 read
    prepared = serving.fill_gaps(forecaster, sent)
    answer = forecaster.forecast_checked(*prepared.checked(forecaster))
    filled = y.copy()
    filled[FIT + 5] = (y[FIT + 4] + y[FIT + 6]) / 2
    np.testing.assert_allclose(
        answer["y"], evaluated(forecaster, filled, FIT + 40), atol=1e-9, rtol=0
    )
    assert prepared.filled == [str(TIMES[FIT + 5])]


@pytest.mark.parametrize("name", NAMES)
def test_a_remembered_answer_is_exactly_the_computed_one(name: str) -> None:
    """Repeated requests are answered from memory: bit for bit what computing them gives."""
    y = series()
    forecaster = served(name, y, kept=FIT + 20)
    rival = forecaster.predictor
    for origin in (FIT + 10, FIT + 25):  # rows within the kept series, then 5 rows past it
        sent = request(y, origin, first=origin - 40)
        statistical._SERVED.pop(rival, None)
        computed = forecaster.forecast(sent)
        assert len(statistical._SERVED[rival]) == 1
        remembered = forecaster.forecast(sent)
        pd.testing.assert_frame_equal(remembered, computed, check_exact=True)
        np.testing.assert_array_equal(remembered["y"].to_numpy(), evaluated(forecaster, y, origin))
    # Another row after the kept series is another request, computed (not the remembered one).
    changed = request(y, FIT + 25, first=FIT - 15)
    changed.loc[changed.index[-1], "y"] += 1.0
    assert not np.array_equal(forecaster.forecast(changed)["y"], computed["y"])
    assert len(statistical._SERVED[rival]) == 2  # the last origin's answer and this one
    # A new kept series forgets every answer through the old one.
    rival.keep_history(y[: FIT + 20, None], TIMES[: FIT + 20])
    assert rival not in statistical._SERVED
