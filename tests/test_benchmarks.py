"""Smoke tests: each benchmark section runs end to end through `python -m benchmarks.run` on
tiny sizes and writes its figures. Times are never checked: they depend on the machine."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import run, windowing

# Each section's options for a tiny run (split on spaces).
TINY = {
    "windowing": "--sizes 3000 --max-windows 500 --repeats 1",
    "training": "--backends tensorflow,jax --kinds gru --variants tensorflow:keras,seqcast "
    "--epochs 2 --units 2 --train-max-windows 128 --side-by-side",
    "bigseries": "--big-points 20000 --big-train-windows 256 --big-pipeline-batches 3",
    "repro": "--repro-dry",
    "serving": "--requests 5 --series 20",
    "panel-validation": "--panel-rows 3000",
}


def bench(tmp_path: Path, section: str, *extra: str) -> dict:
    """Run one section through the CLI; its result as written to latest.json."""
    assert (
        run.main(["--only", section, "--out", str(tmp_path), *TINY[section].split(), *extra]) == 0
    )
    written = json.loads((tmp_path / "latest.json").read_text())
    assert written["machine_before"]["cpu_count"] >= 1
    result = written["sections"][section]
    assert "error" not in result, result.get("error")
    return result


def test_windowing_memory_grows_with_the_series_not_the_window(tmp_path: Path) -> None:
    """Counts are exact; the peak is a few bytes per point, far below every window copied."""
    rows = bench(tmp_path, "windowing")["rows"]
    first = 96 + windowing.SEASON - 1  # origins from the end of the first full context
    last = {h: 3000 - 1 - h for h in (1, 24)}  # to the last whose targets fit (shift 1)
    assert [(r["points"], r["horizon"], r["windows"]) for r in rows] == [
        (3000, h, last[h] - first + 1) for h in (1, 24)
    ]
    for r in rows:
        assert r["windows_timed"] == 500 and r["windows_per_second"] > 0
        assert r["peak_extra_mb"] < r["materialised_mb"]


def test_training_compares_seqcast_with_plain_keras_on_both_backends(tmp_path: Path) -> None:
    """One run per backend and variant, each with an epoch clock and a finite test loss."""
    result = bench(tmp_path, "training")
    runs = {(r["backend"], r["variant"]): r for b in result.values() for r in b["runs"]}
    assert set(runs) == {("tensorflow", "keras"), ("tensorflow", "seqcast"), ("jax", "seqcast")}
    for r in runs.values():
        assert r["train_windows"] == 128 and len(r["train_seconds"]) == 2
        assert r["windows_per_second"] > 0 and np.isfinite(r["test_mse"])
    assert "Training windows/s (ratio to plain Keras model.fit)" in run.training_report(result)


def test_big_series_epoch_reports_peak_memory(tmp_path: Path) -> None:
    """Prepare and train in their own processes; stride picked for the requested windows."""
    result = bench(tmp_path, "bigseries")
    train = result["train"]
    assert result["prepare"]["points"] == train["points"] == 20000
    assert train["fit_train_windows"] <= 256 and train["stride"] > 1
    assert train["peak_rss_mb"] >= train["rss_after_imports_mb"] > 0


def test_repro_runs_dvc_in_a_git_copy(tmp_path: Path) -> None:
    """The copy is a git repo DVC can read: a dry run lists every stage."""
    result = bench(tmp_path, "repro")
    assert result["returncode"] == 0
    assert {
        "validate",
        "normalise",
        "window",
        "train@gru",
        "train@lstm",
        "evaluate",
        "promote",
    } <= set(result["stages"])


def test_serving_latency_of_the_logged_pyfunc(tmp_path: Path) -> None:
    """A baseline forecaster logged and loaded as pyfunc: request, sequential and batch timings."""
    from benchmarks.data import shipped_windows
    from seqcast.data import windowing
    from seqcast.models.forecaster import forecaster_for

    root = shipped_windows(tmp_path / "windows")
    folder = tmp_path / "naive"
    forecaster_for("naive", windowing.load_windows(root)).save(folder)
    result = bench(tmp_path, "serving", "--forecaster", str(folder))
    assert len(result["request_ms"]) == 5 and result["series"] == 20
    assert result["request_p95_ms"] >= result["request_median_ms"] > 0
    assert result["checked_rows"] == 10_000 and result["check_median_ms"] > 0


@pytest.mark.parametrize(
    ("reference", "season", "calendar"),
    [
        ("seasonal_naive", 336, True),
        ("seasonal_naive", 48, False),
        ("naive", None, True),
        ("none", None, False),
    ],
)
def test_tfdata_alternative_gathers_what_features_inputs_gives(
    reference: str, season: int | None, calendar: bool
) -> None:
    """The in-graph pipeline the training figures compare against does the same work."""
    from benchmarks import pipelines

    series, cal = windowing.synthetic(2000)
    spec = dataclasses.replace(windowing.spec_for(96, 24), reference=reference, season=season)
    if not calendar:
        spec = dataclasses.replace(spec, n_calendar=0, calendar_names=[])
        cal = cal[:, :0]
    origins = np.arange(spec.context - 1, 1900, 7)
    batches = list(pipelines.make_dataset(spec, series, cal, origins, 50, False, 0))
    assert sum(len(y) for _, y in batches) == len(origins)
    for index, (x, y) in enumerate(batches):
        rows = origins[index * 50 : (index + 1) * 50]
        pipelines.same_inputs(spec, series, cal, rows, [(x, y)])
    shuffled = list(pipelines.checked_dataset(spec, series, cal, origins, 50, True, 1))
    assert [len(y) for _, y in shuffled] == [50] * len(batches)


def test_cold_repro_splits_each_stage_into_fit_and_the_rest(tmp_path: Path, capsys) -> None:
    """Fit seconds are read off the stages' outputs; the table subtracts them per stage."""
    from benchmarks import repro

    for kind, seconds, folds in (("gru", 3.0, [1.5, 2.5]), ("lstm", 4.0, [0.5])):
        (tmp_path / "models" / kind).mkdir(parents=True)
        (tmp_path / "models" / kind / "train.json").write_text(json.dumps({"seconds": seconds}))
        (tmp_path / "backtest" / kind).mkdir(parents=True)
        (tmp_path / "backtest" / kind / "folds.json").write_text(
            json.dumps({"folds": [{"fit_seconds": s} for s in folds] + [{"refit": False}]})
        )
    (tmp_path / "models" / "served").mkdir()
    (tmp_path / "models" / "served" / "refit.json").write_text(
        json.dumps({"seconds": 9.0, "epochs": 4, "fit_seconds": 6.0})
    )
    fits = repro.fit_seconds(tmp_path)
    assert fits == {
        "train@gru": 3.0,
        "backtest@gru": 4.0,
        "train@lstm": 4.0,
        "backtest@lstm": 0.5,
        "refit": 6.0,
    }
    run = {
        "seconds": 30.0,
        "stages": {"train@gru": 5.0, "refit": 8.0},
        "fits": fits,
        "fit_seconds": sum(fits.values()),
        "fixed_seconds": 30.0 - sum(fits.values()),
        "cpu_seconds": 40.0,
        "load": [1.0, 2.0],
    }
    repro.print_cold({"after": run})
    out = capsys.readouterr().out
    assert "| train@gru | 5.0 | 3.0 | 2.0 |" in out
    assert "| refit | 8.0 | 6.0 | 2.0 |" in out
    assert "| **total** | 30.0 | 17.5 | 12.5 |" in out
    assert "fixed overhead 12.5 s" in out


def test_panel_validation_times_m1_and_a_synthetic_panel(tmp_path: Path) -> None:
    """M1 validates clean; the synthetic panel's 10 spoiled series are excluded; seconds split."""
    result = bench(tmp_path, "panel-validation")
    m1, synthetic = result["panels"]
    assert (m1["rows"], m1["series"], m1["excluded"]) == (55998, 617, 0)
    assert m1["clean_rows"] == 55998
    assert synthetic["excluded"] == 10
    assert synthetic["clean_rows"] < synthetic["rows"]
    assert result["single_series_baseline"]["rows"] == 55998
    assert all(p["gx_s"] > 0 and p["vectorised_s"] > 0 for p in result["panels"])
