"""Faults: no MLflow run stays RUNNING after its process was killed or interrupted."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT

from seqcast.models import tracking

# A training run whose process dies by kill -9 in the middle of it.
KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import mlflow
    from seqcast.models import tracking

    root = Path(sys.argv[1])
    experiment_id = tracking.setup("seqcast-training", root)
    tags = tracking.run_tags("d", "w", root, stage="train")
    mlflow.start_run(experiment_id=experiment_id, run_name="gru", tags=tags)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)

# An evaluation whose Ctrl-C lands between creating a child run and entering its `with`: what
# mlflow.start_run does inside. The stage's exit path (pipelines.common) must end it FAILED.
INTERRUPTED = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    import mlflow
    from mlflow import MlflowClient
    from pipelines import common
    from seqcast.models import tracking

    common.stop_on_signals()
    root = Path(sys.argv[1])
    experiment_id = tracking.setup("seqcast", root)
    tags = tracking.run_tags("d", "w", root)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name="pipeline", tags=tags) as run:
            child_tags = tags | {"mlflow.parentRunId": run.info.run_id}
            MlflowClient().create_run(experiment_id, tags=child_tags, run_name="linear")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    except KeyboardInterrupt as exc:
        common.end_own_runs("evaluate", exc)
        sys.exit(130)
    """
)


def statuses(root: Path) -> dict[str, str]:
    """Run name -> status in the workspace's store."""
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as db:
        return dict(db.execute("select name, status from runs"))


def failure(root: Path, name: str) -> str:
    """The seqcast.failure tag of the run with this name."""
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as db:
        query = (
            "select t.value from tags t join runs r on r.run_uuid = t.run_uuid "
            "where r.name = ? and t.key = 'seqcast.failure'"
        )
        return db.execute(query, (name,)).fetchone()[0]


def run_script(script: str, root: Path) -> subprocess.CompletedProcess:
    """The script in a fresh Python with this checkout importable and the workspace's store."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-c", script, str(root)],
        cwd=ROOT,
        env=env | {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_killed_training_run_is_failed_by_the_next_evaluate_or_promote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 mid-training: the next stage to open the store, of any experiment, ends it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    done = run_script(KILLED, tmp_path)
    assert done.returncode == -9, done.stderr
    assert statuses(tmp_path) == {"gru": "RUNNING"}

    tracking.setup("seqcast", tmp_path)  # what evaluate, refit and promote do first

    assert statuses(tmp_path) == {"gru": "FAILED"}
    assert failure(tmp_path, "gru").endswith("ended without a status")


def test_ctrl_c_ends_a_child_run_cut_short_failed(tmp_path: Path) -> None:
    """Ctrl-C between a child run's creation and its `with`: parent and child end FAILED."""
    done = run_script(INTERRUPTED, tmp_path)
    assert done.returncode == 130, done.stderr
    assert statuses(tmp_path) == {"pipeline": "FAILED", "linear": "FAILED"}
    assert failure(tmp_path, "linear") == "interrupted"
