"""Conformal bands per series of a panel: errors in each series' own scale, pooled over series.

Calibration errors |y - f| are divided by their series' scale (MASE's, `panel_scores`), so series
of any level share one score distribution per horizon step and a short series borrows strength
from the panel. Step h's half-width at level L is the finite-sample corrected conformal quantile
of the pooled scaled errors (`models.metrics.quantiles`: the ceil((n + 1) L / 100)-th smallest
of n), times the series' scale: band = forecast +/- q_h * scale_s.
"""

from __future__ import annotations

import numpy as np

from seqcast.evaluation.intervals import level_name
from seqcast.models.metrics import quantiles

COVERAGE_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def scaled_errors(
    actual: np.ndarray, forecast: np.ndarray, window_series: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """|y - f| / scale of the window's series, (n_windows, horizon, n_targets)."""
    return np.abs(actual - forecast) / scale[window_series][:, None, :]


def step_quantiles(scores: np.ndarray, levels: list[float]) -> np.ndarray:
    """Pooled corrected quantiles per step (levels, horizon, n_targets); NaN windows left out."""
    finite = np.isfinite(scores).all(axis=(1, 2))
    return quantiles(scores[finite], levels)


def half_widths(q: np.ndarray, window_series: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """q_h * scale_s for every window, (n_windows, horizon, n_targets, levels)."""
    return np.moveaxis(q, 0, -1)[None] * scale[window_series][:, None, :, None]


def coverage(
    actual: np.ndarray,
    forecast: np.ndarray,
    widths: np.ndarray,
    window_series: np.ndarray,
    n_series: int,
    levels: list[float],
) -> dict[str, object]:
    """Coverage per level: pooled over every point, and its distribution over series."""
    inside = np.abs(actual - forecast)[..., None] <= widths  # (windows, horizon, targets, levels)
    points = np.bincount(window_series, minlength=n_series) * np.prod(actual.shape[1:])
    scored = points > 0
    out: dict[str, object] = {"series": int(scored.sum())}
    for i, level in enumerate(levels):
        name = level_name(level)
        hits = inside[..., i].sum(axis=(1, 2))
        per_series = np.bincount(window_series, weights=hits, minlength=n_series)[scored]
        share = per_series / points[scored]
        out[f"coverage_{name}"] = float(inside[..., i].mean())
        out[f"coverage_{name}_series"] = {
            f"q{int(100 * p)}": float(np.quantile(share, p)) for p in COVERAGE_QUANTILES
        }
        out[f"width_{name}"] = float(2 * widths[..., i].mean())
    return out
