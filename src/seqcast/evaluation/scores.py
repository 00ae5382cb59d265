"""Every model scored on identical windows, in the series' units: metrics, tables, comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqcast.core.config import STATISTICAL_MODELS, Config
from seqcast.data import features
from seqcast.data.scaling import to_units
from seqcast.models import metrics
from seqcast.models.forecaster import Forecaster

HEADLINE = ("mae", "rmse", "mase", "smape")
SPLITS = ("val", "test")


@dataclass
class Scored:
    """One model's forecasts and metrics on one split."""

    name: str
    forecast: np.ndarray  # (windows, horizon, targets) in units
    scores: dict[str, np.ndarray]

    def headline(self, targets: list[str]) -> dict[str, float]:
        """The four headline metrics, averaged over targets (a single target reads as itself)."""
        return {k: float(np.mean(self.scores[k])) for k in HEADLINE}

    def details(self, targets: list[str]) -> dict:
        """Headline, MAE per horizon step (zero-padded keys) and, with several targets, each one."""
        out: dict = self.headline(targets)
        steps = self.scores["mae_per_step"]
        width = len(str(len(steps)))
        out["mae_step"] = {
            f"{h + 1:0{width}d}": float(np.mean(steps[h])) for h in range(len(steps))
        }
        if len(targets) > 1:
            out["per_target"] = {
                t: {k: float(self.scores[k][i]) for k in HEADLINE} for i, t in enumerate(targets)
            }
        return out


def units_of(loaded: dict) -> np.ndarray:
    """The windowed series back in the series' units."""
    meta = loaded["meta"]
    return to_units(
        np.asarray(loaded["series"]), np.asarray(meta["offset"]), np.asarray(meta["scale"])
    )


def mase_scale(loaded: dict, season: int) -> np.ndarray:
    """MASE's denominator from the training rows only."""
    n_train = loaded["meta"]["rows"]["train"]
    n_targets = loaded["spec"].n_targets
    return metrics.seasonal_naive_scale(units_of(loaded)[:n_train, :n_targets], season)


def score(forecaster: Forecaster, loaded: dict, split: str, scale: np.ndarray) -> Scored:
    """Forecast every window of a split and score it against the actual values."""
    origins = loaded["origins"][split]
    meta = loaded["meta"]
    n = loaded["spec"].n_targets
    scaled = forecaster.predict_scaled(
        np.asarray(loaded["series"]), np.asarray(loaded["calendar"]), origins
    )
    forecast = to_units(scaled, np.asarray(meta["offset"])[:n], np.asarray(meta["scale"])[:n])
    actual = features.targets(loaded["spec"], units_of(loaded), origins)
    return Scored(forecaster.name, forecast, metrics.score(actual, forecast, scale))


def best_baseline(results: dict[str, dict], baselines: list[str], metric: str = "mae") -> str:
    """The baseline with the lowest error by a metric."""
    return min(baselines, key=lambda name: results[name][metric])


def mase_scale_words(season: int) -> str:
    """What MASE divides by: 'seasonal-naive 48 in-sample MAE' (naive for a season of 1)."""
    name = "naive" if season == 1 else f"seasonal-naive {season}"
    return f"{name} in-sample MAE"


def table(
    results: dict[str, dict],
    seconds: dict[str, float],
    best: str,
    backtest_means: dict[str, dict[str, float]] | None = None,
    bands: dict[str, dict] | None = None,
    mase_season: int | None = None,
) -> str:
    """A fixed-width summary in significant digits: test metrics, backtest mean, band coverage."""
    levels = sorted(
        {k.removeprefix("coverage_") for b in (bands or {}).values() for k in b}
        - {k for b in (bands or {}).values() for k in b if k.endswith("_step")},
        key=lambda k: float(k) if k.replace(".", "").isdigit() else 0.0,
    )
    levels = [lv for lv in levels if lv.replace(".", "").isdigit()]
    head = f"{'model':<22}{'MAE':>11}{'RMSE':>11}{'MASE':>8}{'sMAPE%':>8}"
    head += f"{'bt MASE':>9}" if backtest_means else ""
    head += "".join(f"{'cov' + lv:>7}" for lv in levels) + f"{'train s':>9}"
    lines = [head]
    for name, m in sorted(results.items(), key=lambda item: item[1]["mae"]):
        mark = " *" if name == best else ""
        took = f"{seconds[name]:.1f}" if name in seconds else "-"
        row = (
            f"{name + mark:<22}{m['mae']:>11.4g}{m['rmse']:>11.4g}{m['mase']:>8.3g}"
            f"{m['smape']:>8.3g}"
        )
        if backtest_means:
            row += f"{backtest_means['mase'][name]:>9.3g}"
        for lv in levels:
            cov = (bands or {}).get(name, {}).get(f"coverage_{lv}")
            row += f"{cov:>7.1%}" if cov is not None else f"{'-':>7}"
        lines.append(row + f"{took:>9}")
    lines.append(
        "* best baseline; test split except bt (mean over backtest origins); cov: band coverage"
    )
    if mase_season is not None:
        # A MASE means little without its denominator: a season of 5 and of 1 differ a lot.
        lines.append(f"MASE (scale: {mase_scale_words(mase_season)} of the training split)")
    return "\n".join(lines)


