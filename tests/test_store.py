"""The `store` stage: the MLflow store's key that DVC tracks, stable until the store loses runs.

The real pipeline is in tests/test_e2e_dvc.py; here a stand-in SQLite store with MLflow's two
tables the check reads, so each case takes milliseconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from seqcast.registry import store


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout whose evaluation/runs.json names run r1 and model m-1; no outside store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "params.yaml").write_text("{}\n")
    name(tmp_path, "r1", "m-1")
    return tmp_path


def name(root: Path, run: str, model: str) -> None:
    """Outputs naming this run and logged model, as evaluate writes them."""
    runs = {"parent_run_id": run, "networks": {"gru": {"model_uri": f"models:/{model}"}}}
    (root / "evaluation").mkdir(exist_ok=True)
    (root / "evaluation" / "runs.json").write_text(json.dumps(runs))


def hold(root: Path, run: str, model: str) -> None:
    """A store under root/mlruns holding this run and logged model (its folder in place)."""
    (root / "mlruns").mkdir(exist_ok=True)
    folder = root / "mlruns" / "artifacts" / model
    folder.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as db:
        db.execute("create table if not exists runs (run_uuid, lifecycle_stage)")
        columns = "model_id, artifact_location, lifecycle_stage"
        db.execute(f"create table if not exists logged_models ({columns})")
        db.execute("insert into runs values (?, 'active')", (run,))
        db.execute("insert into logged_models values (?, ?, 'active')", (model, str(folder)))


def test_the_key_names_the_store_without_machine_paths_or_credentials(tmp_path: Path) -> None:
    """SQLite relative to the main checkout (or absolute outside it); a server's bare URL."""
    inside = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}?timeout=60"
    assert store.address(inside, tmp_path) == "sqlite:///mlruns/mlflow.db"
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"  # `dvc exp run --temp`: same store
    assert store.address(inside, copy) == "sqlite:///mlruns/mlflow.db"
    assert store.address("sqlite:////srv/mlflow.db", tmp_path) == "sqlite:////srv/mlflow.db"
    server = "https://alice:secret@mlflow.example.org:5000/team/?token=x"
    assert store.address(server, tmp_path) == "https://mlflow.example.org:5000/team/"


def test_the_generation_moves_on_only_when_the_same_store_lost_runs() -> None:
    """Bumped for a loss in the same store (or no earlier key); another store keeps it."""
    here, there = "sqlite:///mlruns/mlflow.db", "http://mlflow:5000"
    assert store.next_key(None, here, []) == {"generation": 0, "store": here}
    assert store.next_key(None, here, ["lost"]) == {"generation": 1, "store": here}
    kept = {"generation": 3, "store": here}
    assert store.next_key(kept, here, []) == kept
    assert store.next_key(kept, here, ["lost"]) == {"generation": 4, "store": here}
    # Another store is a new key already; DVC's run cache may hold outputs made with it.
    assert store.next_key(kept, there, ["lost"]) == {"generation": 3, "store": there}
    assert store.next_key({"generation": "x"}, here, []) == {"generation": 0, "store": here}


def test_the_key_stays_byte_for_byte_until_the_store_is_lost(workspace: Path) -> None:
    """Intact: the same bytes, the file untouched. Deleted: a new generation, which then stays
    once evaluate has logged its runs in the new store."""
    hold(workspace, "r1", "m-1")
    key_file = workspace / store.KEY_FILE
    assert store.record_key(workspace) == (
        {"generation": 0, "store": "sqlite:///mlruns/mlflow.db"},
        [],
    )
    first, stamp = key_file.read_bytes(), key_file.stat().st_mtime_ns
    store.record_key(workspace)
    assert key_file.read_bytes() == first and key_file.stat().st_mtime_ns == stamp

    (workspace / "mlruns" / "mlflow.db").unlink()
    key, missing = store.record_key(workspace)
    assert key["generation"] == 1 and len(missing) == 2
    lost = key_file.read_bytes()
    assert lost != first

    hold(workspace, "r2", "m-2")  # evaluate ran again: a new store, new runs named
    name(workspace, "r2", "m-2")
    assert store.record_key(workspace) == (key, [])
    assert key_file.read_bytes() == lost


def test_the_store_stage_is_a_light_process(workspace: Path) -> None:
    """`python -m pipelines.stages store` imports neither Prefect, MLflow nor TensorFlow."""
    hold(workspace, "r1", "m-1")
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipelines.stages", "store"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert not {m.split(".")[0] for m in imported} & {"prefect", "mlflow", "tensorflow", "keras"}
    assert json.loads((workspace / store.KEY_FILE).read_text())["generation"] == 0

    (workspace / "mlruns" / "mlflow.db").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.stages", "store"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "lacks what the outputs name" in done.stdout
    assert "evaluation/runs.json parent_run_id: run r1" in done.stdout
