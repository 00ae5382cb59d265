"""A panel's calendar split, per-series scaler, window starts and one sampled epoch, at scale.

    PYTHONPATH=src python -m benchmarks.panel_windows                 # 100,000 series x 200 rows
    PYTHONPATH=src python -m benchmarks.panel_windows --series 10000  # a quick look

A synthetic daily panel (every series 200 rows, ends staggered over 30 days) goes through
calendar_cuts, fit_panel_scaler (each scaler kind), window_starts for the three splits, and one
epoch of sample_windows batches gathered and scaled as training would. Beside each figure, the
same work on ONE series of the same total rows (today's single-series path: windowing.origins,
one scikit-learn scaler, batches gathered from one array) in the same run, and the ratio.
Printed: wall seconds, the tracemalloc peak of each step above what it was given (numpy reports
its buffers to tracemalloc) and the process's peak RSS. Figures only, never pass/fail.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from benchmarks.common import MB, peak_rss_mb
from seqcast.core.config import SplitConfig, WindowConfig
from seqcast.data import panel_scaling, panel_split, windowing
from seqcast.data.offsets import gather as gather_rows
from seqcast.data.offsets import history_offsets, horizon_offsets
from seqcast.data.panel import Panel
from seqcast.data.scaling import affine, fit_scaler


def synthetic_panel(n_series: int, rows: int, seed: int = 0) -> Panel:
    """Daily series of `rows` rows each, ends staggered over 30 days, a level and a cycle each."""
    rng = np.random.default_rng(seed)
    ends = np.datetime64("2024-12-31") - (np.arange(n_series) % 30).astype("timedelta64[D]")
    first = (ends - np.timedelta64(rows - 1, "D")).astype("datetime64[ns]")
    steps = np.tile(np.arange(rows, dtype=np.int64), n_series)
    times = np.repeat(first, rows) + steps.astype("timedelta64[D]")
    level = np.repeat(rng.lognormal(3.0, 1.0, n_series), rows)
    values = level * (1.0 + 0.3 * np.sin(2 * np.pi * steps / 7) + 0.1 * rng.random(len(steps)))
    return Panel(
        ids=np.array([f"s{i:06d}" for i in range(n_series)], dtype=object),
        offsets=np.arange(0, (n_series + 1) * rows, rows, dtype=np.int64),
        times=times,
        values=values[:, None],
        columns=("y",),
        n_targets=1,
    )


def measure(func: Callable[[], object]) -> tuple[object, float, float]:
    """(result, wall seconds, tracemalloc peak MiB above the start) of one call."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    return result, seconds, peak


def panel_epoch(
    panel: Panel, scaler, starts: np.ndarray, w: WindowConfig, cap: int, batch: int
) -> int:
    """One epoch: sample at most cap windows per series, shuffle, gather and scale each batch."""
    chosen = panel_split.sample_windows(starts, panel, cap, seed=42, epoch=0)
    order = np.random.default_rng(0).permutation(chosen)
    for first in range(0, len(order), batch):
        part = order[first : first + batch]
        x, y = panel_split.gather(panel.values, part, w.input_width, w.shift, w.horizon, 1)
        owner = panel_split.window_series(panel, part)
        scaler.scaled(x, owner), scaler.scaled(y, owner)
    return len(order)


def single_epoch(values: np.ndarray, n_windows: int, w: WindowConfig, batch: int) -> int:
    """The same number of windows from one series: origins, a shuffle, gathered batches."""
    found = windowing.origins({"train": (0, len(values))}, w.input_width, w.horizon, w.shift)
    order = np.random.default_rng(0).permutation(found["train"])[:n_windows]
    history, ahead = history_offsets(w.input_width), horizon_offsets(w.horizon, w.shift)
    for first in range(0, len(order), batch):
        part = order[first : first + batch]
        gather_rows(values, part, history), gather_rows(values[:, :1], part, ahead)
    return len(order)


