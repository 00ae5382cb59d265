"""Conformal intervals from out-of-sample errors, per horizon step, calibrated as the origin moves.

A band at level L around a point forecast is +/- the finite-sample corrected conformal quantile
of the absolute out-of-sample errors of that step: the ceil((n + 1) L / 100)-th smallest of n
(uncorrected, 9 scores give 0.83 coverage at a nominal 0.9: sktime issue 10758). Scoring a window
uses only errors whose actual values were known at its origin, the most recent `window` of them,
so the calibration follows the series instead of freezing at the end of training. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from seqcast.models.metrics import conformal_rank, quantiles

# calibration.npz holds each model's served errors under its name and the local scales of their
# origins under its name plus this suffix (locally scaled bands: intervals.scale local).
SCALE_SUFFIX = "__local_scale"


def level_name(level: float) -> str:
    """80.0 -> '80', 97.5 -> '97.5': the suffix of band columns and metric names."""
    return f"{level:g}"


def min_scores(level: float) -> int:
    """The fewest scores that give a finite band at this level."""
    n = 1
    while conformal_rank(n, level) is None:
        n += 1
    return n


def rolling_half_widths(
    error_origins: np.ndarray,
    errors: np.ndarray,
    origins: np.ndarray,
    levels: list[float],
    window: int,
    shift: int = 1,
) -> np.ndarray:
    """Half-widths (origins, horizon, targets, levels) from the errors known at each origin.

    errors is (n, horizon, targets) of absolute out-of-sample errors at sorted error_origins.
    Step h's error of the window at origin o' is known once row o' + shift + h is observed, so at
    origin o the usable ones are those with o' <= o - shift - h; the latest `window` of them count.
    """
    n_origins, (n, horizon, n_targets) = len(origins), errors.shape
    out = np.full((n_origins, horizon, n_targets, len(levels)), np.inf)
    for h in range(horizon):
        known = np.searchsorted(error_origins, origins - shift - h, side="right")
        column = errors[:, h, :]
        full = known >= window
        if full.any() and n >= window:
            # Every full window at once: a zero-copy view, gathered for these origins only.
            view = np.lib.stride_tricks.sliding_window_view(column, window, axis=0)
            batch = view[known[full] - window]  # (m, targets, window)
            q = quantiles(np.moveaxis(batch, -1, 0), levels)  # (levels, m, targets)
            out[full, h] = np.moveaxis(q, 0, -1)
        for i in np.flatnonzero(~full):
            if known[i] > 0:
                q = quantiles(column[: known[i]], levels)  # (levels, targets)
                out[i, h] = q.T
    return out


# Adapted levels stay where a band is finite and not degenerate.
ADAPTED_RANGE = (1.0, 99.9)


def adaptive_levels(misses: np.ndarray, levels: list[float], rate: float) -> list[float]:
    """Quantile levels moved by the served bands' misses, oldest first (Gibbs and Candes 2021).

    misses is (forecasts, levels): the share of each forecast's steps outside its band. The miss
    rate alpha_t + 1 = alpha_t + rate (alpha - miss_t) widens bands that missed too often and
    narrows those that missed too rarely, whatever shift caused it.
    """
    out = []
    for i, level in enumerate(levels):
        nominal = 1.0 - level / 100.0
        alpha = nominal + rate * float(np.sum(nominal - np.asarray(misses)[:, i]))
        out.append(float(np.clip(100.0 * (1.0 - alpha), *ADAPTED_RANGE)))
    return out


def latest_scores(errors: np.ndarray, window: int) -> np.ndarray:
    """The latest `window` rows of errors (n, ...) or their scales: what serving calibrates on."""
    return np.asarray(errors[-window:], dtype=np.float64)


def bands(point: np.ndarray, half_widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper), each (..., levels): symmetric around the point, so never crossing it."""
    return point[..., None] - half_widths, point[..., None] + half_widths


def interval_scores(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, levels: list[float]
) -> np.ndarray:
    """Winkler's interval score per value and level: width plus 2/alpha times any miss."""
    alpha = 1.0 - np.asarray(levels) / 100.0
    y = actual[..., None]
    below = np.clip(lower - y, 0.0, None)
    above = np.clip(y - upper, 0.0, None)
    return (upper - lower) + (2.0 / alpha) * (below + above)


def score_intervals(
    actual: np.ndarray,
    point: np.ndarray,
    half_widths: np.ndarray,
    levels: list[float],
    scale: np.ndarray,
) -> dict:
    """Coverage, mean width, interval score and MSIS per level (and coverage per step).

    Windows whose band is not finite (too few errors known at their origin) are left out and
    counted. scale is MASE's per target, so MSIS reads like MASE.
    """
    finite = np.isfinite(half_widths).all(axis=(1, 2, 3))
    out: dict = {"windows": int(finite.sum()), "uncalibrated_windows": int((~finite).sum())}
    if not finite.any():
        return out
    y, p, w = actual[finite], point[finite], half_widths[finite]
    lower, upper = bands(p, w)
    inside = (lower <= y[..., None]) & (y[..., None] <= upper)
    score = interval_scores(y, lower, upper, levels)
    for i, level in enumerate(levels):
        name = level_name(level)
        out[f"coverage_{name}"] = float(inside[..., i].mean())
        out[f"width_{name}"] = float((upper - lower)[..., i].mean())
        out[f"interval_score_{name}"] = float(score[..., i].mean())
        out[f"msis_{name}"] = float(np.mean(score[..., i].mean(axis=(0, 1)) / scale))
        out[f"coverage_{name}_step"] = inside[..., i].mean(axis=(0, 2)).tolist()
    return out
