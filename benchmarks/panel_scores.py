"""The M1 panel's scores, per-series decision and bands (issue 27 items 7, 8), printed.

    PYTHONPATH=src python -m benchmarks.panel_scores [--cache DIR] [--n-jobs 1]

On /work/shared/data/m1_monthly.csv (or data/raw/m1_monthly.csv): the last 18 months are the
holdout (origin 2018-06), backtest origins 2015-12, 2016-06 and 2016-12 (their 18 months end
before the holdout). AutoETS and AutoTheta are refit at every origin with statsforecast's panel
API (the CPU seconds and the load are printed); naive and seasonal-naive 12 come from the flat
arrays; the stand-in network is one global Ridge over every series' windows before each origin
(inputs: the log of the last 18 values over their mean, the origin's month), cheap where a GRU
per origin is not. Printed: every model's holdout sMAPE and MASE against the issue's references,
what the per-series fallback serves and scores, and AutoETS's scaled conformal bands calibrated
on its backtest-origin errors, with their holdout coverage pooled and over series.
With --cache, the rivals' forecasts are read from (or written to) DIR/rivals.npz.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ROOT
from seqcast.data.panel import Panel, from_frame
from seqcast.evaluation import panel_decision, panel_intervals
from seqcast.evaluation import panel_scores as ps
from seqcast.models.panel_baselines import simple_forecasts
from seqcast.models.panel_rivals import forecast_origins, targets_at

SOURCES = [ROOT / "data" / "raw" / "m1_monthly.csv", Path("/work/shared/data/m1_monthly.csv")]
HORIZON, SEASON, WIDTH = 18, 12, 18
BACKTEST = ["2015-12-01", "2016-06-01", "2016-12-01"]
HOLDOUT = "2018-06-01"
VAL_START = "2017-01-01"  # the backtest's training rows end here: the bands' scale
REFERENCE = {
    "autoets": (14.91, 1.090),
    "autotheta": (17.25, 1.101),
    "seasonal_naive_12": (17.30, 1.314),
}
LEVELS = [80.0, 95.0]
MARGINS = (0.0, 0.1, 0.25)  # per_series_fallback: how much better an alternative must be


def load() -> Panel:
    """The M1 panel, one target."""
    path = next(p for p in SOURCES if p.exists())
    return from_frame(pd.read_csv(path), "series_id", "month", ["value"], 1)


def rivals(panel: Panel, cache: Path | None, n_jobs: int) -> dict[str, np.ndarray]:
    """AutoETS and AutoTheta at every origin (cached), with their windows and CPU seconds."""
    stored = cache / "rivals.npz" if cache else None
    if stored and stored.exists():
        return dict(np.load(stored, allow_pickle=False))
    origins = [*BACKTEST, HOLDOUT]
    run = forecast_origins(
        panel, origins, HORIZON, ["autoets", "autotheta"], [SEASON], "MS", n_jobs
    )
    out = {
        "origin_rows": run.origin_rows,
        "series": run.series,
        "autoets": run.forecasts["autoets"],
        "autotheta": run.forecasts["autotheta"],
        "fallback_autoets": run.fallback["autoets"].astype(str),
        "fallback_autotheta": run.fallback["autotheta"].astype(str),
        "cpu_seconds": np.array(run.cpu_seconds),
        "load": np.array(os.getloadavg()),
    }
    if stored:
        stored.parent.mkdir(parents=True, exist_ok=True)
        np.savez(stored, **out)
    return out


def ridge_network(panel: Panel, origin_rows: np.ndarray, when: np.ndarray) -> np.ndarray:
    """A global Ridge fit at each origin on every window whose targets end by then."""
    from sklearn.linear_model import Ridge

    y = panel.targets[:, 0]
    series = panel.series_of_rows()
    position = np.arange(panel.n_rows) - panel.offsets[series]
    out = np.full((len(origin_rows), HORIZON, 1), np.nan)
    for stamp in np.unique(when):  # a few origins
        last = np.flatnonzero(
            (position >= WIDTH - 1)
            & (np.arange(panel.n_rows) + HORIZON < panel.offsets[series + 1])
        )
        last = last[panel.times[last + HORIZON] <= stamp]
        x, level = _inputs(panel, y, last)
        target = np.log(np.maximum(y[last[:, None] + np.arange(1, HORIZON + 1)], 1e-3) / level)
        model = Ridge(alpha=1.0).fit(x, target)
        here = np.flatnonzero(when == stamp)
        rows = origin_rows[here]
        ok = position[rows] >= WIDTH - 1
        x, level = _inputs(panel, y, rows[ok])
        out[here[ok], :, 0] = np.exp(model.predict(x)) * level
    return out


def _inputs(panel: Panel, y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log of the last WIDTH values over their mean, and the origin's month as sin/cos."""
    window = y[rows[:, None] + np.arange(-WIDTH + 1, 1)]
    level = np.maximum(np.mean(np.abs(window), axis=1, keepdims=True), 1e-3)
    month = pd.DatetimeIndex(panel.times[rows]).month.to_numpy()
    angle = 2 * np.pi * month[:, None] / 12
    x = np.log(np.maximum(window, 1e-3) / level)
    return np.hstack([x, np.sin(angle), np.cos(angle)]), level


