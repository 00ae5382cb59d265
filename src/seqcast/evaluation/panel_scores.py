"""Every metric per series of a panel, from windows grouped by series, and the panel aggregates.

Forecasts follow the window contract: (n_windows, horizon, n_targets) in the series' units, with
each window's series number. MAE, RMSE, MASE and sMAPE are computed per series over all its
windows and steps (one array operation over the windows, grouped with `np.bincount`), then
aggregated over series, each series weighing the same: mean and median MASE, mean sMAPE.

MASE's scale of a series is its in-sample seasonal-naive MAE over its own training rows
(`models.metrics.seasonal_naive_scale`, vectorised over the flat rows): season m, or 1 when the
series has no more than m training rows, and when that scale is 0 (a constant series) or
undefined (one training row), the FLOOR: the series' mean |value| over its training rows (MASE
then reads as error relative to the level), or 1 when that is 0 too (an all-zero series: MASE
reads as MAE in units). Floored series are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seqcast.data.panel import Panel
from seqcast.models.metrics import smape_terms

HEADLINE = ("mae", "rmse", "mase", "smape")


@dataclass(frozen=True)
class SeriesScale:
    """MASE's denominator of every series, (n_series, n_targets), and how it was found."""

    scale: np.ndarray
    season: np.ndarray  # (n_series,) the season used: m, or 1 where the training rows are short
    floored: np.ndarray  # (n_series, n_targets) bool: the scale is the floor (0 or undefined)
    requested: int = 1  # the season m asked for

    @property
    def counts(self) -> dict[str, int]:
        """Series whose scale fell back to the naive step, and (series, target) pairs floored."""
        return {
            "naive_scale": int(np.sum(self.season < self.requested)),
            "floored_scale": int(self.floored.sum()),
        }


@dataclass(frozen=True)
class SeriesScores:
    """One model's metrics per series: arrays (n_series, n_targets); NaN where no window."""

    windows: np.ndarray  # (n_series,) windows scored per series
    mae: np.ndarray
    rmse: np.ndarray
    mase: np.ndarray
    smape: np.ndarray

    def headline(self, name: str) -> np.ndarray:
        """A metric per series, averaged over targets (a single target reads as itself)."""
        return np.mean(getattr(self, name), axis=1)


def train_rows(panel: Panel, val_start: np.datetime64 | str) -> np.ndarray:
    """Rows of each series before the calendar cut val_start: its training rows (a prefix)."""
    cut = np.datetime64(pd.Timestamp(val_start).to_datetime64(), "ns")
    before = (panel.times < cut).astype(np.int64)
    return np.bincount(panel.series_of_rows(), weights=before, minlength=panel.n_series).astype(
        np.int64
    )


def series_scale(panel: Panel, n_train: np.ndarray, season: int) -> SeriesScale:
    """Each series' mean |y_t - y_{t-m}| over its first n_train rows, with the documented floor."""
    series = panel.series_of_rows()
    lag = np.where(n_train > season, season, 1)  # too short for a season: the naive step
    position = np.arange(panel.n_rows) - panel.offsets[series]
    row_lag = lag[series]
    inside = position < n_train[series]
    y = panel.targets
    total = np.zeros((panel.n_series, y.shape[1]))
    count = np.zeros((panel.n_series, 1))
    for step in np.unique(lag):  # at most two lags: whole-array shifts, no gather per row
        usable = (inside & (position >= step) & (row_lag == step))[step:]
        differences = np.where(usable[:, None], np.abs(y[step:] - y[:-step]), 0.0)
        total += _group_sum(differences, series[step:], panel.n_series)
        count[:, 0] += np.bincount(series[step:], weights=usable, minlength=panel.n_series)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = total / count
        level = _group_sum(np.abs(y[inside]), series[inside], panel.n_series) / n_train[:, None]
    floored = ~(scale > 0)
    floor = np.where(level > 0, level, 1.0)
    return SeriesScale(np.where(floored, floor, scale), lag, floored, season)


def per_series(
    actual: np.ndarray,
    forecast: np.ndarray,
    window_series: np.ndarray,
    scale: np.ndarray,
    n_series: int,
) -> SeriesScores:
    """MAE, RMSE, MASE and sMAPE of every series over its windows and steps."""
    windows = np.bincount(window_series, minlength=n_series)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = windows[:, None] * actual.shape[1]  # points per series and target
        error = actual - forecast
        mae = _group_sum(np.abs(error).sum(axis=1), window_series, n_series) / per
        mse = _group_sum((error**2).sum(axis=1), window_series, n_series) / per
        terms = smape_terms(actual, forecast).sum(axis=1)
        smape = _group_sum(terms, window_series, n_series) / per
    return SeriesScores(windows, mae, np.sqrt(mse), mae / scale, smape)


def aggregates(scores: SeriesScores) -> dict[str, float]:
    """The panel's figures over the series that have windows: mean and median MASE, and the rest."""
    scored = scores.windows > 0
    mase = scores.headline("mase")[scored]
    return {
        "mean_mase": float(np.mean(mase)),
        "median_mase": float(np.median(mase)),
        "mean_smape": float(np.mean(scores.headline("smape")[scored])),
        "mean_mae": float(np.mean(scores.headline("mae")[scored])),
        "mean_rmse": float(np.mean(scores.headline("rmse")[scored])),
        "series": int(scored.sum()),
    }


def win_share(model: SeriesScores, baseline: SeriesScores) -> float:
    """The share of series (scored by both) on which the model's MASE is below the baseline's."""
    a, b = model.headline("mase"), baseline.headline("mase")
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.mean(a[both] < b[both])) if both.any() else float("nan")


def summary(
    scored: dict[str, SeriesScores], networks: list[str], baselines: list[str]
) -> dict[str, object]:
    """Every model's aggregates, the best simple baseline (lowest mean MASE) and each network's
    share of series on which it beats that baseline."""
    figures = {name: aggregates(s) for name, s in scored.items()}
    best = min(baselines, key=lambda name: figures[name]["mean_mase"])
    return {
        "models": figures,
        "best_baseline": best,
        "beats_best_baseline_share": {n: win_share(scored[n], scored[best]) for n in networks},
    }


def table(scored: dict[str, SeriesScores], ids: np.ndarray, scale: SeriesScale) -> pd.DataFrame:
    """The per-series table: one row per model and series, metrics averaged over targets."""
    frames = []
    for name, s in scored.items():
        frame = pd.DataFrame({"model": name, "series": ids, "windows": s.windows})
        for metric in HEADLINE:
            frame[metric] = s.headline(metric)
        frame["mase_scale"] = scale.scale.mean(axis=1)
        frame["mase_season"] = scale.season
        frame["scale_floored"] = scale.floored.any(axis=1)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def save_table(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Write the table as stem.parquet and stem.csv; the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".parquet"), stem.with_suffix(".csv")]
    frame.to_parquet(paths[0], index=False)
    frame.to_csv(paths[1], index=False)
    return paths


def _group_sum(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Sums of the rows of values (n, k) per group, (n_groups, k): one bincount per column."""
    columns = [
        np.bincount(groups, weights=values[:, k], minlength=n_groups)
        for k in range(values.shape[1])
    ]
    return np.stack(columns, axis=1) if columns else np.zeros((n_groups, 0))
