"""An evaluation's plots: the CSVs behind dvc.yaml's plots, their Vega-Lite templates, the PNGs.

Both renderings draw the same three charts with the same colour per model: the test period's
one-step-ahead forecasts against the actual values, the test MAE per horizon step and the
learning curves. The CSVs use generic column names (`best_baseline`, not the season it happens
to be), so dvc.yaml's plot definitions and the templates in .dvc/plots stay fixed for any series.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from seqcast.core.config import MODEL_KINDS
from seqcast.data import features

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORECAST_CSV = "forecast.csv"
HORIZON_CSV = "horizon_mae.csv"
LEARNING_CSV = "learning.csv"
BACKTEST_CSV = "backtest.csv"
COVERAGE_CSV = "coverage.csv"
BANDS_CSV = "bands.csv"
# The CSV's time column: ISO 8601 without an offset, which browsers (Vega) and pandas both read
# as local wall-clock time, so the axis shows the series' own timestamps.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
BASELINE = "best_baseline"
ACTUAL = "actual"
# Train and validation loss columns of the learning curves; also their legend entries.
TRAIN, VALIDATION = "train", "validation"
# One colour per plotted column, the same in the DVC templates and the PNGs: the networks in
# saturated colours, the baselines they must beat in quieter ones, the actual values in black.
COLOURS = {
    ACTUAL: "#222222",
    "gru": "#1f77b4",
    "lstm": "#ff7f0e",
    BASELINE: "#2ca02c",
    "linear": "#9467bd",
}
LABELS = {BASELINE: "best baseline"}


def columns() -> list[str]:
    """The plotted models' columns, in legend order: networks, best simple baseline, linear."""
    return [*MODEL_KINDS, BASELINE, "linear"]


@dataclass
class PlotData:
    """What the plots draw, in the series' units (the first axis of every array is time/step)."""

    targets: list[str]
    best: str  # the best simple baseline's real name
    times: pd.DatetimeIndex  # when each test window's first forecast step falls
    actual: np.ndarray  # (windows, targets)
    forecasts: dict[str, np.ndarray]  # column -> one-step-ahead forecasts, (windows, targets)
    step_mae: dict[str, np.ndarray]  # column -> test MAE per horizon step, (horizon, targets)
    curves: dict[str, dict[str, list[float]]]  # network -> {"loss": [...], "val_loss": [...]}
    metric: str = "mase"  # the promotion metric, plotted per backtest origin
    cutoffs: list[str] = field(default_factory=list)  # each backtest origin's first forecast row
    backtest: dict[str, list[float]] = field(default_factory=dict)  # column -> metric per origin
    coverage: dict[str, dict[str, list[float]]] = field(
        default_factory=dict
    )  # level -> col -> step
    band: dict = field(default_factory=dict)  # one forecast with its bands: see band_data()


def plot_data(
    loaded: dict,
    scored: dict,
    best: str,
    curves: dict[str, dict[str, list[float]]],
    backtest: dict | None = None,
    bands: dict | None = None,
) -> PlotData:
    """The plotted numbers: windows, every model's scored test split, curves, backtest, bands."""
    from seqcast.evaluation.scores import units_of  # here: the evaluate stage imports plots

    spec = loaded["spec"]
    origins = loaded["origins"]["test"]
    n = spec.n_targets
    models = {col: (best if col == BASELINE else col) for col in columns()}
    models = {col: name for col, name in models.items() if name in scored}
    data = PlotData(
        targets=list(loaded["meta"]["columns"][:n]),
        best=best,
        times=pd.DatetimeIndex(loaded["times"][origins + spec.shift]),
        actual=features.targets(spec, units_of(loaded), origins)[:, 0, :],
        forecasts={col: scored[name]["test"].forecast[:, 0, :] for col, name in models.items()},
        step_mae={
            col: np.asarray(scored[name]["test"].scores["mae_per_step"])
            for col, name in models.items()
        },
        curves={k: curves[k] for k in MODEL_KINDS if k in curves},
    )
    if backtest:
        data.metric = backtest["decision"]["metric"]
        data.cutoffs = [f["cutoff"] for f in backtest["folds"]]
        data.backtest = {
            col: [f[data.metric] for f in backtest["per_origin"][name]]
            for col, name in models.items()
        }
    if bands:
        data.coverage = {
            level: {col: bands["coverage_step"][name][level] for col, name in models.items()}
            for level in bands["coverage_step"][best]
        }
        data.band = band_data(
            loaded, bands, backtest["decision"]["candidate"] if backtest else best
        )
    return data


