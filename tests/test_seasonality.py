"""Seasons found in the training split: a real cycle is found and added, noise adds nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_all, stage_root

from seqcast.core.io import read_json
from seqcast.data import seasonality
from seqcast.evaluation.scores import table

N_TRAIN = 2100


def cycle(rows: int, period: int, noise: float, seed: int = 0) -> np.ndarray:
    """A sine of the period with Gaussian noise of the given standard deviation."""
    t = np.arange(rows)
    return np.sin(2 * np.pi * t / period) + noise * np.random.default_rng(seed).normal(size=rows)


def test_a_period_132_cycle_is_found_without_its_multiples() -> None:
    found = seasonality.candidates(cycle(N_TRAIN, 132, 0.3))
    assert list(found) == [132]
    assert found[132] == pytest.approx(0.7956, abs=1e-4)


def test_white_noise_and_a_random_walk_have_no_season() -> None:
    noise = np.random.default_rng(1).normal(size=N_TRAIN)
    assert seasonality.candidates(noise) == {}
    assert seasonality.candidates(np.cumsum(noise)) == {}


def test_a_weekly_pattern_in_daily_data_is_7() -> None:
    days = np.arange(730)
    weekends = np.where(days % 7 >= 5, -1.0, 0.5) + 0.3 * np.random.default_rng(2).normal(size=730)
    assert list(seasonality.candidates(weekends)) == [7]


def test_a_found_season_is_added_only_if_it_beats_the_defaults_on_validation() -> None:
    detection = seasonality.Detection(defaults=[12], found={132: 0.8, 60: 0.3})
    val_mae = {"naive": 0.9, "seasonal_naive_12": 0.8, "seasonal_naive_132": 0.5}
    seasonality.judge(detection, val_mae | {"seasonal_naive_60": 0.85}, unusable={})
    assert detection.kept == [132]
    assert detection.dropped == {
        60: "validation MAE 0.85 (scaled), no better than the best of naive and the "
        "frequency's seasons (0.8)"
    }


def monthly(values: np.ndarray) -> pd.DataFrame:
    """A monthly series from 1749 (as the sunspot record), with a level to stay positive."""
    months = pd.date_range("1749-01-01", periods=len(values), freq="MS")
    return pd.DataFrame({"timestamp": months.strftime("%Y-%m-%d"), "demand_mw": 100 + 50 * values})


@pytest.mark.parametrize(
    ("values", "seasons", "line"),
    [
        (
            cycle(3000, 132, 0.3),
            [12, 132],
            "window: seasons 12 from data.frequency; autocorrelation peaks of the training "
            "split: 132 (0.80); added: 132",
        ),
        (
            np.random.default_rng(3).normal(size=3000),
            [12],
            "window: seasons 12 from data.frequency; no other season found in the training split",
        ),
    ],
    ids=["cycle-132", "white-noise"],
)
def test_window_stage_adds_the_season_the_data_shows(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    values: np.ndarray,
    seasons: list[int],
    line: str,
) -> None:
    root = stage_root(
        tmp_path,
        monthly(values),
        data={"frequency": "MS", "bounds": {}},
        window={"input_width": 24, "horizon": 12},
        backtest={"origins": 2},
    )
    run_all(root, until="window")
    meta = read_json(root / "data/windows/meta.json")
    assert meta["seasons"] == seasons
    assert meta["season_detection"]["kept"] == seasons[1:]
    assert line in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("season", "words"),
    [(5, "seasonal-naive 5 in-sample MAE"), (1, "naive in-sample MAE")],
)
def test_results_table_says_what_mase_is_scaled_by(season: int, words: str) -> None:
    results = {"naive": {"mae": 2.0, "rmse": 3.0, "mase": 1.0, "smape": 4.0}}
    text = table(results, {}, "naive", mase_season=season)
    assert text.splitlines()[-1] == f"MASE (scale: {words} of the training split)"