def summarise(scored: dict[str, Scored], targets: list[str]) -> dict:
    """Headline metrics per split and test MAE per horizon step, for one model."""
    return {
        "test": scored["test"].headline(targets),
        "val": scored["val"].headline(targets),
        "test_steps": scored["test"].details(targets)["mae_step"],
    }


def metrics_file(result: dict, backtest: dict[str, float]) -> dict[str, float]:
    """A model's DVC metrics file: test MAE and MASE, their means over the backtest origins.

    Four keys, the same in every file, so `dvc metrics show` is a row per model and
    `dvc exp show --only-changed` fits a terminal; RMSE, sMAPE and the rest are in evaluation/.
    """
    test = result["test"]
    return {
        "mae": test["mae"],
        "mase": test["mase"],
        "bt_mae": backtest["mae"],
        "bt_mase": backtest["mase"],
    }


def compare(
    results: dict[str, dict], networks: list[str], baselines: list[str], metric: str, meta: dict
) -> dict:
    """The comparison: every model's test metrics, the best simple baseline, who beats it.

    The best network and the fallback baseline (what is served when no network beats the simple
    baselines) are chosen on validation; test only reports.
    """
    test = {name: r["test"] for name, r in results.items()}
    val = {name: r["val"] for name, r in results.items()}
    simple = [n for n in baselines if n != "linear" and n not in STATISTICAL_MODELS]
    rivals = [n for n in baselines if n in STATISTICAL_MODELS]
    best = best_baseline(test, simple, metric)
    return {
        "models": test,
        "validation": val,
        "metric": metric,
        "best_baseline": best,
        "best_network": min(networks, key=lambda k: val[k][metric]),
        "fallback": best_baseline(val, simple, metric),
        "beats_best_baseline": {k: test[k][metric] < test[best][metric] for k in networks},
        "beats_linear": {k: test[k][metric] < test["linear"][metric] for k in networks},
        "beats_statistical": {
            k: {r: test[k][metric] < test[r][metric] for r in rivals} for k in networks
        },
        "not_applicable": meta["not_applicable"],
        "reference": meta["reference_choice"],
        "seasons": meta["seasons"],
        "season_detection": meta.get("season_detection"),
        "mase_scale": mase_scale_words(meta["mase_season"]),
        "windows": meta["windows"],
    }


def recent_history(loaded: dict, rows: int):
    """The last rows of the series in its units, as raw history a served model takes."""
    import pandas as pd

    meta = loaded["meta"]
    frame = pd.DataFrame(units_of(loaded)[-rows:], columns=meta["columns"])
    frame.insert(0, meta["timestamp"], loaded["times"][-rows:].strftime("%Y-%m-%d %H:%M:%S"))
    return frame


def baseline_forecasters(loaded: dict) -> dict[str, Forecaster]:
    """Naive and one seasonal-naive per applicable season, over the networks' windows."""
    import dataclasses

    from seqcast.models.forecaster import forecaster_for

    spec = loaded["spec"]
    naive = dataclasses.replace(spec, reference="naive", season=None)
    out = {"naive": forecaster_for("naive", loaded, spec=naive)}
    for season in loaded["meta"]["seasons"]:
        seasonal = dataclasses.replace(spec, reference="seasonal_naive", season=season)
        out[f"seasonal_naive_{season}"] = forecaster_for(
            f"seasonal_naive_{season}", loaded, spec=seasonal
        )
    return out


def data_facts(prepared: dict) -> dict[str, float]:
    """Rows per split and how many were filled by interpolation, as numbers for MLflow."""
    filled = prepared.get("filled", {})
    return {f"rows_{name}": float(n) for name, n in prepared["rows"].items()} | {
        "filled_rows": float(filled.get("rows", 0)),
        "filled_values": float(filled.get("values", 0)),
        "filled_fraction": float(filled.get("fraction", 0.0)),
    }


def test_id(meta: dict) -> str:
    """Identity of the test windows: data, split rows and window settings."""
    import hashlib
    import json

    keys = {k: meta[k] for k in ("raw_md5", "rows", "context", "windows")}
    keys["horizon"], keys["shift"] = meta["spec"]["horizon"], meta["spec"]["shift"]
    return hashlib.md5(json.dumps(keys, sort_keys=True).encode()).hexdigest()


def _dataset(cfg: Config, root: Path, targets: list[str]):
    """The raw series as an MLflow dataset input."""
    import warnings

    import mlflow.data

    from seqcast.data.series import read_raw

    raw = read_raw(root / cfg.data.path)
    with warnings.catch_warnings():
        # MLflow finds two equal readings of a local path and warns that it picked one.
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_pandas(
            raw, source=str(cfg.data.path), name=Path(cfg.data.path).stem, targets=targets[0]
        )
