"""Window origins: exact per split, never crossing a split boundary, O(n) memory."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest
from helpers import row_ids

from seqcast.data.windowing import gather, history_offsets, horizon_offsets, origins, sliding_view

# Rows 0..19 split 10/5/5.
BOUNDS = {"train": (0, 10), "val": (10, 15), "test": (15, 20)}


def as_lists(found: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Origins as plain lists, for readable comparisons."""
    return {name: rows.tolist() for name, rows in found.items()}


def test_origins_with_history_across_splits() -> None:
    # Train: history rows (o-3, o] >= 0 -> o >= 2; targets o+1, o+2 <= 9 -> o <= 7.
    # Val/test: first target row o+1 >= start -> o >= start - 1; history may precede the split.
    found = origins(BOUNDS, context=3, horizon=2, shift=1, stride=1, history_across_splits=True)
    assert as_lists(found) == {
        "train": [2, 3, 4, 5, 6, 7],
        "val": [9, 10, 11, 12],
        "test": [14, 15, 16, 17],
    }


def test_origins_with_history_inside_each_split() -> None:
    # Val history rows (o-3, o] >= 10 -> o >= 12; test -> o >= 17.
    found = origins(BOUNDS, context=3, horizon=2, shift=1, stride=1, history_across_splits=False)
    assert as_lists(found) == {"train": [2, 3, 4, 5, 6, 7], "val": [12], "test": [17]}


def test_origins_with_shift_and_stride() -> None:
    # shift 3, horizon 2: targets o+3, o+4. Train o in [1, 5]; val o in [7, 10]; test o in [12, 15].
    found = origins(BOUNDS, context=2, horizon=2, shift=3, stride=2, history_across_splits=True)
    assert as_lists(found) == {"train": [1, 3, 5], "val": [7, 9], "test": [12, 14]}
    # Inside each split, shift 3 leaves no room in val/test; shift 2 leaves one window each.
    found = origins(BOUNDS, context=2, horizon=2, shift=3, stride=2, history_across_splits=False)
    assert as_lists(found) == {"train": [1, 3, 5], "val": [], "test": []}
    found = origins(BOUNDS, context=2, horizon=2, shift=2, stride=2, history_across_splits=False)
    assert as_lists(found) == {"train": [1, 3, 5], "val": [11], "test": [16]}


def test_multi_step_horizon_that_fills_a_split() -> None:
    # horizon 5 = the whole val/test split: one window each, targets exactly the split's rows.
    found = origins(BOUNDS, context=4, horizon=5, shift=1, stride=1, history_across_splits=True)
    assert as_lists(found) == {"train": [3, 4], "val": [9], "test": [14]}
    assert (found["val"][0] + horizon_offsets(5)).tolist() == [10, 11, 12, 13, 14]


def test_no_windows_when_the_split_is_too_short() -> None:
    found = origins(BOUNDS, context=3, horizon=6, shift=1, stride=1, history_across_splits=True)
    assert as_lists(found) == {"train": [2, 3], "val": [], "test": []}
    assert found["val"].dtype == np.int64
    found = origins(BOUNDS, context=3, horizon=2, shift=1, stride=1, history_across_splits=False)
    found_long = origins(BOUNDS, context=6, horizon=2, history_across_splits=False)
    assert found["val"].size == 1
    assert found_long["val"].size == 0


def valid_origin(o: int, split: str, context: int, horizon: int, shift: int, across: bool) -> bool:
    """The definition of a window, row by row: what origins() must reproduce."""
    start, stop = BOUNDS[split]
    history = range(o - context + 1, o + 1)
    target_rows = range(o + shift, o + shift + horizon)
    first_history = 0 if across and split != "train" else start
    return all(first_history <= r < stop for r in history) and all(
        start <= r < stop for r in target_rows
    )


