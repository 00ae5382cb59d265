"""Serve `seqcast_pipeline` on the cron schedule of params.yaml (`make schedule`).

    python -m pipelines.deploy             # serve until Ctrl-C (starts a Prefect server if needed)
    python -m pipelines.deploy --run-now   # ... and queue one run immediately
    prefect deployment run 'seqcast-pipeline/seqcast-schedule'   # trigger a run of a served one

`flow.serve` needs no work pool or worker: this process polls the server and runs each flow run
in a subprocess, here, in this checkout (see docs/prefect.md for the prefect.yaml alternative).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side telemetry switch

from pipelines.common import resolve_root  # noqa: E402
from pipelines.server import DEFAULT_PORT, serving  # noqa: E402

if TYPE_CHECKING:  # Prefect is imported only once a server is up (see main)
    from prefect.deployments.runner import RunnerDeployment

DEPLOYMENT = "seqcast-schedule"
FULL_NAME = f"seqcast-pipeline/{DEPLOYMENT}"


def build(root: Path) -> RunnerDeployment:
    """The deployment: the pipeline on root, on params.yaml's schedule.cron in its timezone."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from pipelines.pipeline import seqcast_pipeline
    from seqcast.core.config import load_config

    cfg = load_config(root / "params.yaml")
    return seqcast_pipeline.to_deployment(
        name=DEPLOYMENT,
        schedules=[Cron(cfg.schedule.cron, timezone=cfg.schedule.timezone)],
        parameters={"root": str(root)},
        description=f"seqcast pipeline on {root}: ingest, dvc repro, report.",
        tags=["seqcast"],
        # Import by module name: flow runs work from any checkout path, no file path baked in.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def main(argv: list[str] | None = None) -> int:
    """Register the deployment and serve it until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.deploy", description=__doc__)
    parser.add_argument("--root", help="repository root (default: the checkout here)")
    parser.add_argument("--run-now", action="store_true", help="queue one run immediately")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of a started server")
    args = parser.parse_args(argv)
    root = resolve_root(args.root)
    # A served deployment needs a real API: reuse one, or run ours for as long as we serve.
    with serving(root, args.port) as server:
        from prefect import serve
        from prefect.deployments import run_deployment

        deployment = build(root)
        print(f"Prefect UI: {server.api_url.removesuffix('/api')}", file=sys.stderr)
        if args.run_now:
            deployment.apply()
            run = run_deployment(FULL_NAME, timeout=0)  # only queue it; the runner below runs it
            print(f"Queued flow run {run.name} ({run.id})", file=sys.stderr)
        # Flow-run subprocesses import pipelines.* from here and find params.yaml under root.
        os.chdir(Path(__file__).resolve().parents[1])
        serve(deployment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
