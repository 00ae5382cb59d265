"""Series per second of a panel's statistical rivals: sequential, local Ray 1 and 2 CPUs, two nodes.

    PYTHONPATH=src python -m benchmarks.panel_ray [--series N] [--rivals autoets,autotheta]
        [--chunk 50] [--no-cluster]

On M1 (data/raw/m1_monthly.csv, else /work/shared/data/m1_monthly.csv) at the holdout origin
2018-06 (18 months ahead): `panel_rivals.forecast_origins` in this process (the sequential
baseline, n_jobs=1), then `rivals_by_chunk` on a local Ray of 1 and of 2 CPUs and on a two-node
cluster (`ray start` twice on this machine, one CPU each). Each Ray run is timed inside an open
session, so the session's start is printed apart; a worker's first chunk still pays its imports
and numba's compilation (part of the run, as it is in a stage). Printed beside each figure: the
CPU seconds of the fits (every worker's, summed) and the load average, since the machine is
shared; the windows of every run are checked equal to the sequential ones.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ROOT
from benchmarks.ray_cluster import ENV, two_nodes
from seqcast.core.config import ParallelConfig
from seqcast.core.parallel import session
from seqcast.data.panel import Panel, from_frame
from seqcast.models.panel_parallel import rivals_by_chunk
from seqcast.models.panel_rivals import RivalWindows, forecast_origins

M1 = [ROOT / "data" / "raw" / "m1_monthly.csv", Path("/work/shared/data/m1_monthly.csv")]
ORIGIN = ["2018-06-01"]  # the last 18 months of every M1 series are the holdout


def m1(n_series: int | None) -> Panel:
    """The first n series of M1 (all 617 by default)."""
    path = next(p for p in M1 if p.is_file())
    frame = pd.read_csv(path)
    if n_series:
        frame = frame[frame["series_id"].isin(sorted(frame["series_id"].unique())[:n_series])]
    return from_frame(frame, "series_id", "month", ["value"], 1)


def load() -> str:
    """The 1-minute load average and the CPUs it shares."""
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def same(found: RivalWindows, expected: RivalWindows) -> bool:
    """Bit for bit the same windows and forecasts."""
    return np.array_equal(found.origin_rows, expected.origin_rows) and all(
        np.array_equal(found.forecasts[n], expected.forecasts[n]) for n in expected.forecasts
    )


def line(label: str, n: int, seconds: float, cpu: float, base: float | None, note: str) -> str:
    """One printed row: series/s, wall and CPU seconds, speed-up over the baseline, load."""
    ratio = f"{base / seconds:5.2f}x" if base else "  1.00x"
    return (
        f"{label:<28} {n / seconds:7.2f} series/s  {seconds:7.1f} s wall  {cpu:7.1f} s CPU  "
        f"{ratio}  {note}"
    )


def ray_run(panel: Panel, args: tuple, chunk: int, cpus: int | None, expected) -> tuple:
    """(session start s, run s, CPU s, identical?) of rivals_by_chunk on one Ray."""
    started = time.perf_counter()
    with session(cpus) as where:
        opened = time.perf_counter() - started
        started = time.perf_counter()
        out = rivals_by_chunk(panel, *args, ParallelConfig(cpus=cpus, chunk_series=chunk))
        seconds = time.perf_counter() - started
    assert not out.failed, out.failed
    return where, opened, seconds, out.windows.cpu_seconds, same(out.windows, expected)


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=None, help="first N series of M1")
    parser.add_argument("--rivals", default="autoets", help="comma-separated rivals")
    parser.add_argument("--chunk", type=int, default=50, help="series per Ray task")
    parser.add_argument("--no-cluster", action="store_true", help="skip the two-node cluster")
    options = parser.parse_args()
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.update(ENV)
    panel = m1(options.series)
    args = (ORIGIN, 18, options.rivals.split(","), [12], "MS")
    n = panel.n_series
    print(
        f"M1: {n} series, rivals {options.rivals} at origin {ORIGIN[0]}, chunks of {options.chunk}"
    )
    started = time.perf_counter()
    expected = forecast_origins(panel, *args)
    base = time.perf_counter() - started
    print(line("sequential (this process)", n, base, expected.cpu_seconds, None, load()))
    for cpus in (1, 2):
        where, opened, seconds, cpu, ok = ray_run(panel, args, options.chunk, cpus, expected)
        note = f"{load()}; start {opened:.1f} s; identical {ok}"
        print(line(where, n, seconds, cpu, base, note))
    if options.no_cluster:
        return
    root = Path(tempfile.mkdtemp(prefix="seqcast-ray-", dir="/tmp"))
    try:
        started = time.perf_counter()
        with two_nodes(root) as cluster:
            up = time.perf_counter() - started
            os.environ["RAY_ADDRESS"] = cluster.address
            where, opened, seconds, cpu, ok = ray_run(panel, args, options.chunk, None, expected)
            os.environ.pop("RAY_ADDRESS")
        note = f"{load()}; nodes up {up:.1f} s, connect {opened:.1f} s; identical {ok}"
        print(line("two nodes x 1 CPU", n, seconds, cpu, base, note))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
