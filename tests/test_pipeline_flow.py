"""The Prefect layer in pipelines/: stage CLI, retry rules, ingestion, report, timeout, lock.

Flows run for real against the session's Prefect server (conftest `prefect_api`); the DVC
repositories are tiny temporary ones whose single stage is a cheap Python script, so nothing
here depends on the ML stages.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

PARAMS: dict[str, Any] = {
    "data": {
        "path": "data/raw/series.csv",
        "timestamp": "timestamp",
        "targets": ["demand_mw"],
        "frequency": "30min",
        "bounds": {"demand_mw": [0.0, 100000.0]},
    },
    "split": {"train": 0.7, "val": 0.1, "max_gap_steps": 4},
    "window": {"input_width": 8, "horizon": 2},
    "schedule": {"cron": "0 3 1 1 *", "timezone": "UTC", "timeout_seconds": 120},
}

# The one stage of the tiny repositories: logs start/end (not a DVC output), sleeps or waits
# while a `hold` file exists, and writes what the real evaluate/promote stages write.
STAGE = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    def log(word):
        with open("stage-runs.log", "a") as f:
            f.write(f"{word} {os.getpid()}\\n")

    log("start")
    time.sleep(float(sys.argv[1]))
    deadline = time.monotonic() + 120
    while Path("hold").exists() and time.monotonic() < deadline:  # the test lets go
        time.sleep(0.2)
    Path("metrics").mkdir(exist_ok=True)
    Path("evaluation").mkdir(exist_ok=True)
    models = {
        "gru": {"mae": 101.5, "rmse": 150.25, "mase": 0.61, "smape": 1.2},
        "lstm": {"mae": 110.0, "rmse": 160.0, "mase": 0.66, "smape": 1.3},
        "naive": {"mae": 300.0, "rmse": 400.0, "mase": 1.0, "smape": 3.0},
    }
    Path("reports/report").mkdir(parents=True, exist_ok=True)
    decision = {
        "summary": "v1 (gru) promoted to champion", "outcome": "promoted", "reasons": [],
        "candidate": {"kind": "gru", "version": "1"}, "aliases_set": {"champion": "1"},
    }
    Path("reports/report/decision.json").write_text(json.dumps(decision))
    from PIL import Image  # the six plots promote copies beside report.md

    Path("reports/report/plots").mkdir(exist_ok=True)
    for stem in ("backtest", "bands", "coverage", "forecast", "horizon_mae", "learning_curves"):
        Image.new("RGB", (40, 20), (0, 90, 200)).save(f"reports/report/plots/{stem}.png")
    runs = {
        "parent_run_id": "abc123", "experiment_id": "7", "best_network": "gru",
        "best_baseline": "naive", "baselines": {"naive": {"metrics": models.pop("naive")}},
        "networks": {k: {"metrics": v} for k, v in models.items()},
    }
    Path("evaluation/runs.json").write_text(json.dumps(runs))
    log("end")
    """
)

# The same stage as a stage flow, run the way `python -m pipelines.stages` runs one (nesting,
# prints in the run log, signals): stage.py wraps stage_body.py (STAGE) in a Prefect flow.
FLOW_STAGE = textwrap.dedent(
    f"""
    import runpy, sys
    sys.path.insert(0, {str(ROOT)!r})
    from prefect import flow
    from pipelines.stages import note_ran, run_flow_as_stage

    @flow(name="seqcast-test-stage", flow_run_name="report", persist_result=False)
    def report_stage() -> None:
        print("report: loading the slow things...", flush=True)
        runpy.run_path("stage_body.py")
        print("report epoch 1/1  loss 0.12345", flush=True)

    note_ran("report")
    sys.exit(run_flow_as_stage(report_stage, "report"))
    """
)


def series(rows: int, start: str = "2024-01-01 00:00", high: float | None = None) -> pd.DataFrame:
    """A regular 30-minute demand series; `high` puts one out-of-bounds value in the middle."""
    times = pd.date_range(start, periods=rows, freq="30min")
    values = 20000.0 + 1000.0 * np.sin(np.arange(rows) / 8.0)
    if high is not None:
        values[rows // 2] = high
    return pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "demand_mw": values})


