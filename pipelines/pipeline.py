"""The whole pipeline as one Prefect flow: ingest, check the served forecasts, `dvc repro` when
the retrain policy says so, record the champion's forecast in the ledger, publish the report.

DVC decides what is stale (the stage flows of pipelines.stages run as its stage commands); this
flow adds what DVC lacks for unattended runs: ingestion behind validation, the forecast ledger
and its checks (seqcast.operations.monitoring), a recorded reason for every retrain, retries of
transient failures, an overall timeout, one run per checkout, and artifacts in the Prefect UI (a run
whose checks raised an alarm ends in a Completed state named `Alarm`).

    python -m pipelines.pipeline [--root PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side telemetry switch

from filelock import FileLock, Timeout  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.client.schemas.objects import TaskRun  # noqa: E402
from prefect.context import FlowRunContext, TaskRunContext  # noqa: E402
from prefect.states import Completed, Failed, State  # noqa: E402
from prefect.tasks import Task, exponential_backoff  # noqa: E402

from pipelines.common import (  # noqa: E402
    EXIT_EXPECTED,
    EXIT_INTERRUPTED,
    EXIT_TRANSIENT,
    PARENT_FLOW_RUN,
    PARENT_TASK_RUN,
    RAN_FILE,
    is_expected,
    is_transient,
)
from pipelines.common import resolve_root as _resolve_root  # noqa: E402
from seqcast.core.config import Config, load_config  # noqa: E402
from seqcast.operations import ledger, monitoring  # noqa: E402
from seqcast.registry import report

LOCK = Path(".dvc/tmp/seqcast-pipeline.lock")  # .dvc/tmp is git-ignored by DVC itself
REPORT_KEY = "seqcast-report"
ALARM_KEY = "seqcast-alarm"  # a Prefect automation can act on it (docs/prefect.md)
ALARM_STATE = "Alarm"  # a Completed state: the run did its work, and something needs a look
MODELS_KEY = "seqcast-models"


class PipelineTimeout(RuntimeError):
    """`dvc repro` outlived schedule.timeout_seconds; a RuntimeError so it is never retried."""


def _exit_status(exc: BaseException) -> int | None:
    """The exit code of the failed stage command, from DVC's 'exited with N' message."""
    while exc is not None:
        if match := re.search(r"exited with (-?\d+)", str(exc)):
            return int(match.group(1))
        exc = exc.__cause__
    return None


def _retryable(exc: BaseException) -> bool:
    """Connection errors, a busy DVC lock, or a stage that exited with EX_TEMPFAIL."""
    from dvc.lock import LockError

    if isinstance(exc, PipelineTimeout) or is_expected(exc):
        return False
    return is_transient(exc) or isinstance(exc, LockError) or _exit_status(exc) == EXIT_TRANSIENT


def retry_condition(task: Task, task_run: TaskRun, state: State) -> bool:
    """retry_condition_fn of the pipeline tasks: never retry ValidationFailed/Config/DataError."""
    return isinstance(state.data, BaseException) and _retryable(state.data)


def _expected_failure(exc: Exception) -> State:
    """A Failed state carrying the message only: no traceback for errors the user must fix."""
    return Failed(message=f"{type(exc).__name__}: {exc}", data=exc)


@task(name="load-params", task_run_name="load-params", cache_policy=NO_CACHE, persist_result=False)
def load_params(root: str) -> Config | State:
    """Read and validate params.yaml."""
    try:
        return load_config(Path(root) / "params.yaml")
    except Exception as exc:
        if is_expected(exc):
            return _expected_failure(exc)
        raise