def band_data(loaded: dict, bands: dict, model: str) -> dict:
    """One forecast of a model from the last test origin, its bands and the actual values."""
    from seqcast.evaluation.scores import units_of

    spec = loaded["spec"]
    origin = np.array([bands["origin"]])
    steps = np.arange(spec.shift, spec.shift + spec.horizon) + bands["origin"]
    point, half = bands["points"][model], bands["half_widths"][model]  # (H, T), (H, T, L)
    return {
        "model": model,
        "levels": [f"{lv:g}" for lv in bands["levels"]],
        "times": pd.DatetimeIndex(loaded["times"][steps]),
        "actual": features.targets(spec, units_of(loaded), origin)[0],
        "point": point,
        "lower": point[..., None] - half,
        "upper": point[..., None] + half,
    }


def write_plot_data(folder: Path, data: PlotData) -> list[Path]:
    """The CSVs behind dvc.yaml's plots, one row per time (or step) and target: long in targets."""
    best = data.best
    times = data.times.strftime(TIME_FORMAT)
    forecast = write_csv(
        folder / FORECAST_CSV,
        ["timestamp", "target", ACTUAL, *data.forecasts, "best_baseline_name"],
        (
            [times[i], target, float(data.actual[i, t])]
            + [float(v[i, t]) for v in data.forecasts.values()]
            + [best]
            for t, target in enumerate(data.targets)
            for i in range(len(times))
        ),
    )
    horizon = len(next(iter(data.step_mae.values())))
    steps = write_csv(
        folder / HORIZON_CSV,
        ["step", "target", *data.step_mae, "best_baseline_name"],
        (
            [h + 1, target, *(float(v[h, t]) for v in data.step_mae.values()), best]
            for t, target in enumerate(data.targets)
            for h in range(horizon)
        ),
    )
    learning = write_csv(
        folder / LEARNING_CSV,
        ["epoch", "model", TRAIN, VALIDATION],
        (
            [epoch, kind, float(loss), float(val)]
            for kind, history in data.curves.items()
            for epoch, (loss, val) in enumerate(
                zip(history["loss"], history["val_loss"], strict=True), start=1
            )
        ),
    )
    written = [forecast, steps, learning]
    if data.backtest:
        cols = list(data.backtest)
        written.append(
            write_csv(
                folder / BACKTEST_CSV,
                ["origin", "target", "cutoff", *cols, "best_baseline_name"],
                (
                    [k + 1, f"{data.metric} per origin", cutoff]
                    + [data.backtest[c][k] for c in cols]
                    + [best]
                    for k, cutoff in enumerate(data.cutoffs)
                ),
            )
        )
    if data.coverage:
        written.append(
            write_csv(
                folder / COVERAGE_CSV,
                ["step", "target", *columns(), "best_baseline_name"],
                (
                    [h + 1, f"band {level}%"]
                    + [cols[c][h] if c in cols else "" for c in columns()]
                    + [best]
                    for level, cols in data.coverage.items()
                    for h in range(len(next(iter(cols.values()))))
                ),
            )
        )
    if data.band:
        band = data.band
        written.append(
            write_csv(
                folder / BANDS_CSV,
                ["timestamp", "target", "level", ACTUAL, "forecast", "lower", "upper", "model"],
                (
                    [
                        band["times"][h].strftime(TIME_FORMAT),
                        target,
                        level,
                        float(band["actual"][h, t]),
                        float(band["point"][h, t]),
                        float(band["lower"][h, t, i]),
                        float(band["upper"][h, t, i]),
                        band["model"],
                    ]
                    for t, target in enumerate(data.targets)
                    for i, level in enumerate(band["levels"])
                    for h in range(len(band["times"]))
                ),
            )
        )
    return written


