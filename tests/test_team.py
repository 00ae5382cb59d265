"""The team set-up for real on one machine: PostgreSQL, moto's S3 and `mlflow server` on top.

A git copy of the repository with tiny params runs `dvc repro` against the tracking server,
pushes its outputs to a DVC remote in the same bucket, and a second clone pulls them and
reproduces nothing. Promotions race for the lock in the server's registry; the server and the
S3 endpoint go away and the errors say so. Skipped only where PostgreSQL's binaries or
moto_server are missing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ran

from benchmarks.repro import git_copy
from benchmarks.team import BUCKET, TINY, TeamServers, boto_credentials, missing

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
MODEL = "seqcast-forecaster"
LOCK = f"{MODEL}.promote-lock"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(missing() is not None, reason=f"team set-up: {missing()}"),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    """PostgreSQL, moto S3 and the MLflow tracking server for the whole module."""
    team = TeamServers(tmp_path_factory.mktemp("team-servers"))
    try:
        yield team.start()
    finally:
        team.close()


def environment(servers: TeamServers, **extra: str) -> dict[str, str]:
    """A team member's shell: the project's tools, the tracking server, the S3 credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API"))}
    return (
        env
        | servers.env()
        | {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "SEQCAST_PREFECT": "off",
            # Fail within seconds when the server is gone, instead of MLflow's minutes of retries.
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
            **extra,
        }
    )


def run(where: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """A command in a checkout; with check, fail showing its output."""
    done = subprocess.run(args, cwd=where, env=env, capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="module")
def repo(servers: TeamServers, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy with tiny params and the bucket as its default DVC remote, run, committed."""
    from helpers import run_all

    repo = git_copy(tmp_path_factory.mktemp("team") / "seqcast", TINY)
    env = environment(servers)
    run(repo, env, "dvc", "remote", "add", "-d", "team", f"s3://{BUCKET}/dvc")
    run(repo, env, "dvc", "remote", "modify", "team", "endpointurl", servers.s3_url)
    # Every stage in this process against the server: what `dvc repro` runs, without paying
    # ten stage processes' imports (~3 min on a busy 2-core machine); `dvc commit` then records
    # what they wrote in dvc.lock, as `dvc repro` would have.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", servers.tracking_uri)
        run_all(repo)
    run(repo, env, "dvc", "commit", "--force")
    run(repo, env, "git", "add", "-A")
    run(repo, env, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    return repo


def client(servers: TeamServers):
    """An MlflowClient of the tracking server."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=servers.tracking_uri)


def test_the_pipeline_registers_its_champion_on_the_server(
    servers: TeamServers, repo: Path
) -> None:
    import boto3

    champion = client(servers).get_model_version_by_alias(MODEL, "champion")
    assert champion.status == "READY"
    assert not (repo / "mlruns" / "mlflow.db").exists()  # no local store written
    # The model's files went through the server into the bucket.
    s3 = boto3.client("s3", endpoint_url=servers.s3_url, **boto_credentials())
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="mlflow/")["Contents"]]
    assert any(k.endswith("MLmodel") for k in keys)


def test_links_open_the_tracking_servers_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    from seqcast.models import tracking

    monkeypatch.setenv("SEQCAST_MLFLOW_UI", "http://127.0.0.1:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.org/")
    assert tracking.ui_link("3", "abc") == (
        "https://mlflow.example.org/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg2://u@db/mlflow")
    assert tracking.ui_link("3").startswith("http://127.0.0.1:5000/#/experiments/3/runs")


def test_forecast_reads_the_champion_from_the_server(
    servers: TeamServers, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from seqcast import cli

    raw = pd.read_csv(repo / "data/raw/electricity_demand.csv")
    raw.tail(432).to_csv(tmp_path / "recent.csv", index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", servers.tracking_uri)
    monkeypatch.chdir(repo)
    # `seqcast forecast` in this process: TensorFlow is imported already.
    code = cli.main(
        ["forecast", "--input", str(tmp_path / "recent.csv"), "--output", str(tmp_path / "out.csv")]
    )
    assert code == 0
    assert len(pd.read_csv(tmp_path / "out.csv")) == 12


def test_a_second_clone_pulls_and_reproduces_nothing(
    servers: TeamServers, repo: Path, tmp_path: Path
) -> None:
    env = environment(servers)
    pushed = run(repo, env, "dvc", "push")
    assert "pushed" in pushed.stdout + pushed.stderr
    clone = tmp_path / "clone"
    run(tmp_path, env, "git", "clone", "-q", str(repo), str(clone))
    run(clone, env, "dvc", "pull")
    again = run(clone, env, "dvc", "repro")
    # Only the store check, which runs every time: the same server, so nothing after it.
    assert ran(again) == {"store"}, again.stdout
    assert (clone / "models/served/refit.json").read_bytes() == (
        repo / "models/served/refit.json"
    ).read_bytes()


RACER = """
import json, sys, time
from pathlib import Path
import mlflow
from seqcast.registry import locks
mlflow.set_tracking_uri(sys.argv[1])
with locks.promotion_lock("race", Path(".")):
    start = time.time()
    time.sleep(0.5)
    end = time.time()
print(json.dumps([start, end]))
"""


def test_racing_promotions_never_interleave(servers: TeamServers, tmp_path: Path) -> None:
    env = environment(servers, PYTHONPATH=str(ROOT / "src"))
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, servers.tracking_uri],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(3)
    ]
    held = []
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err[-2000:]
        held.append(json.loads(out.strip().splitlines()[-1]))
    held.sort()
    for (_, end), (start, _) in zip(held, held[1:], strict=False):
        assert end <= start, held  # each starts after the previous released the lock
    assert "race.promote-lock" not in {m.name for m in client(servers).search_registered_models()}


