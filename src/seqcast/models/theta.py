"""AutoTheta's forecast from every origin, the numbers statsforecast's `forward` gives.

`forward(y[: origin + 1])` keeps the fit's parameters (model type, alpha, theta, initial level)
and redoes, on the history up to the origin, what AutoTheta does before them: the seasonality
test (the ACF at the season's lag), the classical decomposition (multiplicative, additive where
the history is not positive or an index falls below 0.01) and the states. The seasonal indices
are part of the state here, as ETS's seasonal states are: averages of the history up to the
origin, filtered forward like the level, never a peek at a later row.

statsforecast redoes all of it on the whole prefix (an O(n^2) ACF and a decomposition per
origin); here the ACF sums and the per-phase means are cumulative sums read at each origin, and
the states, linear in the adjusted series, are closed forms (an IIR filter and cumulative sums),
so one origin costs O(n) numpy. A served request runs the same code at its one origin, so it
equals the evaluation's number.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter
from scipy.stats import norm

NONE, ADDITIVE, MULTIPLICATIVE = 0, 1, 2
# auto_theta's seasonality test: |r_m| / its standard error above this one-sided quantile.
_CRITICAL = float(norm.ppf(0.95))


def forecast(fit: dict, y: np.ndarray, origins: np.ndarray, steps: int) -> np.ndarray:
    """Means (origins, steps) from each origin of y (row 0: the first fit row), as forward's."""
    out = np.empty((len(origins), steps))
    if not len(origins):
        return out
    origins = np.asarray(origins, dtype=np.int64)
    y = np.asarray(y[: int(origins.max()) + 1], dtype=np.float64)
    m = int(fit["m"])
    kinds, indices = decompositions(y, origins, m)
    par = fit["par"]
    alpha, theta, init = float(par["alpha"]), float(par["theta"]), float(par["initial_smoothed"])
    dynamic = fit["modeltype"] in ("DSTM", "DOTM")
    plain = kinds == NONE
    if plain.any():
        # Without a decomposition every origin reads the same filter over y: one pass.
        states = end_states(y, alpha, init, dynamic)
        rows = origins[plain]
        out[plain] = _paths([s[rows] for s in states], rows + 1, steps, alpha, theta, dynamic)
    phase = np.arange(len(y)) % m if m > 1 else None
    for i in np.flatnonzero(~plain):
        n = int(origins[i]) + 1
        seasonal = indices[i][phase[:n]]
        multiplicative = kinds[i] == MULTIPLICATIVE
        adjusted = y[:n] / seasonal if multiplicative else y[:n] - seasonal
        states = [s[-1:] for s in end_states(adjusted, alpha, init, dynamic)]
        path = _paths(states, np.array([n]), steps, alpha, theta, dynamic)[0]
        ahead = indices[i][(n + np.arange(steps)) % m]
        out[i] = path * ahead if multiplicative else path + ahead
    return out