def write_csv(path: Path, header: list[str], rows) -> Path:
    """A plain CSV for DVC plots."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- Vega-Lite templates for `dvc plots show/diff` ------------------------------------------
# DVC fills <DVC_METRIC_*> anchors. These templates use none of the optional anchors (color,
# stroke_dash, ...): with those, DVC colours by revision and deletes each point's `field`, and the
# model (the y column a point came from) is exactly what the colour has to show.


# The best baseline's name for the legend: the first revision's and, where it differs, the last
# one's, each with its revision (so `dvc plots diff` of two revisions names both; the tooltip
# names each point's). DVC lists the points revision after revision.
_FIRST, _LAST = "data('dvc')[0]", "peek(data('dvc'))"
_BEST_NAMES = (
    f"!isValid({_FIRST}.best_baseline_name) ? '?'"
    f" : {_FIRST}.best_baseline_name == {_LAST}.best_baseline_name ? {_FIRST}.best_baseline_name"
    f" : {_FIRST}.rev + ': ' + {_FIRST}.best_baseline_name"
    f" + ', ' + {_LAST}.rev + ': ' + {_LAST}.best_baseline_name"
)


def _colour(field: str, names: list[str]) -> dict:
    """A colour encoding with a fixed colour per model and readable legend labels."""
    label = "datum.label"
    for name, text in LABELS.items():
        # The best baseline's real name is data, not a column: read it from the data.
        named = f"'{text} (' + ({_BEST_NAMES}) + ')'" if name == BASELINE else f"'{text}'"
        label = f"datum.label == '{name}' ? {named} : {label}"
    return {
        "field": field,
        "type": "nominal",
        "title": "model",
        "sort": names,
        "scale": {"domain": names, "range": [COLOURS[n] for n in names]},
        "legend": {"labelExpr": label, "labelLimit": 600, "symbolStrokeWidth": 3},
    }


# Horizon steps and epochs: whole numbers on the x axis.
_STEP_X = {
    "field": "<DVC_METRIC_X>",
    "type": "quantitative",
    "title": "<DVC_METRIC_X_LABEL>",
    "axis": {"tickMinStep": 1},
}


def _per_target(spec: dict, subtitle: str) -> dict:
    """One row of panels per target column, each with its own y scale (targets' units differ)."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": {"text": "<DVC_METRIC_TITLE>", "anchor": "start", "subtitle": subtitle},
        # Named, so that the legend can read the best baseline's name from it.
        "data": {"name": "dvc", "values": "<DVC_METRIC_DATA>"},
        "facet": {
            "row": {
                "field": "target",
                "type": "nominal",
                "title": None,
                "header": {
                    "labelOrient": "top",
                    "labelAngle": 0,
                    "labelAnchor": "start",
                    "labelFontSize": 12,
                    "labelFontWeight": "bold",
                },
            }
        },
        "resolve": {"scale": {"y": "independent"}},
        "spec": spec,
    }


# Dash legends show line samples: the default symbol, a circle, shows no dash.
_DASH_LEGEND = {"symbolType": "stroke", "symbolStrokeColor": "#555555", "symbolSize": 400}
_REVISION = {"field": "rev", "type": "nominal", "title": "revision"}
_TOOLTIP_Y = {"field": "<DVC_METRIC_Y>", "type": "quantitative", "format": ",.4~f"}


def _lines_and_dots(encoding: dict, dash: dict) -> dict:
    """Lines dashed by `dash`, a dot per value on a second layer (its legend stays line samples)."""
    return {
        "encoding": encoding,
        "layer": [
            {"mark": {"type": "line", "strokeWidth": 2}, "encoding": {"strokeDash": dash}},
            {"mark": {"type": "point", "filled": True, "size": 30, "opacity": 1}},
        ],
    }


