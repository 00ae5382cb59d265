"""The series zoo (benchmarks/zoo.py, issue 31): ten kinds, each from the few params a user sets.

Every kind runs validate -> ... -> promote on tiny networks (1 epoch, 4 units, 2 backtest
origins) against a real GX suite and a real MLflow store, on the first 90 % of its rows. A real
`dvc repro` costs 2-5 minutes per series on 2 shared cores (ten processes that each import
TensorFlow; all ten kinds that way took 17 minutes at a load of 5), so the two kinds whose
backtest folds choose different references go through real `dvc repro` in temporary git copies,
one after the other in a background thread, while this process runs the other eight through the
same stage functions in-process (what DVC's commands call), in one module-scoped fixture: two
busy processes at most. Those two refit at every origin, so each fold picks its own reference;
the rest fit once.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import module_store, ran

from benchmarks import unseen
from benchmarks.repro import environment, git_copy
from benchmarks.zoo import ZOO
from seqcast.core.config import load_config
from seqcast.data import series
from seqcast.models.forecaster import Forecaster

TINY = {
    "train": {"epochs": 1, "patience": 1, "jit_compile": False},
    "models": {"gru": {"units": 4}, "lstm": {"units": 4}},
    "backtest": {"origins": 2, "refit_every": "once"},
}
# Folds that must choose their own reference: refit at every origin.
SWITCHING = {"level shift", "daily with yearly season"}
BY_DVC = ("level shift", "daily with yearly season")
STAGES = {
    "validate", "normalise", "window", "train@gru", "train@lstm", "backtest@gru",
    "backtest@lstm", "store", "evaluate", "refit", "promote",
}  # fmt: skip

pytestmark = pytest.mark.e2e


def tiny(name: str) -> dict:
    """The tiny params of a kind: refit at every origin where folds should differ."""
    refit = {"refit_every": 1} if name in SWITCHING else {}
    return TINY | {"backtest": TINY["backtest"] | refit}


def repro(repo: Path, name: str) -> subprocess.CompletedProcess:
    """The kind's params and CSV in a git copy, then `dvc repro` there (Prefect off: no server)."""
    unseen.write_case(repo, name, tiny(name))
    env = environment() | {"SEQCAST_PREFECT": "off"}
    return subprocess.run(
        ["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=1800
    )


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Every kind run once: name -> its workspace (a git copy for the `dvc repro` kinds)."""
    roots: dict[str, Path] = {}
    done: dict[str, subprocess.CompletedProcess] = {}
    # Made here, not in the thread: tmp_path_factory is not thread-safe, and when this module is
    # the first on its pytest-xdist worker both threads would create (and wipe) the base folder.
    folders = {name: tmp_path_factory.mktemp("zoo-dvc") for name in BY_DVC}

    def by_dvc() -> None:
        for name in BY_DVC:
            repo = git_copy(folders[name] / "seqcast")
            roots[name], done[name] = repo, repro(repo, name)

    worker = threading.Thread(target=by_dvc)
    worker.start()
    try:
        with module_store(tmp_path_factory, "zoo-mlflow"):
            for name in ZOO:
                if name not in BY_DVC:
                    roots[name] = unseen.workspace(tmp_path_factory.mktemp("zoo"), name, tiny(name))
                    unseen.pipeline(roots[name])
            worker.join()
            for name, result in done.items():
                out = result.stdout[-3000:] + result.stderr[-3000:]
                assert result.returncode == 0, f"{name}: dvc repro failed:\n{out}"
                assert ran(result) == STAGES, name
            yield roots
    finally:
        worker.join()


def champion(root: Path, name: str) -> int | None:
    """The champion's version: from the git copy's own store, or the module's."""
    from mlflow import MlflowClient

    model = f"unseen-{unseen.slug(name)}"
    if name in BY_DVC:
        with sqlite3.connect(root / "mlruns" / "mlflow.db") as db:
            found = db.execute(
                "select version from registered_model_aliases where name = ? and alias = ?",
                (model, "champion"),
            ).fetchall()
        return found[0][0] if found else None
    return int(MlflowClient().get_model_version_by_alias(model, "champion").version)


def filled_history(root: Path, name: str) -> pd.DataFrame:
    """The pipeline's rows gap-filled as normalise fills them: what a user would send."""
    cfg = load_config(root / "params.yaml")
    frame, _ = series.regularise(
        unseen.history(name), cfg.data, cfg.split.max_gap_steps, cfg.data.path
    )
    times = frame.index.strftime("%Y-%m-%d %H:%M:%S")
    return frame.reset_index(drop=True).assign(**{cfg.data.timestamp: times})


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_series_runs_end_to_end(zoo: dict[str, Path], name: str) -> None:
    """A champion registered; folds recorded; the served model is the chosen one, with bands."""
    root = zoo[name]
    assert champion(root, name) == 1
    folds = json.loads((root / "backtest/gru/folds.json").read_text())["folds"]
    assert len(folds) == 2
    assert all(f["reference"] in ("naive", "seasonal_naive") and f["seasons"] for f in folds)
    comparison = json.loads((root / "evaluation/comparison.json").read_text())
    chosen = comparison["candidate"]
    served = Forecaster.load(root / "models/served/forecaster")
    assert served.name == chosen["candidate"]
    if chosen["candidate"] != chosen["best_simple"]:
        # Chosen on the backtest: the best mean, shown by the paired test to beat the baseline.
        means = chosen["means"]
        assert means[served.name] == min(means.values())
        assert chosen["paired_test"]["p_a_better"] < chosen["significance"]
    answer = served.forecast(filled_history(root, name).tail(served.min_history))
    for target in served.targets:
        for level in (80, 95):
            lower, upper = answer[f"{target}_lower_{level}"], answer[f"{target}_upper_{level}"]
            assert (lower <= answer[target]).all() and (answer[target] <= upper).all()
    ahead = unseen.future(root, name, str(root / "models/served/forecaster"))
    print(
        f"\n{name}: served {served.name}; folds {[(f['reference'], f['season']) for f in folds]}"
        f"; future MAE {ahead['served']:.4g} vs {ahead['best_baseline']} "
        f"{ahead[ahead['best_baseline']]:.4g}; coverage 80 {ahead['coverage_80']:.1%}, "
        f"95 {ahead['coverage_95']:.1%}"
    )
    assert np.isfinite([ahead[k] for k in ("served", "gru", "lstm", "linear")]).all()
    assert ahead["coverage_80"] <= ahead["coverage_95"]


def test_folds_of_several_kinds_choose_different_references(zoo: dict[str, Path]) -> None:
    """A cycle that starts mid-series, or a yearly season that the longer history affords."""
    switching = {
        name
        for name, root in zoo.items()
        if len(
            {
                f["reference"]
                for f in json.loads((root / "backtest/gru/folds.json").read_text())["folds"]
            }
        )
        > 1
    }
    assert {"level shift", "daily with yearly season"} <= switching


def test_seasons_come_from_the_frequency(zoo: dict[str, Path]) -> None:
    """Each frequency's usual seasons, plus the 11-year cycle the training split shows."""
    expected = {
        "trading-day random walk": [5],
        "monthly seasonal with trend": [12],
        "weekly with gaps": [52],
        "hourly local time with DST gap": [24, 168],
        "two targets": [24, 168],
    }
    for name, seasons in expected.items():
        assert json.loads((zoo[name] / "data/windows/meta.json").read_text())["seasons"] == seasons
    cycle = json.loads((zoo["monthly 132-step cycle"] / "data/windows/meta.json").read_text())
    assert cycle["seasons"][0] == 12 and 126 <= cycle["seasons"][1] <= 138


def test_trading_day_forecasts_are_dated_on_the_next_business_days(zoo: dict[str, Path]) -> None:
    """Rows are consecutive trading days; the forecast steps after a Friday start on Monday."""
    from seqcast.models import serving

    root = zoo["trading-day random walk"]
    raw = pd.read_csv(root / "data/raw/closes.csv")
    friday = raw[pd.to_datetime(raw["date"]).dt.day_of_week == 4].index[-1]
    history = raw.iloc[: friday + 1].tail(200)
    forecaster = serving.load("models:/unseen-trading-day-random-walk@champion")
    answer = forecaster.forecast(history)
    first = pd.Timestamp(history["date"].iloc[-1]) + pd.offsets.BDay(1)
    assert list(answer["date"]) == list(
        pd.bdate_range(first, periods=5).strftime("%Y-%m-%d %H:%M:%S")
    )
    assert np.isfinite(answer["close"]).all()