def decompositions(y: np.ndarray, origins: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per origin: NONE, ADDITIVE or MULTIPLICATIVE, and the seasonal indices (origins, m)."""
    kinds = np.full(len(origins), NONE)
    indices = np.ones((len(origins), max(m, 1)))
    n = origins + 1
    candidates = (n >= 2 * m) if m >= 4 else np.zeros(len(origins), dtype=bool)
    if not candidates.any():
        return kinds, indices
    rows = np.flatnonzero(candidates)
    r = _acf(y, n[rows], m)
    stat = np.sqrt((1 + 2 * np.sum(r[:, :-1] ** 2, axis=1)) / n[rows])
    seasonal = np.abs(r[:, -1]) / stat > _CRITICAL
    rows = rows[seasonal]
    if not len(rows):
        return kinds, indices
    positive = np.minimum.accumulate(y)[n[rows] - 1] > 0
    trend = _trend(y, m)
    additive = _phase_means(y - trend, n[rows], m)
    additive -= additive.mean(axis=1, keepdims=True)
    kinds[rows], indices[rows] = ADDITIVE, additive
    if positive.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = y / trend
        product = _phase_means(ratios, n[rows], m)
        product /= product.mean(axis=1, keepdims=True)
        # auto_theta keeps the multiplicative indices unless one falls below 0.01.
        keep = positive & ~np.any(product < 0.01, axis=1)
        kinds[rows[keep]], indices[rows[keep]] = MULTIPLICATIVE, product[keep]
    return kinds, indices


def _acf(y: np.ndarray, n: np.ndarray, m: int) -> np.ndarray:
    """statsmodels' acf(y[:k], nlags=m)[1:] for every k in n, from cumulative sums."""
    if len(n) == 1:
        # One origin (a served request): the sums directly, without every prefix's.
        x = y[: n[0]] - y[: n[0]].mean()
        # Element-wise sums, not BLAS dot: a threaded BLAS on a loaded machine costs ms per lag.
        cov = np.array([np.sum(x[: len(x) - lag] * x[lag:]) for lag in range(m + 1)])
        return cov[None, 1:] / cov[0]
    z = y - y[0]  # centred for the sums' precision; the ACF does not see a shift
    total = np.concatenate([[0.0], np.cumsum(z)])  # total[k]: sum of z[:k]
    mean = total[n] / n
    cov = np.empty((len(n), m + 1))
    for lag in range(m + 1):
        products = np.concatenate([[0.0], np.cumsum(z[: len(z) - lag] * z[lag:])])
        head = total[n - lag]  # z[0 : k - lag]
        tail = total[n] - total[lag]  # z[lag : k]
        cov[:, lag] = products[n - lag] - mean * (head + tail) + (n - lag) * mean**2
    return cov[:, 1:] / cov[:, :1]


def _trend(y: np.ndarray, m: int) -> np.ndarray:
    """seasonal_decompose's centred moving average, defined from row len(filter) // 2."""
    # An even season splits the weight of its end rows (a 2 x m moving average).
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    head = len(weights) // 2
    trend = np.full(len(y), np.nan)
    # The weights are symmetric: a direct convolution is the moving average, row by row.
    trend[head : len(y) - head] = np.convolve(y, weights, mode="valid")
    return trend


def _phase_means(values: np.ndarray, n: np.ndarray, m: int) -> np.ndarray:
    """Per origin, the mean of values at each phase t % m over the rows the prefix defines.

    A prefix of k rows defines the trend up to row k - 1 - tail (the moving average's half
    width, m // 2): the rows after it have no trend in statsforecast's decomposition of the prefix.
    """
    tail = m // 2
    blocks = -(-len(values) // m)
    sums = np.zeros(blocks * m)
    counts = np.zeros(blocks * m)
    known = np.isfinite(values)
    sums[: len(values)][known] = values[known]
    counts[: len(values)][known] = 1.0
    sums = np.vstack([np.zeros(m), np.cumsum(sums.reshape(blocks, m), axis=0)])
    counts = np.vstack([np.zeros(m), np.cumsum(counts.reshape(blocks, m), axis=0)])
    last = n - 1 - tail  # the last row whose trend the prefix knows
    block, within = last // m, last % m
    upto = np.where(np.arange(m)[None, :] <= within[:, None], block[:, None] + 1, block[:, None])
    columns = np.arange(m)[None, :]
    return sums[upto, columns] / counts[upto, columns]


def end_states(x: np.ndarray, alpha: float, init: float, dynamic: bool) -> tuple[np.ndarray, ...]:
    """Theta's level, mean, A_n and B_n after each row of x (theta.cpp's update, closed form)."""
    rows = np.arange(len(x), dtype=np.float64)
    # level_t = alpha y_t + (1 - alpha) level_{t-1}, from the fit's initial smoothed level.
    level, _ = lfilter([alpha], [1.0, alpha - 1.0], x, zi=[(1.0 - alpha) * init])
    mean = np.cumsum(x) / (rows + 1)
    if dynamic:
        # (t+2)(t+1)t B_t = (t+1)t(t-1) B_{t-1} + 6 t (y_t - mean_{t-1}): a cumulative sum.
        previous = np.r_[x[0], mean[:-1]]
        total = np.cumsum(6.0 * rows * (x - previous))
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = total / ((rows + 2) * (rows + 1) * rows)
        slope[0] = 0.0
        intercept = mean - slope * (rows + 2) / 2
        intercept[0] = x[0]
    else:
        # The static models' trend is the least-squares line of the whole series passed.
        intercept, slope = prefix_trend(x)
    return level, mean, intercept, slope


def prefix_trend(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Theta's trend line A_n + B_n t fit on y[:n] for every n (Fiorucci et al. 2016, eq. 7)."""
    n = np.arange(1, len(y) + 1, dtype=np.float64)
    mean = np.cumsum(y) / n
    weighted = np.cumsum(n * y)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = 6.0 / (n**2 - 1.0) * (2.0 / n * weighted - (1.0 + n) * mean)
    slope[0] = 0.0  # one row has no slope
    return mean - (n + 1.0) / 2.0 * slope, slope


def _paths(
    states: list[np.ndarray], start: np.ndarray, steps: int, alpha: float, theta: float,
    dynamic: bool,
) -> np.ndarray:  # fmt: skip
    """theta.cpp's forecast from each state (rows given, the next row's index start)."""
    level, mean, intercept, slope = (np.array(s, dtype=np.float64) for s in states)
    out = np.empty((len(level), steps))
    for j in range(steps):
        i = (start + j).astype(np.float64)
        mu = level + (1 - 1 / theta) * (
            intercept * (1 - alpha) ** i + slope * (1 - (1 - alpha) ** (i + 1)) / alpha
        )
        out[:, j] = mu
        level = alpha * mu + (1 - alpha) * level
        new_mean = (i * mean + mu) / (i + 1)
        if dynamic:
            slope = ((i - 1) * slope + 6 * (mu - mean) / (i + 1)) / (i + 2)
            intercept = new_mean - slope * (i + 2) / 2
        mean = new_mean
    return out
