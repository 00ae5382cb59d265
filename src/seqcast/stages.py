"""Stage entry points: one function per DVC stage, called by the Prefect flows in pipelines/.

Each takes the validated config and the repository root, reads the previous stage's outputs,
writes its own atomically, and returns a small JSON-able summary (logged by the flow).
"""

from __future__ import annotations

from pathlib import Path

from seqcast.config import Config, ConfigError

# Stage outputs, relative to the repository root; dvc.yaml names the same paths.
VALIDATION_SUMMARY = Path("metrics/validation.json")
VALIDATION_DOCS = Path("reports/validation")
PREPARED = Path("data/prepared")
WINDOWS = Path("data/windows")
MODELS = Path("models")
METRICS = Path("metrics")
PLOTS = Path("plots")
EVALUATION = Path("evaluation")
PROMOTION = Path("metrics/promotion.json")
REPORT = Path("reports/report.md")


def validate(cfg: Config, root: Path) -> dict:
    """Run the GX suite on the raw CSV; raise ValidationFailed listing every failed expectation."""
    from seqcast import validation
    from seqcast.data import read_raw

    source = root / cfg.data.path
    frame = read_raw(source)
    report = validation.validate_frame(frame, cfg, source=cfg.data.path)
    validation.write_outputs(report, root / VALIDATION_SUMMARY, root / VALIDATION_DOCS)
    report.raise_if_failed()
    return report.summary()


def normalise(cfg: Config, root: Path) -> dict:
    """Regularise the series, split it chronologically, scale it with training statistics."""
    import pickle

    import pandas as pd

    from seqcast import data, scaling
    from seqcast.io import atomic_dir, write_json

    source = cfg.data.path
    frame = data.regularise(data.read_raw(root / source), cfg.data, cfg.split.max_gap_steps, source)
    sizes = scaling.split_sizes(len(frame), cfg.split)
    bounds = scaling.split_bounds(sizes)
    if cfg.window.shift + cfg.window.horizon > sizes["test"]:
        raise ConfigError(
            f"window.horizon: shift + horizon = {cfg.window.shift + cfg.window.horizon} steps "
            f"do not fit in the test split of {sizes['test']} rows"
        )
    values = frame.to_numpy(dtype="float64")
    scaler = scaling.fit_scaler(values[: sizes["train"]], cfg.scaling.scaler)
    offset, scale = scaling.affine(scaler, values.shape[1])
    scaled = pd.DataFrame(
        scaling.to_scaled(values, offset, scale), index=frame.index, columns=frame.columns
    )
    with atomic_dir(root / PREPARED) as out:
        for name, (start, stop) in bounds.items():
            scaled.iloc[start:stop].to_parquet(out / f"{name}.parquet")
        (out / "scaler.pkl").write_bytes(pickle.dumps(scaler))
        summary = {
            "rows": sizes,
            "filled_values": int(frame.shape[0] * frame.shape[1] - values.size + 0),
            "first": {n: str(frame.index[a]) for n, (a, _) in bounds.items()},
            "last": {n: str(frame.index[b - 1]) for n, (_, b) in bounds.items()},
            "scaler": cfg.scaling.scaler,
            "columns": list(frame.columns),
            "offset": offset.tolist(),
            "scale": scale.tolist(),
            "raw_md5": data.file_hash(root / source),
        }
        write_json(out / "prepared.json", summary)
    return summary


