"""Prefect end to end: serve the deployment, trigger runs through the API, read the results.

Uses the session's real `prefect server start` (conftest `prefect_api`), a real runner
(`python -m pipelines.deploy`, i.e. `flow.serve`) and tiny DVC repositories whose one stage is
a cheap script, so this runs in well under a minute once the server is up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_pipeline_flow import drain_prefect, make_repo, series, stage_log, task_runs

ROOT = Path(__file__).resolve().parents[1]


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    """Poll until predicate() is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
    return value


@pytest.fixture(scope="module")
def client(prefect_api: str) -> Iterator[Any]:
    """A sync Prefect client on the session server, with in-process settings pointing there."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    settings = temporary_settings(updates={PREFECT_API_URL: prefect_api})
    with settings, get_client(sync_client=True) as c:
        yield c
        drain_prefect()


@pytest.fixture(scope="module")
def runner(
    prefect_api: str, client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """`python -m pipelines.deploy` serving the deployment of a tiny repo; yields that repo."""
    from pipelines.deploy import FULL_NAME

    repo = make_repo(tmp_path_factory.mktemp("served") / "repo")
    log = repo.parent / "runner.log"
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # pick triggered runs up at once (default 10 s)
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.deploy", "--root", str(repo)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def deployed() -> Any:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return client.read_deployment_by_name(FULL_NAME)
            except Exception:  # ObjectNotFound until the runner has registered it
                return None

        wait_for(deployed, 90, "the deployment")
        yield repo
    finally:
        proc.send_signal(signal.SIGINT)  # the runner's own graceful shutdown
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def finished(client: Any, flow_run_id: Any) -> Any:
    """The flow run once it is in a final state, else None."""
    run = client.read_flow_run(flow_run_id)
    return run if run.state and run.state.is_final() else None


def test_deployment_schedule_comes_from_params(runner: Path, client: Any) -> None:
    """The deployment carries params.yaml's cron and timezone and the repo root."""
    from pipelines.deploy import FULL_NAME

    deployment = client.read_deployment_by_name(FULL_NAME)
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 3 1 1 *" and schedule.schedule.timezone == "UTC"
    assert deployment.parameters == {"root": str(runner)}


def test_triggered_run_completes_and_publishes_report(runner: Path, client: Any) -> None:
    """A run triggered through the API reproduces the stage and publishes the Markdown report."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    from pipelines.deploy import FULL_NAME

    run = run_deployment(FULL_NAME, timeout=0)
    run = wait_for(lambda: finished(client, run.id), 120, "the triggered run")
    assert run.state.is_completed(), run.state
    assert [line.split()[0] for line in stage_log(runner)] == ["start", "end"]
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
    )
    assert {a.key: a.type for a in artifacts} == {
        "seqcast-report": "markdown",
        "seqcast-models": "table",
    }
    (artifact,) = [a for a in artifacts if a.key == "seqcast-report"]
    assert (
        "| gru | network | 101.5 | 150.2 | **0.61** | 1.2 | - | best network, candidate v1 |"
        in (artifact.data)
    )
    assert "- stages run: `report`" in artifact.data
    assert "**No promotion this run:**" in artifact.data  # the stage is not `promote`
    assert "http://127.0.0.1:5000/#/experiments/7/runs/abc123" in artifact.data


def test_second_trigger_while_running_is_skipped(runner: Path, client: Any, tmp_path: Path) -> None:
    """Two triggers on one checkout: one `dvc repro`, the other run ends Skipped."""
    from prefect.deployments import run_deployment

    from pipelines.deploy import FULL_NAME

    repo = make_repo(tmp_path / "held")
    (repo / "hold").touch()  # the first run's stage waits for this file to go
    try:
        first = run_deployment(FULL_NAME, parameters={"root": str(repo)}, timeout=0)
        wait_for(lambda: stage_log(repo), 90, "the first run's stage to start")
        second = run_deployment(FULL_NAME, parameters={"root": str(repo)}, timeout=0)
        second = wait_for(lambda: finished(client, second.id), 60, "the second run")
    finally:
        (repo / "hold").unlink()
    assert second.state.is_completed() and second.state.name == "Skipped", second.state
    assert "another seqcast pipeline run" in second.state.message
    first = wait_for(lambda: finished(client, first.id), 90, "the first run")
    assert first.state.is_completed() and first.state.name == "Completed", first.state
    assert [line.split()[0] for line in stage_log(repo)] == ["start", "end"]


def test_validation_failure_fails_the_run_without_retry(
    runner: Path, client: Any, tmp_path: Path
) -> None:
    """A bad CSV to ingest fails validation: run Failed, ingest tried once, no repro, data kept."""
    from prefect.deployments import run_deployment

    from pipelines.deploy import FULL_NAME

    repo = make_repo(tmp_path / "bad", ingest={"source": "incoming", "mode": "replace"})
    (repo / "incoming").mkdir()
    series(200, high=500000.0).to_csv(repo / "incoming/batch.csv", index=False)
    before = (repo / "data/raw/series.csv").read_bytes()
    run = run_deployment(FULL_NAME, parameters={"root": str(repo)}, timeout=0)
    run = wait_for(lambda: finished(client, run.id), 120, "the run")
    assert run.state.is_failed(), run.state
    assert "ValidationFailed" in run.state.message and "demand_mw" in run.state.message
    assert task_runs(run.id) == {"load-params": 1, "ingest": 1}  # run_count 1: no retries
    assert (repo / "data/raw/series.csv").read_bytes() == before
    assert stage_log(repo) == []
