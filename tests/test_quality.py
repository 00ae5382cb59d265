"""Forecast quality on synthetic series seqcast has never seen, run from params alone.

Each test writes a seeded series as the raw CSV, runs the normalise, window and train stages
in-process, and scores the saved GRU and the simple baselines on the same test windows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import mark_validated, module_store

from seqcast.core.config import parse_config
from seqcast.data import scaling, windowing
from seqcast.evaluation import scores as evaluation
from seqcast.models import networks, training
from seqcast.models.forecaster import Forecaster, forecaster_for

HOURLY_CALENDAR = ["time_of_day", "day_of_week"]


def cycle(steps: np.ndarray, period: float, phase: float = 0.0) -> np.ndarray:
    """A sine with the given period in steps."""
    return np.sin(2 * np.pi * steps / period + phase)


def frame(values: np.ndarray, frequency: str, start: str = "2021-01-03") -> pd.DataFrame:
    """A raw series as the CSV holds it: timestamps as text, one target column `y`."""
    times = pd.date_range(start, periods=len(values), freq=frequency)
    return pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "y": values})


def params(
    frequency: str, seasons: list[int], calendar: list[str], input_width: int, horizon: int
) -> dict:
    """Small-network params for a synthetic series: reference auto over naive and the seasons."""
    return {
        "data": {"path": "data/raw/series.csv", "targets": ["y"], "frequency": frequency},
        "split": {"train": 0.7, "val": 0.1},
        "window": {"input_width": input_width, "horizon": horizon},
        "features": {"calendar": calendar, "reference": "auto"},
        "baselines": {"seasons": seasons},
        "evaluation": {"mase_season": seasons[0]},
        "train": {"seed": 42, "epochs": 8, "patience": 3, "batch_size": 64},
        "models": {"gru": {"units": 16, "dropout": 0.0}},
    }


@pytest.fixture(scope="module", autouse=True)
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One MLflow store for the module's runs: creating one costs seconds."""
    with module_store(tmp_path_factory, "quality-mlflow"):
        yield


def run_pipeline(root: Path, raw_series: pd.DataFrame, raw_params: dict) -> dict:
    """normalise, window and train the GRU from params alone; the window stage's summary."""
    source = root / raw_params["data"]["path"]
    source.parent.mkdir(parents=True)
    raw_series.to_csv(source, index=False)
    cfg = parse_config(raw_params)
    mark_validated(root, cfg)
    scaling.normalise(cfg, root)
    summary = windowing.window(cfg, root)
    training.train(cfg, root, "gru")
    return summary


def mae_on_test(root: Path, raw_params: dict) -> dict[str, float]:
    """Test MAE, in the series' units, of naive, each seasonal naive and the saved GRU."""
    loaded = windowing.load_windows(root)
    scale = evaluation.mase_scale(loaded, raw_params["evaluation"]["mase_season"])
    found = {"naive": forecaster_for("naive", loaded, spec=baseline(loaded, "naive"))}
    for season in loaded["meta"]["seasons"]:
        name = f"seasonal_naive_{season}"
        found[name] = forecaster_for(name, loaded, spec=baseline(loaded, "seasonal_naive", season))
    found["gru"] = Forecaster.load(root / "models" / "gru" / "forecaster")
    return {
        name: float(evaluation.score(f, loaded, "test", scale).scores["mae"][0])
        for name, f in found.items()
    }


def baseline(loaded: dict, reference: str, season: int | None = None):
    """The windows' spec with another reference: a pure baseline's recipe."""
    return dataclasses.replace(loaded["spec"], reference=reference, season=season)


def test_trend_above_training_range_network_beats_naive_and_seasonal_naive(
    tmp_path: Path,
) -> None:
    """Trend + daily cycle: the test period lies above every training value; the GRU still wins."""
    steps = np.arange(2400, dtype=np.float64)
    rng = np.random.default_rng(0)
    values = 100 + 0.1 * steps + 10 * cycle(steps, 24) + rng.normal(0, 1, len(steps))
    assert values[int(0.9 * len(values)) :].min() > values[: int(0.7 * len(values))].max()
    raw = params("h", [24, 168], HOURLY_CALENDAR, input_width=48, horizon=12)
    summary = run_pipeline(tmp_path, frame(values, "h"), raw)
    assert summary["reference_choice"]["reference"] == "seasonal_naive"
    assert summary["reference_choice"]["season"] == 24
    mae = mae_on_test(tmp_path, raw)
    # Seasonal naive misses one season of trend (2.4) plus noise; the GRU learns both.
    assert mae["gru"] < 0.5 * mae["seasonal_naive_24"]
    assert mae["gru"] < mae["naive"]


def test_random_walk_network_within_five_percent_of_naive(tmp_path: Path) -> None:
    """A random walk: naive is the best forecast; auto picks it and the GRU stays within 5%."""
    rng = np.random.default_rng(0)
    values = 500 + np.cumsum(rng.normal(0, 1, 3000))
    raw = params("h", [24, 168], [], input_width=48, horizon=12)
    summary = run_pipeline(tmp_path, frame(values, "h"), raw)
    assert summary["reference_choice"]["reference"] == "naive"
    mae = mae_on_test(tmp_path, raw)
    assert mae["gru"] <= 1.05 * mae["naive"]
    assert mae["naive"] < min(mae["seasonal_naive_24"], mae["seasonal_naive_168"])


