"""Panel scores per series, the per-series baselines, rivals, decision and bands, exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqcast.data.panel import from_frame
from seqcast.evaluation import panel_decision, panel_intervals
from seqcast.evaluation import panel_scores as ps
from seqcast.models import panel_rivals
from seqcast.models.panel_baselines import origin_rows, simple_forecasts, window_series

ROOT = Path(__file__).resolve().parents[1]
# The repository's copy of M1 once it lands (issue 27 item 12), else the shared one.
M1 = [ROOT / "data" / "raw" / "m1_monthly.csv", Path("/work/shared/data/m1_monthly.csv")]


def _panel(columns: dict[str, list[float]], start: str = "2020-01-01"):
    """A monthly panel from {name: values}, every series starting at `start`."""
    frames = [
        pd.DataFrame({"id": name, "month": pd.date_range(start, periods=len(v), freq="MS"), "y": v})
        for name, v in columns.items()
    ]
    return from_frame(pd.concat(frames), "id", "month", ["y"], 1)


def test_scale_per_series_falls_back_to_the_naive_step_and_floors_a_zero() -> None:
    panel = _panel(
        {
            "a": [1, 2, 3, 4, 5, 6, 70, 80],  # season 2: every difference 2
            "b": [5, 5, 5, 5, 5, 5, 9, 9],  # constant: the floor is its level, 5
            "c": [0, 0, 0, 0, 0, 0, 1, -1],  # all zero: the floor is 1
            "d": [1, 3, 100, 200],  # 2 training rows: no season fits, the naive step
        }
    )
    n_train = ps.train_rows(panel, "2020-07-01")
    assert n_train.tolist() == [6, 6, 6, 4]
    n_train[3] = 2  # d's training rows end earlier than the others' (its own cut)
    scale = ps.series_scale(panel, n_train, 2)
    assert scale.scale[:, 0].tolist() == [2.0, 5.0, 1.0, 2.0]
    assert scale.season.tolist() == [2, 2, 2, 1]
    assert scale.floored[:, 0].tolist() == [False, True, True, False]
    assert scale.counts == {"naive_scale": 1, "floored_scale": 2}
    # Every series too short for the season: all fall back, and all are counted.
    assert ps.series_scale(panel, np.array([2, 2, 2, 2]), 2).counts["naive_scale"] == 4


def test_metrics_per_series_exact_with_zeros_negatives_and_a_series_without_windows() -> None:
    actual = np.array([[1, 2], [3, -1], [0, 0], [-2, 2]], dtype=float)[..., None]
    forecast = np.array([[2, 2], [1, -1], [0, 0], [2, -2]], dtype=float)[..., None]
    series = np.array([0, 0, 1, 2])
    scale = np.array([[0.5], [1.0], [2.0], [1.0]])
    s = ps.per_series(actual, forecast, series, scale, 4)
    assert s.windows.tolist() == [2, 1, 1, 0]
    assert s.mae[:3, 0].tolist() == [0.75, 0.0, 4.0]
    assert s.rmse[:3, 0].tolist() == [math.sqrt(1.25), 0.0, 4.0]
    assert s.mase[:3, 0].tolist() == [1.5, 0.0, 2.0]
    # 200|e| / (|y| + |f|): 200/3, 0, 100, 0 on series 0; 0/0 counts 0; opposite signs 200.
    assert s.smape[:3, 0] == pytest.approx([(200 / 3 + 100) / 4, 0.0, 200.0], abs=1e-12)
    assert np.isnan(s.mae[3, 0]) and np.isnan(s.smape[3, 0])
    figures = ps.aggregates(s)
    assert figures["series"] == 3
    assert figures["mean_mase"] == pytest.approx(3.5 / 3)
    assert figures["median_mase"] == 1.5
    assert figures["mean_smape"] == pytest.approx(((200 / 3 + 100) / 4 + 200) / 3)


def test_win_share_summary_and_table_files(tmp_path: Path) -> None:
    actual = np.zeros((3, 1, 1)) + 10
    series = np.array([0, 1, 2])
    scale = np.ones((3, 1))
    net = ps.per_series(actual, actual + np.array([1, 1, 5])[:, None, None], series, scale, 3)
    naive = ps.per_series(actual, actual + 2, series, scale, 3)
    snaive = ps.per_series(actual, actual + 3, series, scale, 3)
    scored = {"gru": net, "naive": naive, "seasonal_naive_12": snaive}
    found = ps.summary(scored, ["gru"], ["naive", "seasonal_naive_12"])
    assert found["best_baseline"] == "naive"
    assert found["beats_best_baseline_share"] == {"gru": 2 / 3}
    facts = ps.SeriesScale(scale, np.array([12, 12, 1]), np.zeros((3, 1), dtype=bool))
    frame = ps.table(scored, np.array(["a", "b", "c"]), facts)
    assert len(frame) == 9 and frame.loc[2, "mase"] == 5.0
    parquet, csv = ps.save_table(frame, tmp_path / "per_series")
    assert pd.read_parquet(parquet).equals(frame)
    assert pd.read_csv(csv)["series"].tolist() == ["a", "b", "c"] * 3


def test_baselines_per_series_from_the_flat_arrays_and_short_history_counted() -> None:
    panel = _panel(
        {"a": [1, 2, 3, 4, 5, 6], "b": [10, 20, 10, 20, 10, 20, 10, 20, 10], "c": [7, 8, 9, 10, 11]}
    )
    starts = np.array([0, 8, 9, 15])  # a from row 0, b from rows 8 and 9, c from row 15
    origins = origin_rows(starts, input_width=2)
    assert window_series(panel, starts).tolist() == [0, 1, 1, 2]
    assert origins.tolist() == [1, 9, 10, 16]
    found, short = simple_forecasts(panel, origins, horizon=3, seasons=[3])
    assert found["naive"][:, :, 0].tolist() == [[2] * 3, [20] * 3, [10] * 3, [8] * 3]
    # a at row 1 and c at row 16 hold 2 rows: less than a season of 3, so naive, counted.
    assert found["seasonal_naive_3"][:, :, 0].tolist() == [
        [2, 2, 2],
        [20, 10, 20],
        [10, 20, 10],
        [8, 8, 8],
    ]
    assert short == {"seasonal_naive_3": 2}


def test_decision_per_series_on_a_planted_panel() -> None:
    # Two trending series the network follows closely; a pure season seasonal-naive repeats.
    trend = np.arange(24, dtype=float)
    season = np.tile([3.0, 9.0, 4.0, 1.0], 6)
    panel = _panel({"a_trend": trend, "b_trend": 2 * trend + 5, "c_season": season})
    starts = np.concatenate([np.arange(4, 15, 5) + k * 24 for k in range(3)])
    origins, series = origin_rows(starts, 4), window_series(panel, starts)
    actual = panel_rivals.targets_at(panel, origins, 3)
    base, _ = simple_forecasts(panel, origins, 3, [4])
    network = actual + np.where(series == 2, 1.0, 0.1)[:, None, None]
    scale = ps.series_scale(panel, ps.train_rows(panel, "2021-01-01"), 4).scale
    scores = {"gru": network, **base}
    mase = {
        k: ps.per_series(actual, f, series, scale, 3).headline("mase") for k, f in scores.items()
    }
    chosen = panel_decision.choose_network({"gru": 0.5, "lstm": 0.7}, ["gru", "lstm"])
    decision = panel_decision.decide(chosen, mase, ["naive", "seasonal_naive_4"])
    assert decision.served.tolist() == ["gru", "gru", "seasonal_naive_4"]
    assert decision.reason.tolist() == ["held", "held", "beaten"]
    assert decision.served_mase[2] == 0.0
    assert decision.counts == {
        "served_gru": 2,
        "served_seasonal_naive_4": 1,
        "reason_beaten": 1,
        "reason_held": 2,
    }
    served = panel_decision.served_forecast(decision, scores, series)
    assert np.array_equal(served[series == 2], base["seasonal_naive_4"][series == 2])
    assert np.array_equal(served[series < 2], network[series < 2])
    off = panel_decision.decide(chosen, mase, ["naive"], per_series_fallback=False)
    assert off.served.tolist() == ["gru"] * 3 and set(off.reason) == {"per_series_fallback off"}


def test_common_windows_are_those_every_model_forecast() -> None:
    forecasts = {"gru": np.array([[[1.0]], [[np.nan]], [[2.0]]]), "naive": np.ones((3, 1, 1))}
    forecasts["naive"][2, 0, 0] = np.nan
    assert panel_decision.common_windows(forecasts, ["gru", "naive"]).tolist() == [
        True,
        False,
        False,
    ]


def test_decision_with_a_margin_keeps_the_network_unless_clearly_beaten() -> None:
    mase = {"gru": np.array([1.0, 1.0]), "autoets": np.array([0.95, 0.85])}
    decision = panel_decision.decide("gru", mase, ["autoets"], margin=0.1)
    assert decision.served.tolist() == ["gru", "autoets"]


def test_decision_serves_the_best_alternative_where_the_network_has_no_window() -> None:
    mase = {"gru": np.array([1.0, np.nan, np.nan]), "naive": np.array([0.9, 2.0, np.nan])}
    decision = panel_decision.decide("gru", mase, ["naive"])
    assert decision.served.tolist() == ["naive", "naive", "gru"]
    assert decision.reason.tolist() == [
        "beaten",
        "no network backtest window",
        "no backtest window",
    ]


def test_bands_scale_pooled_errors_with_the_finite_sample_rank() -> None:
    # Two series, scales 1 and 10: scaled errors 0.1, 0.2 (series 0), 0.3, 0.4 (series 1).
    actual = np.zeros((4, 1, 1))
    forecast = np.array([0.1, -0.2, 3.0, -4.0])[:, None, None]
    series, scale = np.array([0, 0, 1, 1]), np.array([[1.0], [10.0]])
    scores = panel_intervals.scaled_errors(actual, forecast, series, scale)
    assert scores[:, 0, 0] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    # n = 4: level 50 takes the ceil(5 x 0.5) = 3rd smallest, 80 the 4th, 95 (rank 5) none.
    q = panel_intervals.step_quantiles(scores, [50.0, 80.0, 95.0])
    assert q[:, 0, 0] == pytest.approx([0.3, 0.4, np.inf])
    widths = panel_intervals.half_widths(q[:2], series, scale)
    assert widths[:, 0, 0, :] == pytest.approx(np.array([[0.3, 0.4], [0.3, 0.4], [3, 4], [3, 4]]))
    found = panel_intervals.coverage(actual, forecast, widths, series, 2, [50.0, 80.0])
    assert found["coverage_50"] == 0.75 and found["coverage_80"] == 1.0
    assert found["coverage_50_series"]["q0"] == 0.5 and found["coverage_50_series"]["q100"] == 1
    assert found["width_80"] == pytest.approx(2 * (0.4 + 0.4 + 4 + 4) / 4)


def test_m1_seasonal_naive_on_a_slice_reproduces_the_reference_formulas() -> None:
    path = next((p for p in M1 if p.exists()), None)
    if path is None:
        pytest.skip("the M1 panel is not here")
    frame = pd.read_csv(path)
    ids = [f"MNB{k}" for k in range(1, 28) if k not in range(3, 10)]  # the first 20 names
    if not set(ids) <= set(frame["series_id"]):
        pytest.skip(f"{path} does not hold MNB1 ... MNB27")
    panel = from_frame(frame[frame["series_id"].isin(ids)], "series_id", "month", ["value"], 1)
    origins, series, _ = panel_rivals.origin_windows(panel, ["2018-06-01"], 18)
    scale = ps.series_scale(panel, ps.train_rows(panel, "2018-07-01"), 12)
    forecast, _ = simple_forecasts(panel, origins, 18, [12])
    actual = panel_rivals.targets_at(panel, origins, 18)
    s = ps.per_series(actual, forecast["seasonal_naive_12"], series, scale.scale, 20)
    figures = ps.aggregates(s)
    # MNB1 ... MNB27, the last 18 months held out (computed with the issue's per-series loop).
    assert figures["series"] == 20
    assert figures["mean_smape"] == pytest.approx(17.11983849059647, rel=1e-12)
    assert figures["mean_mase"] == pytest.approx(1.1050120593104997, rel=1e-12)


def test_m1_seasonal_naive_on_every_series_gives_the_issues_figures() -> None:
    path = next((p for p in M1 if p.exists()), None)
    if path is None:
        pytest.skip("the M1 panel is not here")
    panel = from_frame(pd.read_csv(path), "series_id", "month", ["value"], 1)
    if panel.n_series != 617:
        pytest.skip("a slice of M1, not all of it")
    origins, series, _ = panel_rivals.origin_windows(panel, ["2018-06-01"], 18)
    scale = ps.series_scale(panel, ps.train_rows(panel, "2018-07-01"), 12)
    forecast, short = simple_forecasts(panel, origins, 18, [12])
    actual = panel_rivals.targets_at(panel, origins, 18)
    s = ps.per_series(actual, forecast["seasonal_naive_12"], series, scale.scale, 617)
    figures = ps.aggregates(s)
    assert (round(figures["mean_smape"], 2), round(figures["mean_mase"], 3)) == (17.30, 1.314)
    assert short == {"seasonal_naive_12": 0} and scale.counts == {
        "naive_scale": 0,
        "floored_scale": 0,
    }


def test_rivals_on_a_panel_match_statsforecast_per_series_and_count_the_short() -> None:
    from statsforecast.models import AutoETS

    rng = np.random.default_rng(0)
    month = np.arange(40)
    wave = 10 + 3 * np.sin(2 * np.pi * month / 12)
    panel = _panel(
        {
            "a_long": wave + rng.normal(0, 0.3, 40),
            "b_flat": np.full(40, 4.0),  # constant: nothing to fit
            # From 2021-09: 12 rows at the origin, fewer than two seasons.
            "c_short": np.concatenate([np.full(20, np.nan), (wave + 1)[-20:]]),
        }
    )
    panel = panel.mask_rows(np.isfinite(panel.values[:, 0]))
    short_start = panel.offsets[2]
    assert panel.lengths.tolist() == [40, 40, 20] and short_start == 80
    run = panel_rivals.forecast_origins(panel, ["2022-08-01"], 6, ["autoets"], [12], "MS", n_jobs=1)
    assert run.series.tolist() == [0, 1, 2] and run.seasons == {"autoets": 12}
    assert run.fallback["autoets"].tolist() == ["", "seasonal_naive", "seasonal_naive"]
    assert run.counts["autoets"] == {"seasonal_naive": 2, "naive": 0}
    y = panel.values[:32, 0]
    alone = AutoETS(season_length=12).fit(y).predict(6)["mean"]
    assert run.forecasts["autoets"][0, :, 0] == pytest.approx(alone, rel=1e-9)
    assert run.forecasts["autoets"][1, :, 0].tolist() == [4.0] * 6
    assert run.cpu_seconds > 0