@pytest.mark.parametrize("across", [True, False])
def test_origins_match_the_row_by_row_definition(across: bool) -> None:
    for context, horizon, shift, stride in itertools.product(
        range(1, 7), range(1, 5), range(1, 4), range(1, 4)
    ):
        found = origins(BOUNDS, context, horizon, shift, stride, across)
        for split in BOUNDS:
            valid = [
                o for o in range(-5, 25) if valid_origin(o, split, context, horizon, shift, across)
            ]
            # Every valid origin on the stride grid from the first one: nothing more, nothing less.
            expected = valid[::stride] if valid else []
            assert found[split].tolist() == expected, (split, context, horizon, shift, stride)


@pytest.mark.parametrize("across", [True, False])
def test_targets_never_cross_a_split_and_train_never_touches_later_rows(across: bool) -> None:
    context, horizon, shift = 2, 2, 2
    found = origins(BOUNDS, context, horizon, shift, 1, across)
    for split, rows in found.items():
        assert rows.size
        start, stop = BOUNDS[split]
        targets = rows[:, None] + horizon_offsets(horizon, shift)
        history = rows[:, None] + history_offsets(context)
        assert targets.min() >= start and targets.max() < stop
        assert history.min() >= (start if split == "train" or not across else 0)
        assert history.max() < stop
    train_rows = found["train"][:, None] + np.arange(-context + 1, shift + horizon)
    assert train_rows.max() < BOUNDS["train"][1]


def test_offsets() -> None:
    assert history_offsets(3).tolist() == [-2, -1, 0]
    assert horizon_offsets(3).tolist() == [1, 2, 3]
    assert horizon_offsets(2, shift=4).tolist() == [4, 5]
    assert history_offsets(3).dtype == horizon_offsets(3).dtype == np.int64


def test_gather_exact_values_multivariate() -> None:
    series = row_ids(20, columns=2)  # column 0: row, column 1: 100 + row
    batch = gather(series, np.array([3, 7]), history_offsets(3))
    assert batch.shape == (2, 3, 2)
    assert batch[:, :, 0].tolist() == [[1, 2, 3], [5, 6, 7]]
    assert batch[:, :, 1].tolist() == [[101, 102, 103], [105, 106, 107]]
    ahead = gather(series, np.array([3, 7]), horizon_offsets(2, shift=2))
    assert ahead[:, :, 0].tolist() == [[5, 6], [9, 10]]
    assert ahead[:, :, 1].tolist() == [[105, 106], [109, 110]]


def test_gather_one_dimensional() -> None:
    assert gather(np.arange(10), np.array([4]), history_offsets(2)).tolist() == [[3, 4]]


def test_gather_is_a_copy() -> None:
    series = row_ids(10)
    batch = gather(series, np.array([5]), history_offsets(3))
    batch[:] = -1
    assert series[:, 0].tolist() == list(range(10))


def test_sliding_view_is_a_view_that_matches_gather() -> None:
    series = row_ids(12, columns=2)
    view = sliding_view(series, 4)
    assert view.shape == (9, 4, 2)
    assert np.shares_memory(view, series)
    rows = np.arange(3, 12)  # origin o is view row o - width + 1
    np.testing.assert_array_equal(view, gather(series, rows, history_offsets(4)))
    series[5, 1] = -7.0
    assert view[2, 3, 1] == -7.0


def test_origins_memory_is_linear_in_the_series() -> None:
    n = 1_000_000
    bounds = {"train": (0, 700_000), "val": (700_000, 800_000), "test": (800_000, n)}
    tracemalloc.start()
    try:
        found = origins(bounds, context=96, horizon=24, shift=1, stride=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = sum(len(rows) for rows in found.values())
    assert total < n
    assert all(rows.dtype == np.int64 for rows in found.values())
    # One int64 per origin, plus slack: nowhere near a (windows, width) array.
    assert peak < 8 * n * 1.2


def test_gathering_one_batch_does_not_copy_every_window() -> None:
    n, width = 1_000_000, 96
    series = np.zeros((n, 1))
    rows = origins({"train": (0, n)}, context=width, horizon=24)["train"]
    tracemalloc.start()
    try:
        batch = gather(series, rows[:64], history_offsets(width))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert batch.shape == (64, width, 1)
    # A batch and its index array: a few 64 * 96 arrays, not n * width.
    assert peak < 64 * width * 8 * 4
    assert peak < n * width * 8 / 1000
