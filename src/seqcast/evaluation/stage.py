"""The evaluate stage: holdout scores, the rolling-origin backtest's decision, conformal bands.

Every model (networks, linear rival, simple baselines) is scored on the same windows: the
validation and test splits with the models the train stage fit, and the backtest blocks with the
models refit on each fold. The candidate is decided on the backtest; the test windows report, and
carry bands calibrated only on errors known before each window's origin.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from seqcast.core.config import Config
from seqcast.data import features
from seqcast.evaluation import backtest, intervals
from seqcast.evaluation.backtest import SIMPLE, Backtest, Fold
from seqcast.evaluation.plots import model_plot_pngs, plot_data, plot_pngs, write_plot_data
from seqcast.evaluation.scores import (
    SPLITS,
    _dataset,
    baseline_forecasters,
    compare,
    data_facts,
    mase_scale,
    metrics_file,
    recent_history,
    score,
    summarise,
    table,
    test_id,
    units_of,
)
from seqcast.models import metrics

OOS = "oos.npz"
METRIC_KEYS = ("mae", "mase", "bt_mae", "bt_mase")
CALIBRATION = "calibration.npz"
SCALE_SUFFIX = intervals.SCALE_SUFFIX


def evaluate(cfg: Config, root: Path) -> dict:
    """Every network and baseline on identical windows; backtest decision; metrics, plots, runs."""
    import tempfile

    from seqcast.core import paths
    from seqcast.core.config import MODEL_KINDS, flatten
    from seqcast.core.io import atomic_dir, read_json, write_json
    from seqcast.data.windowing import load_windows
    from seqcast.models import networks as models
    from seqcast.models import statistical, tracking, training
    from seqcast.models.forecaster import Forecaster, forecaster_for

    paths.refuse_panel(root)
    training.use_backend(cfg.train.backend)
    loaded = load_windows(root)
    meta, spec = loaded["meta"], loaded["spec"]
    networks = {k: Forecaster.load(root / paths.MODELS / k / "forecaster") for k in MODEL_KINDS}
    simple = baseline_forecasters(loaded)
    ridge = models.fit_linear_rival(loaded, cfg.baselines.linear_alpha)
    simple["linear"] = forecaster_for("linear", loaded, predictor=ridge)
    # The statistical rivals fit on the training rows, each target on its own (features unused).
    n_train = meta["rows"]["train"]
    rivals, rival_facts = statistical.fit_rivals(
        cfg.baselines.statistical, units_of(loaded)[:n_train, : spec.n_targets], meta["seasons"]
    )
    for name, rival in rivals.items():
        simple[name] = forecaster_for(name, loaded, predictor=rival)
    scale = mase_scale(loaded, meta["mase_season"])
    scored = {
        name: {split: score(f, loaded, split, scale) for split in SPLITS}
        for name, f in {**simple, **networks}.items()
    }
    targets = meta["columns"][: spec.n_targets]
    results = {name: summarise(s, targets) for name, s in scored.items()}
    test = {name: r["test"] for name, r in results.items()}
    comparison = compare(results, list(networks), list(simple), cfg.promotion.metric, meta)
    comparison["statistical"] = statistical_facts(rival_facts, spec.n_targets, meta)
    best = comparison["best_baseline"]
    roles = (
        {k: "network" for k in networks}
        | {name: ("linear" if name == "linear" else SIMPLE) for name in simple}
        | {name: statistical.ROLE for name in rivals}
    )
    folds, runs_bt = run_backtest(cfg, root, loaded, scored, list(networks), list(rivals))
    units = units_of(loaded)
    fold_scores = backtest.score(runs_bt, folds, units, spec, meta["mase_season"])
    decision = backtest.decide(
        fold_scores, roles, cfg.promotion.metric, cfg.backtest.min_wins, spec.horizon,
        cfg.backtest.rule, cfg.backtest.significance,
    )  # fmt: skip
    decision["mode"] = "backtest" if cfg.backtest.origins else "validation split"
    comparison["candidate"] = decision
    fallback = decision["best_simple"]
    oos_origins, oos = out_of_sample(runs_bt, scored, loaded)
    native = {
        name: rival.native_bands(
            units_of(loaded)[:, : spec.n_targets], loaded["origins"]["test"], spec.horizon,
            spec.shift, cfg.intervals.levels,
        )
        for name, rival in rivals.items()
    }  # fmt: skip
    bands = calibrate(cfg, loaded, oos_origins, oos, scored, scale, runs_bt, native)
    bt_summary = backtest_summary(cfg, loaded, folds, fold_scores, runs_bt, decision)
    bt_summary["statistical"] = comparison["statistical"] | {
        "folds": {name: runs_bt[name].folds for name in rivals if name in runs_bt}
    }
    train_info = {k: read_json(root / paths.MODELS / k / "train.json") for k in networks}
    curves = {k: training.read_history(root / paths.MODELS / k / "history.csv") for k in networks}
    tags = tracking.run_tags(
        meta["raw_md5"], meta["windows_md5"], root=root, backend=cfg.train.backend
    )
    fingerprints = {k: f.fingerprint() for k, f in {**simple, **networks}.items()}
    facts = data_facts(read_json(root / paths.PREPARED / "prepared.json"))
    plotted = plot_data(loaded, scored, best, curves, bt_summary, bands["plot"])
    # PNGs and the fallback's forecaster go to MLflow first; DVC outputs are written last.
    with tempfile.TemporaryDirectory(prefix="seqcast-evaluate-") as scratch:
        pngs = plot_pngs(Path(scratch) / "plots", plotted)
        own_pngs = model_plot_pngs(Path(scratch) / "model_plots", plotted)
        logged = {k: root / paths.MODELS / k / "forecaster" for k in networks}
        for name in {fallback, decision["candidate"]} - set(networks):
            simple[name].save(Path(scratch) / name / "forecaster")
            logged[name] = Path(scratch) / name / "forecaster"
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
            loaded={**{n: simple[n] for n in logged if n in simple}, **networks},
            artifacts={
                "plots": pngs,
                "inputs": [
                    root / paths.PREPARED / "scaler.pkl",
                    root / paths.PREPARED / "prepared.json",
                ],
            },
            comparison=comparison,
            data_facts=facts,
            backtest=bt_summary,
            intervals=bands["scores"],
            model_plots=own_pngs,
        )
        for name, entry in {**runs["networks"], **runs["baselines"]}.items():
            entry["fingerprint"] = fingerprints[name]
            entry["backtest_metrics"] = {
                m: bt_summary["means"][m][name] for m in bt_summary["means"]
            }
            entry["intervals"] = bands["scores"][name]
        runs |= {
            "data_md5": meta["raw_md5"],
            "test_id": test_id(meta),
            "backtest_id": backtest_id(meta, folds, cfg),
            "best_baseline": best,
            "fallback": fallback,
            "candidate": {k: decision[k] for k in ("candidate", "role", "metric", "reasons")},
            "data": facts,
            "windows_md5": meta["windows_md5"],
            "last_row": str(loaded["times"][-1]),
        }
        with atomic_dir(root / paths.EVALUATION) as out:
            write_json(out / "runs.json", runs)
            write_json(out / "comparison.json", comparison)
            write_json(
                out / "scores.json",
                {n: {sp: s[sp].details(targets) for sp in SPLITS} for n, s in scored.items()},
            )
            write_json(out / "backtest.json", bt_summary)
            write_json(out / "intervals.json", bands["scores"])
            np.savez(out / OOS, origins=oos_origins, **oos)
            np.savez(out / CALIBRATION, **bands["calibration"])
            (out / "plots").mkdir()
            for png in pngs:
                (out / "plots" / png.name).write_bytes(png.read_bytes())
    for name in paths.METRIC_FILES:
        model = best if name == "best_baseline" else name
        if model not in results:  # a statistical rival turned off or failed: a row of nulls
            write_json(root / paths.METRICS / f"{name}.json", dict.fromkeys(METRIC_KEYS))
            continue
        means = {m: bt_summary["means"][m][model] for m in ("mae", "mase")}
        entry = metrics_file(results[model], means)
        write_json(root / paths.METRICS / f"{name}.json", entry)
    with atomic_dir(root / paths.PLOTS) as out:
        write_plot_data(out, plotted)
    seconds = {k: v["seconds"] for k, v in train_info.items()}
    print(
        table(test, seconds, best, bt_summary["means"], bands["scores"], meta["mase_season"]),
        flush=True,
    )
    for line in decision["reasons"]:
        print(f"decision: {line}", flush=True)
    print(f"MLflow: {tracking.ui_link(runs['experiment_id'], runs['parent_run_id'])}", flush=True)
    return {"best_baseline": best, "models": test, "parent_run_id": runs["parent_run_id"]}


def statistical_facts(facts: dict[str, dict], n_targets: int, meta: dict) -> dict:
    """What the report says of the statistical rivals: models, seasons, failures, features."""
    ignored = meta["columns"][n_targets:]
    return {
        "models": facts,
        "features": (
            f"features {ignored} and calendar inputs are ignored: each target is forecast from "
            "its own history"
            if ignored
            else "calendar inputs are ignored: each target is forecast from its own history"
        ),
    }


def run_backtest(
    cfg: Config,
    root: Path,
    loaded: dict,
    scored: dict,
    networks: list[str],
    rivals: list[str] = (),
) -> tuple[list[Fold], dict[str, Backtest]]:
    """Every model's forecasts of the backtest blocks; with the backtest off, of the val split."""
    from seqcast.core import paths

    rows = loaded["meta"]["rows"]
    folds = backtest.layout(rows, cfg)
    if not folds:
        # Off: one origin, the validation split, forecast by the train stage's models.
        val = loaded["origins"]["val"]
        fold = Fold(0, 0, rows["train"], rows["train"] + rows["val"], True)
        return [fold], {
            name: Backtest(name, val, np.zeros(len(val), np.int64), s["val"].forecast, [])
            for name, s in scored.items()
        }
    out = {
        name: backtest.simple(name, folds, loaded, cfg)
        for name in scored
        if name not in networks and name != "linear" and name not in rivals
    }
    out["linear"] = backtest.run(
        "linear", folds, loaded, cfg, backtest.linear_predictor(cfg.baselines.linear_alpha)
    )
    for name in rivals:
        out[name] = backtest.run(name, folds, loaded, cfg, backtest.statistical_predictor(name))
    for kind in networks:
        out[kind] = Backtest.load(root / paths.BACKTEST / kind)
    return folds, out