def holdout_table(forecasts: dict, actual, series, scale, n: int) -> dict[str, ps.SeriesScores]:
    """Every model's holdout scores, printed beside the issue's references."""
    print(f"{'model':<20}{'sMAPE':>8}{'MASE':>8}{'median':>8}  reference")
    scored = {}
    for name, f in forecasts.items():
        scored[name] = ps.per_series(actual, f, series, scale, n)
        a = ps.aggregates(scored[name])
        ref = REFERENCE.get(name)
        ref_text = f"{ref[0]:.2f} / {ref[1]:.3f}" if ref else ""
        row = f"{name:<20}{a['mean_smape']:>8.2f}{a['mean_mase']:>8.3f}{a['median_mase']:>8.3f}"
        print(f"{row}  {ref_text}")
    summary = ps.summary(scored, ["ridge", "ridge+ets"], ["naive", "seasonal_naive_12"])
    share = {k: round(v, 3) for k, v in summary["beats_best_baseline_share"].items()}
    print(f"best simple baseline {summary['best_baseline']}; share of series beating it {share}")
    return scored


def decisions(forecasts: dict, bt_mase: dict, actual, series, holdout, scale, scored) -> None:
    """The per-series fallback decided on the backtest origins, scored on the holdout."""
    every = ["autoets", "autotheta", "seasonal_naive_12"]
    n = len(scale)
    for network in ("ridge", "ridge+ets"):
        alone = ps.aggregates(scored[network])
        print(f"{network} alone: sMAPE {alone['mean_smape']:.2f} MASE {alone['mean_mase']:.3f}")
        for alternatives in (["seasonal_naive_12"], every):
            for margin in MARGINS:
                decision = panel_decision.decide(network, bt_mase, alternatives, margin=margin)
                served = panel_decision.served_forecast(decision, forecasts, series)
                s = ps.per_series(actual[holdout], served[holdout], series[holdout], scale, n)
                a = ps.aggregates(s)
                counts = {
                    k.removeprefix("served_"): v
                    for k, v in decision.counts.items()
                    if k.startswith("served_")
                }
                print(
                    f"  vs {'/'.join(alternatives)}, margin {margin:g}: sMAPE "
                    f"{a['mean_smape']:.2f} MASE {a['mean_mase']:.3f}; served {counts}"
                )


def bands(forecasts: dict, actual, series, bt, holdout, scale) -> None:
    """Scaled conformal bands calibrated on backtest errors, covered on the holdout."""
    n = len(scale)
    for name in ("autoets", "ridge+ets"):
        f = forecasts[name]
        ok = bt & np.isfinite(f).all(axis=(1, 2))
        errors = panel_intervals.scaled_errors(actual[ok], f[ok], series[ok], scale)
        q = panel_intervals.step_quantiles(errors, LEVELS)
        widths = panel_intervals.half_widths(q, series[holdout], scale)
        cover = panel_intervals.coverage(
            actual[holdout], f[holdout], widths, series[holdout], n, LEVELS
        )
        print(f"{name} bands from {int(ok.sum())} backtest windows:")
        for level in LEVELS:
            key = f"coverage_{level:g}"
            dist = ", ".join(f"{k} {v:.2f}" for k, v in cover[f"{key}_series"].items())
            print(f"  {level:g}%: pooled {cover[key]:.3f}; over series {dist}")


def timing(panel: Panel, n_jobs: int) -> None:
    """CPU seconds of each rival at the holdout origin: the panel API against a per-series loop."""
    from statsforecast.models import AutoETS, AutoTheta

    from seqcast.models.panel_rivals import process_cpu_seconds

    kinds = {"autoets": AutoETS, "autotheta": AutoTheta}
    y = panel.targets[:, 0]
    train = panel.times <= np.datetime64(HOLDOUT, "ns")
    for name, kind in kinds.items():
        start = process_cpu_seconds()
        run = forecast_origins(panel, [HOLDOUT], HORIZON, [name], [SEASON], "MS", n_jobs)
        panel_seconds = process_cpu_seconds() - start
        start = process_cpu_seconds()
        for i in range(panel.n_series):  # the plain statsforecast user's loop, as the baseline
            rows = panel.rows(i)
            kind(season_length=SEASON).fit(y[rows][train[rows]]).predict(HORIZON)
        loop_seconds = process_cpu_seconds() - start
        print(
            f"{name} at the holdout origin, {len(run.series)} series: panel API "
            f"{panel_seconds:.1f} CPU s (n_jobs {n_jobs}), per-series loop {loop_seconds:.1f} "
            f"CPU s, ratio {panel_seconds / loop_seconds:.2f}; load {os.getloadavg()[0]:.2f}"
        )