def window(cfg: Config, root: Path) -> dict:
    """Turn the scaled splits into one series, calendar inputs and window origins per split."""
    import numpy as np
    import pandas as pd

    from seqcast import baselines, features, scaling, windowing
    from seqcast.io import atomic_dir, read_json, write_json

    prepared = read_json(root / PREPARED / "prepared.json")
    frame = pd.concat([pd.read_parquet(root / PREPARED / f"{n}.parquet") for n in scaling.SPLITS])
    sizes = prepared["rows"]
    bounds = scaling.split_bounds(sizes)
    series = frame.to_numpy(dtype=np.float64)
    w, n_targets = cfg.window, len(cfg.data.targets)
    candidates = sorted(
        set(cfg.baselines.seasons)
        | ({cfg.features.reference_season} if cfg.features.reference_season else set())
    )
    seasons, not_applicable = baselines.applicable_seasons(
        candidates, sizes["train"], w.input_width, w.horizon, w.shift
    )
    reference, season = cfg.features.reference, cfg.features.reference_season
    if reference == "seasonal_naive" and season not in seasons:
        reason = not_applicable[f"seasonal_naive_{season}"]
        raise ConfigError(f"features.reference_season: {reason}")
    longest = max(seasons, default=1)
    if reference == "auto":
        # Choose on validation windows first, so the context grows only for the chosen season.
        provisional = windowing.origins(
            bounds,
            max(w.input_width, longest),
            w.horizon,
            w.shift,
            w.stride,
            w.history_across_splits,
        )
        _require_windows(provisional, max(w.input_width, longest), w, sizes)
        # A seasonal reference also reads input_width rows of seasonal differences.
        fits = [m for m in seasons if w.input_width + m + w.shift + w.horizon - 1 <= sizes["train"]]
        reference, season, choice = baselines.choose_reference(
            series[:, :n_targets], provisional["val"], fits, w.horizon, w.shift
        )
    else:
        choice = {}
    seasonal_history = season if reference == "seasonal_naive" else 0
    context = max(w.input_width + seasonal_history, longest)
    found = windowing.origins(
        bounds, context, w.horizon, w.shift, w.stride, w.history_across_splits
    )
    _require_windows(found, context, w, sizes)
    cal = features.calendar(pd.DatetimeIndex(frame.index), list(cfg.features.calendar))
    spec = features.InputSpec(
        input_width=w.input_width,
        horizon=w.horizon,
        shift=w.shift,
        n_targets=n_targets,
        n_values=series.shape[1],
        n_calendar=cal.shape[1],
        reference=reference,
        season=season if reference == "seasonal_naive" else None,
        calendar_names=list(cfg.features.calendar),
    )
    with atomic_dir(root / WINDOWS) as out:
        np.save(out / "series.npy", series)
        np.save(out / "calendar.npy", cal)
        np.save(out / "times.npy", frame.index.to_numpy(dtype="datetime64[ns]"))
        np.savez(out / "origins.npz", **found)
        windows_md5 = _md5_files(out / "series.npy", out / "calendar.npy", out / "origins.npz")
        meta = {
            "spec": spec.__dict__ | {"calendar_names": spec.calendar_names},
            "context": context,
            "columns": list(frame.columns),
            "frequency": cfg.data.frequency,
            "timestamp": cfg.data.timestamp,
            "rows": sizes,
            "windows": {n: int(len(r)) for n, r in found.items()},
            "seasons": seasons,
            "not_applicable": not_applicable,
            "reference_choice": {
                "reference": reference,
                "season": season,
                "val_mae_scaled": choice,
            },
            "offset": prepared["offset"],
            "scale": prepared["scale"],
            "raw_md5": prepared["raw_md5"],
            "windows_md5": windows_md5,
        }
        write_json(out / "meta.json", meta)
    return {k: meta[k] for k in ("windows", "context", "reference_choice", "not_applicable")}


def _exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so open MLflow runs end FAILED and temp outputs vanish."""
    import signal
    import threading

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def load_windows(root: Path) -> dict:
    """The window stage's outputs: meta, scaled series, calendar, times and origins."""
    import numpy as np
    import pandas as pd

    from seqcast.features import InputSpec
    from seqcast.io import read_json

    folder = root / WINDOWS
    meta = read_json(folder / "meta.json")
    with np.load(folder / "origins.npz") as found:
        origins = {name: found[name] for name in found.files}
    return {
        "meta": meta,
        "spec": InputSpec(**meta["spec"]),
        "series": np.load(folder / "series.npy", mmap_mode="r"),
        "calendar": np.load(folder / "calendar.npy", mmap_mode="r"),
        "times": pd.DatetimeIndex(np.load(folder / "times.npy")),
        "origins": origins,
    }


def forecaster_for(name: str, loaded: dict, predictor=None, spec=None):
    """A Forecaster over the windowed series: a baseline, the linear rival or a network."""
    import numpy as np

    from seqcast.forecaster import Forecaster

    meta = loaded["meta"]
    return Forecaster(
        name=name,
        spec=spec or loaded["spec"],
        timestamp=meta["timestamp"],
        columns=meta["columns"],
        frequency=meta["frequency"],
        offset=np.asarray(meta["offset"]),
        scale=np.asarray(meta["scale"]),
        predictor=predictor,
    )


