"""Faults: a store that cannot be written, a process killed mid-run, modes of what is written."""

from __future__ import annotations

import os
import shlex
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, TINY_PARAMS, mark_validated, stage_root

from seqcast.core.config import load_config
from seqcast.data import scaling, windowing
from seqcast.models import tracking


@pytest.fixture
def windowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace through the window stage, on tiny params, with its own store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = stage_root(tmp_path, **TINY_PARAMS)
    cfg = load_config(root / "params.yaml")
    mark_validated(root, cfg)
    scaling.normalise(cfg, root)
    windowing.window(cfg, root)
    return root


def stage_command(root: Path, *args: str) -> list[str]:
    """The stage CLI, without Prefect."""
    return [sys.executable, "-m", "pipelines.stages", *args, "--root", str(root)]


def environment() -> dict[str, str]:
    """This environment for a stage process: no Prefect, no outside tracking URI."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return env | {"SEQCAST_PREFECT": "off"}


def test_read_only_store_is_named_in_one_line(windowed: Path) -> None:
    """mlruns/ on a read-only mount: exit 2 and one line saying so, no SQLAlchemy traceback."""
    tracking.setup("seqcast-training", windowed)  # the store exists, as after a first run
    store = windowed / "mlruns"
    # A real read-only filesystem (root ignores file modes), in a mount namespace of its own.
    script = (
        f"mount --bind {shlex.quote(str(store))} {shlex.quote(str(store))} && "
        f"mount -o remount,bind,ro {shlex.quote(str(store))} && exec "
        + shlex.join(stage_command(windowed, "train", "--model", "gru"))
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (
        f"train failed: StoreError: {store}: the MLflow store is read-only for this user; "
        f"make {store} writable (e.g. chmod -R u+w), or set MLFLOW_TRACKING_URI to another store"
    )
    assert "Traceback" not in done.stderr
    assert not (windowed / "models").exists()


def running(database: Path) -> bool:
    """True when the store holds one run, RUNNING."""
    if not database.exists():
        return False
    try:
        with sqlite3.connect(database) as db:
            return [s for (s,) in db.execute("select status from runs")] == ["RUNNING"]
    except sqlite3.OperationalError:  # the tables are still being created
        return False


def test_run_killed_mid_training_is_marked_failed_by_the_next(windowed: Path) -> None:
    """kill -9 leaves the MLflow run RUNNING; the next run that opens the store ends it FAILED."""
    cfg = load_config(windowed / "params.yaml")
    (windowed / "params.yaml").write_text(
        (windowed / "params.yaml").read_text().replace("epochs: 2", "epochs: 200")
    )
    proc = subprocess.Popen(
        stage_command(windowed, "train", "--model", "gru"),
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    database = windowed / "mlruns" / "mlflow.db"
    deadline = time.monotonic() + 300
    while not running(database) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(1.0)  # into the fit
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert running(database), "the training run was RUNNING when the process died"

    tracking.setup(f"{cfg.tracking.experiment}-training", windowed)

    with sqlite3.connect(database) as db:
        assert [s for (s,) in db.execute("select status from runs")] == ["FAILED"]
        (why,) = db.execute("select value from tags where key = 'seqcast.failure'").fetchone()
    assert why == f"process {proc.pid} ended without a status"


def test_outputs_get_the_modes_of_the_umask(tmp_path: Path) -> None:
    """Outputs are not owner-only: with umask 022 folders are 755 and files 644."""
    root = stage_root(tmp_path, **TINY_PARAMS)
    cfg = load_config(root / "params.yaml")
    mark_validated(root, cfg)
    previous = os.umask(0o022)
    try:
        scaling.normalise(cfg, root)
    finally:
        os.umask(previous)
    folder = root / "data" / "prepared"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o644}
