"""The statistical rivals of a panel over chunks of series, as Ray tasks or in this process.

`panel_rivals.forecast_origins` fits each series on its own rows, so a chunk of series gives
exactly the windows of those series that the whole panel gives: the chunks' windows, moved to
the panel's row and series numbers and put back in its order (origin, then series), are the
sequential result. A series whose fit still fails after Ray's retries is left out and named.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from seqcast.core.config import ParallelConfig
from seqcast.data.panel import Panel
from seqcast.data.panel_chunks import map_series
from seqcast.models.panel_rivals import PANEL_RIVALS, RivalWindows, forecast_origins, rival_season


@dataclass
class PanelRivals:
    """The rivals' windows of every series that ran, and the series that failed, named."""

    windows: RivalWindows
    failed: dict[str, str] = field(default_factory=dict)  # series name -> reason
    where: str = "this process"


def rivals_by_chunk(
    panel: Panel,
    origins: list | np.ndarray,
    horizon: int,
    names: list[str],
    seasons: list[int],
    frequency: str,
    parallel: ParallelConfig,
    shift: int = 1,
) -> PanelRivals:
    """`forecast_origins` over chunks of series on `parallel.engine`, in the panel's order."""
    unknown = [n for n in names if n not in PANEL_RIVALS]
    if unknown:  # the user's to fix: said once, not as every chunk's failure
        forecast_origins(panel.take([]), origins, horizon, names, seasons, frequency)
    args = (origins, horizon, names, seasons, frequency, 1, shift)
    chunks = map_series(forecast_origins, panel, parallel, args)
    parts = [_moved(panel, first, w) for first, w in chunks.results]
    empty = _empty(names, seasons, horizon, panel.n_targets)
    windows = _joined([empty, *parts], origins, panel)
    return PanelRivals(windows, chunks.failed, chunks.where)


def _moved(panel: Panel, first: int, windows: RivalWindows) -> RivalWindows:
    """A chunk's windows in the whole panel's row and series numbers."""
    windows.origin_rows = windows.origin_rows + panel.offsets[first]
    windows.series = windows.series + first
    return windows


def _empty(names: list[str], seasons: list[int], horizon: int, n_targets: int) -> RivalWindows:
    """No window: the start of the join, so a panel whose every series failed still has one."""
    return RivalWindows(
        origin_rows=np.zeros(0, dtype=np.int64),
        series=np.zeros(0, dtype=np.int64),
        forecasts={n: np.zeros((0, horizon, n_targets)) for n in names},
        fallback={n: np.zeros(0, dtype=object) for n in names},
        seasons={n: rival_season(n, seasons) for n in names},
        cpu_seconds=0.0,
        counts={n: {"seasonal_naive": 0, "naive": 0} for n in names},
    )


def _joined(parts: list[RivalWindows], origins: list | np.ndarray, panel: Panel) -> RivalWindows:
    """The chunks' windows as one set, ordered by origin then series as the sequential path."""
    rows = np.concatenate([p.origin_rows for p in parts])
    series = np.concatenate([p.series for p in parts])
    stamps = pd.DatetimeIndex(pd.to_datetime(np.asarray(origins)))
    which = stamps.get_indexer(pd.DatetimeIndex(panel.times[rows]))
    order = np.lexsort((series, which))
    first = parts[0]
    names = list(first.forecasts)
    return RivalWindows(
        origin_rows=rows[order],
        series=series[order],
        forecasts={n: np.concatenate([p.forecasts[n] for p in parts])[order] for n in names},
        fallback={n: np.concatenate([p.fallback[n] for p in parts])[order] for n in names},
        seasons=first.seasons,
        # Every worker's CPU: the cost of the fits whichever engine ran them.
        cpu_seconds=float(sum(p.cpu_seconds for p in parts)),
        counts={n: {k: sum(p.counts[n][k] for p in parts) for k in first.counts[n]} for n in names},
    )
