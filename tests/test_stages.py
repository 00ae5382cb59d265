"""Stage functions on a small copy of the shipped data: errors before work, nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import mark_validated

from seqcast.core.config import parse_config
from seqcast.data import scaling, windowing
from seqcast.evaluation import backtest
from seqcast.evaluation import stage as evaluation_stage
from seqcast.models import training
from seqcast.operations import refit

REPO = Path(__file__).resolve().parents[1]


def make_root(tmp_path: Path, **override: dict) -> Path:
    """A folder with the shipped CSV and params.yaml (sections overridden)."""
    root = tmp_path / "repo"
    (root / "data" / "raw").mkdir(parents=True)
    shutil.copy(REPO / "data/raw/electricity_demand.csv", root / "data/raw/electricity_demand.csv")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in override.items():
        params[section] = {**params.get(section, {}), **values}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def config(root: Path):
    """The params of a test root."""
    return parse_config(yaml.safe_load((root / "params.yaml").read_text()))


def test_horizon_longer_than_the_test_split_names_the_key(tmp_path: Path) -> None:
    """normalise refuses a horizon the test split cannot hold, before writing anything."""
    root = make_root(tmp_path, window={"horizon": 900})
    with pytest.raises(ValueError, match=r"window\.horizon"):
        mark_validated(root, config(root))
        scaling.normalise(config(root), root)
    assert not (root / "data/prepared").exists()


def test_windows_hold_the_chosen_reference(tmp_path: Path) -> None:
    """auto picks the weekly season on the shipped data and sizes the context for it."""
    root = make_root(tmp_path)
    cfg = config(root)
    mark_validated(root, cfg)
    scaling.normalise(cfg, root)
    summary = windowing.window(cfg, root)
    assert summary["reference_choice"]["reference"] == "seasonal_naive"
    assert summary["reference_choice"]["season"] == 336
    assert summary["context"] == 96 + 336
    assert summary["windows"] == {
        "train": 2822 - 432 - 24 + 1,
        "val": 403 - 24 + 1,
        "test": 807 - 24 + 1,
    }
    loaded = windowing.load_windows(root)
    train = loaded["origins"]["train"]
    assert train.min() - 432 + 1 == 0 and train.max() + 24 == 2822 - 1


def test_strict_windows_keep_history_inside_each_split(tmp_path: Path) -> None:
    """history_across_splits false: no window reads a row of an earlier split."""
    root = make_root(
        tmp_path,
        window={"history_across_splits": False},
        features={"reference": "naive", "reference_season": None},
    )
    cfg = config(root)
    mark_validated(root, cfg)
    scaling.normalise(cfg, root)
    windowing.window(cfg, root)
    loaded = windowing.load_windows(root)
    context = loaded["meta"]["context"]
    assert loaded["origins"]["test"].min() - context + 1 == 2822 + 403
    assert loaded["origins"]["val"].min() - context + 1 == 2822


def test_batch_larger_than_the_training_windows_names_the_key(tmp_path: Path) -> None:
    """The window stage refuses it for the backtest's first fold; train, before building a model."""
    root = make_root(tmp_path, train={"batch_size": 100_000})
    cfg = config(root)
    mark_validated(root, cfg)
    scaling.normalise(cfg, root)
    with pytest.raises(ValueError, match=r"first of 4 origins .*train\.batch_size 100000"):
        windowing.window(cfg, root)
    assert not (root / "data/windows").exists()
    root = make_root(tmp_path / "off", train={"batch_size": 100_000}, backtest={"origins": 0})
    cfg = config(root)
    mark_validated(root, cfg)
    scaling.normalise(cfg, root)
    windowing.window(cfg, root)
    with pytest.raises(ValueError, match=r"train\.batch_size"):
        training.train(cfg, root, "gru")
    assert not (root / "models").exists()


