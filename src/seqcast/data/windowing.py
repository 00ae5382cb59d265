"""Windows as origin indices over one array: memory stays O(series length).

A window is named by its origin o, the row of the last observed value. It reads history rows
(o - context, o] and forecasts rows o + shift ... o + shift + horizon - 1. Nothing is copied
until a batch of origins is gathered. The window stage (`window`) imports the features and
baselines it needs only when it runs, so these index functions stay light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqcast.core.errors import ConfigError

# Re-exported: callers read windows with them from here; they live below baselines and features.
from seqcast.data.offsets import gather, history_offsets, horizon_offsets  # noqa: F401

if TYPE_CHECKING:
    from seqcast.core.config import Config, WindowConfig


def origins(
    bounds: dict[str, tuple[int, int]],
    context: int,
    horizon: int,
    shift: int = 1,
    stride: int = 1,
    history_across_splits: bool = True,
) -> dict[str, np.ndarray]:
    """Origins per split: targets inside the split; history inside it unless allowed before."""
    out = {}
    for name, (start, stop) in bounds.items():
        first_history = 0 if history_across_splits and name != "train" else start
        first = max(first_history + context - 1, start - shift)
        last = stop - shift - horizon  # the last target row is stop - 1
        out[name] = (
            np.arange(first, last + 1, stride, dtype=np.int64)
            if last >= first
            else (np.empty(0, dtype=np.int64))
        )
    return out


def sliding_view(series: np.ndarray, width: int) -> np.ndarray:
    """A zero-copy (n - width + 1, width, ...) view of every window of `width` rows."""
    view = np.lib.stride_tricks.sliding_window_view(series, width, axis=0)
    return np.moveaxis(view, -1, 1)


# --- Rolling-origin folds (the backtest): ranges of origins, nothing copied -----------------


@dataclass(frozen=True)
class Fold:
    """One origin: history rows [start, cutoff), forecast block [cutoff, end)."""

    index: int
    start: int
    cutoff: int
    end: int
    refit: bool


def layout(rows: dict[str, int], cfg: Config) -> list[Fold]:
    """The folds from backtest settings and split sizes; [] when the backtest is off."""
    bt, horizon = cfg.backtest, cfg.window.horizon
    if bt.origins == 0:
        return []
    step = rows["val"] if bt.step == "auto" else bt.step
    if step < horizon:
        key = "backtest.step" if bt.step != "auto" else "backtest.step (auto: the validation rows)"
        raise ConfigError(
            f"{key}: {step} rows per block are fewer than window.horizon {horizon}: no window "
            "fits in a block"
        )
    test_start = rows["train"] + rows["val"]
    first = test_start - bt.origins * step
    if first <= 0:
        raise ConfigError(
            f"backtest.origins: {bt.origins} blocks of {step} rows need more than the "
            f"{test_start} rows before the test split; at most {max(0, (test_start - 1) // step)} "
            "fit"
        )
    folds = []
    for k in range(bt.origins):
        cutoff = first + k * step
        start = 0 if bt.window == "expanding" else cutoff - first
        refit = k == 0 if bt.refit_every == "once" else k % int(bt.refit_every) == 0
        folds.append(Fold(k, start, cutoff, cutoff + step, refit))
    return folds


def val_share(cfg: Config, rows: dict[str, int] | None = None) -> float:
    """The share of a fold's history held out for early stopping, as split.val is of train+val."""
    split = cfg.split
    if isinstance(split.train, float) and isinstance(split.val, float):
        return split.val / (split.train + split.val)  # today's fractions, to the last digit
    # A size given in rows (or left to take the rest): the rows the split gave each.
    if rows is None:
        raise ValueError("val_share: split sizes in rows need the rows of each split")
    return rows["val"] / (rows["train"] + rows["val"])


def fold_origins(
    fold: Fold, context: int, horizon: int, shift: int, stride: int, share: float
) -> dict[str, np.ndarray]:
    """Origins of a fold: `fit` and `val` inside its history, `block` forecast after it."""
    inner = fold.start + int(round((fold.cutoff - fold.start) * (1.0 - share)))
    bounds = {"train": (fold.start, inner), "val": (inner, fold.cutoff)}
    found = origins(bounds, context, horizon, shift, stride)
    found["block"] = block_origins(fold, horizon, shift, stride)
    return {"fit": found["train"], "val": found["val"], "block": found["block"]}


def block_origins(fold: Fold, horizon: int, shift: int, stride: int = 1) -> np.ndarray:
    """Origins whose forecast rows all lie in the fold's block (identical for every model)."""
    first, last = fold.cutoff - shift, fold.end - shift - horizon
    return np.arange(first, last + 1, stride, dtype=np.int64)


