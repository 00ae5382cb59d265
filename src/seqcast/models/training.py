"""Fit a network on batches gathered from window origins, with seeds and early stopping.

Windows are never materialised: each batch is gathered from the one (rows, columns) series at a
batch of shuffled origins by `features.inputs`, the code serving runs, so memory stays
O(series length) and an epoch copies one batch at a time. What makes it fast on CPU, as
measured by `python -m benchmarks.run --only training --variants all` (see README): XLA on
(Keras' "auto" leaves it off on CPU-only TensorFlow), every training batch one shape (one
compile), several TensorFlow steps per call. An in-graph tf.data gather measured no faster
than this numpy PyDataset, so there is one input path for every backend.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqcast.core.config import Config, TrainConfig
from seqcast.data import features
from seqcast.data.features import InputSpec

# TensorFlow train steps per call of the compiled function (a while loop in-graph): fewer returns
# to Python, the same updates. Keras on JAX loops in Python either way, so it keeps one. An epoch
# of fewer batches than this gains next to nothing from the loop, while tracing it (a while loop
# around a cond around the step) costs more than tracing one step: such fits take one step a call.
STEPS_PER_EXECUTION = 16
# train.jit_compile auto: XLA only for fits of at least this many windows (epochs x training
# windows). Its compile costs about 3 s of CPU per fit and saves about 0.15 ms per window (GRU,
# units 32, width 96: measured 2026-12-08), so it repays itself after about 20,000 windows: the
# shipped series (20 epochs of about 2,800 windows) stays compiled, a tiny fit does not.
XLA_MIN_WINDOWS = 20_000
# Validation in one batch up to this many windows: one shape, so one compile of the test step.
VAL_BATCH = 2048


def use_backend(backend: str) -> None:
    """Select the Keras backend; must run before keras is first imported."""
    import sys

    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND", "tensorflow") != backend:
        raise RuntimeError(f"keras is already imported with another backend than {backend!r}")
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def resolve_jit(cfg: TrainConfig, windows: int | None = None) -> bool:
    """XLA unless switched off, or (auto) unless the fit is too small to repay its compile."""
    # Keras' own "auto" leaves XLA off on CPU-only TensorFlow: 2-3x slower here (make bench).
    if cfg.jit_compile != "auto":
        return bool(cfg.jit_compile)
    return windows is None or cfg.epochs * windows >= XLA_MIN_WINDOWS


def steps_per_call(batches: int | None) -> int:
    """TensorFlow train steps per compiled call for an epoch of `batches` batches."""
    return 1 if batches is not None and batches < STEPS_PER_EXECUTION else STEPS_PER_EXECUTION


def compile_model(
    model, cfg: TrainConfig, steps_per_execution: int | None = None, windows: int | None = None
) -> None:
    """Adam on the configured loss (auto: MSE of scaled residuals), MAE reported, XLA as set.

    windows: the training windows of the fit (None: unknown), which size its steps per call
    and, with jit_compile auto, decide whether XLA repays its compile.
    """
    import keras

    if steps_per_execution is None:
        tensorflow = keras.backend.backend() == "tensorflow"
        batches = None if windows is None else math.ceil(windows / cfg.batch_size)
        steps_per_execution = steps_per_call(batches) if tensorflow else 1
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss="mse" if cfg.loss == "auto" else cfg.loss,
        metrics=["mae"],
        jit_compile=resolve_jit(cfg, windows),
        steps_per_execution=steps_per_execution,
    )


def reset_optimizer(model) -> None:
    """A compiled model's optimizer as a new one starts: step 0, zero moments, the same rate."""
    optimizer = model.optimizer
    rate = getattr(optimizer, "_learning_rate", None)
    for variable in optimizer.variables:
        if variable is not rate:
            variable.assign(np.zeros(variable.shape, variable.dtype))


def copy_state(source, target) -> None:
    """Give target (same architecture) source's weights and random-seed states."""
    # `variables`, not get_weights(): the dropout layers' seed states make the fits identical.
    pairs = zip(_model_state(source), _model_state(target), strict=True)
    for from_, to in pairs:
        to.assign(from_)


def _model_state(model) -> list:
    """The model's layer weights and seed-generator states, without compile metrics."""
    return [v for layer in model.layers for v in layer.variables]