def test_interrupted_training_fails_its_run_and_writes_nothing(tmp_path: Path) -> None:
    """SIGTERM mid-fit: the MLflow training run ends FAILED and models/gru is not written."""
    root = make_root(
        tmp_path,
        # XLA off: its compile (seconds of CPU) is not what this test is about.
        train={"epochs": 200, "patience": 200, "jit_compile": False},
        models={"gru": {"units": 8, "layers": 1, "dropout": 0.0, "recurrent_dropout": 0.0}},
    )
    cfg = config(root)
    mark_validated(root, cfg)
    scaling.normalise(cfg, root)
    windowing.window(cfg, root)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.stages", "train", "--model", "gru", "--root", str(root)],
        cwd=REPO,
        env=env | {"SEQCAST_PREFECT": "off"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        if line.startswith("gru epoch 2/") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not (root / "models" / "gru").exists()
    assert not list((root / "models").glob(".gru.*")) if (root / "models").exists() else True
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as db:
        statuses = [s for (s,) in db.execute("select status from runs")]
    assert statuses == ["FAILED"]


def test_history_is_o_of_n(tmp_path: Path) -> None:
    """The windowed series is stored once: its size does not grow with the window width."""
    root = make_root(tmp_path)
    cfg = config(root)
    mark_validated(root, cfg)
    scaling.normalise(cfg, root)
    windowing.window(cfg, root)
    series = np.load(root / "data/windows/series.npy")
    assert series.shape == (4032, 1)
    total = sum(p.stat().st_size for p in (root / "data/windows").iterdir())
    assert total < 4032 * 8 * 12


TINY = {
    "window": {"input_width": 48, "horizon": 12},
    "features": {"calendar": ["time_of_day"], "reference": "auto", "reference_season": None},
    "baselines": {"seasons": [48, 336]},
    # XLA off: its compile is most of a tiny fit; tests/test_training.py covers jit_compile auto.
    "train": {"epochs": 2, "batch_size": 128, "patience": 1, "jit_compile": False},
    "models": {"gru": {"units": 8}, "lstm": {"units": 8}},
    "tracking": {"experiment": "tiny", "registered_model": "tiny-forecaster"},
    "backtest": {"origins": 2, "refit_every": "once"},
}


def test_evaluate_logs_parent_and_child_runs(tmp_path: Path, monkeypatch) -> None:
    """Two epochs per network, then one parent run with a child per model and baseline."""
    import mlflow

    root = make_root(tmp_path, **TINY)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    (tmp_path / "store").mkdir()
    cfg = config(root)
    mark_validated(root, cfg)
    for stage in (scaling.normalise, windowing.window):
        stage(cfg, root)
    for kind in ("gru", "lstm"):
        assert training.train(cfg, root, kind)["epochs"] <= 2
        folds = backtest.backtest(cfg, root, kind)["folds"]
        assert [f["refit"] for f in folds] == [True, False] and folds[0]["epochs"] <= 2
    summary = evaluation_stage.evaluate(cfg, root)
    names = {"gru", "lstm", "naive", "seasonal_naive_48", "seasonal_naive_336", "linear"}
    names |= {"autoets", "autotheta"}
    assert set(summary["models"]) == names
    client = mlflow.MlflowClient()
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.params["train.epochs"] == "2"
    assert parent.data.tags["seqcast.data_md5"] == "9c2f03e5f39f3a7bd963055aea94e444"
    assert "seqcast.git_commit" in parent.data.tags
    assert "seqcast.version.keras" in parent.data.tags
    (used,) = parent.inputs.dataset_inputs
    assert used.dataset.name == "electricity_demand"
    assert [(t.key, t.value) for t in used.tags] == [("mlflow.data.context", "evaluation")]
    # Data facts are params, so that the compare view's default chart shows scores.
    assert parent.data.params["data_rows_test"] == "807"
    assert not [k for k in parent.data.metrics if k.startswith("data_")]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert artifacts == {
        f"plots/{stem}.png"
        for stem in ("forecast", "horizon_mae", "learning_curves", "backtest", "coverage", "bands")
    }
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    by_name = {run.info.run_name: run for run in children}
    assert set(by_name) == names | {"backtest"}
    # One run for the whole backtest: each model's scores stepped by origin, and the table.
    bt = by_name["backtest"]
    assert [m.step for m in client.get_metric_history(bt.info.run_id, "gru_mase")] == [1, 2]
    tables = {a.path for a in client.list_artifacts(bt.info.run_id, "backtest")}
    assert "backtest/per_origin.json" in tables
    assert {a.path for a in client.list_artifacts(bt.info.run_id, "plots")} == {
        "plots/backtest.png"
    }
    # Tags named for what they hold; the description says the same until promote decides.
    runs = json.loads((root / "evaluation/runs.json").read_text())
    decided = runs["candidate"]["candidate"]
    tags = parent.data.tags
    assert tags["seqcast.candidate"] == bt.data.tags["seqcast.candidate"] == decided
    assert tags["seqcast.candidate_chosen_on"] == "backtest"
    assert (
        tags["seqcast.best_on_test"]
        == runs["best_on_test"]
        == min(summary["models"], key=lambda k: summary["models"][k]["mase"])
    )
    assert tags["seqcast.best_baseline_on_test"] == summary["best_baseline"]
    assert tags["seqcast.best_network_on_val"] in ("gru", "lstm")
    assert "seqcast.best_network" not in tags
    assert tags["mlflow.note.content"].startswith(f"Evaluation: candidate **{decided}**")
    gru = by_name["gru"]
    assert {
        "test_mae",
        "test_rmse",
        "test_mase",
        "test_smape",
        "val_mae",
        "epoch_loss",
        "epoch_val_loss",
        "train_seconds",
        "bt_mase",
        "test_coverage_80",
        "test_msis_95",
    } <= set(gru.data.metrics)
    assert len(client.get_metric_history(gru.info.run_id, "test_mae_by_step")) == 12
    assert len(client.get_metric_history(gru.info.run_id, "epoch_loss")) <= 2
    assert len(client.get_metric_history(gru.info.run_id, "val_mae")) == 1
    assert gru.data.tags["seqcast.model_kind"] == "gru"
    assert gru.outputs.model_outputs, "the network is logged as a model"
    assert [t.value for t in gru.inputs.dataset_inputs[0].tags] == ["test"]
    assert {a.path for a in client.list_artifacts(gru.info.run_id, "plots")} == {
        f"plots/{stem}.png" for stem in ("forecast", "horizon_mae", "learning_curves", "coverage")
    }
    linear = {a.path for a in client.list_artifacts(by_name["linear"].info.run_id, "plots")}
    assert linear == {"plots/forecast.png", "plots/horizon_mae.png", "plots/coverage.png"}
    naive = by_name["naive"]
    assert naive.data.metrics["test_mae"] == pytest.approx(summary["models"]["naive"]["mae"])
    trained = client.get_experiment_by_name("tiny-training")
    statuses = {r.info.status for r in client.search_runs([trained.experiment_id])}
    assert statuses == {"FINISHED"}

    # The served model: the chosen recipe refit on every row, up to the latest, with its bands.
    served = refit.refit(cfg, root)
    assert served["last_row"] == "2000-08-27 23:30:00" and served["rows"] == 4032
    # Every out-of-sample error known at the fit (fewer than served_window, 2000): the 2 backtest
    # blocks' 392 windows each and the 796 test windows.
    assert served["calibration_errors"] == 2 * 392 + 796
    # Its scaler is fit on every row: the served model's affine is the whole series' statistics.
    import pandas as pd

    from seqcast.models.forecaster import Forecaster

    whole = pd.read_csv(root / "data/raw/electricity_demand.csv")["demand_mw"].to_numpy()
    fitted = Forecaster.load(root / "models/served/forecaster")
    assert fitted.offset[0] == pytest.approx(whole.mean(), rel=1e-9)
    assert fitted.scale[0] == pytest.approx(whole.std(), rel=1e-9)
    run = client.get_run(served["run_id"])
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.tags["seqcast.fit_rows"].endswith(".. 2000-08-27 23:30:00")
    model = mlflow.pyfunc.load_model(served["model_uri"])
    history = evaluation_history(root, model.unwrap_python_model().forecaster.min_history)
    answer = model.predict(history)
    target = "demand_mw"
    assert (answer[f"{target}_lower_95"] <= answer[f"{target}_lower_80"]).all()
    assert (answer[f"{target}_lower_80"] <= answer[target]).all()
    assert (answer[target] <= answer[f"{target}_upper_80"]).all()


def evaluation_history(root: Path, rows: int):
    """The last rows of the shipped series as a served request."""
    import pandas as pd

    frame = pd.read_csv(root / "data/raw/electricity_demand.csv")
    return frame.tail(rows).reset_index(drop=True)


@pytest.mark.parametrize(
    ("best", "expected"), [([6, 7, 3, 1], 4), ([2], 2), ([1, 1, 2], 1), ([5, 8], 6)]
)
def test_the_refit_trains_for_the_median_best_epoch_of_the_backtest_refits(
    tmp_path: Path, best: list[int], expected: int
) -> None:
    """No validation is left after the decision: the backtest's early stopping sets the epochs."""
    folder = tmp_path / "backtest" / "gru"
    folder.mkdir(parents=True)
    folds = [{"fold": k, "best_epoch": b} for k, b in enumerate(best)] + [{"fold": 9}]
    (folder / "folds.json").write_text(json.dumps({"name": "gru", "folds": folds}))
    epochs, why = refit.epochs_from_backtest("gru", tmp_path)
    assert epochs == expected
    assert why == f"median best epoch of {len(best)} backtest refits {best}"


def test_the_refit_falls_back_to_the_train_stage_epoch_without_a_backtest(tmp_path: Path) -> None:
    (tmp_path / "models" / "gru").mkdir(parents=True)
    (tmp_path / "models" / "gru" / "train.json").write_text(json.dumps({"best_epoch": 7}))
    assert refit.epochs_from_backtest("gru", tmp_path) == (
        7,
        "the train stage's best epoch (backtest off)",
    )
