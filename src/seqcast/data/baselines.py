"""Simple forecasts every network must beat: naive, seasonal-naive, and the linear rival."""

from __future__ import annotations

import numpy as np

from seqcast.data.offsets import gather, horizon_offsets


def naive(series: np.ndarray, origins: np.ndarray, horizon: int, shift: int = 1) -> np.ndarray:
    """The last observed value repeated over the horizon: (windows, horizon, columns)."""
    last = series[origins]
    return np.repeat(last[:, None, :], horizon, axis=1)


def seasonal_offsets(season: int, horizon: int, shift: int = 1) -> np.ndarray:
    """Offset (from the origin) of the value one season before each forecast step, repeated."""
    ahead = horizon_offsets(horizon, shift)
    # Repeat the last full season: step h looks back ceil(h / season) seasons.
    return ahead - season * np.ceil(ahead / season).astype(np.int64)


def seasonal_naive(
    series: np.ndarray, origins: np.ndarray, season: int, horizon: int, shift: int = 1
) -> np.ndarray:
    """The value one season (or whole seasons) before each forecast step."""
    return gather(series, origins, seasonal_offsets(season, horizon, shift))


def reference(
    series: np.ndarray,
    origins: np.ndarray,
    kind: str,
    season: int | None,
    horizon: int,
    shift: int = 1,
) -> np.ndarray:
    """The forecast a network learns the residual over; zero for `none`."""
    if kind == "naive":
        return naive(series, origins, horizon, shift)
    if kind == "seasonal_naive":
        return seasonal_naive(series, origins, int(season), horizon, shift)
    if kind == "none":
        return np.zeros((len(origins), horizon, series.shape[1]), dtype=series.dtype)
    raise ValueError(f"features.reference: unknown reference {kind!r}")


def history_needed(kind: str, season: int | None) -> int:
    """Rows of history a reference reads before the origin, origin included."""
    return int(season) if kind == "seasonal_naive" else 1


def fit_linear(inputs: np.ndarray, residuals: np.ndarray, alpha: float):
    """Ridge regression from flattened inputs to flattened residuals."""
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha).fit(inputs, residuals)


def applicable_seasons(
    seasons: list[int], n_train: int, input_width: int, horizon: int, shift: int = 1
) -> tuple[list[int], dict[str, str]]:
    """Seasons that leave training windows, and the reason each other season is not applicable."""
    usable, skipped = [], {}
    for season in sorted(set(seasons)):
        needed = max(input_width, season) + shift + horizon - 1
        if needed > n_train:
            skipped[f"seasonal_naive_{season}"] = (
                f"season {season} needs {needed} training rows of history and horizon, "
                f"the training split has {n_train}"
            )
        else:
            usable.append(season)
    return usable, skipped


def affordable_references(
    seasons: list[int], n_train: int, input_width: int, horizon: int, shift: int = 1
) -> tuple[list[int], dict[str, str]]:
    """Seasons usable as the networks' reference: each must leave half the training windows."""
    without = n_train - (input_width + shift + horizon - 1) + 1
    fits, costly = [], {}
    for season in seasons:
        left = n_train - (input_width + season + shift + horizon - 1) + 1
        if left * 2 >= without:
            fits.append(season)
        else:
            costly[f"seasonal_naive_{season}"] = (
                f"its {season} rows of seasonal history would leave {max(left, 0)} of the "
                f"{without} training windows"
            )
    return fits, costly


def choose_reference(
    targets: np.ndarray, origins: np.ndarray, seasons: list[int], horizon: int, shift: int = 1
) -> tuple[str, int | None, dict[str, float]]:
    """The simple forecast with the lowest MAE on the given (validation) origins."""
    scores = {
        "naive": _mae(targets, naive(targets, origins, horizon, shift), origins, horizon, shift)
    }
    for season in seasons:
        forecast = seasonal_naive(targets, origins, season, horizon, shift)
        scores[f"seasonal_naive_{season}"] = _mae(targets, forecast, origins, horizon, shift)
    best = min(scores, key=scores.get)
    season = None if best == "naive" else int(best.rsplit("_", 1)[1])
    return ("naive" if season is None else "seasonal_naive"), season, scores


def _mae(
    targets: np.ndarray, forecast: np.ndarray, origins: np.ndarray, horizon: int, shift: int
) -> float:
    actual = gather(targets, origins, horizon_offsets(horizon, shift))
    return float(np.mean(np.abs(actual - forecast)))