def main() -> None:
    """Run every step on the panel and on one series of the same rows; print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", type=int, default=100_000)
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--input-width", type=int, default=24)
    p.add_argument("--horizon", type=int, default=18)
    p.add_argument("--cap", type=int, default=16, help="window.max_windows_per_series")
    p.add_argument("--batch", type=int, default=1024)
    args = p.parse_args()
    load = os.getloadavg()
    w = WindowConfig(input_width=args.input_width, horizon=args.horizon)
    split_cfg = SplitConfig(val=args.horizon, test=args.horizon)
    panel, seconds, _ = measure(lambda: synthetic_panel(args.series, args.rows))
    print(
        f"panel: {args.series:,} series x {args.rows} rows = {panel.n_rows:,} rows "
        f"(built in {seconds:.1f} s); window: input {w.input_width}, horizon {w.horizon}; "
        f"cap {args.cap} windows per series per epoch, batches of {args.batch}"
    )
    print(f"load average at start (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rows = []

    def step(name: str, func: Callable[[], object], baseline: Callable[[], object] | None):
        result, seconds, peak = measure(func)
        base = measure(baseline)[1:] if baseline else (float("nan"), float("nan"))
        rows.append((name, seconds, peak, base[0], base[1], peak_rss_mb()))
        return result

    values = panel.values
    fit_scaler(np.arange(4.0)[:, None], "standard")  # import scikit-learn outside the timings
    cuts = step("calendar_cuts", lambda: panel_split.calendar_cuts(panel, split_cfg, "D"), None)
    n_train = int((panel.times < cuts.val_start).sum())
    scalers = {}
    for kind in panel_scaling.KINDS:
        scalers[kind] = step(
            f"fit_panel_scaler {kind}",
            lambda kind=kind: panel_scaling.fit_panel_scaler(panel, cuts.val_start, kind),
            lambda kind=kind: affine(fit_scaler(values[:n_train], kind), 1),
        )
    starts = {}
    for name in ("train", "val", "test"):
        starts[name] = step(
            f"window_starts {name}",
            lambda name=name: panel_split.window_starts(panel, cuts, w, name),
            lambda: windowing.origins({"train": (0, panel.n_rows)}, w.input_width, w.horizon),
        )
    summary = step("window_summary", lambda: panel_split.window_summary(panel, cuts, w), None)
    # The single series gathers as many windows as the capped panel epoch can hold.
    n_epoch = step(
        "one epoch (sample, shuffle, gather, scale)",
        lambda: panel_epoch(panel, scalers["standard"], starts["train"], w, args.cap, args.batch),
        lambda: single_epoch(values, args.series * args.cap, w, args.batch),
    )
    print(f"cuts: {cuts.record()}")
    print(
        f"windows: {summary['windows']}; series too short to train: "
        f"{summary['too_short_to_train']}; epoch: {n_epoch:,} windows "
        f"({-(-n_epoch // args.batch):,} batches)"
    )
    counts = {k: v for k, v in scalers["standard"].summary.items() if not k.endswith("_series")}
    print(f"scaler summary (standard): {counts}")
    header = ("step", "panel s", "panel peak MiB", "1 series s", "1 series MiB", "ratio", "RSS MiB")
    print(" | ".join(header))
    total = 0.0
    for name, seconds, peak, base_s, base_peak, rss in rows:
        total += seconds
        ratio = seconds / base_s if base_s == base_s and base_s > 0 else float("nan")
        print(
            f"{name} | {seconds:.2f} | {peak:.0f} | {base_s:.2f} | {base_peak:.0f} | "
            f"{ratio:.2f} | {rss:.0f}"
        )
    print(f"total panel seconds: {total:.1f}; peak RSS {peak_rss_mb():.0f} MiB")
    end = os.getloadavg()
    print(f"load average at end (1, 5, 15 min): {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")


if __name__ == "__main__":
    main()