def make_repo(
    path: Path,
    *,
    stage_seconds: float = 0.0,
    rows: int = 200,
    flow_stage: bool = False,
    **sections: dict[str, Any],
) -> Path:
    """A DVC repository (no git) with params.yaml, a raw series and one cheap stage."""
    from dvc.repo import Repo

    path.mkdir(parents=True)
    params = {**PARAMS, **{k: {**PARAMS.get(k, {}), **v} for k, v in sections.items()}}
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    (path / "data/raw").mkdir(parents=True)
    series(rows).to_csv(path / "data/raw/series.csv", index=False)
    if flow_stage:
        (path / "stage.py").write_text(FLOW_STAGE)
        (path / "stage_body.py").write_text(STAGE)
    else:
        (path / "stage.py").write_text(STAGE)
    stage = {
        "cmd": f"python stage.py {stage_seconds}",
        "deps": ["stage.py", "data/raw/series.csv"],
        "outs": [
            {"evaluation/runs.json": {"cache": False}},
            {"reports/report/decision.json": {"cache": False}},
        ],
    }
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"report": stage}}))
    Repo.init(str(path), no_scm=True).close()
    return path


def stage_log(repo: Path) -> list[str]:
    """The start/end lines the stage wrote, one per event."""
    log = repo / "stage-runs.log"
    return log.read_text().split("\n")[:-1] if log.exists() else []


@pytest.fixture(scope="module")
def api(prefect_api: str) -> Iterator[str]:
    """Point flows run in this process at the session server (settings are read at import)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        yield prefect_api
        drain_prefect()


def drain_prefect() -> None:
    """Send queued logs and events now, while the server is up, not at interpreter exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    # Otherwise the exit-time flush meets a stopped server and retries for about a minute.
    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


def task_runs(flow_run_id: Any) -> dict[str, int]:
    """Task name -> run_count for one flow run, read back from the server."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {run.name: run.run_count for run in runs}


def stage_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m pipelines.stages ARGS` from the project root."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.stages", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the stage CLI that dvc.yaml runs -------------------------------------------------------


@pytest.mark.parametrize("prefect", ["on", "off"])
def test_stage_cli_config_error_is_clean(tmp_path: Path, prefect_api: str, prefect: str) -> None:
    """A bad params.yaml exits 2 with the key named on one line, and no traceback."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "split": {"train": 1.5}}))
    done = stage_cli("validate", "--root", str(tmp_path), env={"SEQCAST_PREFECT": prefect})
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("validate failed: ConfigError: ") and "split.train" in last
    assert "Traceback" not in done.stderr


def test_stage_cli_usage() -> None:
    """train needs --model; the other stages refuse it."""
    env = {"SEQCAST_PREFECT": "off"}
    assert stage_cli("train", env=env).returncode == 2
    assert "needs --model" in stage_cli("train", env=env).stderr
    assert stage_cli("validate", "--model", "gru", env=env).returncode == 2


def test_stage_flow_run_name_and_no_retry(tmp_path: Path, api: str) -> None:
    """train --model gru is the flow run `train-gru`; a ConfigError runs the task once."""
    from pipelines import stages

    (tmp_path / "params.yaml").write_text("data: [not, a, mapping]\n")
    state = stages.train(kind="gru", root=str(tmp_path), return_state=True)
    assert state.is_failed() and "ConfigError" in state.message
    assert isinstance(state.result(raise_on_failure=False), ValueError)
    from prefect import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == "train-gru"
    assert task_runs(run.id) == {"train": 1}


def test_stage_flow_run_names_the_experiment_and_revision(
    tmp_path: Path, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage run inside `dvc exp run` is `validate <exp>@<rev>`, tagged with both."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from pipelines import stages

    (tmp_path / "params.yaml").write_text("data: [not, a, mapping]\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run([*git, *command], cwd=tmp_path, check=True, capture_output=True)
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.setenv("DVC_EXP_NAME", "exp-tagged")

    assert stages.run_flow_as_stage(stages.FLOWS["validate"], "validate", root=str(tmp_path)) == 2

    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["dvc-exp:exp-tagged"]))
        )
    assert run.name == f"validate exp-tagged@{rev}"
    assert set(run.tags) == {"dvc-exp:exp-tagged", f"rev:{rev}"}


# --- retry rules ----------------------------------------------------------------------------


def test_transient_errors_are_told_apart() -> None:
    """Connection trouble (also wrapped) retries; the library's errors and local files do not."""
    from pipelines.common import exit_code, is_transient
    from pipelines.pipeline import _exit_status, _retryable
    from seqcast.core.config import ConfigError
    from seqcast.data.series import DataError
    from seqcast.data.validation import ValidationFailed

    class WrappedByMlflow(Exception):
        """Stands in for MlflowException raised `from` a requests ConnectionError."""

    wrapped = WrappedByMlflow("API request failed")
    wrapped.__cause__ = ConnectionRefusedError("refused")
    assert is_transient(ConnectionError()) and is_transient(TimeoutError())
    assert is_transient(OSError(5, "I/O error")) and is_transient(wrapped)
    assert not is_transient(FileNotFoundError("x")) and not is_transient(PermissionError())
    for error in (ConfigError("c"), DataError("d"), ValidationFailed("v"), ValueError("bug")):
        assert not is_transient(error)
    assert [exit_code(e) for e in (DataError("d"), ConnectionError(), KeyError("k"))] == [2, 75, 1]

    from dvc.exceptions import ReproductionError
    from dvc.stage.exceptions import StageCmdFailedError

    def failed(status: int) -> ReproductionError:
        error = ReproductionError("failed to reproduce 'train@gru'")
        error.__cause__ = StageCmdFailedError("python -m pipelines.stages train", status)
        return error

    assert _exit_status(failed(75)) == 75 and _retryable(failed(75))
    assert not _retryable(failed(2)) and not _retryable(failed(1))


