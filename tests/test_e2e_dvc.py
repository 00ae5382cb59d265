"""End to end: real `dvc repro` and `dvc exp run` in a temporary git copy of the repository.

The module's copy runs the pipeline once on tiny params and commits the result as the baseline,
as the README tells a user to; every test after that starts from that committed state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import ran

from benchmarks.repro import git_copy
from seqcast.registry.store import KEY_FILE, missing_in_store

BIN = Path(sys.executable).parent
TINY = {
    "window": {"input_width": 48, "horizon": 12},
    "features": {"calendar": ["time_of_day"], "reference": "auto", "reference_season": None},
    "baselines": {"seasons": [48]},
    "train": {"epochs": 1, "batch_size": 128, "patience": 1, "jit_compile": False},
    "models": {"gru": {"units": 8}, "lstm": {"units": 8}},
    # One fit per network in the backtest (its second fold forecasts with the first's model):
    # a fit's tracing, not its epochs, is most of a tiny stage, and every test here repeats them.
    "backtest": {"origins": 2, "refit_every": "once"},
}
# Everything the stages write, cached or not.
OUTPUTS = (
    "reports/validation",
    "data/prepared",
    "data/windows",
    "models/gru",
    "models/lstm",
    "backtest/gru",
    "backtest/lstm",
    "evaluation",
    "models/served",
    "metrics/gru.json",
    "metrics/lstm.json",
    "metrics/linear.json",
    "metrics/autoets.json",
    "metrics/autotheta.json",
    "metrics/naive.json",
    "metrics/best_baseline.json",
    "plots",
    "metrics/promotion.json",
    "reports/report",
    str(KEY_FILE),
)
STAGES = {
    "store", "validate", "normalise", "window", "train@gru", "train@lstm", "backtest@gru",
    "backtest@lstm", "evaluate", "refit", "promote",
}  # fmt: skip

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


def restored(done: subprocess.CompletedProcess) -> set[str]:
    """Stages DVC restored from its run cache."""
    text = done.stdout + done.stderr
    return {
        line.split("'")[1]
        for line in text.splitlines()
        if line.startswith("Stage '") and "is cached" in line
    }


def stale(repo: Path) -> dict[str, list]:
    """`dvc status`, less the `store` stage, which DVC always lists ("always changed")."""
    status = yaml.safe_load(run(repo, "dvc", "status", "--json").stdout)
    return {name: why for name, why in status.items() if why != ["always changed"]}


def digest(path: Path) -> str:
    """One md5 over a file or every file below a folder."""
    h = hashlib.md5()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(f.relative_to(path.parent).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def snapshot(repo: Path) -> dict[str, str]:
    """Digest of every stage output in the workspace."""
    return {name: digest(repo / name) for name in OUTPUTS if (repo / name).exists()}


def set_params(repo: Path, override: dict) -> None:
    """Rewrite params.yaml with an override merged in."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(merge(params, override), sort_keys=False))


def store(repo: Path, query: str, *args: object) -> list[tuple]:
    """Rows from the repository's one MLflow store."""
    with sqlite3.connect(repo / "mlruns" / "mlflow.db") as db:
        return db.execute(query, args).fetchall()


def aliases(repo: Path) -> dict[str, int]:
    """Registry alias -> version."""
    return dict(store(repo, "select alias, version from registered_model_aliases"))


