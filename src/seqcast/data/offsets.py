"""Rows a window reads, as offsets from its origin, gathered from one array per batch.

Below windowing, features and baselines, which all read windows this way: the window stage
picks the reference from the baselines and builds the features, so none of them may import it.
"""

from __future__ import annotations

import numpy as np


def gather(series: np.ndarray, rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """series[rows[:, None] + offsets]: one batch of windows, copied only for this batch."""
    return np.take(series, rows[:, None] + offsets[None, :], axis=0)


def history_offsets(width: int) -> np.ndarray:
    """Offsets of the last `width` observed rows relative to the origin."""
    return np.arange(-width + 1, 1, dtype=np.int64)


def horizon_offsets(horizon: int, shift: int = 1) -> np.ndarray:
    """Offsets of the forecast rows relative to the origin."""
    return np.arange(shift, shift + horizon, dtype=np.int64)