# --- ingestion ------------------------------------------------------------------------------


def test_ingest_extend_merges_and_dedupes(tmp_path: Path) -> None:
    """extend: old rows kept, overlapping timestamps take the new values, order by time."""
    from pipelines.ingest import ingest
    from seqcast.core.config import load_config

    repo = make_repo(tmp_path / "repo", rows=100, ingest={"source": "incoming", "mode": "extend"})
    (repo / "incoming").mkdir()
    newer = series(100, start="2024-01-02 12:00")  # rows 72..171 of the same grid
    newer["demand_mw"] += 5.0
    series(10).to_csv(repo / "incoming/old.csv", index=False)
    newer.to_csv(repo / "incoming/new.csv", index=False)
    os.utime(repo / "incoming/old.csv", (1, 1))  # new.csv is the newest
    cfg = load_config(repo / "params.yaml")

    summary = ingest(cfg, repo)
    assert summary["source"] == "incoming/new.csv" and summary["changed"]
    assert (summary["rows_before"], summary["rows_after"]) == (100, 172)
    merged = pd.read_csv(repo / cfg.data.path)
    assert merged["timestamp"].is_monotonic_increasing and merged["timestamp"].is_unique
    assert merged["demand_mw"].iloc[72] == newer["demand_mw"].iloc[0]
    assert not ingest(cfg, repo)["changed"]  # same source again: nothing to write


def test_ingest_rejects_bad_data_before_writing(tmp_path: Path) -> None:
    """An out-of-bounds value fails validation and the raw data stays byte for byte."""
    from pipelines.ingest import ingest
    from seqcast.core.config import load_config
    from seqcast.data.validation import ValidationFailed

    repo = make_repo(tmp_path / "repo", ingest={"source": "bad.csv", "mode": "replace"})
    series(200, high=500000.0).to_csv(repo / "bad.csv", index=False)
    before = (repo / "data/raw/series.csv").read_bytes()
    with pytest.raises(ValidationFailed, match="demand_mw"):
        ingest(load_config(repo / "params.yaml"), repo)
    assert (repo / "data/raw/series.csv").read_bytes() == before
    assert not list((repo / "data/raw").glob(".*tmp"))  # no temporary file left behind


# --- the report -----------------------------------------------------------------------------


def test_mlflow_links_follow_the_ui_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """SEQCAST_MLFLOW_UI (the Makefile's MLFLOW_PORT) moves every link; model-training view."""
    from seqcast.models.tracking import ui_link

    monkeypatch.setenv("SEQCAST_MLFLOW_UI", "http://127.0.0.1:5055/")
    assert ui_link("4", "abc") == (
        "http://127.0.0.1:5055/#/experiments/4/runs/abc?workflowType=machine_learning"
    )
    assert (
        ui_link("4") == "http://127.0.0.1:5055/#/experiments/4/runs?workflowType=machine_learning"
    )


# --- the pipeline flow, in this process -----------------------------------------------------


def test_pipeline_timeout_stops_the_stage(tmp_path: Path, api: str) -> None:
    """schedule.timeout_seconds ends `dvc repro` and its stage process; no retry."""
    import psutil

    from pipelines.pipeline import seqcast_pipeline

    repo = make_repo(tmp_path / "repo", stage_seconds=120, schedule={"timeout_seconds": 4})
    started = time.monotonic()
    state = seqcast_pipeline(root=str(repo), return_state=True)
    assert state.is_failed() and "timeout_seconds (4 s)" in state.message
    assert time.monotonic() - started < 60
    (line,) = stage_log(repo)  # started once, never finished, not retried
    pid = int(line.split()[1])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert task_runs(state.state_details.flow_run_id)["dvc-repro"] == 1


