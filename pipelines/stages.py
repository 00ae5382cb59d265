"""One Prefect flow per DVC stage; dvc.yaml runs `python -m pipelines.stages <stage> [--model K]`.

The flows are thin: each runs one task that calls the stage's function in seqcast. Expected
failures (bad params, bad data, failed validation) end the run Failed with their message and no
retry; connection errors (a tracking server that does not answer) are retried with backoff.
"""

from __future__ import annotations

import os
import sys

from pipelines.common import main_plain, prefect_disabled

# Checked before importing Prefect: SEQCAST_PREFECT=off saves its 1-3 s import in every stage.
if __name__ == "__main__" and prefect_disabled():
    sys.exit(main_plain(sys.argv[1:]))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side telemetry switch

from typing import Any  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.client.schemas.objects import TaskRun  # noqa: E402
from prefect.settings import temporary_settings  # noqa: E402
from prefect.states import Failed, State  # noqa: E402
from prefect.tasks import Task, exponential_backoff  # noqa: E402

from pipelines.common import (  # noqa: E402
    EXIT_UNEXPECTED,
    call_stage,
    exit_code,
    is_expected,
    is_transient,
    parse_args,
    report_failure,
    resolve_root,
    stop_on_sigterm,
)


def retry_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """retry_condition_fn: retry connection-type errors only, never the library's own errors."""
    # The engine hands over Failed(data=<the exception>); read it directly rather than through
    # state.result(), which is async-dispatched and may return a coroutine inside the engine.
    data = state.data
    return isinstance(data, BaseException) and is_transient(data)


@task(
    name="run-stage",
    task_run_name="{stage}",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),  # 10 s, then 20 s
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,  # DVC decides what is stale; Prefect must never skip a stage
    persist_result=False,
)
def run_stage(stage: str, root: str, kind: str | None = None) -> dict[str, Any] | State:
    """Call the stage's function; an expected failure becomes a Failed state, no traceback."""
    try:
        summary = call_stage(stage, resolve_root(root), kind)
    except Exception as exc:
        if not is_expected(exc):
            raise
        # Returning the state (not raising) keeps Prefect from logging a traceback; the
        # exception rides along as data so the caller can pick the exit code.
        return Failed(message=f"{type(exc).__name__}: {exc}", data=exc)
    # Scalars only: the full summary is in the stage's metrics file, and can be pages long.
    scalars = summary.items() if isinstance(summary, dict) else []
    brief = {k: v for k, v in scalars if isinstance(v, str | int | float | bool)}
    get_run_logger().info("%s: %s", stage, brief)
    return summary


def _run(stage: str, root: str | None, kind: str | None = None) -> dict[str, Any] | State:
    """Run the stage task; a failure becomes the flow's final state, message and exception kept."""
    state = run_stage(stage, str(resolve_root(root)), kind, return_state=True)
    if state.is_completed():
        return state.result()
    return Failed(message=state.message, data=state.result(raise_on_failure=False))


@flow(name="seqcast-validate", flow_run_name="validate", persist_result=False)
def validate(root: str | None = None) -> dict[str, Any] | State:
    """Check the raw series against the data contract."""
    return _run("validate", root)


@flow(name="seqcast-normalise", flow_run_name="normalise", persist_result=False)
def normalise(root: str | None = None) -> dict[str, Any] | State:
    """Regularise, split and scale the series."""
    return _run("normalise", root)


@flow(name="seqcast-window", flow_run_name="window", persist_result=False)
def window(root: str | None = None) -> dict[str, Any] | State:
    """Cut the scaled splits into model windows."""
    return _run("window", root)


@flow(name="seqcast-train", flow_run_name="train-{kind}", persist_result=False)
def train(kind: str = "gru", root: str | None = None) -> dict[str, Any] | State:
    """Fit one recurrent model kind (gru or lstm)."""
    return _run("train", root, kind)


@flow(name="seqcast-evaluate", flow_run_name="evaluate", persist_result=False)
def evaluate(root: str | None = None) -> dict[str, Any] | State:
    """Score the models and baselines on the test split."""
    return _run("evaluate", root)


@flow(name="seqcast-promote", flow_run_name="promote", persist_result=False)
def promote(root: str | None = None) -> dict[str, Any] | State:
    """Register the best model when it beats the champion."""
    return _run("promote", root)


FLOWS = {
    "validate": validate,
    "normalise": normalise,
    "window": window,
    "train": train,
    "evaluate": evaluate,
    "promote": promote,
}


def main(argv: list[str] | None = None) -> int:
    """CLI for dvc.yaml: run one stage flow; exit 0, or non-zero with the failure on stderr."""
    args = parse_args(argv)
    stop_on_sigterm()
    kwargs: dict[str, Any] = {"root": args.root}
    if args.stage == "train":
        kwargs["kind"] = args.model
    # Heartbeats flag crashed long runs; DVC already watches this short-lived process, and
    # stopping the heartbeat thread costs ~0.8 s per stage (it sleeps in 1 s steps).
    quiet = (
        {}
        if "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in os.environ
        else {"flows.heartbeat_frequency": None}
    )
    with temporary_settings(updates=quiet):
        state = FLOWS[args.stage](**kwargs, return_state=True)
    if state.is_completed():
        return 0
    exc = state.result(raise_on_failure=False)
    code = exit_code(exc) if isinstance(exc, BaseException) else EXIT_UNEXPECTED
    report_failure(args.stage, state.message or state.name)
    return code


if __name__ == "__main__":
    sys.exit(main())
