"""The simple baselines of a panel's window set: naive and seasonal-naive, per series.

Read straight from the flat target array at each window's origin row (`data.baselines`, the
single-series formulas), so every series gets its own naive and seasonal-naive forecast in one
array operation. A window whose series holds less than a season of history at its origin cannot
look a season back without crossing into the previous series: it gets the naive forecast
instead, and is counted.
"""

from __future__ import annotations

import numpy as np

from seqcast.data.baselines import naive, seasonal_naive
from seqcast.data.panel import Panel


def origin_rows(starts: np.ndarray, input_width: int) -> np.ndarray:
    """The flat origin row of each window (its last input row), from its first input row."""
    return np.asarray(starts, dtype=np.int64) + input_width - 1


def window_series(panel: Panel, starts: np.ndarray) -> np.ndarray:
    """The series number of each window, from its first input row."""
    return np.searchsorted(panel.offsets, starts, side="right") - 1


def simple_forecasts(
    panel: Panel,
    origins: np.ndarray,
    horizon: int,
    seasons: list[int],
    shift: int = 1,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Naive and one seasonal-naive per season at each origin row: forecasts, naive stand-ins.

    Returns name -> (n_windows, horizon, n_targets) and, per seasonal-naive, the number of
    windows whose series was too short at the origin (forecast by naive instead).
    """
    origins = np.asarray(origins, dtype=np.int64)
    targets = panel.targets
    history = origins - panel.offsets[np.searchsorted(panel.offsets, origins, side="right") - 1]
    plain = naive(targets, origins, horizon, shift)
    out, short = {"naive": plain}, {}
    for season in sorted({int(s) for s in seasons if int(s) > 1}):
        name = f"seasonal_naive_{season}"
        enough = history + 1 >= season
        forecast = plain.copy()
        forecast[enough] = seasonal_naive(targets, origins[enough], season, horizon, shift)
        out[name], short[name] = forecast, int((~enough).sum())
    return out, short
