"""Chronological split and a scaler fit on the training split only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqcast.core.config import Config, SplitConfig
from seqcast.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from sklearn.base import TransformerMixin

# scikit-learn (with SciPy, about a second) is imported only to fit or read a scaler: the window
# stage and everything importing the forecaster use the split and unit helpers alone.
SCALERS = {"standard": "StandardScaler", "minmax": "MinMaxScaler", "robust": "RobustScaler"}
SPLITS = ("train", "val", "test")


def split_sizes(n_rows: int, cfg: SplitConfig) -> dict[str, int]:
    """Rows in each chronological split: fractions of n_rows or ints as rows; one takes the rest."""
    sizes = {
        name: _rows(size, n_rows)
        for name in SPLITS
        if name != cfg.left and (size := getattr(cfg, name)) is not None
    }
    sizes[cfg.left] = n_rows - sum(sizes.values())
    sizes = {name: sizes[name] for name in SPLITS}
    for name, size in sizes.items():
        if size < 1:
            key = f"split.{name}" if name != cfg.left else _given_key(cfg)
            raise ConfigError(f"{key}: leaves no rows of {n_rows} for the {name} split")
    return sizes


def _rows(size: float | int, n_rows: int) -> int:
    """A split size in rows: an int as it is, a fraction of n_rows."""
    if isinstance(size, int):
        return size
    # Round away float noise first: 90 * 0.7 is 62.99999999999999, which must count as 63.
    return int(round(n_rows * size, 9))


def _given_key(cfg: SplitConfig) -> str:
    """The key to shrink when the split that takes the rest is left empty (today: split.train)."""
    return "split.train" if cfg.left != "train" else "split.test"


def split_bounds(sizes: dict[str, int]) -> dict[str, tuple[int, int]]:
    """[start, stop) row range of each split."""
    bounds, start = {}, 0
    for name in SPLITS:
        bounds[name] = (start, start + sizes[name])
        start += sizes[name]
    return bounds


def _require_variation(train: np.ndarray, columns: list[str], source: str) -> None:
    """A column that never changes over the training rows cannot be scaled or learned from."""
    for i, column in enumerate(columns):
        if np.ptp(train[:, i]) == 0.0:
            raise DataError(
                f"{source}: column {column} is constant ({train[0, i]:g}) over the "
                f"{len(train)} training rows: there is nothing to learn or scale; drop it from "
                "data.features, or forecast another column"
            )


def fit_scaler(train_values: np.ndarray, kind: str) -> TransformerMixin:
    """A scikit-learn scaler fit on training rows only."""
    from sklearn import preprocessing

    return getattr(preprocessing, SCALERS[kind])().fit(train_values)


def affine(scaler: TransformerMixin, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) with scaled = (x - offset) / scale, read off any per-column affine scaler."""
    from sklearn.preprocessing import RobustScaler, StandardScaler

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


def normalise(cfg: Config, root: Path) -> dict:
    """The normalise stage: regular series, chronological split, scaler fit on train only."""
    import pickle

    import pandas as pd

    from seqcast.core import paths
    from seqcast.core.io import atomic_dir, read_json, write_json
    from seqcast.data import series

    source = cfg.data.path
    raw_md5 = series.file_hash(root / source)
    passed = read_json(root / paths.VALIDATION_SUMMARY)
    if passed.get("raw_md5") != raw_md5:
        raise series.DataError(
            f"{source}: changed since it passed validation ({paths.VALIDATION_SUMMARY} is for "
            f"md5 {passed.get('raw_md5')}, the file is {raw_md5}); run the validate stage first"
        )
    frame, filled = series.regularise(
        series.read_raw(root / source), cfg.data, cfg.split.max_gap_steps, source
    )
    try:
        sizes = split_sizes(len(frame), cfg.split)
    except ConfigError as err:
        raise DataError(f"{source}: {len(frame)} rows are too few to split: {err}") from None
    bounds = split_bounds(sizes)
    if cfg.window.shift + cfg.window.horizon > sizes["test"]:
        raise ConfigError(
            f"window.horizon: shift + horizon = {cfg.window.shift + cfg.window.horizon} steps "
            f"do not fit in the test split of {sizes['test']} rows"
        )
    values = frame.to_numpy(dtype="float64")
    _require_variation(values[: sizes["train"]], list(frame.columns), source)
    scaler = fit_scaler(values[: sizes["train"]], cfg.scaling.scaler)
    offset, scale = affine(scaler, values.shape[1])
    scaled = pd.DataFrame(
        to_scaled(values, offset, scale), index=frame.index, columns=frame.columns
    )
    with atomic_dir(root / paths.PREPARED) as out:
        for name, (start, stop) in bounds.items():
            scaled.iloc[start:stop].to_parquet(out / f"{name}.parquet")
        (out / "scaler.pkl").write_bytes(pickle.dumps(scaler))
        summary = {
            "rows": sizes,
            "filled": filled,
            "first": {n: str(frame.index[a]) for n, (a, _) in bounds.items()},
            "last": {n: str(frame.index[b - 1]) for n, (_, b) in bounds.items()},
            "scaler": cfg.scaling.scaler,
            "columns": list(frame.columns),
            "offset": offset.tolist(),
            "scale": scale.tolist(),
            "raw_md5": raw_md5,
        }
        write_json(out / "prepared.json", summary)
    return summary
