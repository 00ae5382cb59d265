"""Naive and seasonal-naive forecasts, applicable seasons and the reference choice."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import row_ids

from seqcast.data.baselines import (
    applicable_seasons,
    choose_reference,
    history_needed,
    naive,
    reference,
    seasonal_naive,
    seasonal_offsets,
)
from seqcast.data.windowing import gather, horizon_offsets, origins

# Each value names its row (column 1 is 100 + row), so a forecast shows which rows it copied.
SERIES = row_ids(30, columns=2)
PATTERN = np.array([0.0, 3.0, 1.0, 2.0])


def test_naive_repeats_the_last_observation() -> None:
    forecast = naive(SERIES, np.array([5, 9]), horizon=3)
    assert forecast.shape == (2, 3, 2)
    assert forecast[:, :, 0].tolist() == [[5, 5, 5], [9, 9, 9]]
    assert forecast[:, :, 1].tolist() == [[105, 105, 105], [109, 109, 109]]
    # The last observation is still the origin's row when the forecast starts later.
    np.testing.assert_array_equal(naive(SERIES, np.array([5, 9]), 3, shift=4), forecast)


def test_seasonal_naive_within_one_season() -> None:
    forecast = seasonal_naive(SERIES, np.array([9]), season=4, horizon=3)
    assert forecast[0, :, 0].tolist() == [6, 7, 8]  # rows 10, 11, 12 one season back
    assert forecast[0, :, 1].tolist() == [106, 107, 108]


def test_seasonal_naive_longer_than_the_season_repeats_the_last_full_season() -> None:
    forecast = seasonal_naive(SERIES, np.array([9, 12]), season=4, horizon=10)
    assert forecast[:, :, 0].tolist() == [
        [6, 7, 8, 9, 6, 7, 8, 9, 6, 7],
        [9, 10, 11, 12, 9, 10, 11, 12, 9, 10],
    ]


def test_seasonal_naive_with_shift() -> None:
    # Origin 9, shift 3: rows 12..17 take the latest row <= 9 with the same phase mod 4.
    forecast = seasonal_naive(SERIES, np.array([9]), season=4, horizon=6, shift=3)
    assert forecast[0, :, 0].tolist() == [8, 9, 6, 7, 8, 9]
    assert seasonal_offsets(4, 6, shift=3).tolist() == [-1, 0, -3, -2, -1, 0]


def test_seasonal_naive_reads_the_latest_observed_row_of_the_same_phase() -> None:
    for season in range(1, 7):
        for horizon in range(1, 15):
            for shift in range(1, 5):
                forecast = seasonal_naive(SERIES, np.array([12]), season, horizon, shift)[0, :, 0]
                rows = 12 + horizon_offsets(horizon, shift)
                expected = [r - season * -(-(r - 12) // season) for r in rows]
                assert forecast.tolist() == expected, (season, horizon, shift)
                assert forecast.max() <= 12 and forecast.min() > 12 - season


def test_season_one_is_naive() -> None:
    o = np.array([4, 8, 13])
    np.testing.assert_array_equal(seasonal_naive(SERIES, o, 1, 5, 2), naive(SERIES, o, 5, 2))


def test_seasonal_naive_is_exact_on_a_periodic_series() -> None:
    series = np.tile(PATTERN, 10)[:, None]
    o = np.arange(3, 30)
    actual = gather(series, o, horizon_offsets(9, 2))
    np.testing.assert_array_equal(seasonal_naive(series, o, 4, 9, 2), actual)
    np.testing.assert_array_equal(seasonal_naive(series, o, 8, 9, 2)[5:], actual[5:])


def test_reference_dispatch() -> None:
    o = np.array([9])
    np.testing.assert_array_equal(reference(SERIES, o, "naive", None, 3), naive(SERIES, o, 3))
    np.testing.assert_array_equal(
        reference(SERIES, o, "seasonal_naive", 4, 3), seasonal_naive(SERIES, o, 4, 3)
    )
    zero = reference(SERIES, o, "none", None, 3)
    assert zero.shape == (1, 3, 2) and not zero.any()
    with pytest.raises(ValueError, match=r"features.reference: unknown reference 'drift'"):
        reference(SERIES, o, "drift", None, 3)


def test_history_needed() -> None:
    assert history_needed("naive", None) == 1
    assert history_needed("none", None) == 1
    assert history_needed("seasonal_naive", 48) == 48


def test_applicable_seasons_gives_a_reason_for_each_skipped_season() -> None:
    # Rows one window needs = max(input_width, season) + shift + horizon - 1: 12, 16 and 53.
    usable, skipped = applicable_seasons([48, 4, 12, 4], n_train=30, input_width=8, horizon=5)
    assert usable == [4, 12]
    assert list(skipped) == ["seasonal_naive_48"]
    assert re.fullmatch(
        r"season 48 needs \d+ training rows of history and horizon, the training split has 30",
        skipped["seasonal_naive_48"],
    )
    usable, skipped = applicable_seasons([4, 12], n_train=30, input_width=8, horizon=5, shift=15)
    assert usable == [4]
    assert list(skipped) == ["seasonal_naive_12"]
    assert applicable_seasons([], 30, 8, 5) == ([], {})


def test_applicable_seasons_agrees_with_the_training_origins() -> None:
    # Season 4, width 4, horizon 2: 6 training rows give exactly one window (origin 3,
    # history rows 0..3, targets rows 4, 5), so the season is applicable.
    assert origins({"train": (0, 6)}, context=4, horizon=2)["train"].tolist() == [3]
    usable, skipped = applicable_seasons([4], n_train=6, input_width=4, horizon=2)
    assert usable == [4], skipped
    _, skipped = applicable_seasons([4], n_train=5, input_width=4, horizon=2)
    assert skipped["seasonal_naive_4"].startswith("season 4 needs 6 training rows")


def test_choose_reference_picks_the_period_of_a_seasonal_series() -> None:
    series = np.tile(PATTERN, 25)[:, None]
    # 40 validation origins, 10 at each phase of the pattern.
    val = np.arange(10, 50)
    kind, season, scores = choose_reference(series, val, [3, 4], horizon=2)
    assert (kind, season) == ("seasonal_naive", 4)
    # Hand-computed over one period: naive errors 4+3+2+3 = 12 and season-3 errors 16, over 8.
    assert scores == pytest.approx({"naive": 1.5, "seasonal_naive_3": 2.0, "seasonal_naive_4": 0.0})


def test_choose_reference_picks_naive_on_a_random_walk() -> None:
    walk = np.cumsum(np.random.default_rng(7).standard_normal(3000))[:, None]
    kind, season, scores = choose_reference(walk, np.arange(100, 2900), [4, 24], horizon=6)
    assert (kind, season) == ("naive", None)
    assert scores["naive"] < min(scores["seasonal_naive_4"], scores["seasonal_naive_24"])