def scaling(n_series: int, length: int = 60) -> None:
    """Scale and per-series metrics of a synthetic panel: the array code against a series loop."""
    import time

    from seqcast.models import metrics

    rng = np.random.default_rng(0)
    lengths = np.full(n_series, length)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    stamps = np.tile(pd.date_range("2015-01-01", periods=length, freq="MS").to_numpy(), n_series)
    values = 100 + rng.normal(0, 10, (n_series * length, 1)).cumsum(axis=0) % 50
    ids = np.array([f"s{i:06d}" for i in range(n_series)], dtype=object)
    panel = Panel(ids, offsets, stamps, values, ("y",), 1)
    n_train = np.full(n_series, length - HORIZON)
    origin_rows = offsets[:-1] + length - HORIZON - 1
    series = np.arange(n_series)
    actual = targets_at(panel, origin_rows, HORIZON)
    forecast, _ = simple_forecasts(panel, origin_rows, HORIZON, [SEASON])
    start = time.perf_counter()
    scale = ps.series_scale(panel, n_train, SEASON)
    ps.per_series(actual, forecast["seasonal_naive_12"], series, scale.scale, n_series)
    arrays = time.perf_counter() - start
    start = time.perf_counter()
    loop = min(n_series, 5000)  # the loop on a subset, scaled up
    for i in range(loop):
        rows = panel.rows(i)
        y = values[rows][: n_train[i]]
        s = metrics.seasonal_naive_scale(y, SEASON)
        one = forecast["seasonal_naive_12"][i : i + 1]
        metrics.score(actual[i : i + 1], one, s)
    looped = (time.perf_counter() - start) * n_series / loop
    print(
        f"{n_series} series x {length} rows: arrays {arrays:.2f} s, a loop over series "
        f"(models.metrics per series) {looped:.2f} s, ratio {looped / arrays:.0f}; "
        f"load {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    """Print the figures."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--timing", action="store_true", help="only time the rivals at the holdout")
    p.add_argument("--scaling", type=int, default=0, help="only time scores on N synthetic series")
    args = p.parse_args()
    if args.scaling:
        scaling(args.scaling)
        return
    panel = load()
    if args.timing:
        timing(panel, args.n_jobs)
        return
    found = rivals(panel, args.cache, args.n_jobs)
    origin_rows, series = found["origin_rows"], found["series"]
    when = panel.times[origin_rows]
    holdout = when == np.datetime64(HOLDOUT, "ns")
    actual = targets_at(panel, origin_rows, HORIZON)
    forecasts, short = simple_forecasts(panel, origin_rows, HORIZON, [SEASON])
    forecasts |= {name: found[name] for name in ("autoets", "autotheta")}
    forecasts["ridge"] = ridge_network(panel, origin_rows, when)
    forecasts["ridge+ets"] = (forecasts["ridge"] + forecasts["autoets"]) / 2
    for name in ("autoets", "autotheta"):
        on = pd.Series(found[f"fallback_{name}"])
        print(
            f"{name} stand-ins: holdout {on[holdout].value_counts().to_dict()}, "
            f"backtest {on[~holdout].value_counts().to_dict()}"
        )
    print(f"seasonal-naive windows too short for a season: {short}")
    load_avg = ", ".join(f"{x:.2f}" for x in found["load"])
    print(
        f"rivals' CPU seconds (4 origins, 2 models): {float(found['cpu_seconds']):.1f} "
        f"(load average {load_avg} at the end; {os.cpu_count()} CPUs)"
    )
    n = panel.n_series
    holdout_scale = ps.series_scale(panel, ps.train_rows(panel, "2018-07-01"), SEASON)
    print(f"holdout MASE scale: {holdout_scale.counts}")
    scored = holdout_table(
        {k: f[holdout] for k, f in forecasts.items()},
        actual[holdout],
        series[holdout],
        holdout_scale.scale,
        n,
    )
    # Every model scored on the same backtest windows: those the stand-in network could forecast.
    bt = ~holdout & panel_decision.common_windows(forecasts, list(forecasts))
    # The backtest's scale: training rows before the validation cut, as the bands need.
    bt_scale = ps.series_scale(panel, ps.train_rows(panel, VAL_START), SEASON).scale
    bt_mase = {
        name: ps.per_series(actual[bt], f[bt], series[bt], bt_scale, n).headline("mase")
        for name, f in forecasts.items()
    }
    print(
        f"backtest windows {int(bt.sum())} of {len(np.unique(series[bt]))} series "
        f"(of {int((~holdout).sum())} windows, {len(np.unique(series[~holdout]))} series)"
    )
    decisions(forecasts, bt_mase, actual, series, holdout, holdout_scale.scale, scored)
    bands(forecasts, actual, series, ~holdout, holdout, bt_scale)  # each its own windows


if __name__ == "__main__":
    main()
