"""Small shared builders for the unit tests of the core library."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd

from seqcast.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[1]

BASE_PARAMS: dict = {
    "data": {
        "path": "data/raw/test.csv",
        "timestamp": "timestamp",
        "targets": ["demand_mw"],
        "features": [],
        "frequency": "30min",
        "bounds": {"demand_mw": [0.0, 100000.0]},
    },
    "split": {"train": 0.5, "val": 0.25, "max_gap_steps": 2},
    "window": {"input_width": 8, "horizon": 2},
}


def raw_params(**sections: dict) -> dict:
    """A minimal valid params mapping; each keyword updates the keys of one section."""
    raw = copy.deepcopy(BASE_PARAMS)
    for name, keys in sections.items():
        raw.setdefault(name, {}).update(keys)
    return raw


def make_config(**sections: dict) -> Config:
    """A validated Config from raw_params(**sections)."""
    return parse_config(raw_params(**sections))


def hourly(rows: int, start: str = "2024-01-01 00:00") -> pd.DatetimeIndex:
    """`rows` hourly timestamps from `start` (2024-01-01 is a Monday)."""
    return pd.date_range(start, periods=rows, freq="h")


def row_ids(rows: int, columns: int = 1) -> np.ndarray:
    """A (rows, columns) float series whose value names its row: column c holds 100 * c + row."""
    return np.arange(rows, dtype=np.float64)[:, None] + 100.0 * np.arange(columns)[None, :]


def mark_validated(root: Path, cfg: Config) -> None:
    """What the validate stage leaves for a raw CSV it passed, without running GX again."""
    from seqcast import paths
    from seqcast.data import file_hash
    from seqcast.io import write_json

    summary = {"raw_md5": file_hash(root / cfg.data.path), "success": True}
    write_json(root / paths.VALIDATION_SUMMARY, summary)
