"""Chronological split and a scaler fit on the training split only."""

from __future__ import annotations

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from seqcast.config import SplitConfig

SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}
SPLITS = ("train", "val", "test")


def split_sizes(n_rows: int, cfg: SplitConfig) -> dict[str, int]:
    """Rows in each chronological split; test takes what is left."""
    # Round away float noise first: 90 * 0.7 is 62.99999999999999, which must count as 63.
    n_train = int(round(n_rows * cfg.train, 9))
    n_val = int(round(n_rows * cfg.val, 9))
    sizes = {"train": n_train, "val": n_val, "test": n_rows - n_train - n_val}
    for name, size in sizes.items():
        if size < 1:
            raise ValueError(f"split.{name}: leaves no rows of {n_rows} for the {name} split")
    return sizes


def split_bounds(sizes: dict[str, int]) -> dict[str, tuple[int, int]]:
    """[start, stop) row range of each split."""
    bounds, start = {}, 0
    for name in SPLITS:
        bounds[name] = (start, start + sizes[name])
        start += sizes[name]
    return bounds


def fit_scaler(train_values: np.ndarray, kind: str) -> TransformerMixin:
    """A scikit-learn scaler fit on training rows only."""
    return SCALERS[kind]().fit(train_values)


def affine(scaler: TransformerMixin, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) with scaled = (x - offset) / scale, read off any per-column affine scaler."""
    if isinstance(scaler, StandardScaler):
        offset, scale = scaler.mean_, scaler.scale_
    elif isinstance(scaler, RobustScaler):
        offset, scale = scaler.center_, scaler.scale_
    else:  # MinMaxScaler: x * scale_ + min_
        scale = 1.0 / scaler.scale_
        offset = -scaler.min_ * scale
    return np.asarray(offset, dtype=np.float64).copy(), np.asarray(scale, dtype=np.float64).copy()


def to_scaled(values: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Series units to scaled units."""
    return (values - offset) / scale


def to_units(scaled: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Scaled units back to the series' units."""
    return scaled * scale + offset