def out_of_sample(
    runs: dict[str, Backtest], scored: dict, loaded: dict
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each model's forecasts of windows it was not fit on: backtest blocks, then the test split."""
    test = loaded["origins"]["test"]
    first = next(iter(runs.values()))
    origins = np.concatenate([first.origins, test])
    keep = np.concatenate([first.origins < test.min(), np.ones(len(test), bool)])
    forecasts = {
        name: np.concatenate([runs[name].forecast, scored[name]["test"].forecast])[keep]
        for name in runs
    }
    return origins[keep], forecasts


def calibrate(
    cfg: Config,
    loaded: dict,
    origins: np.ndarray,
    oos: dict[str, np.ndarray],
    scored: dict,
    scale: np.ndarray,
    runs: dict[str, Backtest],
    native: dict[str, dict | None] | None = None,
) -> dict:
    """Rolling conformal bands on the test windows; scores; the errors that calibrate serving.

    A statistical rival's own intervals (native: level -> (windows, horizon, targets, 2)) are
    scored beside its conformal bands as native_coverage_<L>, native_width_<L>, native_msis_<L>.
    """
    spec, levels = loaded["spec"], cfg.intervals.levels
    units = units_of(loaded)
    actual_oos = features.targets(spec, units, origins)
    test = loaded["origins"]["test"]
    actual = features.targets(spec, units, test)
    scores, calibration, half = {}, {}, {}
    targets = units[:, : spec.n_targets]
    # The local scale at each origin (rows up to it only): every model's errors are divided
    # by it when the bands are locally scaled, and always kept beside the served errors.
    rows = cfg.intervals.scale_window
    scale_oos = metrics.local_scale(targets, origins, rows)
    scale_test = metrics.local_scale(targets, test, rows)
    local = cfg.intervals.scale == "local"
    for name, forecast in oos.items():
        errors = np.abs(actual_oos - forecast)
        half[name] = intervals.rolling_half_widths(
            origins, errors / scale_oos[:, None, :] if local else errors, test, levels,
            cfg.intervals.calibration_window, spec.shift,
        )  # fmt: skip
        if local:
            half[name] = half[name] * scale_test[:, None, :, None]
        point = scored[name]["test"].forecast
        scores[name] = intervals.score_intervals(actual, point, half[name], levels, scale)
        scores[name]["calibration_errors"] = int(min(len(errors), cfg.intervals.calibration_window))
        if (native or {}).get(name) is not None:
            scores[name] |= native_scores(actual, native[name], levels, scale)
        simple = name == "naive" or name.startswith("seasonal_naive_")
        window = cfg.intervals.served_window
        served, served_scale = serving_errors(name, loaded, errors, scale_oos, window, simple, rows)
        calibration[name] = served
        calibration[name + SCALE_SUFFIX] = served_scale
    plot = {
        "levels": levels,
        "origin": int(test[-1]),
        "half_widths": {name: h[-1] for name, h in half.items()},
        "points": {name: scored[name]["test"].forecast[-1] for name in oos},
        "coverage_step": {
            name: {
                intervals.level_name(lv): s.get(f"coverage_{intervals.level_name(lv)}_step")
                for lv in levels
            }
            for name, s in scores.items()
        },
    }
    return {"scores": scores, "calibration": calibration, "plot": plot}


def native_scores(
    actual: np.ndarray, native: dict, levels: list[float], scale: np.ndarray
) -> dict[str, float]:
    """Coverage, mean width and MSIS of a model's own intervals on the test windows."""
    out = {}
    for level in levels:
        lower, upper = native[level][..., 0], native[level][..., 1]
        name = intervals.level_name(level)
        score = intervals.interval_scores(actual, lower[..., None], upper[..., None], [level])
        out[f"native_coverage_{name}"] = float(((lower <= actual) & (actual <= upper)).mean())
        out[f"native_width_{name}"] = float((upper - lower).mean())
        out[f"native_msis_{name}"] = float(np.mean(score[..., 0].mean(axis=(0, 1)) / scale))
    return out


def serving_errors(
    name: str,
    loaded: dict,
    oos_errors: np.ndarray,
    oos_scale: np.ndarray,
    window: int,
    simple: bool,
    scale_window: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """The out-of-sample errors that calibrate a served model's bands, and their local scales.

    Errors (n, horizon, targets) and the local scale at each one's origin (n, targets).

    Every error known when the served model is fit, the latest `window` of them: a recipe's
    errors at every backtest block (refits of it) and test window. The errors' scale changes
    from week to week, so more periods calibrate better than the few windows nearest each fold's
    fit (issue 31: on the shipped series those covered 76.8 / 90.3 % of the future at 80 / 95).
    A simple baseline fits nothing: every window of the series is out-of-sample for it.
    """
    if simple:
        spec = loaded["spec"]
        targets = units_of(loaded)[:, : spec.n_targets]
        every = backtest.simple_origins(name, len(targets), spec.horizon, spec.shift)
        oos_errors = backtest.simple_errors(name, targets, spec.horizon, spec.shift)
        oos_scale = metrics.local_scale(targets, every, scale_window)
    return intervals.latest_scores(oos_errors, window), intervals.latest_scores(oos_scale, window)


def backtest_summary(
    cfg: Config,
    loaded: dict,
    folds: list[Fold],
    fold_scores: backtest.FoldScores,
    runs: dict[str, Backtest],
    decision: dict,
) -> dict:
    """evaluation/backtest.json: folds with their dates, scores per origin and model, decision."""
    times = loaded["times"]
    return {
        "mode": decision["mode"],
        "settings": cfg.backtest.model_dump(),
        "folds": [
            {
                "fold": f.index,
                "history_start": str(times[f.start]),
                "cutoff": str(times[f.cutoff]),
                "block_end": str(times[f.end - 1]),
                "rows": [f.start, f.cutoff, f.end],
                "refit": f.refit,
                "windows": int(np.sum(next(iter(runs.values())).fold == f.index)),
            }
            for f in folds
        ],
        "per_origin": fold_scores.per_fold,
        "means": {m: fold_scores.means(m) for m in backtest.HEADLINE},
        "spread": {
            m: {
                k: float(v.std(ddof=1)) if len(v) > 1 else 0.0
                for k, v in fold_scores.series(m).items()
            }
            for m in backtest.HEADLINE
        },
        "fits": {
            name: bt.folds for name, bt in runs.items() if bt.folds and "epochs" in bt.folds[0]
        },
        "decision": decision,
    }


def backtest_id(meta: dict, folds: list[Fold], cfg: Config) -> str:
    """Identity of the backtest blocks: data, folds and window settings (not the models)."""
    keys = {
        "raw_md5": meta["raw_md5"],
        "rows": meta["rows"],
        "folds": [[f.start, f.cutoff, f.end] for f in folds],
        "horizon": cfg.window.horizon,
        "shift": cfg.window.shift,
        "stride": cfg.window.stride,
        "mase_season": meta["mase_season"],
        "origins": cfg.backtest.origins,
    }
    return hashlib.md5(json.dumps(keys, sort_keys=True).encode()).hexdigest()
