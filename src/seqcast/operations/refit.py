"""The served model: the recipe the backtest chose, refit on every row up to the latest.

The train stage's models never saw the validation and test rows; after the decision there is
nothing left to hold out, so the chosen recipe (network, linear or statistical rival, simple
baseline) is fit again on all rows: scaler, rivals and network alike, the network for as many
epochs as early stopping chose in the backtest (no validation is left to stop on). It carries the
conformal calibration errors of its recipe so that it serves bands offline.
`refit.all_rows: false` serves the train stage's model instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from seqcast.core import paths
from seqcast.core.config import Config
from seqcast.evaluation import intervals
from seqcast.models import metrics
from seqcast.models.forecaster import Forecaster

SERVED = "forecaster"
INFO = "refit.json"


def epochs_from_backtest(kind: str, root: Path) -> tuple[int, str]:
    """The median best epoch over the backtest's refits (else the train stage's), and whence."""
    from seqcast.core.io import read_json

    folds_file = root / paths.BACKTEST / kind / "folds.json"
    if folds_file.is_file():
        best = [f["best_epoch"] for f in read_json(folds_file)["folds"] if "best_epoch" in f]
        if best:
            return max(
                1, int(round(float(np.median(best))))
            ), f"median best epoch of {len(best)} backtest refits {best}"
    best_epoch = int(read_json(root / paths.MODELS / kind / "train.json")["best_epoch"])
    return best_epoch, "the train stage's best epoch (backtest off)"


def with_live_errors(
    cfg: Config, root: Path, forecaster: Forecaster, backtest: np.ndarray
) -> tuple[np.ndarray, Any]:
    """The calibration errors: the backtest's, then the live ones of served forecasts, latest last.

    The scheduled pipeline's forecasts, scored as actuals arrived (the ledger), are the served
    recipe's errors at its real lead times on the newest rows: they replace the oldest backtest
    errors in the window as they accumulate.
    """
    from seqcast.operations import monitoring

    live = monitoring.live_record(
        cfg, root, forecaster.targets, forecaster.spec.horizon, forecaster.levels
    )
    if live is None:
        return backtest, None
    window = cfg.intervals.served_window
    both = np.concatenate([np.asarray(backtest, dtype=np.float64), live.errors])
    return intervals.latest_scores(both, window), live


def local_scales(
    cfg: Config,
    forecaster: Forecaster,
    backtest_scale: np.ndarray,
    live: Any,
    units: np.ndarray,
    times: Any,
) -> np.ndarray:
    """The local scale at each calibration error's origin, in with_live_errors' order.

    A live forecast's origin is the row at or before its recorded origin; its scale reads only
    rows up to that one, as the backtest's do.
    """
    from seqcast.operations.monitoring import _aligned

    n, window = forecaster.spec.n_targets, cfg.intervals.scale_window
    if live is None or not len(live.origins):
        return np.asarray(backtest_scale, dtype=np.float64)
    at = [int(times.searchsorted(_aligned(o, times), side="right")) - 1 for o in live.origins]
    scale = metrics.local_scale(units[:, :n], np.maximum(np.asarray(at), 0), window)
    both = np.concatenate([np.asarray(backtest_scale, dtype=np.float64), scale])
    return intervals.latest_scores(both, cfg.intervals.served_window)


def refit(cfg: Config, root: Path) -> dict:
    """The refit stage: fit the candidate on every row, attach its calibration, log it to MLflow."""
    import time

    from seqcast.core.io import atomic_dir, read_json, write_json
    from seqcast.data import windowing
    from seqcast.data.scaling import affine, fit_scaler, to_scaled
    from seqcast.evaluation.scores import baseline_forecasters, units_of
    from seqcast.models import networks, statistical, training
    from seqcast.models.forecaster import forecaster_for

    paths.refuse_panel(root)
    training.use_backend(cfg.train.backend)
    loaded = windowing.load_windows(root)
    meta, spec, times = loaded["meta"], loaded["spec"], loaded["times"]
    decision = read_json(root / paths.EVALUATION / "comparison.json")["candidate"]
    name, role = decision["candidate"], decision["role"]
    with np.load(root / paths.EVALUATION / "calibration.npz") as found:
        calibration = found[name]
        key = name + intervals.SCALE_SUFFIX
        backtest_scale = found[key] if key in found.files else None
    units = units_of(loaded)
    n = len(units)
    started = time.perf_counter()
    info: dict = {"candidate": name, "role": role, "all_rows": cfg.refit.all_rows}
    if not cfg.refit.all_rows:
        last = meta["rows"]["train"]
        if role == "network":
            forecaster = Forecaster.load(root / paths.MODELS / name / "forecaster")
        elif role == "linear":
            rival = networks.fit_linear_rival(loaded, cfg.baselines.linear_alpha)
            forecaster = forecaster_for(name, loaded, predictor=rival)
        elif role == statistical.ROLE:
            rival = statistical.fit(name, units[:last, : spec.n_targets], meta["seasons"])
            # Every row up to the latest, not the fit rows only: the evaluation filtered the
            # validation and test rows too before its origins.
            rival.keep_history(units[:, : spec.n_targets], times)
            forecaster = forecaster_for(name, loaded, predictor=rival)
        else:
            forecaster = baseline_forecasters(loaded)[name]
    else:
        last = n
        offset, scale = affine(fit_scaler(units, cfg.scaling.scaler), units.shape[1])
        series = to_scaled(units, offset, scale)
        cal, w = np.asarray(loaded["calendar"]), cfg.window
        everything = windowing.origins(
            {"train": (0, n)}, meta["train_context"], w.horizon, w.shift, w.stride
        )["train"]
        whole = {"spec": spec, "series": series, "calendar": cal, "origins": {"train": everything}}
        if role == "network":
            import keras

            epochs, why = epochs_from_backtest(name, root)
            print(
                f"refit: {name} on all {n} rows ({len(everything)} windows), {epochs} "
                f"epochs: {why}",
                flush=True,
            )
            keras.utils.set_random_seed(cfg.train.seed)
            model = networks.build(name, spec, cfg.models.get(name))
            networks.start_from_linear(
                model, networks.fit_linear_rival(whole, cfg.baselines.linear_alpha)
            )
            result = training.fit_epochs(model, spec, series, cal, everything, cfg.train, epochs)
            forecaster = forecaster_for(name, loaded, predictor=model)
            info |= {
                "epochs": epochs,
                "epochs_from": why,
                "loss": result.history["loss"][-1],
                "fit_seconds": round(result.seconds, 3),  # model.fit alone (benchmarks.repro)
            }
        elif role == "linear":
            rival = networks.fit_linear_rival(whole, cfg.baselines.linear_alpha)
            forecaster = forecaster_for(name, loaded, predictor=rival)
        elif role == statistical.ROLE:
            # Every row, each target on its own; the season as the evaluation chose it.
            rival = statistical.fit(name, units[:, : spec.n_targets], meta["seasons"])
            # Served requests extend this series rather than restart the filter (issue 26).
            rival.keep_history(units[:, : spec.n_targets], times)
            forecaster = forecaster_for(name, loaded, predictor=rival)
            info |= {"season": rival.season, "season_note": rival.season_note}
        else:
            forecaster = baseline_forecasters(loaded)[name]
        forecaster = dataclasses.replace(
            forecaster,
            offset=offset,
            scale=scale,
            train_min=units.min(axis=0),
            train_max=units.max(axis=0),
        )
        info["windows"] = int(len(everything))
    forecaster.levels = list(cfg.intervals.levels)
    calibration, live = with_live_errors(cfg, root, forecaster, calibration)
    forecaster.calibration = calibration
    if cfg.intervals.scale == "local" and backtest_scale is not None:
        forecaster.calibration_scale = local_scales(
            cfg, forecaster, backtest_scale, live, units, times
        )
        n = spec.n_targets
        floor = metrics.scale_floor(units[:last, :n])
        forecaster.band_scale = {"window": cfg.intervals.scale_window, "floor": floor.tolist()}
        info["band_scale"] = forecaster.band_scale
    if live is not None and cfg.intervals.adapt_rate > 0:
        forecaster.band_levels = intervals.adaptive_levels(
            live.misses, forecaster.levels, cfg.intervals.adapt_rate
        )
        info["band_levels"] = forecaster.band_levels
    info["live_forecasts"] = 0 if live is None else len(live.errors)
    forecaster.fit_rows = [str(times[0]), str(times[last - 1])]
    info |= {
        "rows": last,
        "first_row": forecaster.fit_rows[0],
        "last_row": forecaster.fit_rows[1],
        "seconds": round(time.perf_counter() - started, 3),
        "calibration_errors": int(len(calibration)),
        "levels": forecaster.levels,
        "fingerprint": forecaster.fingerprint(),
    }
    print(
        f"refit: {name} ({role}) fit on rows {info['first_row']} .. {info['last_row']} "
        f"({last} rows) in {info['seconds']:.1f} s; bands "
        f"{', '.join(f'{v:g}%' for v in forecaster.levels)} "
        f"from {len(calibration)} out-of-sample errors per step"
        + (
            f" (the latest {min(info['live_forecasts'], len(calibration))} from scored live "
            f"forecasts; read at levels "
            f"{', '.join(f'{v:.3g}%' for v in forecaster.band_levels or forecaster.levels)})"
            if info["live_forecasts"]
            else ""
        ),
        flush=True,
    )
    with atomic_dir(root / paths.SERVED) as out:
        forecaster.save(out / SERVED)
        info |= _log(cfg, root, out / SERVED, info, loaded, forecaster)
        write_json(out / INFO, info)
    return info


def _log(
    cfg: Config, root: Path, folder: Path, info: dict, loaded: dict, forecaster: Forecaster
) -> dict:
    """The refit as a run nested under the evaluation's parent run, with the pyfunc model."""
    import mlflow

    from seqcast.core.config import flatten
    from seqcast.core.io import read_json
    from seqcast.evaluation.scores import recent_history
    from seqcast.models import serving, tracking

    runs = read_json(root / paths.EVALUATION / "runs.json")
    meta = loaded["meta"]
    experiment_id = tracking.setup(cfg.tracking.experiment, root)
    tags = tracking.run_tags(
        meta["raw_md5"], meta["windows_md5"], root=root, backend=cfg.train.backend
    ) | {
        "mlflow.parentRunId": runs["parent_run_id"],
        "seqcast.stage": "refit",
        "seqcast.model_kind": info["candidate"],
        "seqcast.role": info["role"],
        "seqcast.fit_rows": f"{info['first_row']} .. {info['last_row']}",
        "seqcast.fingerprint": info["fingerprint"],
    }
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"refit-{info['candidate']}", tags=tags
    ) as run:
        mlflow.log_params(flatten(cfg))
        mlflow.log_metrics(
            {
                "fit_rows": float(info["rows"]),
                "fit_seconds": float(info["seconds"]),
                "calibration_errors": float(info["calibration_errors"]),
            }
            | ({"fit_epochs": float(info["epochs"])} if "epochs" in info else {})
        )
        model = serving.log_forecaster(
            folder,
            name="model",
            input_example=recent_history(loaded, forecaster.min_history),
            forecaster=forecaster,
        )
        return {"run_id": run.info.run_id, "model_uri": model.model_uri}
