"""Every model scored on identical windows, in the series' units; tables (plots: seqcast.plots)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqcast import features, metrics
from seqcast.config import Config
from seqcast.forecaster import Forecaster
from seqcast.plots import plot_pngs, write_plot_data
from seqcast.scaling import to_units

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


def table(results: dict[str, dict], seconds: dict[str, float], best: str) -> str:
    """A fixed-width summary table, best baseline marked."""
    lines = [f"{'model':<22}{'MAE':>12}{'RMSE':>12}{'MASE':>9}{'sMAPE %':>10}{'train s':>10}"]
    for name, m in sorted(results.items(), key=lambda item: item[1]["mae"]):
        mark = " *" if name == best else ""
        took = f"{seconds[name]:.1f}" if name in seconds else "-"
        lines.append(
            f"{name + mark:<22}{m['mae']:>12.2f}{m['rmse']:>12.2f}{m['mase']:>9.3f}"
            f"{m['smape']:>10.2f}{took:>10}"
        )
    lines.append("* best baseline")
    return "\n".join(lines)


def summarise(scored: dict[str, Scored], targets: list[str]) -> dict:
    """Headline metrics per split and test MAE per horizon step, for one model."""
    return {
        "test": scored["test"].headline(targets),
        "val": scored["val"].headline(targets),
        "test_steps": scored["test"].details(targets)["mae_step"],
    }


def metrics_file(result: dict) -> dict[str, float]:
    """A model's DVC metrics file: test MAE and MASE, validation MASE; numbers only.

    Three keys, the same in every file, so `dvc metrics show` is a row per model and
    `dvc exp show --only-changed` fits a terminal; RMSE, sMAPE and the rest are in evaluation/.
    """
    test, val = result["test"], result["val"]
    return {"mae": test["mae"], "mase": test["mase"], "val_mase": val["mase"]}


def compare(
    results: dict[str, dict], networks: list[str], baselines: list[str], metric: str, meta: dict
) -> dict:
    """The comparison: every model's test metrics, the best simple baseline, who beats it.

    The best network and the fallback baseline (what is served when no network beats the simple
    baselines) are chosen on validation; test only reports.
    """
    test = {name: r["test"] for name, r in results.items()}
    val = {name: r["val"] for name, r in results.items()}
    simple = [name for name in baselines if name != "linear"]
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
        "not_applicable": meta["not_applicable"],
        "reference": meta["reference_choice"],
        "windows": meta["windows"],
    }


def recent_history(loaded: dict, rows: int):
    """The last rows of the series in its units, as raw history a served model takes."""
    import pandas as pd

    meta = loaded["meta"]
    frame = pd.DataFrame(units_of(loaded)[-rows:], columns=meta["columns"])
    frame.insert(0, meta["timestamp"], loaded["times"][-rows:].strftime("%Y-%m-%d %H:%M:%S"))
    return frame


def evaluate(cfg: Config, root: Path) -> dict:
    """The evaluate stage: every network and baseline on identical windows; metrics, plots, runs."""
    import tempfile

    from seqcast import models, paths, tracking, training
    from seqcast.config import MODEL_KINDS, flatten
    from seqcast.forecaster import Forecaster, forecaster_for
    from seqcast.io import atomic_dir, read_json, write_json
    from seqcast.windowing import load_windows

    training.use_backend(cfg.train.backend)
    loaded = load_windows(root)
    meta = loaded["meta"]
    networks = {k: Forecaster.load(root / paths.MODELS / k / "forecaster") for k in MODEL_KINDS}
    simple = baseline_forecasters(loaded)
    ridge = models.fit_linear_rival(loaded, cfg.baselines.linear_alpha)
    simple["linear"] = forecaster_for("linear", loaded, predictor=ridge)
    scale = mase_scale(loaded, meta["mase_season"])
    scored = {
        name: {split: score(f, loaded, split, scale) for split in SPLITS}
        for name, f in {**simple, **networks}.items()
    }
    targets = meta["columns"][: loaded["spec"].n_targets]
    results = {name: summarise(s, targets) for name, s in scored.items()}
    test = {name: r["test"] for name, r in results.items()}
    comparison = compare(results, list(networks), list(simple), cfg.promotion.metric, meta)
    best, fallback = comparison["best_baseline"], comparison["fallback"]
    train_info = {k: read_json(root / paths.MODELS / k / "train.json") for k in networks}
    curves = {k: training.read_history(root / paths.MODELS / k / "history.csv") for k in networks}
    tags = tracking.run_tags(
        meta["raw_md5"], meta["windows_md5"], root=root, backend=cfg.train.backend
    )
    fingerprints = {k: f.fingerprint() for k, f in {**simple, **networks}.items()}
    facts = data_facts(read_json(root / paths.PREPARED / "prepared.json"))
    # PNGs and the fallback's forecaster go to MLflow first; DVC outputs are written last.
    with tempfile.TemporaryDirectory(prefix="seqcast-evaluate-") as scratch:
        pngs = plot_pngs(Path(scratch) / "plots", loaded, scored, best, curves)
        simple[fallback].save(Path(scratch) / fallback / "forecaster")
        logged = {k: root / paths.MODELS / k / "forecaster" for k in networks}
        logged[fallback] = Path(scratch) / fallback / "forecaster"
        runs = tracking.log_evaluation(
            experiment=cfg.tracking.experiment,
            root=root,
            params=flatten(cfg),
            tags=tags,
            dataset=_dataset(cfg, root, targets),
            results=results,
            curves=curves,
            train_info=train_info,
            networks=list(networks),
            models=logged,
            input_example=recent_history(loaded, max(f.min_history for f in networks.values())),
            artifacts={
                "plots": pngs,
                "inputs": [
                    root / paths.PREPARED / "scaler.pkl",
                    root / paths.PREPARED / "prepared.json",
                ],
            },
            comparison=comparison,
            data_facts=facts,
        )
        for name, entry in {**runs["networks"], **runs["baselines"]}.items():
            entry["fingerprint"] = fingerprints[name]
        runs |= {
            "data_md5": meta["raw_md5"],
            "test_id": test_id(meta),
            "best_baseline": best,
            "fallback": fallback,
            "data": facts,
            "windows_md5": meta["windows_md5"],
        }
        with atomic_dir(root / paths.EVALUATION) as out:
            write_json(out / "runs.json", runs)
            write_json(out / "comparison.json", comparison)
            write_json(
                out / "scores.json",
                {n: {sp: s[sp].details(targets) for sp in SPLITS} for n, s in scored.items()},
            )
            (out / "plots").mkdir()
            for png in pngs:
                (out / "plots" / png.name).write_bytes(png.read_bytes())
    shown = {
        name: results[best if name == "best_baseline" else name] for name in paths.METRIC_FILES
    }
    for name, result in shown.items():
        write_json(root / paths.METRICS / f"{name}.json", metrics_file(result))
    with atomic_dir(root / paths.PLOTS) as out:
        write_plot_data(out, loaded, scored, best, curves)
    seconds = {k: v["seconds"] for k, v in train_info.items()}
    print(table(test, seconds, best), flush=True)
    print(f"MLflow: {tracking.ui_link(runs['experiment_id'], runs['parent_run_id'])}", flush=True)
    return {"best_baseline": best, "models": test, "parent_run_id": runs["parent_run_id"]}


def baseline_forecasters(loaded: dict) -> dict[str, Forecaster]:
    """Naive and one seasonal-naive per applicable season, over the networks' windows."""
    import dataclasses

    from seqcast.forecaster import forecaster_for

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

    from seqcast.data import read_raw

    raw = read_raw(root / cfg.data.path)
    with warnings.catch_warnings():
        # MLflow finds two equal readings of a local path and warns that it picked one.
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_pandas(
            raw, source=str(cfg.data.path), name=Path(cfg.data.path).stem, targets=targets[0]
        )
