"""Measure the per-process overhead of running a trivial stage flow (python -m pipelines.overhead)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.server import free_port, start_server, stop_server

# A trivial "stage": one flow with one task, shaped like pipelines.stages (a named flow run).
TRIVIAL_FLOW = """
from prefect import flow, task

@task
def work() -> dict:
    return {"ok": True}

@flow(name="noop", flow_run_name="noop-stage", log_prints=False)
def noop() -> dict:
    return work()

noop()
"""
PLAIN = "pass"
IMPORT_PREFECT = "import prefect"
IMPORT_PANDAS = "import pandas"
IMPORT_BOTH = "import pandas, prefect"
FN_ONLY = TRIVIAL_FLOW.replace("\nnoop()\n", "\nnoop.fn()\n")


def timed(code: str, env: dict[str, str], runs: int) -> list[float]:
    """Wall seconds of `python -c code` in fresh processes (the first run is a warm-up)."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        if i:  # the warm-up run creates the SQLite database and runs migrations once
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    """Print a Markdown table of median seconds per scenario."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with tempfile.TemporaryDirectory() as tmp:
        eph = {**base, "PREFECT_HOME": str(Path(tmp, "eph"))}
        lean = {
            **eph,
            "PREFECT_HOME": str(Path(tmp, "lean")),
            "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
        }
        memory = {
            **eph,
            "PREFECT_HOME": str(Path(tmp, "mem")),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:///:memory:",
        }
        home = Path(tmp, "server")
        port = free_port()
        proc = start_server(home, port)
        try:
            served = {**base, "PREFECT_HOME": str(home), "PREFECT_API_URL": proc.api_url}
            quiet = {
                **served,
                "PREFECT_LOGGING_TO_API_ENABLED": "false",
            }
            scenarios = [
                ("python -c pass", PLAIN, base),
                ("import prefect", IMPORT_PREFECT, base),
                ("import pandas", IMPORT_PANDAS, base),
                ("import pandas, prefect", IMPORT_BOTH, base),
                ("flow, ephemeral server (default)", TRIVIAL_FLOW, eph),
                ("flow, ephemeral, no block registration", TRIVIAL_FLOW, lean),
                ("flow, ephemeral, in-memory SQLite", TRIVIAL_FLOW, memory),
                ("flow, running local server", TRIVIAL_FLOW, served),
                ("flow, local server, no API logs", TRIVIAL_FLOW, quiet),
                ("flow.fn() (no engine, no server)", FN_ONLY, base),
            ]
            print(f"| scenario | median s | min s | max s | (n={args.runs}) |")
            print("|---|---|---|---|---|")
            for label, code, env in scenarios:
                t = timed(code, env, args.runs)
                print(
                    f"| {label} | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} | |",
                    flush=True,
                )
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
