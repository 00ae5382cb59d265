"""Windowing throughput and memory: origins, a shuffle and batches gathered as training does.

Memory is the tracemalloc peak above the series and calendar (numpy reports its buffers to
tracemalloc): it must grow with the series (origins, one permutation), never series x window.
"""

from __future__ import annotations

import tracemalloc
from functools import partial

import numpy as np
import pandas as pd

from benchmarks.common import MB, median, timed
from seqcast.data import features, windowing
from seqcast.data.features import InputSpec

BATCH = 64  # windows per gathered batch, as in training
SEASON = 336
CALENDAR = ["time_of_day", "day_of_week"]


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A scaled (n, 1) daily + weekly cycle with noise, and its calendar inputs (1-min steps)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n, dtype=np.float64)
    series = np.sin(2 * np.pi * steps / 48) + 0.5 * np.sin(2 * np.pi * steps / SEASON)
    series += 0.1 * rng.standard_normal(n)
    times = pd.date_range("2000-01-03", periods=n, freq="min")
    return series[:, None], features.calendar(times, CALENDAR)


def spec_for(input_width: int, horizon: int) -> InputSpec:
    """The shipped configuration's inputs: seasonal-naive reference, two calendar cycles."""
    return InputSpec(
        input_width=input_width,
        horizon=horizon,
        shift=1,
        n_targets=1,
        n_values=1,
        n_calendar=2 * len(CALENDAR),
        reference="seasonal_naive",
        season=SEASON,
        calendar_names=CALENDAR,
    )


def shuffled_origins(spec: InputSpec, n: int) -> np.ndarray:
    """Every origin of an n-row series in one shuffled order: the O(n) part of an epoch."""
    found = windowing.origins({"train": (0, n)}, spec.context, spec.horizon, spec.shift)["train"]
    return np.random.default_rng(0).permutation(found)


def gather_batches(
    spec: InputSpec, series: np.ndarray, cal: np.ndarray, order: np.ndarray, max_windows: int
) -> int:
    """Inputs and targets of the first max_windows origins, one batch at a time."""
    count = min(len(order), max_windows)
    for start in range(0, count, BATCH):
        rows = order[start : min(start + BATCH, count)]
        features.inputs(spec, series, cal, rows)
        features.residuals(spec, series, rows).astype(np.float32)
    return count


def materialised_mb(spec: InputSpec, windows: int) -> float:
    """What every window copied out at once would take (float32): series x window."""
    per_window = (
        spec.input_width * spec.past_width
        + spec.horizon * spec.future_width
        + spec.horizon * spec.n_targets
    )
    return windows * per_window * 4 / MB


def bench(
    sizes: list[int],
    horizons: list[int],
    input_width: int = 96,
    max_windows: int = 100_000,
    repeats: int = 3,
) -> dict:
    """windows/s (median of repeats) and peak extra memory per series size and horizon."""
    rows = []
    for n in sizes:
        series, cal = synthetic(n)
        data_mb = (series.nbytes + cal.nbytes) / MB
        for horizon in horizons:
            spec = spec_for(input_width, horizon)
            setup = timed(partial(shuffled_origins, spec, n), repeats)
            order = shuffled_origins(spec, n)
            windows = len(order)
            gather = partial(gather_batches, spec, series, cal, order, max_windows)
            count = gather()  # warm-up
            seconds = timed(gather, repeats)
            del order, gather
            tracemalloc.start()
            gather_batches(spec, series, cal, shuffled_origins(spec, n), max_windows)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows.append(
                {
                    "points": n,
                    "input_width": input_width,
                    "horizon": horizon,
                    "windows": windows,
                    "windows_timed": count,
                    "seconds": seconds,
                    "origins_shuffle_seconds": median(setup),
                    "windows_per_second": count / median(seconds),
                    "data_mb": data_mb,
                    "peak_extra_mb": peak / MB,
                    "peak_extra_bytes_per_point": peak / n,
                    "materialised_mb": materialised_mb(spec, windows),
                }
            )
        del series, cal
    return {"batch": BATCH, "repeats": repeats, "rows": rows}


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """Table headers and rows."""
    headers = [
        "points",
        "horizon",
        "windows",
        "windows/s",
        "origins+shuffle s",
        "series+calendar MB",
        "peak extra MB",
        "bytes/point",
        "all windows copied MB",
    ]
    rows = [
        [
            f"{r['points']:.0e}",
            r["horizon"],
            r["windows"],
            r["windows_per_second"],
            r["origins_shuffle_seconds"],
            r["data_mb"],
            r["peak_extra_mb"],
            r["peak_extra_bytes_per_point"],
            r["materialised_mb"],
        ]
        for r in result["rows"]
    ]
    return headers, rows