def test_two_seasons_auto_picks_the_weekly_season_and_network_beats_it(tmp_path: Path) -> None:
    """Daily and weekly seasons (the weekly one a square wave): auto picks 168; the GRU beats it."""
    steps = np.arange(3000, dtype=np.float64)
    rng = np.random.default_rng(0)
    weekly = 6 * cycle(steps, 168, 1.0) + 4 * np.sign(cycle(steps, 168))
    values = 100 + 10 * cycle(steps, 24) + weekly + rng.normal(0, 1, len(steps))
    raw = params("h", [24, 168], HOURLY_CALENDAR, input_width=48, horizon=12)
    summary = run_pipeline(tmp_path, frame(values, "h"), raw)
    assert summary["reference_choice"]["reference"] == "seasonal_naive"
    assert summary["reference_choice"]["season"] == 168
    mae = mae_on_test(tmp_path, raw)
    assert mae["seasonal_naive_168"] < min(mae["naive"], mae["seasonal_naive_24"])
    assert mae["gru"] < mae["seasonal_naive_168"]


@pytest.mark.parametrize(
    ("frequency", "rows", "season", "calendar", "input_width", "horizon"),
    [
        ("D", 1000, 7, ["day_of_week", "day_of_year"], 28, 7),
        ("h", 1000, 24, HOURLY_CALENDAR, 48, 12),
        ("W-SUN", 400, 52, ["day_of_year"], 16, 4),
    ],
)
def test_pipeline_runs_from_params_alone_at_other_frequencies(
    tmp_path: Path,
    frequency: str,
    rows: int,
    season: int,
    calendar: list[str],
    input_width: int,
    horizon: int,
) -> None:
    """Daily, hourly and weekly series: only params change; the GRU beats the best baseline
    and the saved forecaster forecasts the next horizon steps from raw history."""
    steps = np.arange(rows, dtype=np.float64)
    rng = np.random.default_rng(1)
    values = 50 + 0.01 * steps + 5 * cycle(steps, season) + rng.normal(0, 0.5, rows)
    raw = params(frequency, [season], calendar, input_width, horizon)
    series = frame(values, frequency)
    summary = run_pipeline(tmp_path, series, raw)
    assert summary["reference_choice"]["season"] == season
    mae = mae_on_test(tmp_path, raw)
    assert mae["gru"] < min(v for k, v in mae.items() if k != "gru")

    forecaster = Forecaster.load(tmp_path / "models" / "gru" / "forecaster")
    forecast = forecaster.forecast(series.iloc[-forecaster.min_history :])
    last = pd.Timestamp(series["timestamp"].iloc[-1])
    ahead = pd.date_range(last, periods=horizon + 1, freq=frequency)[1:]
    assert forecast["timestamp"].tolist() == ahead.strftime("%Y-%m-%d %H:%M:%S").tolist()
    assert np.isfinite(forecast["y"]).all()


def test_untrained_network_forecasts_exactly_as_the_linear_rival(tmp_path: Path) -> None:
    """Warm-started from the linear rival, the zero-initialised correction adds nothing yet."""
    from seqcast.core.config import ModelConfig

    steps = np.arange(600, dtype=np.float64)
    values = 100 + 0.1 * steps + 10 * cycle(steps, 24) + np.random.default_rng(0).normal(0, 1, 600)
    raw = params("h", [24], HOURLY_CALENDAR, input_width=24, horizon=6)
    (tmp_path / "data" / "raw").mkdir(parents=True)
    frame(values, "h").to_csv(tmp_path / raw["data"]["path"], index=False)
    cfg = parse_config(raw)
    mark_validated(tmp_path, cfg)
    scaling.normalise(cfg, tmp_path)
    windowing.window(cfg, tmp_path)
    loaded = windowing.load_windows(tmp_path)
    ridge = networks.fit_linear_rival(loaded, cfg.baselines.linear_alpha)
    network = networks.build("lstm", loaded["spec"], ModelConfig(units=4))
    networks.start_from_linear(network, ridge)
    assert not network.get_layer(networks.LINEAR).trainable
    series, cal = np.asarray(loaded["series"]), np.asarray(loaded["calendar"])
    origins = loaded["origins"]["test"]
    np.testing.assert_allclose(
        forecaster_for("lstm", loaded, predictor=network).predict_scaled(series, cal, origins),
        forecaster_for("linear", loaded, predictor=ridge).predict_scaled(series, cal, origins),
        rtol=0,
        atol=1e-6,
    )
    narrower = networks.build(
        "lstm", dataclasses.replace(loaded["spec"], input_width=12), ModelConfig()
    )
    with pytest.raises(
        ValueError, match="maps 174 inputs to 6 outputs; the network.s linear path maps 102 to 6"
    ):
        networks.start_from_linear(narrower, ridge)
