"""The plots: CSVs, DVC's specs from the custom templates, the PNGs (two targets, no training)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from seqcast.evaluation import plots
from seqcast.evaluation.scores import Scored
from seqcast.models import metrics

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["load", "temp"]
BEST = "seasonal_naive_4"
# Per-model error offsets: naive is far off, as it is on a seasonal series.
OFFSETS = {"gru": 1.0, "lstm": 2.0, "naive": 500.0, BEST: 3.0, "linear": 4.0}


@pytest.fixture(scope="module")
def inputs() -> dict:
    """Windows over a 2-target half-hourly series (units = scaled), every model scored on test."""
    rows, horizon = 40, 3
    series = np.stack([np.arange(rows) * 10.0, np.arange(rows) + 0.5], axis=1)
    origins = np.arange(25, 35)
    loaded = {
        "spec": SimpleNamespace(horizon=horizon, shift=1, n_targets=2),
        "series": series,
        "times": pd.date_range("2024-03-01", periods=rows, freq="30min"),
        "origins": {"test": origins},
        "meta": {"offset": [0.0, 0.0], "scale": [1.0, 1.0], "columns": TARGETS},
    }
    steps = np.arange(1, horizon + 1)[None, :, None]
    actual = np.stack([series[origins + s] for s in range(1, horizon + 1)], axis=1)
    scored = {}
    for name, offset in OFFSETS.items():
        forecast = actual + offset * steps
        test = Scored(name, forecast, metrics.score(actual, forecast, np.ones(2)))
        scored[name] = {"test": test, "val": test}
    curves = {k: {"loss": [0.5, 0.2, 0.1], "val_loss": [0.6, 0.3, 0.25]} for k in ("gru", "lstm")}
    backtest = {
        "decision": {"metric": "mase", "candidate": "gru"},
        "folds": [{"cutoff": "2024-03-01 10:00:00"}, {"cutoff": "2024-03-01 11:00:00"}],
        "per_origin": {n: [{"mase": off}, {"mase": 2 * off}] for n, off in OFFSETS.items()},
    }
    half = np.stack([np.full((horizon, 2), 1.0), np.full((horizon, 2), 2.0)], axis=-1)
    bands = {
        "levels": [80.0, 95.0],
        "origin": int(origins[-1]),
        "half_widths": {n: half for n in OFFSETS},
        "points": {n: scored[n]["test"].forecast[-1] for n in OFFSETS},
        "coverage_step": {n: {"80": [0.8, 0.7, 0.75], "95": [0.9, 0.95, 1.0]} for n in OFFSETS},
    }
    return {
        "loaded": loaded,
        "scored": scored,
        "best": BEST,
        "curves": curves,
        "backtest": backtest,
        "bands": bands,
    }


@pytest.fixture(scope="module")
def dvc_json(inputs: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`dvc plots show --json` on this repo's plot definitions and templates, over the CSVs."""
    root = tmp_path_factory.mktemp("dvcplots")
    # What `dvc init --no-scm` leaves that matters here, without a second DVC start-up.
    (root / ".dvc" / "plots").mkdir(parents=True)
    (root / ".dvc" / "config").write_text("[core]\n    no_scm = True\n")
    definitions = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": definitions}))
    for template in (REPO / ".dvc" / "plots").glob("*.json"):
        (root / ".dvc" / "plots" / template.name).write_text(template.read_text())
    plots.write_plot_data(root / "plots", plots.plot_data(**inputs))
    dvc = str(Path(sys.executable).parent / "dvc")
    shown = subprocess.run(
        [dvc, "plots", "show", "--json"], cwd=root, check=True, capture_output=True, text=True
    )
    out = json.loads(shown.stdout)
    assert not out.get("errors"), out["errors"]
    return {plot_id: entries[0]["content"] for plot_id, entries in out["data"].items()}