def forecast_template() -> dict:
    """Forecast against actual on a time axis; colour per model, dash per revision."""
    names = [ACTUAL, *columns()]
    spec = {
        "width": 900,
        "height": 260,
        "params": [
            {"name": "zoom", "select": {"type": "interval", "encodings": ["x"]}, "bind": "scales"}
        ],
        "mark": {"type": "line", "strokeWidth": 1.1, "clip": True},
        "encoding": {
            "x": {
                "field": "<DVC_METRIC_X>",
                "type": "temporal",
                "title": "<DVC_METRIC_X_LABEL>",
                # Fewer ticks than Vega's one per 40 px, so day-level ticks show dates.
                "axis": {"tickCount": 12},
            },
            "y": {
                "field": "<DVC_METRIC_Y>",
                "type": "quantitative",
                "title": "<DVC_METRIC_Y_LABEL>",
                "scale": {"zero": False},
            },
            "color": _colour("field", names),
            "strokeDash": {**_REVISION, "legend": _DASH_LEGEND},
            "tooltip": [
                {"field": "<DVC_METRIC_X>", "type": "temporal", "format": "%Y-%m-%d %H:%M"},
                {"field": "field", "title": "model"},
                _TOOLTIP_Y,
                {"field": "best_baseline_name", "title": "best baseline"},
                _REVISION,
            ],
        },
    }
    return _per_target(spec, "scroll to zoom the time axis, drag to pan, double-click to reset")


def horizon_template() -> dict:
    """MAE per horizon step from zero; colour per model, dash per revision."""
    encoding = {
        "x": _STEP_X,
        "y": {
            "field": "<DVC_METRIC_Y>",
            "type": "quantitative",
            "title": "<DVC_METRIC_Y_LABEL>",
            # From zero, so that one model's error reads as a fraction of another's.
            "scale": {"zero": True},
        },
        "color": _colour("field", columns()),
        "tooltip": [
            {"field": "<DVC_METRIC_X>", "type": "quantitative"},
            {"field": "field", "title": "model"},
            _TOOLTIP_Y,
            {"field": "best_baseline_name", "title": "best baseline"},
            _REVISION,
        ],
    }
    spec = {
        "width": 560,
        "height": 300,
        **_lines_and_dots(encoding, {**_REVISION, "legend": _DASH_LEGEND}),
    }
    subtitle = (
        "naive left out unless it is the best baseline: on a seasonal series it dwarfs the rest"
    )
    return _per_target(spec, subtitle)


def learning_template() -> dict:
    """Loss per epoch on a log axis: colour per network, solid train, dashed validation."""
    encoding = {
        "x": _STEP_X,
        "y": {
            "field": "<DVC_METRIC_Y>",
            "type": "quantitative",
            "title": "<DVC_METRIC_Y_LABEL>",
            "scale": {"type": "log", "nice": False, "padding": 12},
        },
        "color": _colour("model", list(MODEL_KINDS)),
        "tooltip": [
            {"field": "model"},
            {"field": "field", "title": "loss on"},
            {"field": "<DVC_METRIC_X>", "type": "quantitative"},
            _TOOLTIP_Y,
            _REVISION,
        ],
    }
    split = {
        "field": "field",
        "type": "nominal",
        "title": "loss on",
        "sort": [TRAIN, VALIDATION],
        "scale": {"domain": [TRAIN, VALIDATION], "range": [[1, 0], [6, 4]]},
        "legend": _DASH_LEGEND,
    }
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": {"text": "<DVC_METRIC_TITLE>", "anchor": "start"},
        "data": {"values": "<DVC_METRIC_DATA>"},
        # A panel per revision (one y scale for all): dashes already tell train from validation.
        "facet": {"field": "rev", "type": "nominal", "title": None},
        "columns": 3,
        "spec": {"width": 420, "height": 280, **_lines_and_dots(encoding, split)},
    }


def bands_template() -> dict:
    """One forecast with its bands (widest palest) against the actual values, on a time axis."""
    x = {"field": "<DVC_METRIC_X>", "type": "temporal", "title": "<DVC_METRIC_X_LABEL>"}
    y_title = "<DVC_METRIC_Y_LABEL>"
    level = {"field": "level", "type": "nominal", "title": "band (%)"}
    spec = {
        "width": 700,
        "height": 280,
        "layer": [
            {
                "mark": {"type": "area", "opacity": 0.25, "color": COLOURS["gru"]},
                "encoding": {
                    "x": x,
                    "y": {
                        "field": "lower",
                        "type": "quantitative",
                        "title": y_title,
                        "scale": {"zero": False},
                    },
                    "y2": {"field": "upper"},
                    "opacity": {**level, "scale": {"range": [0.35, 0.15]}},
                    "tooltip": [
                        {"field": "<DVC_METRIC_X>", "type": "temporal", "format": "%Y-%m-%d %H:%M"},
                        level,
                        {"field": "lower", "format": ",.4~f"},
                        {"field": "upper", "format": ",.4~f"},
                        {"field": "model"},
                        _REVISION,
                    ],
                },
            },
            {
                "mark": {"type": "line", "strokeWidth": 2, "color": COLOURS["gru"]},
                "encoding": {"x": x, "y": {"field": "forecast", "type": "quantitative"}},
            },
            {
                "mark": {"type": "line", "strokeWidth": 2, "color": COLOURS[ACTUAL], "point": True},
                "encoding": {"x": x, "y": {"field": ACTUAL, "type": "quantitative"}},
            },
        ],
    }
    subtitle = "the served model's forecast from the last test origin: line, bands; actual in black"
    return _per_target(spec, subtitle)