def hold_lock(servers: TeamServers, host: str = "other-machine", pid: int = 4242) -> None:
    """Take the promotion lock as a promotion on another machine would."""
    client(servers).create_registered_model(
        LOCK,
        tags={"seqcast.lock.host": host, "seqcast.lock.pid": str(pid), "seqcast.lock.token": "x"},
    )


def test_a_held_lock_makes_promote_wait_then_exit_2_naming_the_holder(
    servers: TeamServers, repo: Path
) -> None:
    before = registry_in_database(servers)
    hold_lock(servers)
    try:
        env = environment(servers, SEQCAST_PROMOTE_LOCK_WAIT="3")
        started = time.monotonic()
        done = run(repo, env, sys.executable, "-m", "pipelines.stages", "promote", check=False)
        waited = time.monotonic() - started
    finally:
        client(servers).delete_registered_model(LOCK)
    assert done.returncode == 2, done.stderr[-3000:]
    failure = [line for line in done.stderr.splitlines() if line.startswith("promote failed:")]
    assert len(failure) == 1, done.stderr[-3000:]
    assert "process 4242 on host other-machine" in failure[0]
    assert LOCK in failure[0] and "SEQCAST_PROMOTE_LOCK_WAIT" in failure[0]
    assert waited >= 3
    assert registry_in_database(servers) == before


def test_a_dead_holder_on_this_host_is_taken_over(servers: TeamServers) -> None:
    from seqcast.registry import locks

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    hold_lock(servers, socket.gethostname(), int(dead.stdout))
    import mlflow

    mlflow.set_tracking_uri(servers.tracking_uri)
    try:
        with locks.promotion_lock(MODEL, Path(".")):
            holder = locks.read_holder(client(servers), LOCK)
            assert holder is not None and holder.pid == os.getpid()
    finally:
        mlflow.set_tracking_uri(None)
    assert locks.read_holder(client(servers), LOCK) is None


def test_s3_endpoint_down_names_it(
    servers: TeamServers, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from seqcast.models import tracking

    env = environment(servers)
    (repo / "data/raw/extra.txt").write_text("not pushed yet\n")
    run(repo, env, "dvc", "add", "data/raw/extra.txt")
    servers.stop("s3")
    pushed = run(repo, env, "dvc", "push", check=False)
    assert pushed.returncode != 0
    assert servers.s3_url.split("//")[1] in pushed.stdout + pushed.stderr, pushed.stderr[-3000:]
    # The tracking server stores artifacts there: logging one fails, and the line names it.
    for key in ("MLFLOW_S3_ENDPOINT_URL", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.setenv(key, environment(servers)[key])
    mlflow.set_tracking_uri(servers.tracking_uri)
    try:
        with pytest.raises(Exception) as failed, mlflow.start_run():
            mlflow.log_dict({"a": 1}, "a.json")
    finally:
        mlflow.set_tracking_uri(None)
    line = tracking.server_failure(failed.value)
    assert line is not None and f"S3 endpoint {servers.s3_url}" in line, str(failed.value)


def test_tracking_server_down_mid_promotion_fails_clearly_and_registers_nothing(
    servers: TeamServers, repo: Path, tmp_path: Path
) -> None:
    before = registry_in_database(servers)
    hold_lock(servers)
    log = tmp_path / "promote.log"
    env = environment(servers, SEQCAST_PROMOTE_LOCK_WAIT="300")
    with log.open("w") as out:
        promote = subprocess.Popen(
            [sys.executable, "-m", "pipelines.stages", "promote"],
            cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "waiting for the lock" not in log.read_text():
            assert promote.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        servers.stop("mlflow")  # mid-run: promote polls the lock on the server
        code = promote.wait(timeout=240)
    finally:
        if promote.poll() is None:
            promote.kill()
    text = log.read_text()
    assert code == 75, text[-3000:]  # transient: the pipeline flow may run it again
    failure = [line for line in text.splitlines() if line.startswith("promote failed:")]
    expected = (
        f"promote failed: ConnectionError: the MLflow tracking server {servers.tracking_uri} "
        "did not answer (Connection refused); "
        "start it or fix MLFLOW_TRACKING_URI, then run the stage again"
    )
    assert failure == [expected], text[-3000:]
    # Read in PostgreSQL itself: the server is gone (the last test of the module).
    assert registry_in_database(servers) == before


def registry_in_database(servers: TeamServers) -> tuple[dict, list]:
    """Aliases and (version, status) of the registered model, read from PostgreSQL."""
    import contextlib

    import psycopg2

    with contextlib.closing(psycopg2.connect(servers.db_uri.replace("+psycopg2", ""))) as db:
        cursor = db.cursor()
        cursor.execute(
            "select alias, version from registered_model_aliases where name = %s", (MODEL,)
        )
        aliases = {alias: str(version) for alias, version in cursor.fetchall()}
        cursor.execute("select version, status from model_versions where name = %s", (MODEL,))
        versions = sorted((str(v), status) for v, status in cursor.fetchall())
    return aliases, versions
