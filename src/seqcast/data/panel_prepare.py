"""The normalise and window stages for a panel: calendar split, per-series scalers, window starts.

normalise: the validated panel (excluded series dropped, gaps filled), one calendar split, a
scaler per series fit on its training rows, written to data/prepared/ in units (the scaler is
applied where windows are gathered, so the served model can carry it). window: the window
starts of every split and of every calendar backtest fold, as int64 arrays of flat rows
(``seqcast.data.panel_split``), written to data/windows/. Both work on whole arrays, never a
Python loop per series.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from seqcast.core import paths
from seqcast.core.errors import ConfigError, DataError
from seqcast.core.io import atomic_dir, read_json, write_json
from seqcast.data import panel as panels
from seqcast.data.panel_scaling import fit_panel_scaler
from seqcast.data.panel_split import (
    CalendarFold,
    PanelCuts,
    calendar_cuts,
    calendar_folds,
    rows_per_series,
    window_starts,
    window_summary,
)
from seqcast.data.panel_validation import clean_panel
from seqcast.data.scaling import SPLITS

if TYPE_CHECKING:
    from seqcast.core.config import Config, WindowConfig

PANEL_FILE = "panel.parquet"
SCALER_FILE = "scaler.npz"
SPLIT_FILE = paths.PANEL_SPLIT.name
WINDOWS_FILE = paths.PANEL_WINDOWS.name
SUMMARY_FILE = "summary.json"
EXAMPLES = 10  # series named per list in split.json; the counts cover them all


def normalise_panel(cfg: Config, root: Path) -> dict:
    """The normalise stage for a panel: clean, split on the calendar, fit per-series scalers."""
    panel = clean_panel(cfg, root)
    cuts = calendar_cuts(panel, cfg.split, cfg.data.frequency)
    if cfg.window.horizon > cuts.steps["test"]:
        raise ConfigError(
            f"window.horizon: {cfg.window.horizon} steps do not fit in the test split of "
            f"{cuts.steps['test']} calendar steps (from {cuts.test_start})"
        )
    scaler = fit_panel_scaler(panel, cuts.val_start, cfg.scaling.scaler)
    rows = rows_per_series(panel, cuts)
    summary = {
        "cuts": cuts.record(),
        "series": panel.n_series,
        "rows": {name: int(counts.sum()) for name, counts in rows.items()},
        "series_with_rows": {name: int((c > 0).sum()) for name, c in rows.items()},
        # Series that cannot be scaled or trained on (no train rows) or forecast over the whole
        # horizon in the test split: a baseline serves them, so they are named, not refused.
        "short": _short_rows(panel.ids, rows, cfg.window.horizon),
        "scaler": scaler.summary,
        "columns": list(panel.columns),
        "n_targets": panel.n_targets,
        "timestamp": cfg.data.timestamp,
        "raw_md5": read_json(root / paths.VALIDATION_SUMMARY)["raw_md5"],
    }
    with atomic_dir(root / paths.PREPARED) as out:
        panels.save(panel, out / PANEL_FILE, timestamp=cfg.data.timestamp)
        scaler.save(out / SCALER_FILE)
        write_json(out / SPLIT_FILE, summary)
    print(
        f"normalise: {panel.n_series} series, {panel.n_rows} rows; val from "
        f"{pd.Timestamp(cuts.val_start)}, test from {pd.Timestamp(cuts.test_start)}; rows "
        f"{summary['rows']}",
        flush=True,
    )
    return summary


def _short_rows(ids: np.ndarray, rows: dict[str, np.ndarray], horizon: int) -> dict:
    """Series without training rows, and with fewer test rows than the horizon, counted."""
    cases = {
        "no_train_rows": rows["train"] == 0,
        "test_shorter_than_horizon": rows["test"] < horizon,
    }
    out: dict = {}
    for case, hit in cases.items():
        out[case] = int(hit.sum())
        out[f"{case}_series"] = [str(name) for name in ids[hit][:EXAMPLES]]
    return out


def load_prepared(root: Path) -> tuple[panels.Panel, dict]:
    """The normalise stage's panel (in units) and its split.json record."""
    folder = root / paths.PREPARED
    record = read_json(folder / SPLIT_FILE)
    panel = panels.load(
        folder / PANEL_FILE, record["columns"], record["n_targets"], record["timestamp"]
    )
    return panel, record


