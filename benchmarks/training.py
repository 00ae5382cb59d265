"""Training throughput: seqcast's fit against a plain Keras model.fit on the same arrays.

The backend is fixed when keras is imported, so each backend runs in its own process:

    python -m benchmarks.training --backend tensorflow --root DIR --kinds gru,lstm --epochs 4

Every variant trains the same model (networks.build, same seed) with the same hyperparameters
(Adam, learning rate, MSE, batch size, epochs) on the shipped windows. Throughput is training
windows per second of an epoch's training phase (validation excluded), median over the epochs
after the first (which compiles); the first epoch and the whole fit are reported beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit, median

# name: what it is. `keras*` are plain model.fit on in-memory arrays; `seqcast*` use training.py.
VARIANTS = {
    "keras": "Keras model.fit on arrays, Keras defaults (TF: no XLA on CPU)",
    "keras_jit": "Keras model.fit on arrays, jit_compile=True",
    "seqcast": "seqcast training.fit, default config (jit auto)",
    "seqcast_nojit": "seqcast training.fit, train.jit_compile false",
    "seqcast_arrays": "seqcast compile, in-memory arrays (Keras batches, short last batch)",
    "seqcast_tfdata": "seqcast compile, in-graph tf.data gather (benchmarks.pipelines)",
    "seqcast_spe1": "seqcast batches and compile, steps_per_execution 1",
}
DEFAULT = {"tensorflow": ["keras", "keras_jit", "seqcast"], "jax": ["keras", "seqcast"]}
ALL = {
    "tensorflow": list(VARIANTS),
    "jax": ["keras", "seqcast", "seqcast_arrays"],
}


def epoch_clock(backend: str):
    """A callback timing each epoch's training phase (up to validation) and the whole epoch."""
    import keras

    def sync(model) -> None:
        # JAX dispatches asynchronously: wait for the weights before reading the clock.
        if backend == "jax":
            import jax

            jax.block_until_ready([v.value for v in model.trainable_variables])

    class EpochClock(keras.callbacks.Callback):
        """Per epoch: wall seconds of training and of the whole epoch, and training CPU seconds."""

        def __init__(self) -> None:
            super().__init__()
            self.train: list[float] = []
            self.train_cpu: list[float] = []
            self.epoch: list[float] = []
            self.began = self.began_cpu = 0.0
            self.trained = False

        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            self.began, self.began_cpu = time.perf_counter(), time.process_time()
            self.trained = False

        def on_test_begin(self, logs=None) -> None:
            if not self.trained:  # validation inside fit, not a later evaluate
                self.stamp()

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            if not self.trained:
                self.stamp()
            self.epoch.append(time.perf_counter() - self.began)

        def stamp(self) -> None:
            sync(self.model)
            self.train.append(time.perf_counter() - self.began)
            self.train_cpu.append(time.process_time() - self.began_cpu)
            self.trained = True

    return EpochClock()


def arrays(spec, series, cal, origins) -> tuple[dict, np.ndarray]:
    """Every window's inputs and residual target in memory (fine for the shipped series)."""
    from seqcast.data import features

    return (
        features.inputs(spec, series, cal, origins),
        features.residuals(spec, series, origins).astype(np.float32),
    )