def make_batches(
    spec: InputSpec,
    series: np.ndarray,
    cal: np.ndarray,
    origins: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int,
):
    """A Keras PyDataset gathering one batch of windows at a time from the origins."""
    import keras

    class WindowBatches(keras.utils.PyDataset):
        """Batches built on demand: memory is one batch, not every window."""

        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.origins = origins.copy()
            self.order = self.origins
            self.on_epoch_end()

        def __len__(self) -> int:
            return math.ceil(len(origins) / batch_size)

        def __getitem__(self, index: int):
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            x = features.inputs(spec, series, cal, rows)
            y = features.residuals(spec, series, rows).astype(np.float32)
            return x, y

        def on_epoch_end(self) -> None:
            if shuffle:
                self.rng.shuffle(self.origins)
                self.order = filled(self.origins, batch_size)

    return WindowBatches()


def filled(order: np.ndarray, batch_size: int) -> np.ndarray:
    """The order with its last batch completed from its start: every batch has one shape."""
    # A short last batch is a second shape, so a second XLA compile of the train step (seconds
    # on CPU). The repeated windows are the epoch's first, a new random few each epoch.
    return np.concatenate([order, order[: (-len(order)) % batch_size]])


@dataclass
class FitResult:
    """What a fit produced besides the model."""

    history: dict[str, list[float]]
    seconds: float
    epochs: int
    best_epoch: int
    windows_per_second: float


def fit(
    model,
    spec: InputSpec,
    series: np.ndarray,
    cal: np.ndarray,
    train_origins: np.ndarray,
    val_origins: np.ndarray,
    cfg: TrainConfig,
    callbacks: list | None = None,
    recompile: bool = True,
) -> FitResult:
    """Compile and fit with early stopping on validation loss, restoring the best weights.

    recompile=False keeps a compiled model's traced steps and resets its optimizer instead: a
    compile drops them, and tracing them again costs seconds per fit (more with XLA).
    """
    import keras

    keras.utils.set_random_seed(cfg.seed)
    if recompile or not model.compiled:
        compile_model(model, cfg, windows=len(train_origins))
    else:
        reset_optimizer(model)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=cfg.patience, restore_best_weights=True
    )
    val_batch = max(1, min(len(val_origins), VAL_BATCH))
    val = make_batches(spec, series, cal, val_origins, val_batch, False, cfg.seed)
    train = make_batches(spec, series, cal, train_origins, cfg.batch_size, True, cfg.seed)
    start = time.perf_counter()
    history = model.fit(
        train,
        validation_data=val,
        epochs=cfg.epochs,
        callbacks=[stop, *(callbacks or [])],
        shuffle=False,  # the batches reshuffle the origins each epoch themselves
        verbose=0,
    ).history
    seconds = time.perf_counter() - start
    epochs = len(history["loss"])
    best = int(np.argmin(history["val_loss"])) + 1
    return FitResult(
        history={k: [float(v) for v in vs] for k, vs in history.items()},
        seconds=seconds,
        epochs=epochs,
        best_epoch=best,
        windows_per_second=len(train_origins) * epochs / seconds,
    )


