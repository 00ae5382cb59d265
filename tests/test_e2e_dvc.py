"""End to end: real `dvc repro` in a temporary git copy of the repository, on tiny params."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.repro import git_copy

BIN = Path(sys.executable).parent
TINY = {
    "window": {"input_width": 48, "horizon": 12},
    "features": {"calendar": ["time_of_day"], "reference": "auto", "reference_season": None},
    "baselines": {"seasons": [48]},
    "train": {"epochs": 2, "batch_size": 128, "patience": 1},
    "models": {"gru": {"units": 8}, "lstm": {"units": 8}},
}
OUTPUTS = (
    "data/prepared",
    "data/windows",
    "models/gru",
    "models/lstm",
    "metrics/comparison.json",
    "evaluation/runs.json",
    "metrics/promotion.json",
)

pytestmark = pytest.mark.e2e


def merge(base: dict, override: dict) -> dict:
    """Nested dict update."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) else value
    return out


def run(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in the copy with the project's environment on PATH."""
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def ran(done: subprocess.CompletedProcess) -> set[str]:
    """Stages DVC ran, read off its output."""
    text = done.stdout + done.stderr
    return {line.split("'")[1] for line in text.splitlines() if line.startswith("Running stage '")}


def digest(path: Path) -> str:
    """One md5 over a file or every file below a folder."""
    h = hashlib.md5()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(f.relative_to(path.parent).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def set_params(repo: Path, override: dict) -> None:
    """Rewrite params.yaml with an override merged in."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(merge(params, override), sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git copy of the working tree (tracked and new files), with tiny params, committed."""
    # The same copy the benchmarks time: tracked and new files of this working tree.
    return git_copy(tmp_path_factory.mktemp("e2e") / "seqcast", TINY)


@pytest.fixture(scope="module")
def first(repo: Path, prefect_api: str) -> subprocess.CompletedProcess:
    """The cold `dvc repro`."""
    return run(repo, "dvc", "repro")


def test_cold_repro_runs_every_stage(repo: Path, first: subprocess.CompletedProcess) -> None:
    """Every stage runs once, in DAG order, and writes its outputs."""
    assert ran(first) == {
        "validate",
        "normalise",
        "window",
        "train@gru",
        "train@lstm",
        "evaluate",
        "promote",
    }
    comparison = json.loads((repo / "metrics/comparison.json").read_text())
    assert set(comparison["models"]) == {"gru", "lstm", "naive", "seasonal_naive_48", "linear"}
    shown = run(repo, "dvc", "metrics", "show").stdout
    for name in ("gru.json", "lstm.json", "naive.json", "seasonal_naive_48.json", "linear.json"):
        assert name in shown
    dag = run(repo, "dvc", "dag", "--md").stdout
    assert "validate" in dag and "window" in dag and "promote" in dag


def test_runs_land_in_the_repo_store(repo: Path, first: subprocess.CompletedProcess) -> None:
    """A parent run with a child per model and baseline, in <repo>/mlruns."""
    runs = json.loads((repo / "evaluation/runs.json").read_text())
    with sqlite3.connect(repo / "mlruns" / "mlflow.db") as db:
        parent_of = dict(
            db.execute(
                "select run_uuid, value from tags where key = 'mlflow.parentRunId'"
            ).fetchall()
        )
        statuses = dict(db.execute("select run_uuid, status from runs").fetchall())
    children = [r for r, p in parent_of.items() if p == runs["parent_run_id"]]
    assert len(children) == 5
    assert statuses[runs["parent_run_id"]] == "FINISHED"


def test_second_repro_does_nothing(repo: Path, first: subprocess.CompletedProcess) -> None:
    """Nothing changed, nothing reruns."""
    again = run(repo, "dvc", "repro")
    assert ran(again) == set()
    assert "up to date" in run(repo, "dvc", "status").stdout


def test_window_param_reruns_window_and_after(
    repo: Path, first: subprocess.CompletedProcess
) -> None:
    """A window change reruns window and what follows, not validation or normalisation."""
    set_params(repo, {"window": {"stride": 2}})
    done = run(repo, "dvc", "repro")
    assert ran(done) == {"window", "train@gru", "train@lstm", "evaluate", "promote"}


def test_gru_param_reruns_only_gru(repo: Path, first: subprocess.CompletedProcess) -> None:
    """A GRU change retrains the GRU alone."""
    run(repo, "dvc", "repro")
    set_params(repo, {"models": {"gru": {"units": 6}}})
    done = run(repo, "dvc", "repro")
    assert ran(done) == {"train@gru", "evaluate", "promote"}


def test_bad_params_fail_naming_the_key(repo: Path, first: subprocess.CompletedProcess) -> None:
    """A bad params value stops the run with the key named, outputs untouched."""
    run(repo, "dvc", "repro")
    before = {name: digest(repo / name) for name in OUTPUTS}
    saved = (repo / "params.yaml").read_text()
    set_params(repo, {"models": {"lstm": {"units": 0}}})
    failed = run(repo, "dvc", "repro", check=False)
    (repo / "params.yaml").write_text(saved)
    assert failed.returncode != 0
    assert "models.lstm.units" in failed.stdout + failed.stderr
    assert before == {name: digest(repo / name) for name in OUTPUTS}


def test_corrupt_csv_fails_validation_and_keeps_outputs(
    repo: Path, first: subprocess.CompletedProcess
) -> None:
    """A broken raw CSV fails at validation with the row named; the last good outputs stay."""
    run(repo, "dvc", "repro")
    before = {name: digest(repo / name) for name in OUTPUTS}
    raw = repo / "data/raw/electricity_demand.csv"
    lines = raw.read_text().splitlines()
    lines[10] = lines[10].split(",")[0] + ",not-a-number"
    raw.write_text("\n".join(lines) + "\n")
    failed = run(repo, "dvc", "repro", check=False)
    assert failed.returncode != 0
    text = failed.stdout + failed.stderr
    assert "validation failed" in text and "demand_mw" in text
    assert ran(failed) == {"validate"}
    assert before == {name: digest(repo / name) for name in OUTPUTS}