def run_variant(
    variant: str, kind: str, loaded: dict, cfg, epochs: int, backend: str, data: dict
) -> dict:
    """Train one model one way; its per-epoch clock, fit time and test loss."""
    import keras

    from benchmarks import pipelines
    from seqcast.models import networks, training

    spec, series, cal = loaded["spec"], loaded["series"], loaded["calendar"]
    origins = loaded["origins"]
    # epochs 0: the train stage's own fit (config epochs, early stopping); else exactly `epochs`.
    stage_like = epochs == 0
    train_cfg = (
        cfg.train
        if stage_like
        else cfg.train.model_copy(update={"epochs": epochs, "patience": epochs})
    )
    epochs = train_cfg.epochs
    if variant == "seqcast_nojit":
        train_cfg = train_cfg.model_copy(update={"jit_compile": False})
    keras.utils.set_random_seed(train_cfg.seed)
    model = networks.build(kind, spec, cfg.models.get(kind))
    clock = epoch_clock(backend)
    stop = keras.callbacks.EarlyStopping(  # as training.fit: used only when epochs is 0
        monitor="val_loss", patience=train_cfg.patience, restore_best_weights=True
    )
    batch = train_cfg.batch_size
    val_batch = min(len(origins["val"]), training.VAL_BATCH)
    start = time.perf_counter()
    if variant in ("seqcast", "seqcast_nojit"):
        training.fit(
            model, spec, series, cal, origins["train"], origins["val"], train_cfg, callbacks=[clock]
        )
    elif variant.startswith("keras"):
        extra = {"jit_compile": True} if variant == "keras_jit" else {}
        model.compile(
            optimizer=keras.optimizers.Adam(train_cfg.learning_rate),
            loss="mse",
            metrics=["mae"],
            **extra,
        )
        model.fit(
            *data["train"],
            batch_size=batch,
            epochs=epochs,
            shuffle=True,
            validation_data=data["val"],
            validation_batch_size=val_batch,
            verbose=0,
            callbacks=[clock, stop],
        )
    else:
        steps = 1 if variant == "seqcast_spe1" else None  # None: as training.fit does
        training.compile_model(model, train_cfg, steps_per_execution=steps)
        if variant == "seqcast_arrays":
            model.fit(
                *data["train"],
                batch_size=batch,
                epochs=epochs,
                shuffle=True,
                validation_data=data["val"],
                validation_batch_size=val_batch,
                verbose=0,
                callbacks=[clock, stop],
            )
        else:
            tfdata = variant == "seqcast_tfdata"
            make = pipelines.checked_dataset if tfdata else training.make_batches
            model.fit(
                make(spec, series, cal, origins["train"], batch, True, train_cfg.seed),
                validation_data=make(
                    spec, series, cal, origins["val"], val_batch, False, train_cfg.seed
                ),
                epochs=epochs,
                shuffle=False,
                verbose=0,
                callbacks=[clock, stop],
            )
    seconds = time.perf_counter() - start
    x_test, y_test = data["test"]
    predicted = np.asarray(model.predict(x_test, batch_size=1024, verbose=0))
    n_train = len(origins["train"])
    steady = clock.train[1:] or clock.train
    ran = len(clock.train)
    return {
        "variant": variant,
        "seed": train_cfg.seed,
        "kind": kind,
        "backend": backend,
        "epochs": epochs,
        "train_windows": n_train,
        "train_seconds": clock.train,
        "epoch_seconds": clock.epoch,
        "train_cpu_seconds": clock.train_cpu,
        "cpu_seconds_per_epoch": median(clock.train_cpu[1:] or clock.train_cpu),
        "first_epoch_seconds": clock.epoch[0],
        "fit_seconds": seconds,
        "windows_per_second": n_train / median(steady),
        "best_epoch_windows_per_second": n_train / min(steady),
        "epochs_run": ran,
        "fit_windows_per_second": n_train * ran / seconds,
        "test_mse": float(np.mean((predicted - y_test) ** 2)),
        "test_mae": float(np.mean(np.abs(predicted - y_test))),
    }


def seeded(cfg, seed: int):
    """The config with another train.seed."""
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})


def pick(variants: str, backend: str) -> list[str]:
    """default | all | a comma list of variants, each maybe as backend:variant for one backend."""
    named = {"default": DEFAULT, "all": ALL}.get(variants)
    if named:
        return named[backend]
    chosen = [
        item.split(":")[-1]
        for item in variants.split(",")
        if ":" not in item or item.split(":")[0] == backend
    ]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; expected {list(VARIANTS)}")
    return chosen


def main(argv: list[str] | None = None) -> None:
    """Run the variants of one backend and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["tensorflow", "jax"], required=True)
    parser.add_argument("--root", type=Path, required=True, help="holds data/windows, params.yaml")
    parser.add_argument("--kinds", default="gru,lstm")
    parser.add_argument("--variants", default="default", help=pick.__doc__)
    parser.add_argument("--epochs", type=int, default=6, help="0: as the train stage")
    parser.add_argument("--seeds", default=None, help="comma list of train.seed (default: config)")
    parser.add_argument("--units", type=int, default=None, help="override units (smoke tests)")
    parser.add_argument("--max-windows", type=int, default=None, help="cap train/val/test windows")
    args = parser.parse_args(argv)

    from seqcast.models import training

    training.use_backend(args.backend)
    from seqcast.core.config import load_config
    from seqcast.data import windowing

    cfg = load_config(args.root / "params.yaml")
    if args.units:
        cfg = cfg.model_copy(
            update={
                "models": cfg.models.model_copy(
                    update={
                        k: getattr(cfg.models, k).model_copy(update={"units": args.units})
                        for k in ("gru", "lstm")
                    }
                )
            }
        )
    loaded = windowing.load_windows(args.root)
    loaded["series"] = np.asarray(loaded["series"])
    loaded["calendar"] = np.asarray(loaded["calendar"])
    if args.max_windows:
        loaded["origins"] = {k: v[: args.max_windows] for k, v in loaded["origins"].items()}
    spec = loaded["spec"]
    data = {
        name: arrays(spec, loaded["series"], loaded["calendar"], rows)
        for name, rows in loaded["origins"].items()
    }
    variants = pick(args.variants, args.backend)
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [cfg.train.seed]
    runs = [
        run_variant(v, kind, loaded, seeded(cfg, seed), args.epochs, args.backend, data)
        for seed in seeds
        for kind in args.kinds.split(",")
        for v in variants
    ]
    emit(
        {
            "backend": args.backend,
            "spec": dataclasses.asdict(spec),
            "runs": runs,
            "batch_size": cfg.train.batch_size,
            "steps_per_execution": training.STEPS_PER_EXECUTION,
        }
    )


if __name__ == "__main__":
    main()
