"""One Prefect flow per DVC stage; dvc.yaml runs `python -m pipelines.stages <stage> [--model K]`.

The flows are thin: each runs one task that calls the stage's function in seqcast. Expected
failures (bad params, bad data, failed validation) end the run Failed with their message and no
retry; connection errors (a tracking server that does not answer) are retried with backoff.

The `store` stage is no flow: it records the MLflow store's key for DVC in a few milliseconds
(pipelines.consistency.record_store), before Prefect is imported.

Run by the pipeline flow (`dvc repro` inside `seqcast-pipeline`), a stage's flow run is a subflow
of the pipeline's run: the pipeline names its flow and task run in SEQCAST_PREFECT_PARENT_*,
DVC passes the environment on, and `run_flow_as_stage` links the new flow run to them.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.argv[1:2] == ["store"]:
    # DVC runs it on every `dvc repro` (always_changed): first, before any import it does not
    # need (Prefect, logging, argparse), so a no-op repro stays quick.
    from pipelines.common import note_ran, resolve_root
    from pipelines.consistency import record_store

    note_ran("store")
    sys.exit(record_store(resolve_root(None)))

import contextlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from pipelines.common import guard_exit, main_plain, prefect_disabled, run_identity  # noqa: E402

if __name__ == "__main__":
    # Before any library registers its own exit functions: this one must run after them.
    guard_exit()

# Checked before importing Prefect: SEQCAST_PREFECT=off saves its 1-3 s import in every stage.
if __name__ == "__main__" and prefect_disabled():
    sys.exit(main_plain(sys.argv[1:]))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side telemetry switch

from typing import Any, TextIO  # noqa: E402

from prefect import Flow, flow, get_run_logger, tags, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.client.schemas.objects import FlowRun, TaskRun  # noqa: E402
from prefect.context import FlowRunContext, TaskRunContext  # noqa: E402
from prefect.exceptions import TerminationSignal  # noqa: E402
from prefect.settings import temporary_settings  # noqa: E402
from prefect.states import Failed, State  # noqa: E402
from prefect.tasks import Task, exponential_backoff  # noqa: E402

from pipelines.common import (  # noqa: E402
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_UNEXPECTED,
    PARENT_FLOW_RUN,
    PARENT_TASK_RUN,
    call_stage,
    exit_code,
    finish,
    is_expected,
    is_transient,
    note_ran,
    parse_args,
    report_failure,
    resolve_root,
    stage_label,
    stop_on_signals,
    stopped_before_start,
)

OUTPUT_LOGGER = "seqcast.output"


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


@flow(name="seqcast-backtest", flow_run_name="backtest-{kind}", persist_result=False)
def backtest(kind: str = "gru", root: str | None = None) -> dict[str, Any] | State:
    """Refit one network kind at each rolling origin and forecast the block after it."""
    return _run("backtest", root, kind)


@flow(name="seqcast-evaluate", flow_run_name="evaluate", persist_result=False)
def evaluate(root: str | None = None) -> dict[str, Any] | State:
    """Score the models and baselines on the test split."""
    return _run("evaluate", root)


@flow(name="seqcast-refit", flow_run_name="refit", persist_result=False)
def refit(root: str | None = None) -> dict[str, Any] | State:
    """Fit the chosen recipe on every row, with its calibration, for serving."""
    return _run("refit", root)


@flow(name="seqcast-promote", flow_run_name="promote", persist_result=False)
def promote(root: str | None = None) -> dict[str, Any] | State:
    """Register the best model when it beats the champion."""
    return _run("promote", root)


FLOWS = {
    "validate": validate,
    "normalise": normalise,
    "window": window,
    "train": train,
    "backtest": backtest,
    "evaluate": evaluate,
    "refit": refit,
    "promote": promote,
}


class _RunLogTee:
    """stdout that also sends each line printed inside a flow or task run to that run's log."""

    def __init__(self, stream: TextIO, logger: logging.Logger) -> None:
        self._stream = stream
        self._logger = logger
        self._partial = ""
        self._lock = threading.Lock()
        self._busy = threading.local()  # the API handler printing a warning must not recurse

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if getattr(self._busy, "on", False) or not (TaskRunContext.get() or FlowRunContext.get()):
            return written
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
        self._busy.on = True
        try:
            for line in lines:
                if line.strip():
                    self._logger.info(line.rstrip())
        finally:
            self._busy.on = False
        return written

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def prints_to_run_log() -> Iterator[None]:
    """Printed lines (epochs, progress, tables) go to the terminal as ever and to the run log."""
    from prefect.logging.handlers import APILogHandler

    # Not log_prints=True: that moves prints to Prefect's console format on stderr, which shifts
    # the first line of a printed table; here the terminal sees exactly what was printed.
    logger = logging.getLogger(OUTPUT_LOGGER)
    if not logger.handlers:
        logger.addHandler(APILogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False  # the terminal already has the line
    saved = sys.stdout
    sys.stdout = _RunLogTee(saved, logger)
    try:
        yield
    finally:
        sys.stdout = saved


def subflow_run(stage_flow: Flow, parameters: dict[str, Any], label: str) -> FlowRun | None:
    """A flow run of `stage_flow` under the pipeline's run named in the environment, else None."""
    parent = os.environ.get(PARENT_FLOW_RUN)
    if not parent:
        return None
    from uuid import UUID, uuid4

    from prefect import get_client
    from prefect.client.schemas.objects import TaskRunResult
    from prefect.context import TagsContext
    from prefect.states import Pending

    parent_task = os.environ.get(PARENT_TASK_RUN)
    try:
        with get_client(sync_client=True) as client:
            # What Prefect itself does for a subflow: a task run in the parent flow run stands
            # for the child (the server mirrors the child's state onto it), and the child flow
            # run points at that task run. `__parents__`: launched from inside dvc-repro.
            inputs = {"__parents__": [TaskRunResult(id=UUID(parent_task))]} if parent_task else {}
            tracker = client.create_task_run(
                task=Task(name=stage_flow.name, fn=stage_flow.fn, version=stage_flow.version),
                flow_run_id=UUID(parent),
                dynamic_key=uuid4().hex,  # one per run: a retried dvc-repro runs stages again
                name=label,
                state=Pending(),
                task_inputs=inputs,
            )
            return client.create_flow_run(
                stage_flow,
                name=label,
                parameters=stage_flow.serialize_parameters(parameters),
                parent_task_run_id=tracker.id,
                state=Pending(),
                tags=TagsContext.get().current_tags,
            )
    except Exception as exc:  # e.g. ids from another server: run on our own, as without a parent
        print(f"{label}: not nested under flow run {parent}: {exc}", file=sys.stderr, flush=True)
        return None


def run_flow_as_stage(stage_flow: Flow, label: str, **parameters: Any) -> int:
    """Run a flow as a DVC stage command does: nested if asked, prints logged; the exit code."""
    from prefect.flow_engine import run_flow
    from prefect.utilities.callables import get_call_parameters

    if stopped_before_start(label):
        return EXIT_INTERRUPTED
    stop_on_signals()
    parameters = get_call_parameters(stage_flow.fn, (), parameters)
    suffix, run_tags = run_identity(parameters.get("root", "."))
    stage_flow = stage_flow.with_options(flow_run_name=label + suffix)
    # Heartbeats flag crashed long runs; DVC already watches this short-lived process, and
    # stopping the heartbeat thread costs ~0.8 s per stage (it sleeps in 1 s steps).
    quiet = (
        {}
        if "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in os.environ
        else {"flows.heartbeat_frequency": None}
    )
    try:
        with temporary_settings(updates=quiet), prints_to_run_log(), tags(*run_tags):
            flow_run = subflow_run(stage_flow, parameters, label + suffix)
            state = run_flow(stage_flow, flow_run, parameters, return_type="state")
    except KeyboardInterrupt:
        report_failure(label, "interrupted")
        return finish(label, EXIT_INTERRUPTED)
    except TerminationSignal as exc:  # SIGTERM with no handler of ours under Prefect's
        from seqcast.core import interrupts

        interrupts.record(exc.signal)
        report_failure(label, "terminated")
        return finish(label, 128 + exc.signal)
    except SystemExit as exc:  # SIGTERM through stop_on_signals
        if exc.code == EXIT_TERMINATED:
            report_failure(label, "terminated")
        raise
    if state.is_completed():
        return finish(label, 0)
    exc = state.result(raise_on_failure=False)
    code = exit_code(exc) if isinstance(exc, BaseException) else EXIT_UNEXPECTED
    report_failure(label, state.message or state.name)
    return finish(label, code)


def main(argv: list[str] | None = None) -> int:
    """CLI for dvc.yaml: run one stage flow; exit 0, or non-zero with the failure on stderr."""
    args = parse_args(argv)
    label = stage_label(args.stage, args.model)
    note_ran(label)
    kwargs: dict[str, Any] = {"root": args.root}
    if args.model:
        kwargs["kind"] = args.model
    return run_flow_as_stage(FLOWS[args.stage], label, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
