"""Windows as origin indices over one array: memory stays O(series length).

A window is named by its origin o, the row of the last observed value. It reads history rows
(o - context, o] and forecasts rows o + shift ... o + shift + horizon - 1. Nothing is copied
until a batch of origins is gathered.
"""

from __future__ import annotations

import numpy as np


def origins(
    bounds: dict[str, tuple[int, int]],
    context: int,
    horizon: int,
    shift: int = 1,
    stride: int = 1,
    history_across_splits: bool = True,
) -> dict[str, np.ndarray]:
    """Origins per split: targets inside the split; history inside it unless allowed before."""
    out = {}
    for name, (start, stop) in bounds.items():
        first_history = 0 if history_across_splits and name != "train" else start
        first = max(first_history + context - 1, start - shift)
        last = stop - shift - horizon  # the last target row is stop - 1
        out[name] = (
            np.arange(first, last + 1, stride, dtype=np.int64)
            if last >= first
            else (np.empty(0, dtype=np.int64))
        )
    return out


def gather(series: np.ndarray, rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """series[rows[:, None] + offsets]: one batch of windows, copied only for this batch."""
    return np.take(series, rows[:, None] + offsets[None, :], axis=0)


def history_offsets(width: int) -> np.ndarray:
    """Offsets of the last `width` observed rows relative to the origin."""
    return np.arange(-width + 1, 1, dtype=np.int64)


def horizon_offsets(horizon: int, shift: int = 1) -> np.ndarray:
    """Offsets of the forecast rows relative to the origin."""
    return np.arange(shift, shift + horizon, dtype=np.int64)


def sliding_view(series: np.ndarray, width: int) -> np.ndarray:
    """A zero-copy (n - width + 1, width, ...) view of every window of `width` rows."""
    view = np.lib.stride_tricks.sliding_window_view(series, width, axis=0)
    return np.moveaxis(view, -1, 1)
