"""Conformal bands: the corrected rank, calibration that follows the origin, coverage, serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqcast.data.features import InputSpec
from seqcast.evaluation import intervals
from seqcast.models import metrics
from seqcast.models.forecaster import Forecaster


def test_the_rank_is_finite_sample_corrected() -> None:
    # 9 scores at 90 %: the 9th (the largest), not the 8.1th an uncorrected quantile would use.
    assert metrics.conformal_rank(9, 90) == 9
    assert metrics.conformal_rank(99, 80) == 80
    assert metrics.conformal_rank(18, 95) is None  # ceil(19 * 0.95) = 19 > 18: no finite band
    assert intervals.min_scores(95) == 19 and intervals.min_scores(80) == 4
    scores = np.arange(1.0, 10.0)[:, None]
    np.testing.assert_array_equal(metrics.quantiles(scores, [50, 90, 99])[:, 0], [5.0, 9.0, np.inf])


def test_calibration_uses_only_errors_known_at_the_origin() -> None:
    """Errors of later windows (or later steps of recent windows) never widen an earlier band."""
    horizon, n = 3, 200
    error_origins = np.arange(n)
    errors = np.ones((n, horizon, 1))
    errors[150:] = 1000.0  # a regime change after origin 150
    origins = np.array([100, 152, 153, 199])
    half = intervals.rolling_half_widths(error_origins, errors, origins, [80.0], window=50)
    # At origin 100, step h uses windows up to 100 - 1 - h: all ones.
    assert (half[0] == 1.0).all()
    # At 152, step 1 (h=0) knows window 151 (row 152 observed), step 3 only up to 149.
    assert half[1, 2, 0, 0] == 1.0
    # Later origins: more of the huge errors among the latest 50; the 80 % rank is 41 of 50.
    assert half[3, 0, 0, 0] == 1000.0


@pytest.mark.parametrize("shift", [1, 2])
def test_the_latest_known_error_is_exactly_the_one_observed_by_the_origin(shift: int) -> None:
    """Step h of the window at o' is observed at row o' + shift + h: known at o iff that <= o.

    Each window's error is its own origin, so a band from the one latest known error names the
    window it read: a one-row leak, or a lost per-step offset, changes the answer.
    """
    horizon, n = 4, 60
    errors = np.repeat(np.arange(n, dtype=float)[:, None, None], horizon, axis=1)
    origins = np.array([20, 33, 59])
    half = intervals.rolling_half_widths(np.arange(n), errors, origins, [50.0], 1, shift)
    expected = origins[:, None] - shift - np.arange(horizon)[None, :]
    np.testing.assert_array_equal(half[:, :, 0, 0], expected)


def test_rolling_window_keeps_the_latest_errors() -> None:
    error_origins = np.arange(100)
    errors = np.arange(100, dtype=float)[:, None, None]
    half = intervals.rolling_half_widths(error_origins, errors, np.array([99]), [50.0], window=10)
    # Known at 99 with shift 1: windows 0..98; the latest 10 are 89..98; rank ceil(11 * .5) = 6.
    assert half[0, 0, 0, 0] == 94.0


def test_coverage_on_noise_of_known_size() -> None:
    """Forecast errors N(0, 1): the bands cover within a few points of nominal, width ~ 2 z."""
    rng = np.random.default_rng(7)
    n, horizon = 3000, 4
    actual = rng.normal(0, 1, (n, horizon, 1))
    point = np.zeros_like(actual)
    origins = np.arange(n)
    errors = np.abs(actual - point)
    test = origins[1000:]
    half = intervals.rolling_half_widths(origins, errors, test, [80.0, 95.0], window=500)
    scored = intervals.score_intervals(actual[1000:], point[1000:], half, [80.0, 95.0], np.ones(1))
    assert scored["coverage_80"] == pytest.approx(0.80, abs=0.02)
    assert scored["coverage_95"] == pytest.approx(0.95, abs=0.015)
    assert scored["width_95"] == pytest.approx(2 * 1.96, rel=0.08)
    assert scored["uncalibrated_windows"] == 0
    assert len(scored["coverage_80_step"]) == horizon


def test_interval_score_by_hand() -> None:
    actual = np.array([[[5.0], [0.0], [12.0]]])
    lower, upper = np.full((1, 3, 1, 1), 2.0), np.full((1, 3, 1, 1), 10.0)
    score = intervals.interval_scores(actual, lower, upper, [80.0])
    # width 8, plus 2 / 0.2 = 10 times each miss: 0, 2, 2.
    np.testing.assert_allclose(score[0, :, 0, 0], [8.0, 28.0, 28.0])


def forecaster(calibration: np.ndarray | None) -> Forecaster:
    """Naive over an hourly series, with calibration errors (n, horizon=2, targets=1)."""
    spec = InputSpec(
        input_width=3, horizon=2, shift=1, n_targets=1, n_values=1, n_calendar=0, reference="naive"
    )
    return Forecaster(
        name="naive", spec=spec, timestamp="timestamp", columns=["y"], frequency="h",
        offset=np.array([0.0]), scale=np.array([1.0]), calibration=calibration,
        levels=[80.0, 95.0],
    )  # fmt: skip


def test_served_forecast_carries_bands_that_contain_it(tmp_path) -> None:
    calibration = np.stack([np.arange(1.0, 41.0), np.arange(1.0, 41.0) * 2], axis=1)[:, :, None]
    model = forecaster(calibration)
    history = pd.DataFrame(
        {"timestamp": pd.date_range("2024-01-01", periods=3, freq="h"), "y": [1.0, 2.0, 3.0]}
    )
    answer = model.forecast(history)
    assert list(answer.columns) == [
        "timestamp", "y", "y_lower_80", "y_upper_80", "y_lower_95", "y_upper_95",
    ]  # fmt: skip
    # 40 scores: the 80 % band is the 33rd smallest (ceil(41 * 0.8)), the 95 % one the 39th.
    assert list(answer["y_upper_80"] - answer["y"]) == [33.0, 66.0]
    assert list(answer["y"] - answer["y_lower_95"]) == [39.0, 78.0]
    assert (answer["y_lower_95"] <= answer["y_lower_80"]).all()
    assert (answer["y_lower_80"] <= answer["y"]).all() and (
        answer["y"] <= answer["y_upper_80"]
    ).all()
    model.save(tmp_path / "f")
    again = Forecaster.load(tmp_path / "f")
    pd.testing.assert_frame_equal(again.forecast(history), answer)
    assert again.fingerprint() == model.fingerprint() != forecaster(calibration * 2).fingerprint()
    assert forecaster(None).band_columns() == []


def test_adaptive_levels_by_hand() -> None:
    """alpha_T = alpha + rate * sum(alpha - miss_t) (Gibbs and Candes 2021), as a level."""
    misses = np.array([[0.5, 0.0], [0.5, 0.0], [0.2, 0.05]])
    levels = intervals.adaptive_levels(misses, [80.0, 95.0], 0.05)
    # 80: 0.2 + 0.05 * (-0.3 - 0.3 + 0) = 0.17; 95: 0.05 + 0.05 * (0.05 + 0.05 + 0) = 0.055.
    assert levels == pytest.approx([83.0, 94.5])
    assert intervals.adaptive_levels(np.ones((100, 1)), [80.0], 0.05) == [99.9]
    assert intervals.adaptive_levels(np.zeros((0, 1)), [80.0], 0.05) == [80.0]


def test_bands_read_at_the_adapted_levels_are_wider_and_saved(tmp_path) -> None:
    from seqcast.data.features import InputSpec
    from seqcast.models.forecaster import Forecaster

    spec = InputSpec(2, 3, 1, 1, 1, 0)
    errors = np.arange(1.0, 101.0)[:, None, None] * np.ones((1, 3, 1))
    base = Forecaster(
        name="naive", spec=spec, timestamp="t", columns=["y"], frequency="h",
        offset=np.zeros(1), scale=np.ones(1), calibration=errors, levels=[80.0],
    )  # fmt: skip
    adapted = Forecaster(**{**base.__dict__, "band_levels": [90.0]})
    # ceil(101 * 0.8) = 81st and ceil(101 * 0.9) = 91st of 1..100.
    assert base.half_widths()[0, 0, 0] == 81.0 and adapted.half_widths()[0, 0, 0] == 91.0
    adapted.save(tmp_path / "f")
    assert Forecaster.load(tmp_path / "f").band_levels == [90.0]
    assert "band_levels" not in base._settings()


def test_a_simple_baseline_is_calibrated_on_every_window_of_the_series() -> None:
    """Naive and seasonal naive fit nothing: every origin with their history and a whole horizon."""
    from seqcast.evaluation.backtest import simple_errors

    squares = (np.arange(8.0) ** 2)[:, None]  # errors grow with the origin: each one is exact
    naive = simple_errors("naive", squares, horizon=2, shift=1)[..., 0]
    # Origins 0..5: (o + 1)^2 - o^2 and (o + 2)^2 - o^2; origin 6 would need row 8.
    assert naive.tolist() == [[2 * o + 1, 4 * o + 4] for o in range(6)]
    weekly = simple_errors("seasonal_naive_3", squares, horizon=2, shift=1)[..., 0]
    # Origins 2..5 (row o - 2 is the first read): (o + 1)^2 - (o - 2)^2 and (o + 2)^2 - (o - 1)^2.
    assert weekly.tolist() == [[6 * o - 3, 6 * o + 3] for o in range(2, 6)]


def test_served_calibration_is_the_latest_of_every_error_known_at_the_fit() -> None:
    """A fitted recipe: its backtest and test errors, the latest `window`; a baseline: all rows."""
    from seqcast.evaluation.stage import serving_errors

    planted = np.arange(12.0).reshape(6, 2, 1)
    scales = np.arange(6.0)[:, None] + 1
    served, scale = serving_errors("gru", {}, planted, scales, window=4, simple=False)
    np.testing.assert_array_equal(served, planted[2:])
    np.testing.assert_array_equal(scale, scales[2:])
    spec = InputSpec(input_width=2, horizon=2, shift=1, n_targets=1, n_values=1, n_calendar=0)
    loaded = {
        "spec": spec,
        "series": (np.arange(8.0) ** 2)[:, None],
        "meta": {"offset": [0.0], "scale": [1.0]},
    }
    naive, scale = serving_errors("naive", loaded, planted, scales, 4, True, scale_window=2)
    # Not the planted errors: the naive errors at origins 2..5, the latest 4 of 6.
    assert naive[..., 0].tolist() == [[2 * o + 1, 4 * o + 4] for o in range(2, 6)]
    # And their origins' local scales: the mean change over the latest 2 rows,
    # o^2 - (o - 1)^2 = 2o - 1, not the planted scales.
    assert scale[:, 0].tolist() == [2 * o - 1 for o in range(2, 6)]
    # The 80 % band of 4 errors needs rank ceil(5 x 0.8) = 4: the largest of step 1 and 2.
    q = metrics.quantiles(naive, [80.0])
    assert q[0, :, 0].tolist() == [11.0, 24.0]


def test_local_scale_by_hand() -> None:
    """The mean one-step change over the `window` rows up to each origin; a floor; 1 if flat."""
    values = np.array([0.0, 1.0, 3.0, 6.0, 10.0, 15.0])[:, None]  # changes 1, 2, 3, 4, 5
    found = metrics.local_scale(values, np.array([0, 1, 4, 5]), window=3)[:, 0]
    # Origin 0: no change known and the floor 0: 1. Origin 1: rows 0..1, change 1.
    # Origin 4: rows 2..4, changes 3 and 4. Origin 5: rows 3..5, changes 4 and 5.
    assert found.tolist() == [1.0, 1.0, 3.5, 4.5]
    flat = np.array([0.0, 10.0, 10.0, 10.0, 10.0])[:, None]
    # Rows 2..4 do not change: the floor, 0.1 x the mean change of rows 0..4 (10 / 4).
    assert metrics.local_scale(flat, np.array([4]), window=3)[0, 0] == 0.25
    assert metrics.local_scale(flat, np.array([4]), 3, floor=np.array([2.0]))[0, 0] == 2.0
    assert metrics.scale_floor(flat)[0] == 0.25


def test_the_local_scale_reads_only_the_window_up_to_the_origin() -> None:
    """Rows after the origin, and the row before the window, never change an origin's scale.

    The row after the origin (a one-row leak) and the window's first row (one row too few)
    each change it, so a window shifted by one row either way fails here.
    """
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, (80, 2)).cumsum(axis=0)
    origins, window, none = np.array([10, 37, 60]), 6, np.zeros(2)
    base = metrics.local_scale(values, origins, window, none)
    floored = metrics.local_scale(values, origins, window)
    for i, origin in enumerate(origins):
        later = values.copy()
        later[origin + 1 :] += 1e6
        np.testing.assert_array_equal(metrics.local_scale(later, origins, window)[i], floored[i])
        before = values.copy()
        before[origin - window] += 1e6  # the row before the window's first
        found = metrics.local_scale(before, origins, window, none)[i]
        np.testing.assert_array_equal(found, base[i])
        first = values.copy()
        first[origin - window + 1] += 1e6  # the window's first row counts
        assert (metrics.local_scale(first, origins, window, none)[i] > 1e5).all()


def test_locally_scaled_bands_by_hand(tmp_path) -> None:
    """The band is the scaled errors' corrected quantile times the request's local scale."""
    calibration = np.stack([np.arange(1.0, 41.0), np.arange(1.0, 41.0) * 2], axis=1)[:, :, None]
    model = forecaster(calibration)
    model.calibration_scale = np.full((40, 1), 2.0)  # every error's origin had scale 2
    model.band_scale = {"window": 3, "floor": [0.0]}
    history = pd.DataFrame(
        {"timestamp": pd.date_range("2024-01-01", periods=3, freq="h"), "y": [1.0, 3.0, 7.0]}
    )
    answer = model.forecast(history)
    # Scaled errors 0.5..20 and 1..40; 80 %: the 33rd (16.5, 33), 95 %: the 39th (19.5, 39).
    # The request's local scale: changes 2 and 4, mean 3.
    assert list(answer["y"]) == [7.0, 7.0]
    assert list(answer["y_upper_80"] - answer["y"]) == [49.5, 99.0]
    assert list(answer["y"] - answer["y_lower_95"]) == [58.5, 117.0]
    wider = model.band_half_widths(np.array([[1.0], [5.0], [13.0]]), np.array([2]))
    assert wider[0, :, 0, 0].tolist() == [99.0, 198.0]  # changes 4 and 8: twice as wide
    model.save(tmp_path / "f")
    again = Forecaster.load(tmp_path / "f")
    pd.testing.assert_frame_equal(again.forecast(history), answer)
    assert again.band_scale == model.band_scale
    assert again.fingerprint() == model.fingerprint() != forecaster(calibration).fingerprint()
    assert "band_scale" not in forecaster(calibration)._settings()


def test_live_errors_get_the_local_scale_of_the_row_at_their_origin() -> None:
    """Each live forecast's scale reads the rows up to its origin, after the backtest's scales."""
    from pathlib import Path

    from seqcast.core.config import load_config
    from seqcast.operations import refit
    from seqcast.operations.monitoring import Live

    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml")
    # A local scale over 3 rows: 2 changes.
    cfg = cfg.model_copy(update={"intervals": cfg.intervals.model_copy(update={"scale_window": 3})})
    model = forecaster(np.ones((4, 2, 1)))
    times = pd.date_range("2024-01-01", periods=8, freq="h")
    units = (np.arange(8.0) ** 2)[:, None]  # the change into row t is 2t - 1
    # Origins at row 3 and between rows 5 and 6 (the row at or before it: 5).
    live = Live(
        np.ones((2, 2, 1)), np.zeros((2, 2)), ["1", "1"],
        [times[3], times[5] + pd.Timedelta(minutes=30)],
    )  # fmt: skip
    found = refit.local_scales(cfg, model, np.full((4, 1), 7.0), live, units, times)
    # Row 3: changes 3 and 5, mean 4; row 5: changes 7 and 9, mean 8 (row 6 not read).
    assert found[:, 0].tolist() == [7.0, 7.0, 7.0, 7.0, 4.0, 8.0]
    assert refit.local_scales(cfg, model, np.full((4, 1), 7.0), None, units, times).shape == (4, 1)
