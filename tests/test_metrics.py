"""Forecast errors on (windows, horizon, targets) arrays, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqcast.models.metrics import mae, mae_per_step, mase, rmse, score, seasonal_naive_scale, smape


def stack(target0: list, target1: list) -> np.ndarray:
    """Two targets given as (windows, horizon) lists -> (windows, horizon, 2)."""
    return np.stack([np.array(target0, float), np.array(target1, float)], axis=2)


# Two windows, horizon 3, two targets.
ACTUAL = stack([[1, 2, 3], [4, 5, 6]], [[0, 0, 10], [-5, 5, 0]])
FORECAST = stack([[2, 2, 2], [4, 7, 3]], [[0, 10, 10], [5, 5, 0]])
# Absolute errors: target 0 [[1, 0, 1], [0, 2, 3]]; target 1 [[0, 10, 0], [10, 0, 0]].
# Training rows for MASE with season 2: target 0 steps 3, 5, 7, 9 (mean 6);
# target 1 steps |6-5|, |1-3|, |8-6|, |0-1| (mean 1.5).
TRAIN = np.array([[1, 5], [2, 3], [4, 6], [7, 1], [11, 8], [16, 0]], dtype=float)


def test_mae() -> None:
    np.testing.assert_allclose(mae(ACTUAL, FORECAST), [7 / 6, 20 / 6], rtol=1e-15)


def test_rmse() -> None:
    # Squared errors: target 0 sum 15, target 1 sum 200, over 6 points each.
    np.testing.assert_allclose(rmse(ACTUAL, FORECAST), [math.sqrt(2.5), math.sqrt(200 / 6)])


def test_smape() -> None:
    # Target 0 ratios 2|a-f|/(|a|+|f|): 2/3, 0, 2/5, 0, 1/3, 2/3 -> 31/90.
    # Target 1: 0/0 counts 0, 20/10 = 2, 0, 20/10 = 2, 0, 0/0 -> 4/6.
    np.testing.assert_allclose(smape(ACTUAL, FORECAST), [3100 / 90, 400 / 6], rtol=1e-14)


def test_smape_bounds_and_zero_over_zero() -> None:
    zeros = np.zeros((1, 2, 1))
    assert smape(zeros, zeros).tolist() == [0.0]
    assert smape(np.ones((1, 2, 1)), -np.ones((1, 2, 1))).tolist() == [200.0]
    assert smape(np.ones((1, 2, 1)), np.zeros((1, 2, 1))).tolist() == [200.0]
    rng = np.random.default_rng(0)
    a, f = rng.normal(size=(50, 4, 2)), rng.normal(size=(50, 4, 2))
    assert ((smape(a, f) >= 0) & (smape(a, f) <= 200)).all()


def test_seasonal_naive_scale() -> None:
    np.testing.assert_allclose(seasonal_naive_scale(TRAIN, 2), [6.0, 1.5], rtol=1e-15)
    # Season 1 is the naive in-sample MAE: target 0 steps 1, 2, 3, 4, 5.
    np.testing.assert_allclose(seasonal_naive_scale(TRAIN, 1)[0], 3.0, rtol=1e-15)


def test_seasonal_naive_scale_needs_a_longer_training_split() -> None:
    with pytest.raises(
        ValueError,
        match=r"evaluation.mase_season: 6 is not shorter than the "
        r"training split \(6 rows\)",
    ):
        seasonal_naive_scale(TRAIN, 6)


def test_mase() -> None:
    scale = seasonal_naive_scale(TRAIN, 2)
    np.testing.assert_allclose(mase(ACTUAL, FORECAST, scale), [7 / 36, 20 / 9], rtol=1e-14)


def test_mae_per_step() -> None:
    per_step = mae_per_step(ACTUAL, FORECAST)
    assert per_step.shape == (3, 2)
    np.testing.assert_allclose(per_step, [[0.5, 5.0], [1.0, 5.0], [2.0, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(per_step.mean(axis=0), mae(ACTUAL, FORECAST), rtol=1e-15)


def test_single_target_shapes() -> None:
    actual, forecast = ACTUAL[:, :, :1], FORECAST[:, :, :1]
    assert mae(actual, forecast).shape == (1,)
    assert mae_per_step(actual, forecast).shape == (3, 1)
    np.testing.assert_allclose(rmse(actual, forecast), [math.sqrt(2.5)])


def test_score_holds_every_metric() -> None:
    scale = np.array([6.0, 1.5])
    scores = score(ACTUAL, FORECAST, scale)
    assert sorted(scores) == ["mae", "mae_per_step", "mase", "rmse", "smape"]
    np.testing.assert_allclose(scores["mae"], [7 / 6, 20 / 6])
    np.testing.assert_allclose(scores["mase"], [7 / 36, 20 / 9])
    np.testing.assert_allclose(scores["smape"], [3100 / 90, 400 / 6])
    np.testing.assert_allclose(scores["rmse"], [math.sqrt(2.5), math.sqrt(200 / 6)])
    assert scores["mae_per_step"].shape == (3, 2)


def test_perfect_forecast_scores_zero() -> None:
    scores = score(ACTUAL, ACTUAL.copy(), np.array([6.0, 1.5]))
    for name in ("mae", "rmse", "mase", "smape"):
        assert scores[name].tolist() == [0.0, 0.0]
