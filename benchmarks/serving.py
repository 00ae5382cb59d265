"""Forecast latency of the logged pyfunc model: one request in-process and over HTTP, many
concurrent requests, and 1,000 series.

    python -m benchmarks.serving --forecaster models/gru/forecaster --requests 100

The model is logged with seqcast.models.serving.log_forecaster into a temporary MLflow store and
loaded back with mlflow.pyfunc.load_model, as `mlflow models serve` does; a request is the
last 700 rows of the shipped raw CSV (--history-rows). The same model is served by `seqcast
serve` for the HTTP figures: one client in turn, then many at once, with its default number
of worker processes and, as the baseline, with one. The pyfunc takes one series per
request, so 1,000 series are timed as 1,000 requests, beside the library's vectorised path
(Forecaster.forecast_units over 1,000 origins in one call). For a network, Keras' plain
model.predict on the same inputs is the baseline of the compiled predict path.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, emit, median, percentile, table, timed

CHECKED_ROWS = 10_000
HISTORY_ROWS = 700
SERVER_START_SECONDS = 180


def history(forecaster, rows: int | None = None) -> pd.DataFrame:
    """The raw CSV's last rows as a request: timestamps as text, values as floats."""
    from seqcast.core.config import load_config

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


def bench(
    folder: Path,
    requests: int = 100,
    series: int = 1000,
    clients: int = 100,
    concurrent_requests: int = 500,
    history_rows: int = HISTORY_ROWS,
    workers: int | None = None,
    baseline_src: Path | None = None,
) -> dict:
    """Request latency in-process and over HTTP, concurrent throughput, 1,000 series both ways.

    With baseline_src (another checkout's src/, e.g. main's), its `seqcast serve` is measured
    too, in the same run, as the baseline of the HTTP figures.
    """
    import mlflow

    from seqcast.models import serving
    from seqcast.models.forecaster import Forecaster
    from seqcast.operations import server

    forecaster = Forecaster.load(folder)
    workers = server.default_workers() if workers is None else workers
    rows = max(history_rows, forecaster.min_history)
    request = history(forecaster, rows).reset_index(drop=True)
    result: dict = {
        "forecaster": str(folder),
        "predictor": type(forecaster.predictor).__name__,
        "history_rows": len(request),
    }
    with tempfile.TemporaryDirectory(prefix="seqcast-serve-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.create_experiment("bench", artifact_location=Path(tmp).as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = serving.log_forecaster(folder, input_example=request)
        start = time.perf_counter()
        model = mlflow.pyfunc.load_model(info.model_uri)
        result["load_seconds"] = time.perf_counter() - start
        for _ in range(3):  # warm-up: first calls build the predict function
            model.predict(request)
        cpu = time.process_time()
        single = timed(lambda: model.predict(request), requests)
        cpu = (time.process_time() - cpu) / requests
        sequential = timed(lambda: [model.predict(request) for _ in range(series)], 1)[0]
        result |= {
            "request_ms": [s * 1e3 for s in single],
            "request_median_ms": median(single) * 1e3,
            "request_p95_ms": percentile(single, 95) * 1e3,
            "request_cpu_ms": cpu * 1e3,
        }
        result |= read_figures(forecaster, request, requests)
        body = json.dumps(serving_body(request)).encode()
        result["workers"] = workers
        servers = [("", ROOT / "src", workers)]
        if workers != 1:  # one server process, as before --workers
            servers.append(("one_worker_", ROOT / "src", 1))
        if baseline_src is not None:
            result["baseline_src"] = str(baseline_src)
            servers += [("baseline_", baseline_src, 1)]
            if workers != 1:
                servers.append(("baseline_workers_", baseline_src, workers))
        for prefix, src, count in servers:
            with served(uri, info.model_uri, Path(tmp), count, src) as (port, pid):
                found = http_figures(port, pid, body, requests, clients, concurrent_requests)
            result |= {f"{prefix}{key}": value for key, value in found.items()}
    # The vectorised path: series windows of the shipped CSV forecast in one call.
    longer = history(forecaster, forecaster.min_history + series - 1)
    values = longer[forecaster.columns].to_numpy(dtype=np.float64)
    times = pd.DatetimeIndex(pd.to_datetime(longer[forecaster.timestamp]))
    origins = np.arange(forecaster.min_history - 1, len(values))
    forecaster.forecast_units(values, times, origins)  # warm-up
    batched = timed(lambda: forecaster.forecast_units(values, times, origins), 5)
    # The server checks every row sent, not only the ones the model reads: its cost on a long body.
    long = long_body(forecaster, CHECKED_ROWS)
    checks = timed(lambda: forecaster.check_history(long), 20)
    return (
        result
        | {
            "series": series,
            "sequential_seconds": sequential,
            "sequential_ms_per_series": sequential / series * 1e3,
            "vectorised_seconds": median(batched),
            "vectorised_ms_per_series": median(batched) / series * 1e3,
            "checked_rows": len(long),
            "check_median_ms": median(checks) * 1e3,
        }
        | network_figures(forecaster, values, times, origins, requests)
    )


def read_figures(forecaster, request: pd.DataFrame, requests: int) -> dict:
    """Reading a request's rows: the plain path (fastpath) against the checks through pandas."""
    from seqcast.models import fastpath, serving

    def plain():
        return fastpath.plain_history(forecaster, *fastpath.frame_rows(forecaster, request))

    def general():
        return serving.fill_gaps(forecaster, request).checked(forecaster)

    out = {}
    for label, read in (("plain", plain), ("general", general)):
        read()
        cpu = time.process_time()
        out[f"read_{label}_ms"] = median(timed(read, requests)) * 1e3
        out[f"read_{label}_cpu_ms"] = (time.process_time() - cpu) / requests * 1e3
    values, times = plain()
    forecaster.forecast_columns(values, times)
    cpu = time.process_time()
    forecasts = timed(lambda: forecaster.forecast_columns(values, times), requests)
    out["forecast_ms"] = median(forecasts) * 1e3
    out["forecast_cpu_ms"] = (time.process_time() - cpu) / requests * 1e3
    return out


def network_figures(forecaster, values, times, origins, requests: int) -> dict:
    """The network alone on one series and on all origins: seqcast's path vs model.predict."""
    from seqcast.data import features
    from seqcast.data.scaling import to_scaled
    from seqcast.models.forecaster import network_predict

    if not hasattr(forecaster.predictor, "predict_on_batch"):
        return {}  # a baseline or the linear rival: no network to compare
    spec, model = forecaster.spec, forecaster.predictor
    series = to_scaled(values, forecaster.offset, forecaster.scale)
    freq = forecaster.calendar_frequency
    steps = pd.date_range(times[-1], periods=spec.shift + spec.horizon, freq=freq)
    cal = features.calendar(times.append(steps[1:]), spec.calendar_names)
    out: dict = {}
    for label, rows in (("one", origins[-1:]), ("all", origins)):
        batch = features.inputs(spec, series, cal, rows)
        ours = network_predict(model, batch)  # warm-up: compiles this batch size
        plain = model.predict(batch, verbose=0)
        repeats = requests if label == "one" else 5
        out[f"network_{label}_ms"] = (
            median(timed(lambda b=batch: network_predict(model, b), repeats)) * 1e3
        )
        out[f"network_{label}_predict_ms"] = (
            median(timed(lambda b=batch: model.predict(b, verbose=0), min(repeats, 20))) * 1e3
        )
        out[f"network_{label}_max_difference"] = float(np.max(np.abs(ours - plain)))
    out["network_rows"] = len(origins)
    return out


def serving_body(request: pd.DataFrame) -> dict:
    """A request frame in MLflow's dataframe_split layout, as a client posts it."""
    return {"dataframe_split": json.loads(request.to_json(orient="split", index=False))}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(
    tracking_uri: str, model_uri: str, folder: Path, workers: int = 1, src: Path = ROOT / "src"
) -> Iterator[tuple[int, int]]:
    """`seqcast serve` of model_uri (src's code: this checkout's) on a free port until the end."""
    port = free_port()
    # The server imports src's seqcast, whichever checkout the venv was installed from.
    pythonpath = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": pythonpath}
    command = [sys.executable, "-m", "seqcast.cli", "serve", "--model", model_uri]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    log_path = folder / f"serve-{workers}-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + SERVER_START_SECONDS
            while not _pings(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("seqcast serve did not start:\n" + log_path.read_text())
                time.sleep(0.3)
            yield port, process.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _pings(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False


def post(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, float]:
    """POST one forecast request on a kept-alive connection: (status, seconds)."""
    start = time.perf_counter()
    connection.request(
        "POST", "/invocations", body=body, headers={"Content-Type": "application/json"}
    )
    reply = connection.getresponse()
    reply.read()
    return reply.status, time.perf_counter() - start


def http_figures(port: int, pid: int, body: bytes, requests: int, clients: int, total: int) -> dict:
    """One client's request latency, then clients sending total requests at once."""
    import psutil

    server = psutil.Process(pid)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(3):  # warm-up: a cold connection
        post(connection, body)
    one = [post(connection, body) for _ in range(requests)]
    connection.close()
    # The server's CPU seconds per request, its workers' included: what the machine's load
    # does not change much.
    cpu = _cpu_seconds(server)
    seconds, errors, wall = concurrent(port, body, clients, total)
    cpu = _cpu_seconds(server) - cpu
    return {
        "http_ms": [s * 1e3 for _, s in one],
        "http_median_ms": median(s for _, s in one) * 1e3,
        "http_p95_ms": percentile([s for _, s in one], 95) * 1e3,
        "http_errors": sum(status != 200 for status, _ in one),
        "clients": clients,
        "concurrent_requests": total,
        "concurrent_errors": errors,
        "concurrent_seconds": wall,
        "concurrent_per_second": (total - errors) / wall,
        "concurrent_median_ms": median(seconds) * 1e3,
        "concurrent_p95_ms": percentile(seconds, 95) * 1e3,
        "concurrent_server_cpu_ms": cpu / total * 1e3,
    }


def _cpu_seconds(process) -> float:
    """User and system seconds of a process and its children, alive now."""
    return sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(recursive=True)])


def concurrent(port: int, body: bytes, clients: int, total: int) -> tuple[list[float], int, float]:
    """clients threads, each on its own connection, send total requests between them at once."""
    seconds: list[float] = []
    errors = [0]
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def client(count: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.connect()  # connected before the clock starts: requests, not handshakes
        ready.wait()
        for _ in range(count):
            try:
                status, took = post(connection, body)
            except (OSError, http.client.HTTPException):
                status, took = 0, float("nan")
                connection.close()
            with lock:
                errors[0] += status != 200
                seconds.append(took)
        connection.close()

    counts = [total // clients + (i < total % clients) for i in range(clients)]
    threads = [threading.Thread(target=client, args=(n,)) for n in counts]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return [s for s in seconds if s == s], errors[0], time.perf_counter() - start


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """Table headers and rows."""
    if "error" in result:
        return ["result"], [[result["error"]]]
    n, requests = result["series"], f"of {len(result['request_ms'])}"
    rows = [
        ["pyfunc load_model", result["load_seconds"] * 1e3, ""],
        [
            "one request in-process, median",
            result["request_median_ms"],
            f"{requests}, {result['history_rows']} rows of history each",
        ],
        ["one request in-process, p95", result["request_p95_ms"], requests],
        ["one request in-process, CPU", result["request_cpu_ms"], "process CPU time per request"],
    ]
    if "read_plain_ms" in result:
        rows += [
            [
                "reading the rows: plain path (fastpath)",
                result["read_plain_ms"],
                f"CPU {result['read_plain_cpu_ms']:.2f} ms",
            ],
            [
                "reading the rows: baseline, checks through pandas",
                result["read_general_ms"],
                f"CPU {result['read_general_cpu_ms']:.2f} ms",
            ],
            [
                "forecast from the rows read",
                result["forecast_ms"],
                f"CPU {result['forecast_cpu_ms']:.2f} ms",
            ],
        ]
    workers = result.get("workers", 1)
    for prefix, label in (
        ("", f"seqcast serve --workers {workers}"),
        ("one_worker_", "seqcast serve --workers 1"),
        ("baseline_", f"baseline {result.get('baseline_src')}: --workers 1"),
        ("baseline_workers_", f"baseline {result.get('baseline_src')}: --workers {workers}"),
    ):
        if f"{prefix}http_median_ms" in result:
            found = {k.removeprefix(prefix): v for k, v in result.items() if k.startswith(prefix)}
            rows += http_rows(found, label)
    rows += [
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
    if "network_one_ms" in result:
        for label, what in (("one", "1 series"), ("all", f"{result['network_rows']:,} series")):
            rows += [
                [f"network, {what}: seqcast predict path", result[f"network_{label}_ms"], ""],
                [
                    f"network, {what}: baseline model.predict",
                    result[f"network_{label}_predict_ms"],
                    f"max difference {result[f'network_{label}_max_difference']:.1e}",
                ],
            ]
    return ["forecast latency", "ms", "note"], rows


def http_rows(result: dict, label: str) -> list[list[object]]:
    """The HTTP figures of one server: one client in turn, then many at once."""
    requests, clients = f"of {len(result['http_ms'])}", result["clients"]
    return [
        [f"{label}: one request over HTTP, median", result["http_median_ms"], requests],
        [
            f"{label}: one request over HTTP, p95",
            result["http_p95_ms"],
            f"{result['http_errors']} errors",
        ],
        [
            f"{label}: {clients} clients at once, {result['concurrent_requests']} requests",
            result["concurrent_seconds"] * 1e3,
            f"{result['concurrent_per_second']:.0f} requests/s, "
            f"{result['concurrent_errors']} errors",
        ],
        [
            f"{label}: {clients} clients at once, median of a request",
            result["concurrent_median_ms"],
            f"p95 {result['concurrent_p95_ms']:.1f} ms",
        ],
        [
            f"{label}: {clients} clients at once, server CPU per request",
            result["concurrent_server_cpu_ms"],
            "user + system time of seqcast serve and its workers",
        ],
    ]


def main(argv: list[str] | None = None) -> None:
    """Measure, print the table, then one JSON line (read by benchmarks.run)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--forecaster", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=100, help="concurrent HTTP clients")
    parser.add_argument(
        "--concurrent-requests", type=int, default=500, help="requests the clients send in all"
    )
    parser.add_argument(
        "--history-rows", type=int, default=HISTORY_ROWS, help="rows of history per request"
    )
    parser.add_argument(
        "--workers", type=int, help="seqcast serve --workers (default: its own default)"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="another checkout's src/ (e.g. main's) whose seqcast serve is the HTTP baseline",
    )
    args = parser.parse_args(argv)
    result = bench(
        args.forecaster,
        args.requests,
        args.series,
        args.clients,
        args.concurrent_requests,
        args.history_rows,
        args.workers,
        args.baseline_src,
    )
    print(table(*report(result)), flush=True)
    emit(result)


if __name__ == "__main__":
    main()
