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
import yaml
from helpers import ROOT

from seqcast import evaluation, registry, scaling, serving, training, validation, windowing
from seqcast.config import load_config

SMALL = {
    "train": {"epochs": 4, "patience": 2, "batch_size": 32, "jit_compile": False},
    "models": {"gru": {"units": 8}, "lstm": {"units": 8}},
}


def trading_days(n: int, seed: int = 0) -> pd.DataFrame:
    """A random walk of closes on business days, with a dozen holidays a year left out."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2015-01-02", periods=int(n * 1.06))
    holidays = rng.choice(len(days), size=len(days) - n, replace=False)
    days = days.delete(np.sort(holidays))
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "close": close.round(4)})


def monthly(n: int, seed: int = 1) -> pd.DataFrame:
    """Month-start sales: a trend, a yearly season and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    sales = 200 + 1.5 * t + 40 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 5, n)
    months = pd.date_range("1990-01-01", periods=n, freq="MS")
    return pd.DataFrame({"month": months.strftime("%Y-%m-%d"), "sales": sales.round(2)})


def weekly_with_gaps(n: int, seed: int = 2) -> pd.DataFrame:
    """Saturday-week counts with a yearly season, some weeks missing and some cells empty."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    visits = 1000 + 150 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 20, n)
    weeks = pd.date_range("2005-01-01", periods=n, freq="W-SAT")
    frame = pd.DataFrame({"week": weeks.strftime("%Y-%m-%d"), "visits": visits.round(1)})
    frame.loc[rng.choice(np.arange(10, n - 10), 6, replace=False), "visits"] = np.nan
    return frame.drop(index=[100, 101, 250, 400]).reset_index(drop=True)


CASES = {
    "trading-day random walk": (
        trading_days(1500),
        {"path": "data/raw/closes.csv", "timestamp": "date", "targets": ["close"],
         "frequency": "rows", "step_frequency": "B"},
        {"input_width": 20, "horizon": 5},
    ),
    "monthly seasonal with trend": (
        monthly(300),
        {"path": "data/raw/sales.csv", "timestamp": "month", "targets": ["sales"],
         "frequency": "MS"},
        {"input_width": 24, "horizon": 6},
    ),
    "weekly with gaps": (
        weekly_with_gaps(624),
        {"path": "data/raw/visits.csv", "timestamp": "week", "targets": ["visits"],
         "frequency": "W-SAT", "max_null_fraction": 0.02},
        {"input_width": 26, "horizon": 8},
    ),
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One MLflow store for the module's runs: creating one costs seconds."""
    database = tmp_path_factory.mktemp("unseen-mlflow") / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
        yield


def workspace(tmp_path: Path, name: str) -> Path:
    """The shipped params with only the data keys, the window and small networks changed."""
    raw, data, window = CASES[name]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {k: v for k, v in params["data"].items() if k != "bounds"} | data
    params["window"] |= window
    for section, values in SMALL.items():
        for key, value in values.items():
            params[section][key] = (
                params[section].get(key, {}) | value if isinstance(value, dict) else value
            )
    params["tracking"] = {"experiment": f"unseen-{name}", "registered_model": f"unseen-{len(name)}"}
    root = tmp_path / "repo"
    (root / "data" / "raw").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    raw.to_csv(root / data["path"], index=False)
    return root


def pipeline(root: Path) -> dict:
    """Every stage, in order, from the workspace's params; the window summary and the decision."""
    cfg = load_config(root / "params.yaml")
    validation.validate(cfg, root)
    scaling.normalise(cfg, root)
    summary = windowing.window(cfg, root)
    for kind in ("gru", "lstm"):
        training.train(cfg, root, kind)
    evaluation.evaluate(cfg, root)
    return {"window": summary, "decision": registry.promote(cfg, root)}


@pytest.mark.parametrize("name", list(CASES))
def test_unseen_series_runs_from_params_alone(tmp_path: Path, name: str) -> None:
    """Seasons come from the frequency; the served model never loses to the best baseline."""
    root = workspace(tmp_path, name)
    ran = pipeline(root)
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
    if decision["fallback"]:
        assert served == comparison["fallback"]
    else:
        assert test[served]["mase"] < test[best]["mase"]
    assert decision["promoted"]


def test_trading_day_forecasts_are_dated_on_the_next_business_days(tmp_path: Path) -> None:
    """Rows are consecutive trading days; the forecast steps after a Friday start on Monday."""
    root = workspace(tmp_path, "trading-day random walk")
    pipeline(root)
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
