"""Faults: the workspace and the MLflow store or dvc.lock disagree; the runner notices and mends.

A deleted store (or MLFLOW_TRACKING_URI pointing at another) leaves evaluation/runs.json naming
runs and models that are gone while DVC calls every stage up to date; a stage killed with -9
leaves the outputs DVC deleted before running it missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines import consistency
from pipelines.server import run_checked

BIN = Path(sys.executable).parent


@pytest.fixture
def toolchain(monkeypatch: pytest.MonkeyPatch) -> None:
    """dvc on PATH, no outside store, no stop file of an outer run."""
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for key in ("MLFLOW_TRACKING_URI", "SEQCAST_STOP_FILE", "DVC_STAGE"):
        monkeypatch.delenv(key, raising=False)


def init_repo(repo: Path, dvc_yaml: str) -> None:
    """A git + DVC repository holding this dvc.yaml."""
    repo.mkdir(parents=True)
    (repo / "dvc.yaml").write_text(textwrap.dedent(dvc_yaml))
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(args, cwd=repo, check=True, capture_output=True)


def logged(root: Path) -> dict:
    """A real store under root/mlruns: a parent run, a child with a logged model; its runs.json."""
    import mlflow
    from mlflow.pyfunc import PythonModel

    from seqcast.models import tracking

    class Echo(PythonModel):
        def predict(self, context, model_input: list[float]) -> list[float]:
            return model_input

    experiment_id = tracking.setup("seqcast", root)
    with (
        mlflow.start_run(experiment_id=experiment_id) as parent,
        mlflow.start_run(experiment_id=experiment_id, nested=True) as child,
    ):
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo())
    runs = {
        "parent_run_id": parent.info.run_id,
        "networks": {"gru": {"run_id": child.info.run_id, "model_uri": info.model_uri}},
    }
    (root / "evaluation").mkdir(parents=True)
    (root / "evaluation" / "runs.json").write_text(json.dumps(runs))
    return runs


def test_outputs_naming_runs_the_store_lacks_are_found_in_well_under_a_second(
    tmp_path: Path, toolchain: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store intact: nothing. Model files gone, another store, the store deleted: each named."""
    runs = logged(tmp_path)
    model = runs["networks"]["gru"]["model_uri"].removeprefix("models:/")
    started = time.perf_counter()
    assert consistency.missing_in_store(tmp_path) == []
    assert time.perf_counter() - started < 1.0

    other = tmp_path / "other" / "mlflow.db"
    other.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}")
    assert len(consistency.missing_in_store(tmp_path)) == 3  # a store not created yet
    monkeypatch.delenv("MLFLOW_TRACKING_URI")

    for folder in (tmp_path / "mlruns" / "artifacts").rglob(model):
        shutil.rmtree(folder)
    assert consistency.missing_in_store(tmp_path) == [
        f"evaluation/runs.json networks.gru.model_uri: model {model}"
    ]

    for name in ("mlflow.db", "mlflow.db-wal", "mlflow.db-shm"):
        (tmp_path / "mlruns" / name).unlink(missing_ok=True)
    assert consistency.missing_in_store(tmp_path) == [
        f"evaluation/runs.json parent_run_id: run {runs['parent_run_id']}",
        f"evaluation/runs.json networks.gru.run_id: run {runs['networks']['gru']['run_id']}",
        f"evaluation/runs.json networks.gru.model_uri: model {model}",
    ]


# An evaluate stage that logs one MLflow run and names it in evaluation/runs.json, and a promote
# stage after it, as in dvc.yaml.
EVALUATE = """
import json, os, sys
import mlflow
from seqcast.models import tracking
from pathlib import Path

root = Path.cwd()
experiment_id = tracking.setup("seqcast", root)
with mlflow.start_run(experiment_id=experiment_id) as run:
    pass
os.makedirs("evaluation", exist_ok=True)
Path("evaluation/runs.json").write_text(json.dumps({"parent_run_id": run.info.run_id}))
with open("evaluate.log", "a") as log:
    log.write(run.info.run_id + "\\n")
"""


def test_a_deleted_store_makes_the_runner_redo_evaluate_onwards(
    tmp_path: Path, toolchain: None, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """`rm mlruns/mlflow.db`, `make repro`: evaluate and promote run again, not all cached."""
    repo = tmp_path / "repo"
    init_repo(
        repo,
        f"""
        stages:
          evaluate:
            cmd: {sys.executable} evaluate.py
            deps: [evaluate.py]
            outs: [evaluation]
          promote:
            cmd: cat evaluation/runs.json > promoted.json
            deps: [evaluation]
            outs: [{{promoted.json: {{cache: false}}}}]
        """,
    )
    (repo / "evaluate.py").write_text(EVALUATE)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2] / "src"))
    monkeypatch.chdir(repo)
    assert run_checked(["dvc", "repro"]) == 0
    for name in ("mlflow.db", "mlflow.db-wal", "mlflow.db-shm"):
        (repo / "mlruns" / name).unlink(missing_ok=True)

    assert run_checked(["dvc", "repro"]) == 0

    err = capfd.readouterr().err
    assert "lacks what the workspace's outputs name" in err
    assert "Redoing evaluate and the stages after it first" in err
    assert len((repo / "evaluate.log").read_text().split()) == 2
    assert consistency.missing_in_store(repo) == []
    promoted = json.loads((repo / "promoted.json").read_text())
    assert promoted == json.loads((repo / "evaluation" / "runs.json").read_text())


def test_a_stage_killed_with_9_gets_its_outputs_put_back(
    tmp_path: Path, toolchain: None, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """kill -9 of a stage: DVC had deleted models/gru; the runner puts it back and says so."""
    repo = tmp_path / "repo"
    init_repo(
        repo,
        """
        stages:
          train:
            cmd: sh -c 'test -f die && kill -9 $$; mkdir -p models/gru && cp input models/gru/'
            deps: [input]
            outs: [models/gru]
        """,
    )
    (repo / "input").write_text("one\n")
    monkeypatch.chdir(repo)
    assert run_checked(["dvc", "repro"]) == 0
    (repo / "input").write_text("two\n")
    (repo / "die").write_text("")

    assert run_checked(["dvc", "repro"]) != 0

    err = capfd.readouterr().err
    assert "train did not finish (killed?): put back its last good models/gru" in err
    assert (repo / "models" / "gru" / "input").read_text() == "one\n"