def test_pipeline_skips_while_the_lock_is_held(tmp_path: Path, api: str) -> None:
    """A run that finds the checkout's lock taken ends Skipped without touching DVC."""
    from filelock import FileLock

    from pipelines.pipeline import LOCK, seqcast_pipeline

    repo = make_repo(tmp_path / "repo")
    with FileLock(repo / LOCK):
        state = seqcast_pipeline(root=str(repo), return_state=True)
    assert state.is_completed() and state.name == "Skipped"
    assert stage_log(repo) == []


def test_stage_flows_are_subflows_with_their_prints_logged(
    tmp_path: Path, api: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the pipeline flow a stage's flow run is a subflow; its printed lines are in its log;
    the report artifact carries the six plots; the run is tagged with its retrain reason."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from pipelines.pipeline import seqcast_pipeline

    # This repo's own (absent) store, not one an earlier test named: no champion yet.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    repo = make_repo(tmp_path / "repo", flow_stage=True)
    state = seqcast_pipeline(root=str(repo), return_state=True)
    assert state.is_completed(), state.message
    pipeline_run = state.state_details.flow_run_id
    drain_prefect()
    with get_client(sync_client=True) as client:
        parent = FlowRunFilterParentFlowRunId(any_=[pipeline_run])
        (child,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=parent))
        tracker = client.read_task_run(child.parent_task_run_id)
        repro = [
            t
            for t in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [pipeline_run]})
            )
            if t.name == "dvc-repro"
        ]
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[child.id]))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[pipeline_run]))
        )
        pipeline_logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[pipeline_run]))
        )
    printed = capfd.readouterr()
    # DVC's lines once: by DVC's handler, not again by Prefect's root handler.
    assert "dvc.stage.run - Running stage 'report'" not in printed.out + printed.err
    ran = "Ran: report; restored from DVC's run cache: none"
    assert ran in [log.message for log in pipeline_logs]
    assert child.name == "report" and child.state.is_completed()
    assert tracker.flow_run_id == pipeline_run and tracker.name == "report"
    assert tracker.state.is_completed()  # the server mirrors the subflow's state onto it
    assert [p.id for p in tracker.task_inputs["__parents__"]] == [repro[0].id]
    messages = [log.message for log in logs]
    assert "report: loading the slow things..." in messages
    assert "report epoch 1/1  loss 0.12345" in messages
    table = next(a for a in artifacts if a.key == "seqcast-models")
    assert table.type == "table"
    rows = json.loads(table.data)
    assert [row["model"] for row in rows] == ["gru", "lstm", "naive"]
    assert rows[0]["MASE"] == 0.61 and rows[0]["role"] == "network"
    assert {a.key for a in artifacts} == {"seqcast-models", "seqcast-report"}
    # The plots as data: URIs, which the Prefect UI's Markdown renders as <img> (relative paths
    # would resolve against the UI's own URL).
    text = next(a for a in artifacts if a.key == "seqcast-report").data
    images = re.findall(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert [stem for stem, _ in images] == [
        "backtest", "bands", "coverage", "forecast", "horizon_mae", "learning_curves",
    ]  # fmt: skip
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for _, data in images)
    with get_client(sync_client=True) as client:
        tags = client.read_flow_run(pipeline_run).tags
    assert tags == ["retrain:no-champion"]


def test_stage_flow_without_a_parent_is_a_top_level_run(tmp_path: Path, api: str) -> None:
    """`dvc repro` alone (no pipeline flow): the stage's flow run has no parent, as before."""
    from prefect import get_client

    repo = make_repo(tmp_path / "repo", flow_stage=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SEQCAST_PREFECT_PARENT_FLOW_RUN", None)
    done = subprocess.run(
        ["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "report epoch 1/1  loss 0.12345" in done.stdout  # still on the terminal
    # Prefect's own "View at .../runs/flow-run/<id>" line names the stage's flow run.
    (run_id,) = re.findall(r"/runs/flow-run/([0-9a-f-]{36})", done.stderr)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert run.name == "report" and run.state.is_completed()
    assert run.parent_task_run_id is None


def test_flow_run_tags_name_the_retrain_reason_alarms_and_champion() -> None:
    """retrain:<reason> when it retrains, retrain:none otherwise; alarm:<check>; champion:vN."""
    from dataclasses import replace

    from pipelines.pipeline import flow_run_tags
    from seqcast.operations import monitoring

    quiet = monitoring.nothing_yet(100)
    retrained = monitoring.Decision(True, "new data", "48 new row(s)")
    assert flow_run_tags(retrained, quiet, "3") == ["retrain:new-data", "champion:v3"]
    kept = monitoring.Decision(False, "cooldown", "only 10 row(s) since the last retrain")
    alarmed = replace(quiet, decay=monitoring.Check("decay", monitoring.ALARM, 0.001, "worse"))
    assert flow_run_tags(kept, alarmed) == ["retrain:none", "alarm:decay"]
