"""Per-process overhead of a trivial stage flow: python -m pipelines.overhead [--bytecode].

Each scenario is a fresh `python` process, as DVC runs each stage; runs are interleaved so that
background load hits every scenario alike. The "stage CLI" rows run `python -m pipelines.stages`
on a params.yaml that fails validation at once: the stage machinery without the stage's work.
"""

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
import os
from prefect import flow, task
from prefect.settings import temporary_settings

@task
def work() -> dict:
    return {"ok": True}

@flow(name="noop", flow_run_name="noop-stage")
def noop() -> dict:
    return work()

quiet = {"flows.heartbeat_frequency": None} if os.environ.get("NO_HEARTBEAT") else {}
with temporary_settings(updates=quiet):
    noop()
"""
FN_ONLY = TRIVIAL_FLOW.replace("return work()", "return work.fn()").replace(
    "noop()\n", "noop.fn()\n"
)
STAGE_CLI = "STAGE_CLI"  # marker: run `python -m pipelines.stages validate --root <bad repo>`


def run_once(code: str, env: dict[str, str], bad_repo: Path) -> float:
    """Wall seconds of one fresh process (NaN when it fails unexpectedly)."""
    if code == STAGE_CLI:
        argv, ok = ["-m", "pipelines.stages", "validate", "--root", str(bad_repo)], {2}
    else:
        argv, ok = ["-c", code], {0}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in ok:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        print(f"run failed ({done.returncode}): {tail[:300]}", file=sys.stderr)
        return float("nan")
    return elapsed


def main() -> None:
    """Print a Markdown table of median wall seconds per scenario."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--bytecode",
        action="store_true",
        help="allow .pyc (cached under a temp PYTHONPYCACHEPREFIX: the venv is not touched)",
    )
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SEQCAST_"))}
    base["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # The default 20 s is not enough for a first (migrating) start on a busy 2-core machine.
    base["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    base["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        bad_repo = Path(tmp, "bad")
        bad_repo.mkdir()
        (bad_repo / "params.yaml").write_text("data: {}\n")  # a ConfigError, found at once
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
                ("python -c pass", "pass", base),
                ("import pandas", "import pandas", base),
                ("import prefect", "import prefect", base),
                ("import pandas, prefect", "import pandas, prefect", base),
                ("flow, ephemeral server (default)", TRIVIAL_FLOW, eph),
                ("flow, ephemeral, no migrations/block registration", TRIVIAL_FLOW, lean),
                ("flow, ephemeral, no heartbeat", TRIVIAL_FLOW, {**eph, "NO_HEARTBEAT": "1"}),
                ("flow, local server", TRIVIAL_FLOW, served),
                ("flow, local server, no heartbeat", TRIVIAL_FLOW, {**served, "NO_HEARTBEAT": "1"}),
                ("flow.fn() (no engine, no server)", FN_ONLY, base),
                ("stage CLI, local server", STAGE_CLI, served),
                ("stage CLI, SEQCAST_PREFECT=off", STAGE_CLI, {**base, "SEQCAST_PREFECT": "off"}),
            ]
            # Warm-up: creates the SQLite files (migrations) and, with --bytecode, the .pyc cache.
            for _, code, env in scenarios:
                if env is lean:  # migrations are off there: let a normal start create the schema
                    run_once(TRIVIAL_FLOW, {**eph, "PREFECT_HOME": env["PREFECT_HOME"]}, bad_repo)
                run_once(code, env, bad_repo)
            times: dict[str, list[float]] = {label: [] for label, _, _ in scenarios}
            load = [os.getloadavg()[0]]
            for _ in range(args.runs):
                for label, code, env in scenarios:
                    times[label].append(run_once(code, env, bad_repo))
            load.append(os.getloadavg()[0])
        finally:
            stop_server(server)
    mode = "with .pyc" if args.bytecode else "no .pyc (PYTHONDONTWRITEBYTECODE=1)"
    print(
        f"{mode}; n={args.runs}; 1-min load {load[0]:.1f} -> {load[1]:.1f}; {os.cpu_count()} CPUs"
    )
    print("| scenario | median s | min s | max s |")
    print("|---|---|---|---|")
    for label, all_t in times.items():
        t = [x for x in all_t if x == x] or [float("nan")]  # drop failed runs (NaN)
        print(f"| {label} | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} |")


if __name__ == "__main__":
    main()