def test_csvs_are_long_in_targets_with_generic_columns(inputs: dict, tmp_path: Path) -> None:
    """One row per time/step and target; the best baseline under a generic column; no naive."""
    plots.write_plot_data(tmp_path, plots.plot_data(**inputs))
    forecast = pd.read_csv(tmp_path / "forecast.csv")
    assert list(forecast.columns) == [
        "timestamp",
        "target",
        "actual",
        "gru",
        "lstm",
        "best_baseline",
        "linear",
        "best_baseline_name",
    ]
    assert list(forecast["target"].unique()) == TARGETS and len(forecast) == 2 * 10
    load = forecast[forecast["target"] == "load"]
    # The first forecast step of the window at origin 25 falls at row 26, 13:00.
    assert load["timestamp"].iloc[0] == "2024-03-01T13:00:00"
    assert load["actual"].iloc[0] == 260.0
    assert load["best_baseline"].iloc[0] == 260.0 + OFFSETS[BEST]
    assert set(forecast["best_baseline_name"]) == {BEST}

    steps = pd.read_csv(tmp_path / "horizon_mae.csv")
    assert "naive" not in steps.columns
    temp = steps[steps["target"] == "temp"]
    assert list(temp["step"]) == [1, 2, 3]
    np.testing.assert_allclose(temp["lstm"], [2.0, 4.0, 6.0])

    backtest = pd.read_csv(tmp_path / "backtest.csv")
    assert list(backtest["origin"]) == [1, 2]
    np.testing.assert_allclose(backtest["best_baseline"], [3.0, 6.0])
    coverage = pd.read_csv(tmp_path / "coverage.csv")
    assert list(coverage["target"].unique()) == ["band 80%", "band 95%"]
    np.testing.assert_allclose(coverage["gru"], [0.8, 0.7, 0.75, 0.9, 0.95, 1.0])
    bands = pd.read_csv(tmp_path / "bands.csv")
    # The candidate's forecast from the last test origin (34): rows 35-37, 17:30 onwards.
    load = bands[(bands["target"] == "load") & (bands["level"] == 95)]
    assert list(load["timestamp"]) == [
        f"2024-03-01T{t}" for t in ("17:30:00", "18:00:00", "18:30:00")
    ]
    np.testing.assert_allclose(load["actual"], [350.0, 360.0, 370.0])
    np.testing.assert_allclose(load["forecast"], [351.0, 362.0, 373.0])
    np.testing.assert_allclose(load["upper"] - load["forecast"], [2.0, 2.0, 2.0])
    assert (bands["lower"] <= bands["forecast"]).all() and (
        bands["forecast"] <= bands["upper"]
    ).all()

    learning = pd.read_csv(tmp_path / "learning.csv")
    assert list(learning.columns) == ["epoch", "model", "train", "validation"]
    assert list(learning["model"]) == ["gru"] * 3 + ["lstm"] * 3


def test_dvc_specs_time_axis_and_a_colour_per_model(dvc_json: dict) -> None:
    """DVC fills the templates: temporal x for the forecast, colour by model, dash by revision."""
    assert set(dvc_json) == {
        "forecast", "horizon_mae", "learning_curves", "backtest", "coverage", "bands",
    }  # fmt: skip
    forecast = dvc_json["forecast"]
    encoding = forecast["spec"]["encoding"]
    assert (encoding["x"]["field"], encoding["x"]["type"]) == ("timestamp", "temporal")
    assert encoding["color"]["field"] == "field"
    names = ["actual", "gru", "lstm", "best_baseline", "linear"]
    assert encoding["color"]["scale"] == {
        "domain": names,
        "range": [plots.COLOURS[n] for n in names],
    }
    assert encoding["strokeDash"]["field"] == "rev"
    assert forecast["facet"]["row"]["field"] == "target"
    points = forecast["data"]["values"]
    # The colour's field survives in every point (DVC drops it with its own colour anchors).
    assert {p["field"] for p in points} == set(names)
    assert {p["target"] for p in points} == set(TARGETS)

    horizon = dvc_json["horizon_mae"]
    assert {p["field"] for p in horizon["data"]["values"]} == set(names[1:])
    assert horizon["spec"]["encoding"]["y"]["scale"] == {"zero": True}
    assert horizon["spec"]["encoding"]["color"]["field"] == "field"
    assert horizon["spec"]["layer"][0]["encoding"]["strokeDash"]["field"] == "rev"

    learning = dvc_json["learning_curves"]["spec"]
    assert learning["encoding"]["color"]["field"] == "model"
    assert learning["encoding"]["color"]["scale"]["range"] == [
        plots.COLOURS["gru"],
        plots.COLOURS["lstm"],
    ]
    assert learning["encoding"]["y"]["scale"]["type"] == "log"
    assert learning["layer"][0]["encoding"]["strokeDash"]["field"] == "field"
    assert {p["field"] for p in dvc_json["learning_curves"]["data"]["values"]} == {
        "train",
        "validation",
    }


