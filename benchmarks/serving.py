"""Forecast latency of the logged pyfunc model: one request, and 1,000 series.

    python -m benchmarks.serving --forecaster models/gru/forecaster --requests 100

The model is logged with seqcast.serving.log_forecaster into a temporary MLflow store and
loaded back with mlflow.pyfunc.load_model, as `mlflow models serve` does; a request is the
last min_history rows of the shipped raw CSV. The pyfunc takes one series per request, so
1,000 series are timed as 1,000 requests, beside the library's vectorised path
(Forecaster.forecast_units over 1,000 origins in one call).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, emit, median, percentile, timed

CHECKED_ROWS = 10_000


def history(forecaster, rows: int | None = None) -> pd.DataFrame:
    """The raw CSV's last rows as a request: timestamps as text, values as floats."""
    from seqcast.config import load_config

    raw = pd.read_csv(ROOT / load_config(ROOT / "params.yaml").data.path)
    return raw[[forecaster.timestamp, *forecaster.columns]].tail(rows or forecaster.min_history)


def long_body(forecaster, rows: int) -> pd.DataFrame:
    """rows of request: the raw CSV's values repeated on a regular grid, timestamps as text."""
    raw = history(forecaster, rows)
    start = pd.Timestamp(raw[forecaster.timestamp].iloc[0])
    times = pd.date_range(start, periods=rows, freq=forecaster.calendar_frequency)
    body = {forecaster.timestamp: times.strftime("%Y-%m-%d %H:%M:%S")}
    for column in forecaster.columns:
        body[column] = np.resize(raw[column].to_numpy(dtype=np.float64), rows)
    return pd.DataFrame(body)


def bench(folder: Path, requests: int = 100, series: int = 1000) -> dict:
    """Median and p95 of one request, and 1,000 series both ways, in milliseconds."""
    import mlflow

    from seqcast import serving
    from seqcast.forecaster import Forecaster

    forecaster = Forecaster.load(folder)
    request = history(forecaster).reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="seqcast-serve-") as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        experiment = mlflow.create_experiment("bench", artifact_location=Path(tmp).as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = serving.log_forecaster(folder, input_example=request)
        start = time.perf_counter()
        model = mlflow.pyfunc.load_model(info.model_uri)
        load_seconds = time.perf_counter() - start
        for _ in range(3):  # warm-up: first calls build the predict function
            model.predict(request)
        single = timed(lambda: model.predict(request), requests)
        sequential = timed(lambda: [model.predict(request) for _ in range(series)], 1)[0]
    # The vectorised path: series windows of the shipped CSV forecast in one call.
    longer = history(forecaster, forecaster.min_history + series - 1)
    values = longer[forecaster.columns].to_numpy(dtype=np.float64)
    times = pd.DatetimeIndex(pd.to_datetime(longer[forecaster.timestamp]))
    origins = np.arange(forecaster.min_history - 1, len(values))
    forecaster.forecast_units(values, times, origins)  # warm-up
    batched = timed(lambda: forecaster.forecast_units(values, times, origins), 5)
    # The server checks every row sent, not only the ones the model reads: its cost on a long body.
    body = long_body(forecaster, CHECKED_ROWS)
    checks = timed(lambda: forecaster.check_history(body), 20)
    return {
        "forecaster": str(folder),
        "predictor": type(forecaster.predictor).__name__,
        "history_rows": len(request),
        "load_seconds": load_seconds,
        "request_ms": [s * 1e3 for s in single],
        "request_median_ms": median(single) * 1e3,
        "request_p95_ms": percentile(single, 95) * 1e3,
        "series": series,
        "sequential_seconds": sequential,
        "sequential_ms_per_series": sequential / series * 1e3,
        "vectorised_seconds": median(batched),
        "vectorised_ms_per_series": median(batched) / series * 1e3,
        "checked_rows": len(body),
        "check_median_ms": median(checks) * 1e3,
    }


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """Table headers and rows."""
    if "error" in result:
        return ["result"], [[result["error"]]]
    n = result["series"]
    rows = [
        ["pyfunc load_model", result["load_seconds"] * 1e3, ""],
        ["one request, median", result["request_median_ms"], f"of {len(result['request_ms'])}"],
        ["one request, p95", result["request_p95_ms"], f"of {len(result['request_ms'])}"],
        [
            f"{n:,} series as {n:,} requests",
            result["sequential_seconds"] * 1e3,
            f"{result['sequential_ms_per_series']:.2f} ms/series",
        ],
        [
            f"{n:,} series, one forecast_units call",
            result["vectorised_seconds"] * 1e3,
            f"{result['vectorised_ms_per_series']:.3f} ms/series, median of 5",
        ],
        [
            f"check_history of {result['checked_rows']:,} rows sent",
            result["check_median_ms"],
            "median of 20 (every row: numbers, range, grid)",
        ],
    ]
    return ["forecast latency", "ms", "note"], rows


def main(argv: list[str] | None = None) -> None:
    """Measure and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--forecaster", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--series", type=int, default=1000)
    args = parser.parse_args(argv)
    emit(bench(args.forecaster, args.requests, args.series))


if __name__ == "__main__":
    main()