def check_history(
    folds: list[Fold], cfg: Config, context: int, rows: dict[str, int] | None = None
) -> None:
    """Refuse folds whose history leaves no training or early-stopping windows; say what fits."""
    if not folds:
        return
    w = cfg.window
    fold = folds[0]
    found = fold_origins(fold, context, w.horizon, w.shift, w.stride, val_share(cfg, rows))
    fit, val = len(found["fit"]), len(found["val"])
    if fit >= cfg.train.batch_size and val >= 1:
        return
    # Rows the first fold needs: context + horizon for a first window, then one row per window.
    window_rows = context + w.shift + w.horizon - 1
    need_fit = window_rows + (cfg.train.batch_size - 1) * w.stride
    need_val = w.shift + w.horizon
    needed = math.ceil(max(need_fit / (1 - val_share(cfg, rows)), need_fit + need_val))
    raise ConfigError(
        f"backtest: the first of {len(folds)} origins (row {fold.cutoff}) leaves "
        f"{fold.cutoff - fold.start} rows of history: {fit} training windows (train.batch_size "
        f"{cfg.train.batch_size} needed) and {val} early-stopping windows; about {needed} rows "
        "are needed (context "
        f"{context} + window.shift + window.horizon, then a window per row); use fewer "
        "backtest.origins, a smaller backtest.step, or more data"
    )


def window(cfg: Config, root: Path) -> dict:
    """The window stage: one scaled series, calendar inputs, the reference, origins per split."""
    import pandas as pd

    from seqcast.core import paths
    from seqcast.core.io import atomic_dir, md5_files, read_json, write_json
    from seqcast.data import baselines, features
    from seqcast.data.scaling import SPLITS, split_bounds, to_units

    prepared = read_json(root / paths.PREPARED / "prepared.json")
    frame = pd.concat([pd.read_parquet(root / paths.PREPARED / f"{n}.parquet") for n in SPLITS])
    sizes = prepared["rows"]
    bounds = split_bounds(sizes)
    series = frame.to_numpy(dtype=np.float64)
    w, n_targets = cfg.window, len(cfg.data.targets)
    reference, season = cfg.features.reference, cfg.reference_season
    wanted = set(cfg.seasons) | ({season} if reference == "seasonal_naive" else set())
    seasons, not_applicable = baselines.applicable_seasons(
        sorted(wanted), sizes["train"], w.input_width, w.horizon, w.shift
    )
    if reference == "seasonal_naive" and season not in seasons:
        reason = not_applicable[f"seasonal_naive_{season}"]
        raise ConfigError(f"features.reference_season: {reason}")
    detection = None
    if cfg.baselines.seasons == "auto":
        detection = _detect_seasons(series[:, :n_targets], seasons, bounds, sizes, cfg)
        seasons = sorted(seasons + detection.kept)
        print(f"window: {detection.line()}", flush=True)
    longest = max(seasons, default=1)
    # Baselines are scored on validation and test windows only, so a long season lengthens their
    # history, never the networks' training windows; a seasonal reference does lengthen those.
    evaluated = max(w.input_width, longest)
    if reference == "auto":
        provisional = origins(
            bounds, evaluated, w.horizon, w.shift, w.stride, w.history_across_splits
        )
        _require_windows(provisional, evaluated, w, sizes)
        fits, costly = baselines.affordable_references(
            seasons, sizes["train"], w.input_width, w.horizon, w.shift
        )
        for name, reason in costly.items():
            print(f"window: {name} is not considered as the reference: {reason}", flush=True)
        reference, season, choice = baselines.choose_reference(
            series[:, :n_targets], provisional["val"], fits, w.horizon, w.shift
        )
    else:
        choice, costly = {}, {}
    train_context = w.input_width + (season if reference == "seasonal_naive" else 0)
    context = max(train_context, longest)
    found = origins(bounds, context, w.horizon, w.shift, w.stride, w.history_across_splits)
    found["train"] = origins(bounds, train_context, w.horizon, w.shift, w.stride)["train"]
    _require_windows(found, context, w, sizes)
    # The backtest's folds follow from the same rows: refuse impossible ones before any training.
    check_history(layout(sizes, cfg), cfg, context, sizes)
    cal = features.calendar(pd.DatetimeIndex(frame.index), cfg.calendar)
    spec = features.InputSpec(
        input_width=w.input_width,
        horizon=w.horizon,
        shift=w.shift,
        n_targets=n_targets,
        n_values=series.shape[1],
        n_calendar=cal.shape[1],
        reference=reference,
        season=season if reference == "seasonal_naive" else None,
        calendar_names=cfg.calendar,
    )
    offset, scale = np.asarray(prepared["offset"]), np.asarray(prepared["scale"])
    train_units = to_units(series[: sizes["train"]], offset, scale)
    with atomic_dir(root / paths.WINDOWS) as out:
        np.save(out / "series.npy", series)
        np.save(out / "calendar.npy", cal)
        np.save(out / "times.npy", frame.index.to_numpy(dtype="datetime64[ns]"))
        np.savez(out / "origins.npz", **found)
        meta = {
            "spec": spec.__dict__ | {"calendar_names": spec.calendar_names},
            "context": context,
            "train_context": train_context,
            "columns": list(frame.columns),
            "frequency": cfg.data.frequency,
            "step_frequency": cfg.data.step_frequency,
            "timestamp": cfg.data.timestamp,
            "rows": sizes,
            "windows": {n: int(len(r)) for n, r in found.items()},
            "seasons": seasons,
            "not_applicable": not_applicable,
            "not_reference": costly,
            "mase_season": cfg.mase_season,
            "season_detection": None if detection is None else detection.record(),
            "reference_choice": {
                "reference": reference,
                "season": season,
                "val_mae_scaled": choice,
            },
            "offset": prepared["offset"],
            "scale": prepared["scale"],
            # Training range per column, in units: what a served history is checked against.
            "train_min": train_units.min(axis=0).tolist(),
            "train_max": train_units.max(axis=0).tolist(),
            # The gap policy the data passed: served history is held to it (seqcast.models.serving).
            "gap_policy": {
                "max_gap_steps": cfg.split.max_gap_steps,
                "max_null_fraction": cfg.data.max_null_fraction,
                "max_filled_fraction": cfg.data.max_filled_fraction,
                "bounds": {column: list(pair) for column, pair in cfg.data.bounds.items()},
            },
            "raw_md5": prepared["raw_md5"],
            "windows_md5": md5_files(out / "series.npy", out / "calendar.npy", out / "origins.npz"),
        }
        write_json(out / "meta.json", meta)
    return {k: meta[k] for k in ("windows", "context", "reference_choice", "not_applicable")}


