"""Reading the raw series and turning it into a regular, gap-checked frame."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from seqcast.core.config import DataConfig
from seqcast.core.errors import DataError


def read_raw(path: str | Path) -> pd.DataFrame:
    """Read the raw CSV as text-faithful columns, failing with the file name."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: raw data file not found")
    try:
        # round_trip: pandas 2's default float parser can be off by an ulp, so a CSV written
        # back (ingest's extend) would differ from what was read.
        frame = pd.read_csv(path, skipinitialspace=True, float_precision="round_trip")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV: {err}") from None
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    return frame


def file_hash(path: str | Path) -> str:
    """MD5 of a file, the same digest DVC records."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def regularise(
    frame: pd.DataFrame, cfg: DataConfig, max_gap_steps: int, source: str
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Index by time at the configured frequency; fill gaps up to max_gap_steps by interpolation.

    Returns the regular frame and what was filled: rows (missing or with an empty cell),
    values (cells) and the fraction of rows, refused above data.max_filled_fraction.
    """
    columns = cfg.value_columns
    times = pd.to_datetime(frame[cfg.timestamp])
    values = frame[columns].astype("float64").set_axis(pd.DatetimeIndex(times, name=cfg.timestamp))
    if cfg.regular:
        full = pd.date_range(
            values.index[0], values.index[-1], freq=cfg.frequency, name=cfg.timestamp
        )
        if not values.index.isin(full).all():
            off = values.index[~values.index.isin(full)][0]
            raise DataError(f"{source}: {cfg.timestamp} {off} is off the {cfg.frequency} grid")
        values = values.reindex(full)
    full = values.index
    empty = values.isna()
    missing = empty.any(axis=1).to_numpy()
    long = [(start, length) for start, length in _runs(missing) if length > max_gap_steps]
    if long:
        shown = ", ".join(f"{length} steps from {full[start]}" for start, length in long[:3])
        raise DataError(
            f"{source}: {len(long)} gap(s) longer than split.max_gap_steps {max_gap_steps} "
            f"(missing rows or empty cells): {shown}{', ...' if len(long) > 3 else ''}; "
            "fill or cut the data there, or raise split.max_gap_steps"
        )
    filled = {
        "rows": int(missing.sum()),
        "values": int(empty.to_numpy().sum()),
        "fraction": float(missing.mean()),
    }
    if filled["fraction"] > cfg.max_filled_fraction:
        raise DataError(
            f"{source}: {filled['rows']} of {len(full)} steps ({cfg.frequency}) "
            f"({filled['fraction']:.1%}) are missing or have an empty cell and would be "
            f"interpolated; data.max_filled_fraction allows {cfg.max_filled_fraction:.1%} "
            f"(is data.frequency {cfg.frequency} right?)"
        )
    if missing.any():
        values = values.interpolate(method="linear", limit_area="inside")
    if values.isna().any().any():
        raise DataError(f"{source}: missing values at the start or end cannot be interpolated")
    return values, filled


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e - s)) for s, e in zip(edges[::2], edges[1::2], strict=True)]