def runs_of(repo: Path, experiment: str) -> dict[str, dict[str, str]]:
    """Run id -> params of every MLflow run tagged with a DVC experiment name."""
    ids = store(
        repo,
        "select run_uuid from tags where key = 'seqcast.dvc_exp_name' and value = ?",
        experiment,
    )
    return {
        run_id: dict(store(repo, "select key, value from params where run_uuid = ?", run_id))
        for (run_id,) in ids
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git copy of the working tree (tracked and new files), with tiny params, committed."""
    return git_copy(tmp_path_factory.mktemp("e2e") / "seqcast", TINY)


@pytest.fixture(scope="module")
def first(repo: Path, prefect_api: str) -> subprocess.CompletedProcess:
    """The cold `dvc repro`, committed with dvc.lock and the small outputs as the baseline."""
    done = run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline")
    return done


@pytest.fixture
def clean(repo: Path, first: subprocess.CompletedProcess):
    """Each test starts from the committed baseline and leaves it so."""
    yield repo
    run(repo, "git", "reset", "-q", "--hard", "HEAD")
    run(repo, "dvc", "checkout", "--force")


def test_cold_repro_runs_every_stage(repo: Path, first: subprocess.CompletedProcess) -> None:
    """Every stage runs once and writes its outputs; metrics files hold numbers only."""
    assert ran(first) == STAGES
    files = {p.stem for p in (repo / "metrics").glob("*.json")}
    assert files == {
        "gru", "lstm", "linear", "autoets", "autotheta", "naive", "best_baseline", "promotion"
    }  # fmt: skip
    for path in (repo / "metrics").glob("*.json"):
        values = json.loads(path.read_text())
        assert values and all(type(v) is float for v in values.values()), path
    assert set(json.loads((repo / "metrics/gru.json").read_text())) == {
        "mae",
        "mase",
        "bt_mae",
        "bt_mase",
    }
    comparison = json.loads((repo / "evaluation/comparison.json").read_text())
    best = comparison["models"][comparison["best_baseline"]]
    assert json.loads((repo / "metrics/best_baseline.json").read_text())["mae"] == best["mae"]
    steps = json.loads((repo / "evaluation/scores.json").read_text())["gru"]["test"]["mae_step"]
    assert list(steps) == [f"{h:02d}" for h in range(1, 13)]
    shown = run(repo, "dvc", "metrics", "show").stdout
    for name in ("gru.json", "autoets.json", "autotheta.json", "naive.json", "promotion.json"):
        assert name in shown
    assert max(len(line) for line in shown.splitlines()) <= 100
    report = (repo / "reports/report/report.md").read_text()
    for image in (repo / "reports/report/plots").glob("*.png"):
        assert f"](plots/{image.name})" in report


def test_runs_land_in_the_repo_store(repo: Path, first: subprocess.CompletedProcess) -> None:
    """A parent run with a child per model and baseline, in <repo>/mlruns."""
    runs = json.loads((repo / "evaluation/runs.json").read_text())
    parent_of = dict(store(repo, "select run_uuid, value from tags where key='mlflow.parentRunId'"))
    statuses = dict(store(repo, "select run_uuid, status from runs"))
    children = [r for r, p in parent_of.items() if p == runs["parent_run_id"]]
    # A child per model (gru, lstm, linear, autoets, autotheta, naive, the best baseline), the
    # backtest's run and the refit's run.
    assert len(children) == 7 + 2
    assert statuses[runs["parent_run_id"]] == "FINISHED"
    assert aliases(repo) == {"champion": 1}


def test_second_repro_does_nothing(clean: Path) -> None:
    """Nothing changed, nothing reruns but the store's check, quickly; every byte stays."""
    before, lock = snapshot(clean), (clean / "dvc.lock").read_bytes()
    started = time.perf_counter()
    again = run(clean, "dvc", "repro")
    seconds = time.perf_counter() - started
    print(f"no-op dvc repro: {seconds:.2f} s")
    assert ran(again) == {"store"} and restored(again) == set()
    assert snapshot(clean) == before and (clean / "dvc.lock").read_bytes() == lock
    assert stale(clean) == {}


def test_a_deleted_store_makes_plain_repro_register_a_champion_again(clean: Path) -> None:
    """`rm mlruns/mlflow.db`, plain `dvc repro`: the store stage sees the outputs name runs that
    are gone, evaluate, refit and promote run again into a new store (not restored from the run
    cache) and a champion is registered; the repro after that does nothing."""
    database = clean / "mlruns" / "mlflow.db"
    saved = clean.parent / "mlflow.db.saved"
    with (
        contextlib.closing(sqlite3.connect(database)) as db,
        contextlib.closing(sqlite3.connect(saved)) as copy,
    ):
        db.backup(copy)
    try:
        for name in ("mlflow.db", "mlflow.db-wal", "mlflow.db-shm"):
            (clean / "mlruns" / name).unlink(missing_ok=True)
        lost = run(clean, "dvc", "repro")
        assert ran(lost) == {"store", "evaluate", "refit", "promote"}
        assert restored(lost) == set()
        assert "lacks what the outputs name" in lost.stdout
        assert aliases(clean) == {"champion": 1}
        # The copy's own store: an earlier test may have pointed MLFLOW_TRACKING_URI elsewhere.
        assert missing_in_store(clean, f"sqlite:///{clean / 'mlruns' / 'mlflow.db'}") == []
        assert json.loads((clean / KEY_FILE).read_text())["generation"] == 1
        after = snapshot(clean)
        assert ran(run(clean, "dvc", "repro")) == {"store"}
        assert snapshot(clean) == after
    finally:  # the baseline's store, for the tests after this one
        for name in ("mlflow.db", "mlflow.db-wal", "mlflow.db-shm"):
            (clean / "mlruns" / name).unlink(missing_ok=True)
        saved.replace(database)


def test_editing_a_stage_body_makes_that_stage_stale(clean: Path) -> None:
    """The file a stage runs is the file it depends on."""
    for module, stale_stages in [
        ("registry/registry", {"promote"}),
        ("data/validation", {"validate"}),
    ]:
        with open(clean / f"src/seqcast/{module}.py", "a") as handle:
            handle.write("\n# an edit\n")
        assert set(stale(clean)) == stale_stages, module
        run(clean, "git", "checkout", "--", f"src/seqcast/{module}.py")


def test_param_change_reruns_what_follows_and_going_back_restores(clean: Path) -> None:
    """A GRU change retrains the GRU alone and what follows; back to the committed params,
    DVC's run cache restores them instead of training again."""
    before = snapshot(clean)
    set_params(clean, {"models": {"gru": {"units": 6}}})
    changed = run(clean, "dvc", "repro")
    assert ran(changed) == {"store", "train@gru", "backtest@gru", "evaluate", "refit", "promote"}
    run(clean, "git", "checkout", "--", "params.yaml")
    started = time.perf_counter()
    back = run(clean, "dvc", "repro")
    seconds = time.perf_counter() - started
    assert restored(back) == {"train@gru", "backtest@gru", "evaluate", "refit"}
    assert ran(back) == {"store", "promote"}  # the registry is live: decided again, not restored
    print(f"run-cache restore: {seconds:.1f} s")
    # Byte for byte what the first run wrote; only the promotion is decided anew.
    decided = ("metrics/promotion.json", "reports/report")
    after = snapshot(clean)
    assert {k: v for k, v in after.items() if k not in decided} == {
        k: v for k, v in before.items() if k not in decided
    }


def test_bad_params_fail_naming_the_key_and_keep_outputs(clean: Path) -> None:
    """A bad value stops the run with the key named; the last good outputs stay in place."""
    before = snapshot(clean)
    set_params(clean, {"models": {"lstm": {"units": 0}}})
    failed = run(clean, "dvc", "repro", check=False)
    assert failed.returncode != 0
    assert "models.lstm.units" in failed.stdout + failed.stderr
    assert snapshot(clean) == before


def test_corrupt_csv_fails_validation_and_keeps_outputs(clean: Path) -> None:
    """A broken raw CSV fails at validation with the row named; the last good outputs stay."""
    before = snapshot(clean)
    raw = clean / "data/raw/electricity_demand.csv"
    lines = raw.read_text().splitlines()
    lines[10] = lines[10].split(",")[0] + ",not-a-number"
    raw.write_text("\n".join(lines) + "\n")
    failed = run(clean, "dvc", "repro", check=False)
    assert failed.returncode != 0
    text = failed.stdout + failed.stderr
    assert "validation failed" in text and "demand_mw" in text and "line 11" in text
    assert ran(failed) == {"validate"}
    assert snapshot(clean) == before


def test_two_queued_experiments_run_at_once(clean: Path) -> None:
    """`--queue` twice, `dvc queue start -j 2`: both finish, both reach the one store, each
    trains with its override in a temporary copy and leaves the workspace as it was.

    (A queued run and `dvc exp run --temp` are the same executor in DVC: one test for both.)
    """
    before, champion = snapshot(clean), aliases(clean)["champion"]
    # Settings never run before: the run cache must not answer for them.
    run(clean, "dvc", "exp", "run", "--queue", "-S", "models.gru.units=7", "-n", "q-gru")
    run(clean, "dvc", "exp", "run", "--queue", "-S", "models.lstm.units=7", "-n", "q-lstm")
    run(clean, "dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = run(clean, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    run(clean, "dvc", "queue", "stop", check=False)
    assert status.count("Success") == 2, status
    gru = runs_of(clean, "q-gru")
    lstm = runs_of(clean, "q-lstm")
    assert {p["models.gru.units"] for p in gru.values()} == {"7"}
    assert {p["models.lstm.units"] for p in lstm.values()} == {"7"}
    # The LSTM's training run, the parent, a child per model, the backtest's and the refit's.
    assert len(lstm) == 1 + 1 + 7 + 2
    assert aliases(clean)["champion"] == champion
    assert snapshot(clean) == before
    assert stale(clean) == {}
    # `dvc exp apply` brings the experiment's params and outputs into the workspace.
    run(clean, "dvc", "exp", "apply", "q-lstm")
    assert yaml.safe_load((clean / "params.yaml").read_text())["models"]["lstm"]["units"] == 7
    assert stale(clean) == {}
    applied = snapshot(clean)
    assert applied["models/lstm"] != before["models/lstm"]
    assert applied["models/gru"] == before["models/gru"]