def templates() -> dict[str, dict]:
    """The custom templates dvc.yaml's plots name, by file stem under .dvc/plots."""
    return {
        "forecast": forecast_template(),
        "horizon_mae": horizon_template(),
        "learning": learning_template(),
        "bands": bands_template(),
    }


def write_templates(folder: Path) -> list[Path]:
    """Write the templates (tests check the committed ones against these)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in templates().items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(content, indent=2) + "\n")
        written.append(path)
    return written


# --- PNGs for MLflow and the report --------------------------------------------------------


def _label(col: str, best: str) -> str:
    """A legend entry: the best baseline under its real name."""
    return f"best baseline ({best})" if col == BASELINE else col


def figures(data: PlotData) -> dict[str, Figure]:
    """The three charts as matplotlib figures, by PNG file stem."""
    import matplotlib

    matplotlib.use("Agg")
    return (
        {"forecast": _forecast_figure(data), "horizon_mae": _horizon_figure(data)}
        | ({"learning_curves": _learning_figure(data)} if data.curves else {})
        | ({"backtest": _backtest_figure(data)} if data.backtest else {})
        | ({"coverage": _coverage_figure(data)} if data.coverage else {})
        | ({"bands": _bands_figure(data)} if data.band else {})
    )


def _forecast_figure(data: PlotData) -> Figure:
    """Actual and one-step-ahead forecasts over the test period, a panel per target."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    n = len(data.targets)
    fig, axes = plt.subplots(n, 1, figsize=(12, 1.2 + 3 * n), sharex=True, squeeze=False)
    for t, (ax, target) in enumerate(zip(axes[:, 0], data.targets, strict=True)):
        ax.plot(data.times, data.actual[:, t], color=COLOURS[ACTUAL], lw=1.5, label=ACTUAL)
        for col, values in data.forecasts.items():
            label = _label(col, data.best)
            ax.plot(data.times, values[:, t], color=COLOURS[col], lw=0.9, label=label)
        ax.set_ylabel(target)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.grid(alpha=0.3)
    axes[0, 0].set_title("Test period: one-step-ahead forecast against actual", loc="left")
    # Above the plot, beside the title: inside it would hide the peaks.
    axes[0, 0].legend(
        fontsize=8, ncol=len(data.forecasts) + 1, loc="lower right", bbox_to_anchor=(1, 1)
    )
    return fig