@task(
    name="ingest",
    task_run_name="ingest",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def ingest(cfg: Config, root: str) -> dict[str, Any] | State:
    """Validate the newest source CSV, then replace or extend the raw data with it atomically."""
    from dvc.repo import Repo

    from pipelines.ingest import ingest as ingest_source

    try:
        # Hold DVC's own lock: no `dvc repro` run by hand reads the raw data while it changes.
        with Repo(root) as repo, repo.lock:
            summary = ingest_source(cfg, Path(root))
    except Exception as exc:
        if is_expected(exc):
            return _expected_failure(exc)
        raise
    get_run_logger().info("Ingestion: %s", summary)
    return summary


@contextlib.contextmanager
def _in_checkout(root: str) -> Iterator[None]:
    """Work as `dvc repro` typed in root, with stages reporting to this run's Prefect API."""
    saved = dict(os.environ)
    # dvc.yaml says `exec python -m pipelines.stages ...`: make that this environment's python.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + saved.get("PATH", "")
    context = FlowRunContext.get()
    url = str(context.client.api_url) if context else ""
    if not os.environ.get("PREFECT_API_URL") and url.startswith("http://127.0.0.1"):
        # This process started a temporary server; share it instead of one per stage (~5-15 s).
        os.environ["PREFECT_API_URL"] = url.rstrip("/")
    # The stage processes DVC starts read these and become subflows of this run (stages.py).
    if context and context.flow_run:
        os.environ[PARENT_FLOW_RUN] = str(context.flow_run.id)
    if task := TaskRunContext.get():
        os.environ[PARENT_TASK_RUN] = str(task.task_run.id)
    try:
        with contextlib.chdir(root):  # DVC resolves dvc.yaml and stage paths from the cwd
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[threading.Event]:
    """Terminate the processes started inside the block if it is still running after `seconds`."""
    import psutil  # a DVC dependency

    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}  # e.g. a temporary server
    fired = threading.Event()

    def stop_stages() -> None:
        fired.set()
        started = [c for c in me.children(recursive=True) if c.pid not in before]
        for child in started:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        for child in psutil.wait_procs(started, timeout=10)[1]:
            with contextlib.suppress(psutil.Error):
                child.kill()

    # A timer thread, not Prefect's task timeout: that one cannot interrupt DVC while it waits
    # on a stage process, and would leave the stage running after the lock is released.
    timer = threading.Timer(seconds, stop_stages)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


@contextlib.contextmanager
def _dvc_lines_once() -> Iterator[None]:
    """DVC's lines printed by DVC's own handler only, not again by Prefect's root handler."""
    import logging

    logger = logging.getLogger("dvc")
    saved = logger.propagate
    logger.propagate = False
    try:
        yield
    finally:
        logger.propagate = saved


@task(
    name="dvc-repro",
    task_run_name="dvc-repro",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=30),  # 30 s, then 60 s
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def reproduce(root: str, deadline: float, timeout: int) -> list[str] | State:
    """`dvc repro` through DVC's Python API; returns the stages it ran."""
    from dvc.exceptions import ReproductionError
    from dvc.repo import Repo

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise PipelineTimeout(f"no time left of schedule.timeout_seconds ({timeout} s)")
    ran_file = Path(tempfile.mkstemp(prefix="seqcast-ran-")[1])
    os.environ[RAN_FILE] = str(ran_file)  # each stage command that runs adds its name
    try:
        with (
            _in_checkout(root),
            _watchdog(remaining) as fired,
            _dvc_lines_once(),
            Repo(root) as repo,
        ):
            try:
                stages = repo.reproduce()
            except ReproductionError as exc:
                if fired.is_set():
                    raise PipelineTimeout(
                        f"dvc repro exceeded schedule.timeout_seconds ({timeout} s); stages stopped"
                    ) from exc
                if _exit_status(exc) == EXIT_EXPECTED:
                    # The stage printed (and its own flow run recorded) the reason; no retry.
                    return Failed(message=f"{exc}: {exc.__cause__}", data=exc)
                raise
        ran = set(ran_file.read_text().split())
    finally:
        os.environ.pop(RAN_FILE, None)
        ran_file.unlink(missing_ok=True)
    # The name, not the address: `store/dvc.yaml:store` is `store`, as its command notes it.
    names = [stage.name for stage in stages]
    # DVC reports a stage restored from its run cache as reproduced too; only the command of a
    # stage that ran added its name to the file.
    done = [n for n in names if n.replace("@", "-") in ran]
    restored = [n for n in names if n.replace("@", "-") not in ran]
    get_run_logger().info(
        "Ran: %s; restored from DVC's run cache: %s",
        ", ".join(done) or "none",
        ", ".join(restored) or "none",
    )
    return names


