"""Forecast errors as pure functions of arrays shaped (windows, horizon, targets)."""

from __future__ import annotations

import math

import numpy as np

from seqcast.core.errors import ConfigError


def mae(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Mean absolute error per target."""
    return np.mean(np.abs(actual - forecast), axis=(0, 1))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Root mean squared error per target."""
    return np.sqrt(np.mean((actual - forecast) ** 2, axis=(0, 1)))


def smape_terms(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Each point's 200 |y - f| / (|y| + |f|), same shape as actual; 0 where both are 0."""
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(
        2.0 * np.abs(actual - forecast),
        denominator,
        out=np.zeros_like(denominator, dtype=float),
        where=denominator != 0,
    )
    return 100.0 * ratio


def smape(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Symmetric MAPE in percent (0-200) per target; a point where both are 0 counts as 0."""
    return np.mean(smape_terms(actual, forecast), axis=(0, 1))


def seasonal_naive_scale(train: np.ndarray, season: int) -> np.ndarray:
    """In-sample MAE of the seasonal-naive forecast on training rows (n, targets): MASE's scale."""
    if season >= len(train):
        raise ConfigError(
            f"evaluation.mase_season: {season} is not shorter than the training split "
            f"({len(train)} rows)"
        )
    scale = np.mean(np.abs(train[season:] - train[:-season]), axis=0)
    if not np.all(scale > 0):
        raise ConfigError(
            f"evaluation.mase_season: the training split repeats itself exactly every {season} "
            "steps, so the seasonal-naive error that scales MASE is 0; choose another season"
        )
    return scale


def mase(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Mean absolute scaled error per target."""
    return mae(actual, forecast) / scale


def mae_per_step(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """MAE at each horizon step, shaped (horizon, targets)."""
    return np.mean(np.abs(actual - forecast), axis=0)


def score(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric per target, plus MAE per horizon step."""
    return {
        "mae": mae(actual, forecast),
        "rmse": rmse(actual, forecast),
        "mase": mase(actual, forecast, scale),
        "smape": smape(actual, forecast),
        "mae_per_step": mae_per_step(actual, forecast),
    }


def conformal_rank(n: int, level: float) -> int | None:
    """The 1-based rank ceil((n + 1) level / 100) among n scores; None when it exceeds n."""
    rank = math.ceil((n + 1) * level / 100.0 - 1e-9)
    return rank if rank <= n else None


def quantiles(scores: np.ndarray, levels: list[float]) -> np.ndarray:
    """Corrected conformal quantiles along axis 0 of (n, ...) scores; inf where too few."""
    n = scores.shape[0]
    out = np.full((len(levels), *scores.shape[1:]), np.inf)
    ranks = [conformal_rank(n, level) for level in levels]
    kth = sorted({r - 1 for r in ranks if r is not None})
    if not kth:
        return out
    ordered = np.partition(scores, kth, axis=0)
    for i, rank in enumerate(ranks):
        if rank is not None:
            out[i] = ordered[rank - 1]
    return out


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int) -> dict[str, float]:
    """Diebold-Mariano test of equal loss, HAC variance to lag horizon-1, HLN small-sample fix.

    Negative statistic: a's losses are lower. Overlapping multi-step windows are autocorrelated
    up to horizon-1 lags, hence the HAC variance. p_value is two-sided; p_a_better is the
    one-sided p-value of "a's losses are lower", from the t distribution (HLN).
    """
    from scipy import stats

    d = np.asarray(loss_a, dtype=np.float64) - np.asarray(loss_b, dtype=np.float64)
    n = len(d)
    nan = {"statistic": float("nan"), "p_value": float("nan"), "p_a_better": float("nan")}
    if n < 3:
        return nan | {"windows": n}
    lag = min(horizon - 1, n - 2)
    centred = d - d.mean()
    gamma = [float(centred @ centred) / n]
    gamma += [float(centred[k:] @ centred[:-k]) / n for k in range(1, lag + 1)]
    variance = (gamma[0] + 2.0 * sum(gamma[1:])) / n
    if variance <= 0:  # the uniform-weight HAC can go negative: Bartlett weights cannot
        weights = [1.0 - k / (lag + 1) for k in range(1, lag + 1)]
        variance = (
            gamma[0] + 2.0 * sum(w * g for w, g in zip(weights, gamma[1:], strict=True))
        ) / n
    if variance <= 0:
        # Identical losses: no evidence either way (a constant non-zero gap is certain).
        if d.mean() == 0:
            return nan | {"windows": n, "mean_difference": 0.0, "p_a_better": 1.0}
        sure = 0.0 if d.mean() < 0 else 1.0
        return nan | {"windows": n, "mean_difference": float(d.mean()), "p_a_better": sure}
    h = lag + 1
    correction = math.sqrt(max((n + 1 - 2 * h + h * (h - 1) / n) / n, 1e-12))
    statistic = float(d.mean() / math.sqrt(variance) * correction)
    return {
        "statistic": statistic,
        "p_value": float(2.0 * stats.t.sf(abs(statistic), df=n - 1)),
        "p_a_better": float(stats.t.cdf(statistic, df=n - 1)),
        "windows": n,
        "mean_difference": float(d.mean()),
    }


# A local scale never falls below this share of the mean one-step change of every row known:
# a flat stretch (intermittent zeros) would otherwise give a zero-width band after it.
LOCAL_SCALE_FLOOR = 0.1


def local_scale(
    values: np.ndarray, origins: np.ndarray, window: int, floor: np.ndarray | None = None
) -> np.ndarray:
    """Mean absolute one-step change of each column over the `window` rows up to each origin.

    values is (rows, columns) in units; the result is (origins, columns) and reads only rows at
    or before each origin, so an error scaled by it stays known at its origin. floor: a lower
    bound per column (a served model carries its fit rows'); None: LOCAL_SCALE_FLOOR times the
    mean change of every row up to the origin. A column constant so far gets 1 (units).
    """
    values = np.asarray(values, dtype=np.float64)
    origins = np.asarray(origins, dtype=np.int64)
    changes = np.abs(np.diff(values, axis=0))  # changes[t - 1]: into row t
    width = max(window - 1, 1)  # the changes within `window` rows
    local = np.zeros((len(origins), values.shape[1]))
    # Each mean sums its own window's changes (not a difference of running sums), so a row
    # outside the window cannot move it by a rounding error.
    full = origins >= width
    if full.any() and len(changes) >= width:
        view = np.lib.stride_tricks.sliding_window_view(changes, width, axis=0)
        local[full] = view[origins[full] - width].mean(axis=-1)
    for i in np.flatnonzero(~full & (origins > 0)):
        local[i] = changes[: origins[i]].mean(axis=0)
    if floor is None:
        # total[k]: the sum of the changes into rows 1..k (total[0] = 0).
        total = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(changes, axis=0)])
        floor = LOCAL_SCALE_FLOOR * total[origins] / np.maximum(origins, 1)[:, None]
    found = np.maximum(local, floor)
    return np.where(found > 0, found, 1.0)


def scale_floor(values: np.ndarray) -> np.ndarray:
    """The floor a served model carries: LOCAL_SCALE_FLOOR times its rows' mean one-step change."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return np.zeros(values.shape[1])
    return LOCAL_SCALE_FLOOR * np.mean(np.abs(np.diff(values, axis=0)), axis=0)