def train(cfg: Config, root: Path, kind: str) -> dict:
    """Fit one network on the training windows; save it only if the whole fit succeeds."""
    import csv

    from seqcast import evaluation, models, tracking, training
    from seqcast.config import flatten
    from seqcast.io import atomic_dir, write_json

    mcfg = cfg.models.get(kind)
    _exit_cleanly_on_sigterm()
    training.use_backend(cfg.train.backend)
    loaded = load_windows(root)
    n_train = len(loaded["origins"]["train"])
    if cfg.train.batch_size > n_train:
        raise ConfigError(
            f"train.batch_size: {cfg.train.batch_size} is larger than the {n_train} "
            "training windows"
        )
    import mlflow

    experiment_id = tracking.setup(f"{cfg.tracking.experiment}-training", root)
    tags = tracking.run_tags(
        loaded["meta"]["raw_md5"],
        loaded["meta"]["windows_md5"],
        model_kind=kind,
        stage="train",
        backend=cfg.train.backend,
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{kind}", tags=tags) as run:
        mlflow.log_params(flatten(cfg))
        import keras

        # Seed before building: the initial weights are drawn when the model is built.
        keras.utils.set_random_seed(cfg.train.seed)
        model = models.build(kind, loaded["spec"], mcfg)
        # The network starts as the linear rival (same windows, same alpha) and learns the rest.
        models.start_from_linear(model, evaluation.fit_linear(loaded, cfg.baselines.linear_alpha))
        result = training.fit(
            model,
            loaded["spec"],
            loaded["series"],
            loaded["calendar"],
            loaded["origins"]["train"],
            loaded["origins"]["val"],
            cfg.train,
            callbacks=[training.epoch_logger(kind, cfg.train.epochs)],
        )
        mlflow.log_metrics(
            {
                "train_seconds": result.seconds,
                "windows_per_second": result.windows_per_second,
                "best_epoch": result.best_epoch,
            }
        )
        summary = {
            "model": kind,
            "seconds": round(result.seconds, 3),
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "best_val_loss": min(result.history["val_loss"]),
            "windows_per_second": round(result.windows_per_second, 1),
            "backend": cfg.train.backend,
            "jit_compile": training.resolve_jit(cfg.train),
            "train_run_id": run.info.run_id,
            "parameters": model.count_params(),
        }
        with atomic_dir(root / MODELS / kind) as out:
            forecaster_for(kind, loaded, predictor=model).save(out / "forecaster")
            with open(out / "history.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                keys = sorted(result.history)
                writer.writerow(["epoch", *keys])
                for epoch in range(result.epochs):
                    writer.writerow([epoch + 1, *(result.history[k][epoch] for k in keys)])
            write_json(out / "train.json", summary)
    return summary


def _require_windows(found: dict, context: int, w, sizes: dict) -> None:
    """Every split needs at least one window; say which knobs make it impossible."""
    for name, rows in found.items():
        if len(rows) == 0:
            raise ConfigError(
                f"window: no {name} windows: context {context} rows (window.input_width "
                f"{w.input_width}, plus the reference season or longest baselines.seasons) + "
                f"window.shift + window.horizon {w.horizon} do not fit in the {name} split of "
                f"{sizes[name]} rows"
            )


def _md5_files(*files: Path) -> str:
    """One digest over several files, in order."""
    import hashlib

    digest = hashlib.md5()
    for path in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def evaluate(cfg: Config, root: Path) -> dict:
    """Score networks and every baseline on identical windows; write metrics, plots, MLflow runs."""
    from seqcast import evaluation, tracking, training
    from seqcast.config import flatten
    from seqcast.io import atomic_dir, read_json, write_json

    training.use_backend(cfg.train.backend)
    loaded = load_windows(root)
    meta = loaded["meta"]
    networks, simple = _forecasters(cfg, root, loaded)
    scale = evaluation.mase_scale(loaded, cfg.evaluation.mase_season)
    scored = {
        name: {split: evaluation.score(f, loaded, split, scale) for split in ("val", "test")}
        for name, f in {**simple, **networks}.items()
    }
    targets = meta["columns"][: loaded["spec"].n_targets]
    results = {name: evaluation.summarise(s, targets) for name, s in scored.items()}
    test = {name: r["test"] for name, r in results.items()}
    comparison = evaluation.compare(test, list(networks), list(simple), cfg.promotion.metric, meta)
    train_info = {k: read_json(root / MODELS / k / "train.json") for k in networks}
    curves = {k: _read_history(root / MODELS / k / "history.csv") for k in networks}
    tags = tracking.run_tags(meta["raw_md5"], meta["windows_md5"], backend=cfg.train.backend)
    # PNGs, MLflow runs, then the DVC outputs: a failure part-way leaves the last good ones.
    with atomic_dir(root / "reports" / "plots") as pngs:
        plotted = evaluation.plot_pngs(pngs, loaded, scored, comparison["best_baseline"], curves)
        runs = tracking.log_evaluation(
            experiment=cfg.tracking.experiment,
            root=root,
            params=flatten(cfg),
            tags=tags,
            dataset=_dataset(cfg, root, targets),
            results=results,
            curves=curves,
            train_info=train_info,
            forecasters={k: root / MODELS / k / "forecaster" for k in networks},
            input_example=evaluation.recent_history(
                loaded, max(f.min_history for f in networks.values())
            ),
            artifacts={
                "plots": plotted,
                "inputs": [root / VALIDATION_SUMMARY, root / PREPARED / "scaler.pkl"],
            },
            comparison=comparison,
        )
    runs |= {
        "data_md5": meta["raw_md5"],
        "test_id": _test_id(meta),
        "best_baseline": comparison["best_baseline"],
        "windows_md5": meta["windows_md5"],
    }
    with atomic_dir(root / METRICS / "models") as out:
        for name, s in scored.items():
            write_json(out / f"{name}.json", s["test"].as_metrics(targets))
    write_json(root / METRICS / "comparison.json", comparison)
    with atomic_dir(root / PLOTS) as out:
        evaluation.write_plot_data(out, loaded, scored, comparison["best_baseline"], curves)
    with atomic_dir(root / EVALUATION) as out:
        write_json(out / "runs.json", runs)
    seconds = {k: v["seconds"] for k, v in train_info.items()}
    print(evaluation.table(test, seconds, comparison["best_baseline"]), flush=True)
    print(f"MLflow: {tracking.ui_link(runs['experiment_id'], runs['parent_run_id'])}", flush=True)
    return {
        "best_baseline": comparison["best_baseline"],
        "models": test,
        "parent_run_id": runs["parent_run_id"],
    }


def _forecasters(cfg: Config, root: Path, loaded: dict) -> tuple[dict, dict]:
    """The trained networks, and every baseline built over the same windows."""
    from seqcast import evaluation
    from seqcast.config import MODEL_KINDS
    from seqcast.forecaster import Forecaster

    spec = loaded["spec"]
    simple = {"naive": forecaster_for("naive", loaded, spec=_baseline_spec(spec, "naive", None))}
    for season in loaded["meta"]["seasons"]:
        name = f"seasonal_naive_{season}"
        simple[name] = forecaster_for(
            name, loaded, spec=_baseline_spec(spec, "seasonal_naive", season)
        )
    ridge = evaluation.fit_linear(loaded, cfg.baselines.linear_alpha)
    simple["linear"] = forecaster_for("linear", loaded, predictor=ridge)
    networks = {k: Forecaster.load(root / MODELS / k / "forecaster") for k in MODEL_KINDS}
    return networks, simple


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


def _baseline_spec(spec, reference: str, season: int | None):
    """The networks' spec with another reference and no predictor inputs."""
    import dataclasses

    return dataclasses.replace(spec, reference=reference, season=season)


def _read_history(path: Path) -> dict[str, list[float]]:
    """Learning curves written by the train stage."""
    import csv

    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"} if rows else {}


def _test_id(meta: dict) -> str:
    """Identity of the test windows: data, split rows and window settings."""
    import hashlib
    import json

    keys = {k: meta[k] for k in ("raw_md5", "rows", "context", "windows")}
    keys["horizon"], keys["shift"] = meta["spec"]["horizon"], meta["spec"]["shift"]
    return hashlib.md5(json.dumps(keys, sort_keys=True).encode()).hexdigest()


def promote(cfg: Config, root: Path) -> dict:
    """Register both networks, gate the best against the champion, write the decision."""
    from seqcast import registry

    return registry.promote(cfg, root)