def _horizon_figure(data: PlotData) -> Figure:
    """Test MAE per horizon step from zero, a panel per target; naive is not among the columns."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n = len(data.targets)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.4 + 3.2 * n), sharex=True, squeeze=False)
    for t, (ax, target) in enumerate(zip(axes[:, 0], data.targets, strict=True)):
        for col, values in data.step_mae.items():
            steps = np.arange(1, len(values) + 1)
            label = _label(col, data.best)
            ax.plot(steps, values[:, t], marker="o", ms=3, color=COLOURS[col], label=label)
        # From zero, so that one model's error reads as a fraction of another's.
        ax.set_ylim(bottom=0)
        ax.set_ylabel(f"MAE ({target})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("horizon step")
    axes[0, 0].set_title("Test MAE per horizon step (naive left out: see the metrics)", loc="left")
    axes[0, 0].legend(fontsize=8)
    return fig


def _learning_figure(data: PlotData) -> Figure:
    """Loss per epoch on a log axis: a colour per network, solid train, dashed validation."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, history in data.curves.items():
        epochs = np.arange(1, len(history["loss"]) + 1)
        style = {"color": COLOURS.get(name), "marker": "o", "ms": 3}
        ax.plot(epochs, history["loss"], label=f"{name} {TRAIN}", **style)
        ax.plot(epochs, history["val_loss"], ls="--", label=f"{name} {VALIDATION}", **style)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE on scaled residuals")
    ax.set_title("Learning curves (solid: train, dashed: validation)", loc="left")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def _backtest_figure(data: PlotData) -> Figure:
    """The promotion metric at each backtest origin, a line per model."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    origins = np.arange(1, len(data.cutoffs) + 1)
    for col, values in data.backtest.items():
        ax.plot(origins, values, marker="o", color=COLOURS[col], label=_label(col, data.best))
    ax.set_xticks(origins, [c[:16] for c in data.cutoffs], rotation=20, fontsize=7)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(data.metric.upper())
    ax.set_title(f"Backtest: {data.metric.upper()} at each origin (first forecast row)", loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _coverage_figure(data: PlotData) -> Figure:
    """Test coverage of each band per horizon step, nominal level dotted."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(data.coverage), figsize=(5 * len(data.coverage), 4), squeeze=False
    )
    for ax, (level, cols) in zip(axes[0], data.coverage.items(), strict=True):
        for col, values in cols.items():
            steps = np.arange(1, len(values) + 1)
            ax.plot(
                steps, values, marker="o", ms=3, color=COLOURS[col], label=_label(col, data.best)
            )
        ax.axhline(float(level) / 100, color="#555555", ls=":", label="nominal")
        ax.set_title(f"{level}% band: test coverage per step", loc="left")
        ax.set_xlabel("horizon step")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return fig


def _bands_figure(data: PlotData) -> Figure:
    """The served model's forecast from the last test origin with its bands, against actual."""
    import matplotlib.pyplot as plt

    band = data.band
    n = len(data.targets)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.2 + 3 * n), squeeze=False)
    for t, (ax, target) in enumerate(zip(axes[:, 0], data.targets, strict=True)):
        for i in reversed(range(len(band["levels"]))):
            ax.fill_between(
                band["times"], band["lower"][:, t, i], band["upper"][:, t, i],
                color=COLOURS["gru"], alpha=0.15 + 0.15 * (len(band["levels"]) - 1 - i),
                label=f"{band['levels'][i]}% band",
            )  # fmt: skip
        ax.plot(band["times"], band["point"][:, t], color=COLOURS["gru"], lw=2, label=band["model"])
        ax.plot(
            band["times"],
            band["actual"][:, t],
            color=COLOURS[ACTUAL],
            marker="o",
            ms=3,
            label=ACTUAL,
        )
        ax.set_ylabel(target)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(
        f"{band['model']}: forecast from the last test origin, with bands", loc="left"
    )
    axes[0, 0].legend(fontsize=8)
    return fig


def plot_pngs(folder: Path, data: PlotData) -> list[Path]:
    """PNG versions of the DVC plots, for MLflow and the report."""
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, fig in figures(data).items():
        fig.tight_layout()
        fig.savefig(folder / f"{stem}.png", dpi=110)
        plt.close(fig)
        written.append(folder / f"{stem}.png")
    return written


def model_plot_pngs(folder: Path, data: PlotData) -> dict[str, list[Path]]:
    """Each plotted model's own charts (forecast, MAE per step, curves, coverage), by model name."""
    written = {}
    for col in data.forecasts:
        name = data.best if col == BASELINE else col
        own = replace(
            data,
            forecasts={col: data.forecasts[col]},
            step_mae={col: data.step_mae[col]},
            curves={col: data.curves[col]} if col in data.curves else {},
            backtest={},  # one line per origin says little alone: the parent run compares them
            coverage={level: {col: cols[col]} for level, cols in data.coverage.items()},
            band={},
        )
        written[name] = plot_pngs(folder / name, own)
    return written


if __name__ == "__main__":
    # Regenerate the committed templates after changing the colours or the plotted columns.
    for path in write_templates(Path(".dvc/plots")):
        print(path)
