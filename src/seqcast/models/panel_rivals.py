"""Statistical rivals on a panel: one statsforecast `StatsForecast` over the long frame per origin.

At each calendar origin every series is forecast from its own rows up to that time, with
statsforecast's panel API (one call for every series, `n_jobs` worker processes), so a rival is
refit at each origin exactly as statsforecast's `cross_validation` would. A series whose history
at an origin is too short for a rival (fewer than two seasons, as `statistical.fit` asks), or
constant (nothing to fit), is forecast by seasonal-naive (naive when it holds less than a season)
instead, and counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from seqcast.core.config import STATISTICAL_MODELS
from seqcast.data.baselines import naive, seasonal_naive
from seqcast.data.offsets import horizon_offsets
from seqcast.data.panel import Panel, _ranges
from seqcast.models.statistical import choose_season

PANEL_RIVALS = ("autoets", "autotheta")  # AutoARIMA per origin on a panel takes hours


@dataclass
class RivalWindows:
    """Rival forecasts at calendar origins: one window per (origin, series) with a future."""

    origin_rows: np.ndarray  # (n_windows,) int64: the flat row of each window's origin
    series: np.ndarray  # (n_windows,) int64: each window's series number
    forecasts: dict[str, np.ndarray]  # name -> (n_windows, horizon, n_targets), series' units
    fallback: dict[str, np.ndarray]  # name -> (n_windows,) object: "" or the baseline used
    seasons: dict[str, int]
    cpu_seconds: float  # this process and its workers, over every origin
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def min_history(season: int) -> int:
    """Rows a rival needs at an origin: two seasons and at least 8 (as statistical.fit)."""
    return 2 * max(season, 4)


def rival_season(name: str, seasons: list[int]) -> int:
    """The panel's season for a rival: the shortest it takes (statistical.choose_season)."""
    return choose_season(name, seasons, rows=np.iinfo(np.int32).max)[0]


def origin_windows(
    panel: Panel, origins: list | np.ndarray, horizon: int, shift: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin_rows, series, origin index) of every series holding each origin and its future."""
    stamps = np.asarray(pd.to_datetime(np.asarray(origins)), dtype="datetime64[ns]")
    series = panel.series_of_rows()
    rows, which = [], []
    for k, stamp in enumerate(stamps):  # a few calendar origins, never a loop over series
        at = np.flatnonzero(panel.times == stamp)
        last = at + shift + horizon - 1
        ok = last < panel.offsets[series[at] + 1]
        rows.append(at[ok])
        which.append(np.full(int(ok.sum()), k, dtype=np.int64))
    origin_rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return origin_rows, series[origin_rows], np.concatenate(which) if which else origin_rows


def forecast_origins(
    panel: Panel,
    origins: list | np.ndarray,
    horizon: int,
    names: list[str],
    seasons: list[int],
    frequency: str,
    n_jobs: int = 1,
    shift: int = 1,
) -> RivalWindows:
    """Every rival's forecasts at each calendar origin, from each series' rows up to it."""
    unknown = [n for n in names if n not in PANEL_RIVALS]
    if unknown:
        raise ValueError(
            f"baselines.statistical: {unknown} cannot run on a panel; expected some of "
            f"{list(PANEL_RIVALS)} (of {list(STATISTICAL_MODELS)})"
        )
    origin_rows, series, which = origin_windows(panel, origins, horizon, shift)
    n_targets = panel.n_targets
    steps = shift + horizon - 1
    used = {name: rival_season(name, seasons) for name in names}
    forecasts = {n: np.full((len(origin_rows), horizon, n_targets), np.nan) for n in names}
    fallback = {n: np.full(len(origin_rows), "", dtype=object) for n in names}
    start = process_cpu_seconds()
    for k in range(len(np.atleast_1d(origins))):
        here = np.flatnonzero(which == k)
        if not len(here):
            continue
        for t in range(n_targets):
            out = _at_origin(
                panel, origin_rows[here], series[here], t, steps, used, frequency, n_jobs
            )
            for name, (means, why) in out.items():
                forecasts[name][here, :, t] = means[:, shift - 1 :]
                # A window falls back when any target did; the last reason is kept.
                fallback[name][here] = np.where(why != "", why, fallback[name][here])
    counts = {
        n: {k: int(np.sum(fallback[n] == k)) for k in ("seasonal_naive", "naive")} for n in names
    }
    return RivalWindows(
        origin_rows, series, forecasts, fallback, used, process_cpu_seconds() - start, counts=counts
    )


def _at_origin(
    panel: Panel,
    origin_rows: np.ndarray,
    series: np.ndarray,
    target: int,
    steps: int,
    seasons: dict[str, int],
    frequency: str,
    n_jobs: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each rival's means (windows, steps) at one origin and, per window, the fallback used."""
    from statsforecast import StatsForecast

    starts = panel.offsets[series]
    lengths = origin_rows - starts + 1  # history rows up to the origin, origin included
    rows = _ranges(starts, lengths)
    y = panel.values[rows, target]
    owner = np.repeat(np.arange(len(series)), lengths)
    low = np.minimum.reduceat(y, np.concatenate([[0], np.cumsum(lengths)[:-1]]))
    high = np.maximum.reduceat(y, np.concatenate([[0], np.cumsum(lengths)[:-1]]))
    constant = low == high
    column = panel.values[:, target : target + 1]
    out = {}
    for name, season in seasons.items():
        fit = (lengths >= min_history(season)) & ~constant
        means = np.empty((len(series), steps))
        if fit.any():
            keep = fit[owner]
            frame = pd.DataFrame(
                {"unique_id": owner[keep], "ds": panel.times[rows][keep], "y": y[keep]}
            )
            model = _model(name, season)
            found = StatsForecast(models=[model], freq=frequency, n_jobs=n_jobs).forecast(
                df=frame, h=steps
            )
            # Ids are window numbers: sorted, they are the order of the windows that fit.
            found = found.sort_values(["unique_id", "ds"])
            means[fit] = found[name].to_numpy().reshape(-1, steps)
        means[~fit], why = _fallback(column, origin_rows[~fit], lengths[~fit], season, steps)
        reasons = np.full(len(series), "", dtype=object)
        reasons[~fit] = why
        out[name] = (means, reasons)
    return out


def _fallback(
    column: np.ndarray, origin_rows: np.ndarray, lengths: np.ndarray, season: int, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal-naive where a season of history exists, else naive: (windows, steps), names."""
    seasonal = lengths >= season
    means = naive(column, origin_rows, steps)[:, :, 0]
    if seasonal.any() and season > 1:
        means[seasonal] = seasonal_naive(column, origin_rows[seasonal], season, steps)[:, :, 0]
    names = np.where(seasonal & (season > 1), "seasonal_naive", "naive").astype(object)
    return means, names


def _model(name: str, season: int):
    """A statsforecast model aliased by its seqcast name."""
    from statsforecast.models import AutoETS, AutoTheta

    kinds = {"autoets": AutoETS, "autotheta": AutoTheta}
    return kinds[name](season_length=season, alias=name)


def process_cpu_seconds() -> float:
    """CPU seconds of this process and its finished workers."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def targets_at(panel: Panel, origin_rows: np.ndarray, horizon: int, shift: int = 1) -> np.ndarray:
    """The actual targets (windows, horizon, n_targets) after each origin row."""
    rows = origin_rows[:, None] + horizon_offsets(horizon, shift)[None, :]
    return panel.targets[rows]