def fit_epochs(
    model,
    spec: InputSpec,
    series: np.ndarray,
    cal: np.ndarray,
    origins: np.ndarray,
    cfg: TrainConfig,
    epochs: int,
    callbacks: list | None = None,
) -> FitResult:
    """Compile and fit a fixed number of epochs on every origin (no validation is left)."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    batch = min(cfg.batch_size, len(origins))
    # Sized as fit sizes it: the refit decides XLA and steps per call as the fit it repeats.
    compile_model(model, cfg.model_copy(update={"epochs": epochs}), windows=len(origins))
    train = make_batches(spec, series, cal, origins, batch, True, cfg.seed)
    start = time.perf_counter()
    history = model.fit(
        train, epochs=epochs, callbacks=callbacks or [], shuffle=False, verbose=0
    ).history
    seconds = time.perf_counter() - start
    return FitResult(
        history={k: [float(v) for v in vs] for k, vs in history.items()},
        seconds=seconds,
        epochs=epochs,
        best_epoch=epochs,
        windows_per_second=len(origins) * epochs / seconds,
    )


def epoch_logger(kind: str, epochs: int):
    """A callback printing one line per epoch and logging the curves to the active MLflow run."""
    import keras

    # Not mlflow.keras.MlflowCallback (checked in MLflow 3): it logs epoch k at step k - 1,
    # while evaluate's curves and the DVC plot count epochs from 1; it logs asynchronously
    # (synchronous=False), so a failing store shows up, if at all, after the fit instead of
    # failing the epoch; and it logs the optimizer config as optimizer_* params, duplicating the
    # train.* params this run already has. The progress line is needed anyway.

    class EpochLog(keras.callbacks.Callback):
        """One progress line per epoch; per-epoch metrics to MLflow."""

        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            import mlflow

            logs = {k: float(v) for k, v in (logs or {}).items()}
            took = time.perf_counter() - self.started
            print(
                f"{kind} epoch {epoch + 1}/{epochs}  loss {logs.get('loss', float('nan')):.5f}  "
                f"val_loss {logs.get('val_loss', float('nan')):.5f}  ({took:.1f} s)",
                flush=True,
            )
            if mlflow.active_run():
                mlflow.log_metrics(logs, step=epoch + 1)

    return EpochLog()


def train(cfg: Config, root: Path, kind: str) -> dict:
    """The train stage: fit one network; its folder is written only if the whole fit succeeds."""
    import csv

    from seqcast.core import paths

    paths.refuse_panel(root)  # before MLflow's import: a panel stops at once, in one line
    import mlflow

    from seqcast.core.config import ConfigError, flatten
    from seqcast.core.io import atomic_dir, write_json
    from seqcast.data.windowing import load_windows
    from seqcast.models import networks, tracking
    from seqcast.models.forecaster import forecaster_for

    mcfg = cfg.models.get(kind)
    use_backend(cfg.train.backend)
    loaded = load_windows(root)
    n_train = len(loaded["origins"]["train"])
    if cfg.train.batch_size > n_train:
        raise ConfigError(
            f"train.batch_size: {cfg.train.batch_size} is larger than the {n_train} "
            "training windows"
        )
    experiment_id = tracking.setup(f"{cfg.tracking.experiment}-training", root)
    tags = tracking.run_tags(
        loaded["meta"]["raw_md5"],
        loaded["meta"]["windows_md5"],
        root=root,
        model_kind=kind,
        stage="train",
        backend=cfg.train.backend,
    )
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=tracking.run_name(f"train-{kind}"), tags=tags
    ) as run:
        mlflow.log_params(flatten(cfg))
        import keras

        # Seed before building: the initial weights are drawn when the model is built.
        keras.utils.set_random_seed(cfg.train.seed)
        model = networks.build(kind, loaded["spec"], mcfg)
        # The network starts as the linear rival (same windows, same alpha) and learns the rest.
        networks.start_from_linear(
            model, networks.fit_linear_rival(loaded, cfg.baselines.linear_alpha)
        )
        # The first epoch line comes after the (XLA) compile: say why the wait.
        print(
            f"{kind}: {model.count_params()} parameters, {n_train} training windows; compiling, "
            f"then up to {cfg.train.epochs} epochs",
            flush=True,
        )
        result = fit(
            model,
            loaded["spec"],
            loaded["series"],
            loaded["calendar"],
            loaded["origins"]["train"],
            loaded["origins"]["val"],
            cfg.train,
            callbacks=[epoch_logger(kind, cfg.train.epochs)],
        )
        forecaster = forecaster_for(kind, loaded, predictor=model)
        summary = {
            "model": kind,
            "seconds": round(result.seconds, 3),
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "best_val_loss": min(result.history["val_loss"]),
            "windows_per_second": round(result.windows_per_second, 1),
            "backend": cfg.train.backend,
            "jit_compile": resolve_jit(cfg.train, n_train),
            "train_run_id": run.info.run_id,
            "parameters": model.count_params(),
            "fingerprint": forecaster.fingerprint(),
        }
        mlflow.log_metrics(
            {
                "train_seconds": result.seconds,
                "windows_per_second": result.windows_per_second,
                "best_epoch": result.best_epoch,
            }
        )
        mlflow.set_tag("seqcast.fingerprint", summary["fingerprint"])
        with atomic_dir(root / paths.MODELS / kind) as out:
            forecaster.save(out / "forecaster")
            with open(out / "history.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                keys = sorted(result.history)
                writer.writerow(["epoch", *keys])
                for epoch in range(result.epochs):
                    writer.writerow([epoch + 1, *(result.history[k][epoch] for k in keys)])
            write_json(out / "train.json", summary)
    return summary


def read_history(path: Path) -> dict[str, list[float]]:
    """Learning curves written by the train stage (history.csv)."""
    import csv

    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"} if rows else {}
