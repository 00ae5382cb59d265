"""Series seqcast has never seen, through every stage, from params alone.

Each case writes a seeded synthetic CSV and a params.yaml that changes only what a user must say
about their data (path, target, frequency) and the window (plus small networks, to stay fast);
seasons, calendar inputs, reference and MASE's season come from the frequency. The pipeline runs
stage by stage in-process against a real GX suite and a real MLflow store, and the promoted model
is checked against the simple baselines on the same test windows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import module_store

from benchmarks import unseen
from benchmarks.unseen import CASES
from seqcast import serving
from seqcast.config import load_config

# Three origins, networks fit once at the first (refit per fold is tests/test_backtest.py's):
# the whole module in about 2 minutes instead of 3 on 2 cores.
SMALL = {
    "train": {"epochs": 4, "patience": 2, "batch_size": 32, "jit_compile": False},
    "models": {"gru": {"units": 8}, "lstm": {"units": 8}},
    "backtest": {"origins": 3, "refit_every": "once"},
}


@pytest.fixture(scope="module", autouse=True)
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One MLflow store for the module's runs: creating one costs seconds."""
    with module_store(tmp_path_factory, "unseen-mlflow"):
        yield


def workspace(tmp_path: Path, name: str) -> Path:
    """The shipped params with only the data keys, the window and small networks changed."""
    return unseen.workspace(tmp_path, name, SMALL)


def pipeline(root: Path) -> dict:
    """Every stage, in order, from the workspace's params."""
    return unseen.pipeline(root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Every case through every stage once: (workspace, what the pipeline returned)."""
    out = {}
    for name in CASES:
        root = workspace(tmp_path_factory.mktemp("unseen"), name)
        out[name] = (root, pipeline(root))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_unseen_series_runs_from_params_alone(runs: dict, name: str) -> None:
    """Seasons come from the frequency; the served model never loses to the best baseline."""
    root, ran = runs[name]
    meta = json.loads((root / "data/windows/meta.json").read_text())
    expected = {"trading-day random walk": [5], "monthly seasonal with trend": [12]}
    assert meta["seasons"] == expected.get(name, [52])
    comparison = json.loads((root / "evaluation/comparison.json").read_text())
    decision = ran["decision"]
    test = comparison["models"]
    served = decision["candidate"]["kind"]
    best = comparison["best_baseline"]
    print(
        f"\n{name}: served {served} test MAE {test[served]['mae']:.4g}; best baseline {best} "
        f"{test[best]['mae']:.4g}; linear {test['linear']['mae']:.4g}; "
        + ", ".join(f"{k} {test[k]['mae']:.4g}" for k in ("gru", "lstm"))
    )
    chosen = comparison["candidate"]
    means, simple = chosen["means"], chosen["best_simple"]
    if decision["fallback"]:
        assert served == simple
    else:
        # Chosen on the backtest: best mean, shown by the paired test to beat the baseline.
        assert means[served] == min(means.values()) and means[served] < means[simple]
        assert chosen["paired_test"]["p_a_better"] < chosen["significance"]
    assert decision["promoted"]
    # Bands with every forecast: calibrated on errors known before each test window.
    bands = json.loads((root / "evaluation/intervals.json").read_text())[served]
    print(f"  coverage 80 {bands['coverage_80']:.1%}, 95 {bands['coverage_95']:.1%}")
    assert 0.6 <= bands["coverage_80"] <= 0.97 and 0.8 <= bands["coverage_95"] <= 1.0
    assert bands["coverage_80"] <= bands["coverage_95"]


def test_trading_day_forecasts_are_dated_on_the_next_business_days(runs: dict) -> None:
    """Rows are consecutive trading days; the forecast steps after a Friday start on Monday."""
    root, _ = runs["trading-day random walk"]
    raw = pd.read_csv(root / "data/raw/closes.csv")
    friday = raw[pd.to_datetime(raw["date"]).dt.day_of_week == 4].index[-1]
    history = raw.iloc[: friday + 1].tail(200)
    forecaster = serving.load(
        f"models:/{load_config(root / 'params.yaml').tracking.registered_model}@champion"
    )
    answer = forecaster.forecast(history)
    first = pd.Timestamp(history["date"].iloc[-1]) + pd.offsets.BDay(1)
    assert list(answer["date"]) == list(
        pd.bdate_range(first, periods=5).strftime("%Y-%m-%d %H:%M:%S")
    )
    assert np.isfinite(answer["close"]).all()
