"""Faults: the MLflow store fails in a way no retry fixes; the stage says so in one line."""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, TINY_PARAMS, stage_root

from seqcast.models import tracking


def test_a_full_disk_is_one_line_naming_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's disk fills up: exit 2, one line with the store and the fix, no traceback."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = stage_root(tmp_path, **TINY_PARAMS)
    tracking.setup("seqcast-training", root)  # the store exists, as after a first run
    store = root / "mlruns"
    with sqlite3.connect(store / "mlflow.db") as db:  # an empty WAL: the next write must grow it
        db.execute("pragma wal_checkpoint(TRUNCATE)")
    used = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    full = tmp_path / "full"
    full.mkdir()
    # A real full disk: a tmpfs holding the store and a file filling the rest, bound over the
    # store in a mount namespace of its own; the promote stage's first write does not fit.
    command = [sys.executable, "-m", "pipelines.stages", "promote", "--root", str(root)]
    script = (
        f"mount -t tmpfs -o size={used // 1024 + 64}k tmpfs {shlex.quote(str(full))} && "
        f"cp -a {shlex.quote(str(store))}/. {shlex.quote(str(full))}/ && "
        f"(dd if=/dev/zero of={shlex.quote(str(full))}/.filler bs=4096 2>/dev/null; true) && "
        f"mount --bind {shlex.quote(str(full))} {shlex.quote(str(store))} && "
        f"exec {shlex.join(command)}"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=ROOT,
        env=env | {"SEQCAST_PREFECT": "off"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    database = store / "mlflow.db"
    assert done.stderr.strip().splitlines()[-1] == (
        f"promote failed: StoreError: the MLflow store sqlite:///{database}: "
        "database or disk is full; free space on the disk that holds it"
    )


def test_forecast_with_the_champions_files_gone_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`seqcast forecast` after mlruns/artifacts lost the champion: one line and the fix."""
    import shutil

    import mlflow
    from mlflow import MlflowClient
    from mlflow.pyfunc import PythonModel

    from seqcast import cli

    class Echo(PythonModel):
        def predict(self, context, model_input: list[float]) -> list[float]:
            return model_input

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    experiment_id = tracking.setup("seqcast", tmp_path)
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo())
    version = mlflow.register_model(info.model_uri, "toy")
    MlflowClient().set_registered_model_alias("toy", "champion", version.version)
    model_id = info.model_uri.removeprefix("models:/")
    folders = list((tmp_path / "mlruns" / "artifacts").rglob(model_id))
    assert folders
    for folder in folders:
        shutil.rmtree(folder)
    capsys.readouterr()  # MLflow's own lines while logging
    history = tmp_path / "history.csv"
    history.write_text("timestamp,demand_mw\n2024-01-01 00:00,1.0\n")

    code = cli.main(["forecast", "--input", str(history), "--model", "models:/toy@champion"])

    assert code == 2
    assert capsys.readouterr().err == (
        "seqcast forecast: cannot load models:/toy@champion: its files are gone from the MLflow "
        "store's artifacts (No such artifact: ''); put them back from a backup, or log and "
        "promote the served model again: dvc repro --force --downstream refit\n"
    )
