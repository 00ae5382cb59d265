"""Panel validation time: the M1 panel and a synthetic panel of ~2 million rows, GX vs array work.

    python -m benchmarks.panel_validation --rows 2e6 --json

Per panel: reading the CSV (and the same rows from Parquet), the vectorised per-series checks,
the GX run on the whole frame, the data docs and clean_panel; the baseline, in the same process,
is the single-series GX validation of one series as long as the M1 panel (its rows in one
series). Figures only: the load average is written beside them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, emit, machine, peak_rss_mb

M1 = ROOT / "data" / "raw" / "m1_monthly.csv"


def synthetic(rows: int, seed: int = 0, bad: int = 10) -> pd.DataFrame:
    """Monthly series of 50-150 rows, as many as make `rows`, different starts; `bad` spoiled."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 151, size=max(1, rows // 100))
    starts = rng.integers(0, 120, size=len(lengths))
    total = int(lengths.sum())
    first = pd.Timestamp("2000-01-01").to_period("M").ordinal + np.repeat(starts, lengths)
    step = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    months = pd.PeriodIndex.from_ordinals(first + step, freq="M").to_timestamp()
    frame = pd.DataFrame(
        {
            "series_id": np.repeat([f"s{i:06d}" for i in range(len(lengths))], lengths),
            "month": months.strftime("%Y-%m-%d"),
            "value": 100.0 + step + rng.normal(0, 1, total).round(3),
        }
    )
    series = rng.choice(len(lengths), size=min(bad, len(lengths)), replace=False)
    spoiled = (np.cumsum(lengths) - lengths)[series] + 1
    frame.loc[spoiled, "value"] = -1.0  # below data.bounds: one row of each of `bad` series
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def panel_config(path: str) -> object:
    """The example M1 params with data.path pointed at the panel under test."""
    from seqcast.core.config import load_config, parse_config

    cfg = load_config(ROOT / "examples" / "m1_panel.yaml")
    raw = cfg.model_dump()
    raw["data"]["path"] = path
    raw["data"]["max_excluded_fraction"] = 0.5
    return parse_config(raw)


def measure(frame: pd.DataFrame, name: str, work: Path) -> dict:
    """Seconds of each part of validating `frame` as a panel, then of clean_panel."""
    from seqcast.core import paths
    from seqcast.data import panel_validation as pv

    root = work / name
    csv = root / "data" / "raw" / f"{name}.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    frame.to_parquet(csv.with_suffix(".parquet"), index=False)
    cfg = panel_config(f"data/raw/{name}.csv")
    started = time.perf_counter()
    raw = pv.read_panel(csv, cfg)
    read_csv = time.perf_counter() - started
    started = time.perf_counter()
    pv.read_panel(csv.with_suffix(".parquet"), cfg)
    read_parquet = time.perf_counter() - started
    started = time.perf_counter()
    report = pv.validate_panel_frame(raw, cfg, cfg.data.path)
    validate = time.perf_counter() - started
    started = time.perf_counter()
    summary = report.summary() | {"raw_md5": pv.file_hash(csv)}
    pv.write_outputs(report, summary, root / paths.VALIDATION)
    outputs = time.perf_counter() - started
    started = time.perf_counter()
    panel = pv.clean_panel(cfg, root)
    clean = time.perf_counter() - started
    return {
        "rows": len(frame),
        "series": report.n_series,
        "excluded": len(report.excluded),
        "read_csv_s": read_csv,
        "read_parquet_s": read_parquet,
        "validate_s": validate,
        "gx_s": report.seconds["gx"],
        "vectorised_s": report.seconds["vectorised"],
        "outputs_s": outputs,
        "clean_panel_s": clean,
        "clean_rows": panel.n_rows,
    }


def single_baseline(rows: int) -> dict:
    """The single-series validation (GX, same rows in one half-hourly series), for scale."""
    from seqcast.core.config import parse_config
    from seqcast.data.validation import validate_frame

    times = pd.date_range("2000-01-01", periods=rows, freq="30min")
    frame = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "y": 1.0})
    cfg = parse_config(
        {
            "data": {"path": "x.csv", "targets": ["y"], "frequency": "30min"},
            "window": {"input_width": 8, "horizon": 2},
        }
    )
    started = time.perf_counter()
    validate_frame(frame, cfg, "x.csv")
    return {"rows": rows, "validate_s": time.perf_counter() - started}


def bench(rows: int, m1: bool = True) -> dict:
    """Validation figures for M1 (if asked) and a synthetic panel of `rows` rows."""
    from seqcast.data.gx_run import gx

    started = time.perf_counter()
    gx()  # the import once, so it is not charged to the first panel
    result: dict = {"gx_import_s": time.perf_counter() - started, "panels": []}
    with tempfile.TemporaryDirectory(prefix="seqcast-panel-bench-") as tmp:
        work = Path(tmp)
        if m1:
            m1_frame = pd.read_csv(M1, dtype={"series_id": str})
            result["panels"].append({"panel": "M1"} | measure(m1_frame, "m1", work))
            result["single_series_baseline"] = single_baseline(len(m1_frame))
        result["panels"].append(
            {"panel": "synthetic"} | measure(synthetic(rows), "synthetic", work)
        )
    result["peak_rss_mb"] = peak_rss_mb()
    result["load_average_1_5_15"] = list(os.getloadavg())
    return result


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """One row per panel: rows, series, and where the seconds go."""
    headers = [
        "panel", "rows", "series", "excluded", "read CSV s", "read Parquet s", "vectorised s",
        "GX s", "GX share", "docs+files s", "clean_panel s",
    ]  # fmt: skip
    rows = [
        [
            p["panel"],
            p["rows"],
            p["series"],
            p["excluded"],
            p["read_csv_s"],
            p["read_parquet_s"],
            p["vectorised_s"],
            p["gx_s"],
            p["gx_s"] / max(p["gx_s"] + p["vectorised_s"], 1e-9),
            p["outputs_s"],
            p["clean_panel_s"],
        ]  # fmt: skip
        for p in result["panels"]
    ]
    if "single_series_baseline" in result:
        base = result["single_series_baseline"]
        rows.append(["one series (baseline)", base["rows"], 1, 0, None, None, None,
                     base["validate_s"], None, None, None])  # fmt: skip
    return headers, rows


def main(argv: list[str] | None = None) -> int:
    """Run and print the table, or the JSON line run_worker reads."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", default="2e6", help="rows of the synthetic panel")
    p.add_argument("--no-m1", action="store_true", help="skip the M1 panel and the baseline")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    before = machine()["load_average_1_5_15"]
    result = bench(int(float(args.rows)), m1=not args.no_m1) | {"load_before": before}
    if args.json:
        emit(result)
    else:
        from benchmarks.common import table

        print(f"load average before {before}, after {result['load_average_1_5_15']}")
        print(table(*report(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
