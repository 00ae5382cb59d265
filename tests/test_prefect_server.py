"""pipelines.server: the UI's API URL, Ctrl-C/SIGTERM during a run, servers dying with their run.

Real processes and real signals: `python -m pipelines.server run -- ...` is started as its own
session (as make is under a terminal) with SIGINT at its default, whatever pytest inherited.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import psutil
import pytest
from test_pipeline_flow import make_repo, stage_log
from test_prefect import wait_for

ROOT = Path(__file__).resolve().parents[1]


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def environment(**extra: str) -> dict[str, str]:
    """This environment's python and dvc first on PATH, pipelines importable from any cwd."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def runner(args: list[str], cwd: Path, env: dict[str, str], out: IO[bytes]) -> subprocess.Popen:
    """`python -m pipelines.server ARGS` in a new session, SIGINT not ignored."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.server", *args],
        cwd=cwd,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_ui_asks_the_api_on_the_servers_own_port(prefect_api: str) -> None:
    """A server on a port other than 4200 tells its UI (GET /ui-settings) that port's API URL."""
    assert not prefect_api.endswith(":4200/api")
    ui = prefect_api.removesuffix("/api")
    with urllib.request.urlopen(f"{ui}/ui-settings", timeout=10) as reply:
        assert json.load(reply)["api_url"] == prefect_api


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_stops_the_running_stage_at_once(
    tmp_path: Path, prefect_api: str, signum: int
) -> None:
    """Ctrl-C (to the runner's group) or SIGTERM (to the runner): stage gone in seconds, clean."""
    repo = make_repo(tmp_path / "repo", stage_seconds=120, flow_stage=True)
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = runner(
            ["run", "--", "dvc", "repro"], repo, environment(PREFECT_API_URL=prefect_api), out
        )
    try:
        wait_for(lambda: stage_log(repo), 90, "the stage to start")
        stage = int(stage_log(repo)[0].split()[1])
        sent = time.monotonic()
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)  # what the terminal does: the foreground group
        else:
            proc.send_signal(signum)  # what make does with a SIGTERM: its child only
        code = proc.wait(timeout=60)
        wait_for(lambda: gone(stage), 10, "the stage process to end")
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text()
    assert code == 128 + signum, output[-3000:]
    assert took < 20, f"{took:.1f} s from the signal to the stage gone"
    assert "Traceback" not in output, output[-3000:]
    assert f"{signal.Signals(signum).name}: stopping dvc repro" in output
    assert "report failed: interrupted" in output  # the stage's own one line
    assert [line.split()[0] for line in stage_log(repo)] == ["start"]  # stopped, not finished
    print(f"{signal.Signals(signum).name}: stage gone {took:.1f} s after the signal")


def test_server_dies_with_its_run_and_an_orphan_is_adopted(tmp_path: Path) -> None:
    """kill -9 of a run takes its server (and command) along; an orphan server is adopted."""
    from pipelines.server import (
        free_port,
        prefect_home,
        read_record,
        start_server,
        write_record,
    )

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text("{}\n")  # marks the workspace whose .prefect/ is used
    port = free_port()
    sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
    with open(tmp_path / "first.log", "wb") as out:
        first = runner(["run", "--port", str(port), "--", *sleeper], repo, environment(), out)
    try:
        record: Any = wait_for(lambda: read_record(repo), 120, "the started server's record")
        assert record["owner"] == first.pid
        command = wait_for(
            lambda: [c.pid for c in psutil.Process(first.pid).children() if c.pid != record["pid"]],
            30,
            "the command",
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
        wait_for(lambda: gone(record["pid"]), 30, "the server to die with its run")
        wait_for(lambda: gone(command[0]), 10, "the command to die with its run")
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert read_record(repo) == record  # left behind: the next run finds the owner dead

    # As if the server had outlived its run (no PR_SET_PDEATHSIG: not Linux, an older version).
    home = prefect_home(repo)
    orphan = start_server(home, port, log=home / "server.log", owned=False)
    try:
        write_record(repo, orphan, record["owner"])
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.server", "run", "--port", str(port), "--", "true"],
            cwd=repo,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert f"Adopted the Prefect server (pid {orphan.pid})" in done.stderr
        assert orphan.process.wait(timeout=30) is not None  # stopped by the adopting run
        assert read_record(repo) is None
    finally:
        if orphan.process.poll() is None:
            os.killpg(orphan.pid, signal.SIGKILL)
            orphan.process.wait()
