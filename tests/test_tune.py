"""The search: its space in params.yaml, the objective, and trials on a real local Ray.

One search runs on tiny params with a real Ray (2 CPUs), a real Optuna study and a real MLflow
store: its first trial raises, its second kills its own worker with SIGKILL, the others run the
real backtest objective; the search must record both failures and go on.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import ROOT, TINY_PARAMS, make_config, run_all, stage_root

from seqcast.core.errors import ConfigError

SPACE = {"units": [2, 4], "learning_rate": {"low": 0.001, "high": 0.01, "log": True}}


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ({"space": {"units": {"low": 64, "high": 16}}}, "search.space.units.range: empty or "),
        ({"space": {"dropout": {"low": 0.2, "high": 0.2}}}, "search.space.dropout.range: empty"),
        ({"space": {"unitz": [8]}}, "search.space.unitz: unknown key"),
        ({"space": {"units": []}}, "search.space.units.list: List should have at least 1"),
        ({"trials": 0}, "search.trials: Input should be greater than 0"),
        ({"parallel": 0}, "search.parallel: Input should be greater than 0"),
        ({"timeout_minutes": 0}, "search.timeout_minutes: Input should be greater than 0"),
        ({"models": ["tcn"]}, "search.models.0: Input should be 'gru' or 'lstm'"),
        (
            {"space": {"learning_rate": {"low": 0, "high": 0.1, "log": True}}},
            "search.space.learning_rate.range: a log range needs low > 0",
        ),
        ({"space": {"dropout": {"low": 0.1, "high": 1.0}}}, "dropout: high 1 must be below 1"),
        ({"space": {}}, "search: space: nothing to search"),
    ],
)
def test_bad_search_settings_name_the_key(search: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(search=search)
    assert expected in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_shipped_search_space() -> None:
    from seqcast.core.config import FloatRange, IntRange, load_config

    space = load_config(ROOT / "params.yaml").search.space
    assert space.dimensions() == {
        "input_width": [48, 96, 192],
        "units": IntRange(low=16, high=128, log=True),
        "layers": [1, 2],
        "dropout": FloatRange(low=0.0, high=0.3),
        "learning_rate": FloatRange(low=0.0003, high=0.01, log=True),
        "batch_size": [32, 64, 128],
    }


def test_overrides_are_the_dvc_exp_run_keys_and_apply_to_the_config() -> None:
    from seqcast.operations import tune

    settings = {"input_width": 24, "units": 16, "dropout": 0.25, "learning_rate": 0.004}
    changes = tune.overrides(settings, "lstm")
    assert changes == {
        "window.input_width": 24,
        "models.lstm.units": 16,
        "models.lstm.dropout": 0.25,
        "train.learning_rate": 0.004,
    }
    cfg = tune.apply(make_config(), changes)
    assert (cfg.window.input_width, cfg.models.lstm.units, cfg.models.gru.units) == (24, 16, 50)
    assert cfg.train.learning_rate == 0.004
    with pytest.raises(ConfigError, match=r"search: models\.lstm\.dropout"):
        tune.apply(cfg, {"models.lstm.dropout": 1.5})


def test_the_first_trial_is_params_yaml_when_it_lies_in_the_space() -> None:
    from seqcast.operations import tune

    space = {"units": [8, 50], "learning_rate": {"low": 0.001, "high": 0.01}}
    assert tune.current(make_config(search={"space": space})) == {
        "units": 50,
        "learning_rate": 0.002,
    }
    both = make_config(search={"models": ["lstm", "gru"], "space": {"layers": [1, 2]}})
    assert tune.current(both) == {"model": "lstm", "layers": 1}
    assert tune.current(make_config(search={"space": {"units": [8, 16]}})) is None


def test_unreachable_ray_address_is_one_line(monkeypatch) -> None:
    from seqcast.operations import tune

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(tune.SearchError, match=rf"RAY_ADDRESS='127.0.0.1:{port}': no Ray cluster"):
        tune.check_address(f"127.0.0.1:{port}")
    with pytest.raises(tune.SearchError, match="expected host:port"):
        tune.check_address("nowhere")


def test_the_flow_fails_in_one_line_before_anything_runs(prefect_api, tmp_path) -> None:
    """`make tune` on a checkout whose window stage never ran: exit 2 and what to run."""
    # Its own process, as `make tune` runs it: in-process after an in-process training test,
    # the flow's failure once took pytest's captured stderr down with it (cause not found).
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.tune", "--root", str(tmp_path)],
        cwd=ROOT,
        env=os.environ | {"PREFECT_API_URL": prefect_api, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"tune: {tmp_path / 'data' / 'windows'}: the window stage's outputs are missing; run "
        "`dvc repro window` first (`make tune` does)"
    )
    assert not (tmp_path / "tune").exists()


@pytest.fixture(scope="module")
def windows(tmp_path_factory) -> Path:
    """A tiny hourly series through the window stage, one backtest origin, a tiny search."""
    import pandas as pd

    rows = 24 * 60
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=rows, freq="h").astype(str),
            "demand_mw": 1000
            + 100 * np.sin(2 * np.pi * np.arange(rows) / 24)
            + rng.normal(0, 10, rows),
        }
    )
    root = stage_root(
        tmp_path_factory.mktemp("tune"),
        frame,
        data={"frequency": "h"},
        window={"input_width": 24, "horizon": 6},
        baselines={"seasons": [24]},
        backtest={"origins": 1},
        train=TINY_PARAMS["train"] | {"batch_size": 64},
        models={"gru": {"units": 4}},
        search={"trials": 4, "parallel": 2, "cpus": 2, "startup_trials": 1, "space": SPACE},
    )
    run_all(root, until="window")
    return root


def test_the_objective_is_the_backtest_stage_mean(windows: Path, tmp_path, monkeypatch) -> None:
    """The objective equals the promotion metric's mean over the backtest stage's own folds."""
    from seqcast.core.config import load_config
    from seqcast.data.windowing import layout, load_windows
    from seqcast.evaluation import backtest
    from seqcast.evaluation.scores import units_of
    from seqcast.operations import tune

    cfg = load_config(windows / "params.yaml")
    loaded = load_windows(windows)
    value = tune.backtest_objective(cfg, tune.load_windows(cfg, windows), "gru")
    backtest.backtest(cfg, windows, "gru")
    folds = layout(loaded["meta"]["rows"], cfg)
    stage = backtest.Backtest.load(windows / "backtest" / "gru")
    scores = backtest.score(
        {"gru": stage}, folds, units_of(loaded), loaded["spec"], loaded["meta"]["mase_season"]
    )
    assert value == pytest.approx(scores.means("mase")["gru"], rel=1e-6)


def test_search_records_crashed_and_killed_trials_and_goes_on(
    windows: Path, tmp_path, monkeypatch
) -> None:
    import mlflow

    from seqcast.core.config import load_config
    from seqcast.operations import tune

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    claims = tmp_path / "claims"
    claims.mkdir()

    def objective(cfg, loaded, kind, report):
        """Call 1 raises, call 2 kills its worker, the rest are the real objective."""
        call = 1
        while True:  # claim the next call number atomically: trials run two at a time
            try:
                os.close(os.open(claims / str(call), os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                call += 1
        if call == 1:
            raise RuntimeError("a trial that crashes")
        if call == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return tune.backtest_objective(cfg, loaded, kind, report)

    lines: list[str] = []
    cfg = load_config(windows / "params.yaml")
    summary = tune.search(cfg, windows, objective=objective, say=lines.append)

    trials = __import__("pandas").read_csv(windows / "tune" / "trials.csv")
    assert list(trials["trial"]) == [0, 1, 2, 3]
    states = dict(zip(trials["trial"], trials["state"], strict=True))
    assert sorted(states.values()).count("failed") == 2
    errors = " | ".join(trials["error"].fillna(""))
    assert "RuntimeError: a trial that crashes" in errors
    assert "WorkerCrashedError" in errors or "died" in errors
    finished = trials[trials["state"] != "failed"]
    assert len(finished) == 2 and set(finished["state"]) <= {"complete", "pruned"}
    assert "complete" in set(finished["state"])  # the first finished trial is never pruned
    best = trials.loc[trials["objective"].idxmin()]
    assert summary["trial"] == best["trial"] and summary["objective"] == best["objective"]
    written = yaml.safe_load((windows / "tune" / "best.yaml").read_text())
    assert written["overrides"] == {
        "models.gru.units": int(best["units"]),
        "train.learning_rate": pytest.approx(best["learning_rate"]),
    }
    for name in ("objective.png", "effects.png"):
        assert (windows / "tune" / name).read_bytes()[:4] == b"\x89PNG"
    assert sum(line.startswith("trial ") for line in lines) == 4

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("seqcast-search")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_id == summary["mlflow_run_id"])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4
    by_state = {r.data.tags["seqcast.trial_state"]: r for r in children}
    assert by_state["failed"].info.status == "FAILED"
    assert by_state["complete"].data.metrics["bt_mase"] in set(trials["objective"])
    assert "val_loss" in by_state["complete"].data.metrics
    assert parent.data.metrics["trials_failed"] == 2
    assert parent.data.metrics["best_bt_mase"] == pytest.approx(summary["objective"])
    artifacts = {f.path for f in client.list_artifacts(parent.info.run_id, "search")}
    assert "search/best.yaml" in artifacts and "search/trials.csv" in artifacts

    command = tune.apply_command(windows)
    assert command[1:5] == ["-m", "dvc", "exp", "run"]
    assert command[5::2] == ["-S"] * 2
    assert command[6] == f"models.gru.units={int(best['units'])}"
    assert np.isclose(float(command[8].split("=")[1]), best["learning_rate"])


def test_missing_windows_and_missing_best_say_what_to_run(tmp_path) -> None:
    from seqcast.operations import tune

    cfg = make_config()
    with pytest.raises(tune.SearchError, match="run `dvc repro window` first"):
        tune.load_windows(cfg, tmp_path)
    with pytest.raises(tune.SearchError, match="best.yaml: not found; run `make tune` first"):
        tune.read_best(tmp_path)
    with pytest.raises(ConfigError, match="backtest.origins: the search's objective"):
        tune.check(make_config(backtest={"origins": 0}))