@task(name="monitor", task_run_name="monitor", cache_policy=NO_CACHE, persist_result=False)
def monitor(
    cfg: Config, root: str, data_changed: bool
) -> tuple[monitoring.Assessment, monitoring.Decision]:
    """Score the ledger's forecasts whose actuals are in, check decay and drift, decide."""
    assessment, decision = monitoring.check(cfg, Path(root), data_changed)
    logger = get_run_logger()
    logger.info("Decay: %s: %s", assessment.decay.status, assessment.decay.message)
    logger.info("Drift: %s: %s", assessment.drift.status, assessment.drift.message)
    for message in assessment.skipped:
        logger.warning(message)
    logger.info("Retrain: %s (%s)", "yes" if decision.retrain else "no", decision.reason)
    return assessment, decision


@task(
    name="record-forecast",
    task_run_name="record-forecast",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def record_forecast(cfg: Config, root: str) -> dict[str, Any] | None:
    """The champion's forecast from the latest rows, into the ledger (once per origin)."""
    if not monitoring.store_exists(Path(root)):
        return None
    recorded = ledger.record_champion(cfg, Path(root), "pipeline")
    if recorded is None:
        get_run_logger().info("Ledger: no champion to forecast with")
    else:
        done = "recorded" if recorded["added"] else "already in the ledger"
        get_run_logger().info(
            "Ledger: v%s from %s %s", recorded["version"], recorded["origin"], done
        )
    return recorded


@task(
    name="publish-report",
    task_run_name="publish-report",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def publish_report(
    root: str,
    stages: list[str],
    ingested: dict[str, Any] | None,
    metric: str,
    checked: tuple[monitoring.Assessment, monitoring.Decision] | None = None,
) -> str:
    """Publish the model comparison as a table and the whole report as Markdown (one Report)."""
    # Plots embedded: the Prefect UI reads the artifact away from reports/report/plots/.
    run = report.from_workspace(Path(root), metric, stages, embed=True)
    update: dict[str, Any] = {"ingestion": _ingestion(ingested)}
    if checked is not None:
        assessment, decision = checked
        retrained = decision.retrain
        update["retrain"] = f"{decision.reason} ({'dvc repro' if retrained else 'no retrain'})"
        update["monitoring"] = monitoring.summary_lines(assessment, decision, retrained)
    run = run.model_copy(update=update)
    rows = report.table_rows(run)
    if rows:
        label = report.LABELS.get(metric, metric)
        description = f"seqcast: test metrics per model, best {label} first"
        create_table_artifact(table=rows, key=MODELS_KEY, description=description)
    artifact = create_markdown_artifact(
        markdown=report.markdown(run, "# seqcast pipeline"),
        key=REPORT_KEY,
        description="seqcast: ingestion, stages run, models, promotion, MLflow run",
    )
    return str(artifact)


def _ingestion(ingested: dict[str, Any] | None) -> str:
    """What ingestion did this run, in a few words."""
    if ingested is None:
        return "none configured (`ingest.source` is empty)"
    if not ingested.get("changed"):
        return f"`{ingested['source']}`: no new data"
    return (
        f"`{ingested['source']}` ({ingested['mode']}): {ingested['rows_before']} → "
        f"{ingested['rows_after']} rows"
    )


def flow_run_tags(
    decision: monitoring.Decision, assessment: monitoring.Assessment, champion: str | None = None
) -> list[str]:
    """What scheduled runs are filtered by: retrain:<reason> or none, alarm:<check>, champion:vN."""
    reason = re.sub(r"[^a-z0-9]+", "-", decision.reason.lower()).strip("-")
    tags = [f"retrain:{reason}" if decision.retrain else "retrain:none"]
    tags += [
        f"alarm:{c.name}"
        for c in (assessment.decay, assessment.drift)
        if c.status == monitoring.ALARM
    ]
    return tags + ([f"champion:v{champion}"] if champion else [])


def _tag_flow_run(tags: list[str]) -> None:
    """Add tags to this flow run, as it runs (the decision is made inside it)."""
    from prefect import get_client

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    # The API replaces a run's tags: keep the deployment's and the earlier ones.
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(context.flow_run.id).tags
        client.update_flow_run(context.flow_run.id, tags=list(dict.fromkeys([*current, *tags])))


def _failed(state: State) -> State:
    """A task's failure as the flow's final state, with its message (not "1/1 states failed")."""
    return Failed(message=state.message, data=state.result(raise_on_failure=False))


def _run_name() -> str:
    return f"pipeline-{datetime.now():%Y%m%d-%H%M%S}"


@flow(name="seqcast-pipeline", flow_run_name=_run_name, persist_result=False)
def seqcast_pipeline(root: str | None = None) -> State:
    """Ingest (if configured), check the ledger, retrain if the policy says so, record, report."""
    path = _resolve_root(root)
    if not (path / ".dvc").is_dir():
        return Failed(message=f"{path} is not a DVC repository (no .dvc/); run `dvc init`")
    (path / LOCK).parent.mkdir(exist_ok=True)
    lock = FileLock(path / LOCK)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        message = f"Skipped: another seqcast pipeline run holds {path / LOCK}"
        get_run_logger().warning(message)
        return Completed(name="Skipped", message=message)
    try:
        cfg = load_params(str(path), return_state=True)
        if cfg.is_failed():
            return _failed(cfg)
        cfg = cfg.result()
        deadline = time.monotonic() + cfg.schedule.timeout_seconds
        ingested = None
        if cfg.ingest.source:
            ingested = ingest(cfg, str(path), return_state=True)
            if ingested.is_failed():
                return _failed(ingested)
            ingested = ingested.result()
        changed = ingested is None or bool(ingested.get("changed"))
        checked = monitor(cfg, str(path), changed, return_state=True)
        if checked.is_failed():
            # The forecasts cannot be checked (e.g. the champion's files are gone): retrain as
            # before monitoring existed, and say so, rather than leave the night undone.
            why = f"monitoring failed: {checked.message}"
            get_run_logger().warning(why)
            assessment = monitoring.nothing_yet(0, why)
            decision = monitoring.Decision(True, "schedule", why)
        else:
            assessment, decision = checked.result()
        # Tagged now: a run that fails in `dvc repro` still says why it retrained.
        _tag_flow_run(flow_run_tags(decision, assessment))
        stages = []
        if decision.retrain:
            stages = reproduce(str(path), deadline, cfg.schedule.timeout_seconds, return_state=True)
            if stages.is_failed():
                return _failed(stages)
            stages = stages.result()
        recorded = record_forecast(cfg, str(path))
        fresh = []
        if monitoring.store_exists(path):
            fresh = monitoring.new_alarms(cfg, path, assessment)  # before this run's record
            monitoring.record_check(cfg, path, assessment, decision, decision.retrain)
        if recorded is not None:
            _tag_flow_run([f"champion:v{recorded['version']}"])
        checked = (assessment, decision)
        artifact = publish_report(str(path), stages, ingested, cfg.promotion.metric, checked)
    finally:
        lock.release()
    result = {
        "stages": stages,
        "ingested": ingested,
        "artifact": artifact,
        "retrain": decision.retrain,
        "reason": decision.reason,
        "ledger": recorded,
    }
    if fresh:
        return _alarm(fresh, decision, result)
    ongoing = [c.name for c in (assessment.decay, assessment.drift) if c.status == monitoring.ALARM]
    still = f"; {' and '.join(ongoing)} alarm still raised (notified before)" if ongoing else ""
    return Completed(message=f"retrain: {decision.reason}{still}", data=result)


def _alarm(
    checks: list[monitoring.Check], decision: monitoring.Decision, result: dict[str, Any]
) -> State:
    """An `Alarm` state and artifact, once per incident: what a Prefect automation notifies on."""
    message = "; ".join(f"{c.name} alarm: {c.message}" for c in checks)
    create_markdown_artifact(
        markdown="\n\n".join(
            [
                "# seqcast alarm",
                *[f"**{c.name}** (p {c.p_value:.3g}): {c.message}" for c in checks],
                f"**Decision:** {decision.reason}: "
                + ("retrained" if decision.retrain else "no retrain")
                + f"; {decision.detail}",
            ]
        ),
        key=ALARM_KEY,
        description="seqcast: a decay or drift check raised an alarm",
    )
    get_run_logger().warning("Alarm: %s", message)
    return Completed(
        name=ALARM_STATE, message=f"{message} (retrain: {decision.reason})", data=result
    )


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline once, here and now."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.pipeline", description=__doc__)
    parser.add_argument("--root", help="repository root (default: the checkout here)")
    root = parser.parse_args(argv).root
    try:
        state = seqcast_pipeline(root=root, return_state=True)
    except KeyboardInterrupt:  # Ctrl-C outside a stage; a stage's own ends `dvc repro` as failed
        print("seqcast pipeline interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not state.is_completed():
        print(f"seqcast pipeline failed: {state.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