def _detect_seasons(
    targets: np.ndarray, defaults: list[int], bounds: dict, sizes: dict, cfg: Config
):
    """Seasons of the training split beyond the frequency's, kept where they help validation."""
    from seqcast.data import baselines, seasonality

    w = cfg.window
    detection = seasonality.detect(targets[: sizes["train"]], defaults)
    new = [s for s in detection.found if s not in defaults]
    usable, unusable = baselines.applicable_seasons(
        new, sizes["train"], w.input_width, w.horizon, w.shift
    )
    unusable = {int(k.rsplit("_", 1)[1]): why for k, why in unusable.items()}
    for season in list(usable):
        # A baseline's season is history every backtest fold must hold as well.
        try:
            check_history(layout(sizes, cfg), cfg, max(w.input_width, season), sizes)
        except ConfigError:
            usable.remove(season)
            unusable[season] = "the first backtest fold holds too little history for it"
    context = max(w.input_width, *defaults, *usable, 1)
    val = origins(bounds, context, w.horizon, w.shift, w.stride, w.history_across_splits)["val"]
    if len(val) == 0:
        return detection
    *_, val_mae = baselines.choose_reference(
        targets, val, sorted(defaults + usable), w.horizon, w.shift
    )
    seasonality.judge(detection, val_mae, unusable)
    return detection


def load_windows(root: Path) -> dict:
    """The window stage's outputs: meta, input spec, scaled series, calendar, times, origins."""
    import pandas as pd

    from seqcast.core import paths
    from seqcast.core.io import read_json
    from seqcast.data.features import InputSpec

    folder = root / paths.WINDOWS
    meta = read_json(folder / "meta.json")
    with np.load(folder / "origins.npz") as found:
        split_origins = {name: found[name] for name in found.files}
    return {
        "meta": meta,
        "spec": InputSpec(**meta["spec"]),
        "series": np.load(folder / "series.npy", mmap_mode="r"),
        "calendar": np.load(folder / "calendar.npy", mmap_mode="r"),
        "times": pd.DatetimeIndex(np.load(folder / "times.npy")),
        "origins": split_origins,
    }


def _require_windows(found: dict, context: int, w: WindowConfig, sizes: dict) -> None:
    """Every split needs at least one window; say which knobs make it impossible."""

    for name, rows in found.items():
        if len(rows) == 0:
            raise ConfigError(
                f"window: no {name} windows: context {context} rows (window.input_width "
                f"{w.input_width}, plus the reference season or longest baselines.seasons) + "
                f"window.shift + window.horizon {w.horizon} do not fit in the {name} split of "
                f"{sizes[name]} rows"
            )
