"""Per-process overhead of a trivial stage flow: python -m pipelines.overhead [--bytecode]."""

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
FN_ONLY = TRIVIAL_FLOW.replace("return work()", "return work.fn()").replace(
    "\nnoop()\n", "\nnoop.fn()\n"
)


def run_once(code: str, env: dict[str, str]) -> float:
    """Wall seconds of `python -c code` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        print(f"run failed ({done.returncode}): {tail[:300]}", file=sys.stderr)
        return float("nan")
    return time.perf_counter() - start


def main() -> None:
    """Print a Markdown table of median wall seconds per scenario, runs interleaved."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--bytecode",
        action="store_true",
        help="allow .pyc (cached under a temp PYTHONPYCACHEPREFIX, the venv is not touched)",
    )
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # The default 20 s is not enough for a first (migrating) start on a busy 2-core machine.
    base["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    with tempfile.TemporaryDirectory() as tmp:
        if args.bytecode:
            base.pop("PYTHONDONTWRITEBYTECODE", None)
            base["PYTHONPYCACHEPREFIX"] = str(Path(tmp, "pycache"))
        else:
            base["PYTHONDONTWRITEBYTECODE"] = "1"
        eph = {**base, "PREFECT_HOME": str(Path(tmp, "eph"))}
        lean = {
            **base,
            "PREFECT_HOME": str(Path(tmp, "lean")),
            "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
            "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
        }
        home = Path(tmp, "server")
        server = start_server(home, free_port(), log=Path(tmp, "server.log"))
        try:
            served = {**base, "PREFECT_HOME": str(home), "PREFECT_API_URL": server.api_url}
            scenarios = [
                ("python -c pass", PLAIN, base),
                ("import prefect", IMPORT_PREFECT, base),
                ("import pandas", IMPORT_PANDAS, base),
                ("import pandas, prefect", IMPORT_BOTH, base),
                ("flow, ephemeral server (default)", TRIVIAL_FLOW, eph),
                ("flow, ephemeral, no migrate/block registration", TRIVIAL_FLOW, lean),
                ("flow, running local server", TRIVIAL_FLOW, served),
                ("flow.fn() (no engine, no server)", FN_ONLY, base),
            ]
            # Warm-up: creates the SQLite files (migrations) and, with --bytecode, the .pyc cache.
            for _, code, env in scenarios:
                if env is lean:
                    run_once(TRIVIAL_FLOW, {**eph, "PREFECT_HOME": env["PREFECT_HOME"]})
                run_once(code, env)
            times: dict[str, list[float]] = {label: [] for label, _, _ in scenarios}
            load = [os.getloadavg()[0]]
            for _ in range(args.runs):  # interleaved so background load hits every scenario alike
                for label, code, env in scenarios:
                    times[label].append(run_once(code, env))
            load.append(os.getloadavg()[0])
        finally:
            stop_server(server)
    mode = "with .pyc" if args.bytecode else "no .pyc (PYTHONDONTWRITEBYTECODE=1)"
    print(f"{mode}; n={args.runs}; 1-min load {load[0]:.1f} -> {load[1]:.1f}")
    print("| scenario | median s | min s | max s |")
    print("|---|---|---|---|")
    for label, all_t in times.items():
        t = [x for x in all_t if x == x] or [float("nan")]  # drop failed runs (NaN)
        print(f"| {label} | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} |")


if __name__ == "__main__":
    main()