def test_dvc_specs_are_valid_vega_lite(dvc_json: dict) -> None:
    """Every filled spec validates against Vega-Lite's JSON schema (the copy altair ships)."""
    import importlib.util

    jsonschema = pytest.importorskip("jsonschema")
    altair = importlib.util.find_spec("altair")
    if altair is None:
        pytest.skip("altair (Vega-Lite's schema) is not installed")
    # Read from altair's files: importing altair would cost more than the whole check.
    folder = Path(altair.submodule_search_locations[0]) / "vegalite"
    schema = json.loads(max(folder.glob("v*/schema/vega-lite-schema.json")).read_text())
    validator = jsonschema.Draft7Validator(schema)  # validate() would check the schema first
    for spec in dvc_json.values():
        # A few points are enough for the schema; the values are all alike.
        spec = {**spec, "data": {**spec["data"], "values": spec["data"]["values"][:3]}}
        validator.validate(spec)


def test_committed_templates_are_the_generated_ones() -> None:
    """The .dvc/plots templates match seqcast.evaluation.plots; each plotted column has a colour."""
    for name, content in plots.templates().items():
        committed = REPO / ".dvc" / "plots" / f"{name}.json"
        assert json.loads(committed.read_text()) == content, (
            "run python -m seqcast.evaluation.plots"
        )
    config = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for definition in config["plots"]:
        (props,) = definition.values()
        assert props["template"] in plots.templates()
        for fields in props["y"].values():
            assert set(fields) <= set(plots.COLOURS) | {plots.TRAIN, plots.VALIDATION}
    assert "src/seqcast/evaluation/plots.py" in config["stages"]["evaluate"]["deps"]
    assert "/plots" not in (REPO / ".dvc" / ".gitignore").read_text().split()


def test_pngs_colour_per_model_and_the_baselines_real_name(inputs: dict, tmp_path: Path) -> None:
    """The PNGs: the DVC colours, `best baseline (<name>)`, a panel per target, no naive."""
    import matplotlib.pyplot as plt

    figures = plots.figures(plots.plot_data(**inputs))
    forecast = figures["forecast"].axes
    assert len(forecast) == 2
    lines = {line.get_label(): line.get_color() for line in forecast[0].get_lines()}
    assert lines == {
        "actual": plots.COLOURS["actual"],
        "gru": plots.COLOURS["gru"],
        "lstm": plots.COLOURS["lstm"],
        f"best baseline ({BEST})": plots.COLOURS["best_baseline"],
        "linear": plots.COLOURS["linear"],
    }
    legend = [t.get_text() for t in forecast[0].get_legend().get_texts()]
    assert legend == ["actual", "gru", "lstm", f"best baseline ({BEST})", "linear"]
    steps = [line.get_label() for line in figures["horizon_mae"].axes[1].get_lines()]
    assert steps == ["gru", "lstm", f"best baseline ({BEST})", "linear"]
    (learning,) = figures["learning_curves"].axes
    styles = {line.get_label(): (line.get_color(), line.get_linestyle()) for line in learning.lines}
    assert styles["gru train"] == (plots.COLOURS["gru"], "-")
    assert styles["lstm validation"] == (plots.COLOURS["lstm"], "--")
    for fig in figures.values():
        plt.close(fig)
    written = plots.plot_pngs(tmp_path, plots.plot_data(**inputs))
    assert [p.name for p in written] == [
        "forecast.png", "horizon_mae.png", "learning_curves.png", "backtest.png", "coverage.png",
        "bands.png",
    ]  # fmt: skip
    (band,) = figures["bands"].axes[:1]
    assert band.get_title(loc="left").startswith("gru: forecast from the last test origin")
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)


def test_each_model_gets_its_own_pngs(inputs: dict, tmp_path: Path) -> None:
    """A child run's charts: that model and the actual values; learning curves if a network."""
    written = plots.model_plot_pngs(tmp_path, plots.plot_data(**inputs))

    assert set(written) == {"gru", "lstm", BEST, "linear"}  # naive is not plotted
    assert [p.name for p in written["gru"]] == [
        "forecast.png", "horizon_mae.png", "learning_curves.png", "coverage.png"
    ]  # fmt: skip
    assert [p.name for p in written[BEST]] == ["forecast.png", "horizon_mae.png", "coverage.png"]
    assert written["lstm"][0] == tmp_path / "lstm" / "forecast.png"
    assert all(p.read_bytes().startswith(b"\x89PNG") for ps in written.values() for p in ps)