def window_panel(cfg: Config, root: Path) -> dict:
    """The window stage for a panel: window starts per split and per calendar backtest fold."""
    panel, record = load_prepared(root)
    cuts = calendar_cuts(panel, cfg.split, cfg.data.frequency)
    if cuts.record() != record["cuts"]:
        raise DataError(
            f"{paths.PREPARED / SPLIT_FILE}: its cuts {record['cuts']} differ from the params' "
            f"{cuts.record()}; run the normalise stage again"
        )
    w = cfg.window
    found = {name: window_starts(panel, cuts, w, name) for name in SPLITS}
    if not len(found["train"]):
        raise ConfigError(_no_train_windows(panel, cuts, w))
    folds = calendar_folds(cuts, cfg)
    for fold in folds:
        parts = fold_starts(panel, cuts, fold, w, cuts.steps["val"], cfg.backtest.window)
        for part, starts in parts.items():
            found[f"fold{fold.index}_{part}"] = starts
    _require_fold_windows(found, folds)
    described = window_summary(panel, cuts, w)
    summary = {
        "panel": True,
        "cuts": described["cuts"],
        "series": panel.n_series,
        "windows": {name: int(len(starts)) for name, starts in found.items()},
        "series_with_windows": described["series_with_windows"],
        "too_short_to_train": described["too_short_to_train"],
        "too_short_series": described["too_short_series"],
        "folds": [
            {
                "index": fold.index,
                "start": str(fold.start),
                "cutoff": str(fold.cutoff),
                "end": str(fold.end),
                "refit": fold.refit,
            }
            for fold in folds
        ],
        "window": w.model_dump(),
        "raw_md5": record["raw_md5"],
    }
    with atomic_dir(root / paths.WINDOWS) as out:
        np.savez(out / WINDOWS_FILE, **found)
        write_json(out / SUMMARY_FILE, summary)
    print(
        f"window: {summary['windows']['train']} train, {summary['windows']['val']} val, "
        f"{summary['windows']['test']} test windows over {panel.n_series} series; "
        f"{summary['too_short_to_train']} too short to train on",
        flush=True,
    )
    return summary


def fold_starts(
    panel: panels.Panel,
    cuts: PanelCuts,
    fold: CalendarFold,
    w: WindowConfig,
    val_steps: int,
    kind: str,
) -> dict[str, np.ndarray]:
    """A fold's windows: `fit` and `val` (early stopping) before its cutoff, `block` after it.

    As the panel's own split, in calendar steps: the `val_steps` before the cutoff hold the
    early-stopping windows, the steps before them the fit windows; block windows have every
    target in [cutoff, end); a sliding fold's windows start at or after its start. (A single
    series holds out a share of each fold's history instead: with M1's 18-month horizon that
    share of a fold's 54-108 months is shorter than one horizon, so no fold could stop early.)
    """
    first = int(np.searchsorted(cuts.grid, fold.start))
    cutoff = int(np.searchsorted(cuts.grid, fold.cutoff))
    inner = max(first, cutoff - val_steps)
    steps = {"train": inner, "val": cutoff - inner, "test": len(cuts.grid) - cutoff}
    inside = replace(cuts, val_start=cuts.grid[inner], test_start=fold.cutoff, steps=steps)
    parts = {
        "fit": window_starts(panel, inside, w, "train"),
        "val": window_starts(panel, inside, w, "val"),
        "block": window_starts(panel, inside, w, "test"),
    }
    last_target = w.input_width + w.shift + w.horizon - 2  # rows from a start to its last target
    parts["block"] = parts["block"][panel.times[parts["block"] + last_target] < fold.end]
    if kind == "sliding":  # history only from the fold's start on
        parts = {name: s[panel.times[s] >= fold.start] for name, s in parts.items()}
    return parts


def _require_fold_windows(found: dict[str, np.ndarray], folds: list[CalendarFold]) -> None:
    """The first (shortest) fold needs fit and early-stopping windows; say what it holds."""
    if not folds:
        return
    fit, val = len(found["fold0_fit"]), len(found["fold0_val"])
    if fit and val:
        return
    raise ConfigError(
        f"backtest.origins: the first of {len(folds)} origins ({folds[0].cutoff}) leaves {fit} "
        f"training and {val} early-stopping windows over all series; use fewer "
        "backtest.origins, a smaller backtest.step, or a shorter window.input_width"
    )


def _no_train_windows(panel: panels.Panel, cuts: PanelCuts, w: WindowConfig) -> str:
    """One line naming the key, and what the longest series' training rows hold."""
    train = rows_per_series(panel, cuts)["train"]
    longest = int(np.argmax(train))
    need = w.input_width + w.shift + w.horizon - 1
    return (
        f"window.input_width: {w.input_width} (+ window.shift {w.shift} + window.horizon "
        f"{w.horizon} - 1 = {need} rows) does not fit in any series' training rows (before "
        f"{cuts.val_start}; the longest, {panel.ids[longest]!r}, has {int(train[longest])}): "
        "no train windows; use a shorter window.input_width or a smaller split.val/test"
    )
