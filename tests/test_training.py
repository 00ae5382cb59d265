"""Training: full batches of features.inputs, XLA on or off and reruns give the same fit, and a
model saved under one Keras backend loads and predicts under the other."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, hourly

from seqcast.core.config import ModelConfig, TrainConfig
from seqcast.data import features
from seqcast.data.features import InputSpec
from seqcast.models import training
from seqcast.models.forecaster import Forecaster

ROWS = 400
SPEC = InputSpec(
    input_width=8,
    horizon=3,
    shift=1,
    n_targets=1,
    n_values=2,
    n_calendar=2,
    reference="seasonal_naive",
    season=12,
    calendar_names=["time_of_day"],
)
SMALL = TrainConfig(seed=7, epochs=2, batch_size=32, learning_rate=0.01, patience=2)
# XLA on: what jit_compile auto picks for fits large enough to repay its compile.
COMPILED = SMALL.model_copy(update={"jit_compile": True})
TINY_GRU = ModelConfig(units=4, dropout=0.0)


def series_and_calendar(rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """A scaled target with a 12-step cycle, a second value column, and time-of-day inputs."""
    steps = np.arange(rows, dtype=np.float64)
    rng = np.random.default_rng(0)
    target = np.sin(2 * np.pi * steps / 12) + 0.1 * rng.standard_normal(rows)
    extra = np.cos(2 * np.pi * steps / 24)
    return np.stack([target, extra], axis=1), features.calendar(hourly(rows), ["time_of_day"])


def split_origins(spec: InputSpec = SPEC, rows: int = ROWS) -> dict[str, np.ndarray]:
    """Train origins on the first 300 rows, validation on the next 60."""
    first = spec.context - 1
    return {
        "train": np.arange(first, 300 - spec.shift - spec.horizon + 1),
        "val": np.arange(300, 360 - spec.shift - spec.horizon + 1),
        "test": np.arange(360, rows - spec.shift - spec.horizon + 1),
    }


def fitted(cfg: TrainConfig = SMALL, spec: InputSpec = SPEC):
    """A tiny GRU fitted from a seeded start; (model, FitResult)."""
    import keras

    from seqcast.models import networks

    series, cal = series_and_calendar()
    found = split_origins(spec)
    keras.utils.set_random_seed(cfg.seed)
    model = networks.build("gru", spec, TINY_GRU)
    result = training.fit(model, spec, series, cal, found["train"], found["val"], cfg)
    return model, result


def test_batches_are_full_and_cover_every_origin_each_epoch() -> None:
    """Every training batch has batch_size windows; each epoch holds every origin once, plus
    its own first few again to fill the last batch; a new order each epoch, the same per seed."""
    origins = split_origins()["train"]
    # Raw inputs of a series whose value is its row number: past[:, -1, 0] is the origin.
    spec = dataclasses.replace(
        SPEC, n_values=1, n_calendar=0, calendar_names=[], reference="none", season=None
    )
    rows = np.arange(ROWS, dtype=np.float64)[:, None]
    no_calendar = np.zeros((ROWS, 0), np.float32)

    def epochs(seed: int) -> list[np.ndarray]:
        batches = training.make_batches(spec, rows, no_calendar, origins, 64, True, seed)
        out = []
        for _ in range(2):
            parts = [batches[i][0]["past"][:, -1, 0] for i in range(len(batches))]
            assert [len(p) for p in parts] == [64] * len(batches)
            out.append(np.concatenate(parts))
            batches.on_epoch_end()
        return out

    first, second = epochs(3)
    for order in (first, second):
        np.testing.assert_array_equal(np.sort(order[: len(origins)]), origins)
        np.testing.assert_array_equal(order[len(origins) :], order[: len(order) - len(origins)])
    assert not np.array_equal(first, second)
    again = epochs(3)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])


def test_batches_are_what_serving_computes() -> None:
    """A batch is features.inputs and the float32 residuals of its origins, unshuffled."""
    series, cal = series_and_calendar()
    origins = split_origins()["val"]
    batches = training.make_batches(SPEC, series, cal, origins, 16, False, 0)
    assert len(batches) == 4 and len(batches[3][1]) == len(origins) - 48
    x, y = batches[1]
    expected = features.inputs(SPEC, series, cal, origins[16:32])
    assert set(x) == {"past", "future"}
    np.testing.assert_array_equal(x["past"], expected["past"])
    np.testing.assert_array_equal(x["future"], expected["future"])
    np.testing.assert_array_equal(
        y, features.residuals(SPEC, series, origins[16:32]).astype(np.float32)
    )


@pytest.fixture(scope="module")
def default_fit():
    """One fit with XLA on (what auto picks for a fit large enough), shared by the tests below."""
    assert training.resolve_jit(SMALL) is True
    return fitted(COMPILED)


def test_auto_jit_compiles_only_fits_that_repay_the_compile() -> None:
    """auto: XLA from XLA_MIN_WINDOWS epochs x windows on; true and false are kept as set."""
    enough = training.XLA_MIN_WINDOWS // SMALL.epochs
    assert training.resolve_jit(SMALL, enough) is True
    assert training.resolve_jit(SMALL, enough - 1) is False
    assert training.resolve_jit(SMALL.model_copy(update={"jit_compile": True}), 10) is True
    assert training.resolve_jit(SMALL.model_copy(update={"jit_compile": False}), 10**9) is False
    # The shipped series: 20 epochs of its ~2,800 training windows stay compiled.
    assert training.resolve_jit(TrainConfig(), 2800) is True


def test_short_epochs_take_one_step_per_call() -> None:
    """Fewer batches than STEPS_PER_EXECUTION: one step a call (a cheaper trace), else 16."""
    assert training.steps_per_call(None) == training.STEPS_PER_EXECUTION
    assert training.steps_per_call(training.STEPS_PER_EXECUTION - 1) == 1
    assert training.steps_per_call(training.STEPS_PER_EXECUTION) == training.STEPS_PER_EXECUTION
    model, _ = fitted(SMALL.model_copy(update={"jit_compile": False}))
    batches = -(-len(split_origins(SPEC)["train"]) // SMALL.batch_size)
    assert model.steps_per_execution == training.steps_per_call(batches)
    assert model.jit_compile is False


def test_compiled_and_uncompiled_fits_agree(default_fit) -> None:
    """train.jit_compile true or false: the same losses and forecasts within float tolerance."""
    compiled, with_xla = default_fit
    plain, without = fitted(SMALL.model_copy(update={"jit_compile": False}))
    assert with_xla.epochs == without.epochs == 2
    for key in ("loss", "val_loss", "mae", "val_mae"):
        np.testing.assert_allclose(with_xla.history[key], without.history[key], rtol=1e-4)
    series, cal = series_and_calendar()
    x = features.inputs(SPEC, series, cal, split_origins()["test"])
    np.testing.assert_allclose(
        compiled.predict_on_batch(x), plain.predict_on_batch(x), rtol=1e-4, atol=1e-6
    )


def test_same_seed_same_fit_twice(default_fit) -> None:
    """A rerun with the same seed repeats every epoch's metrics exactly."""
    _, first = default_fit
    _, second = fitted(COMPILED)
    assert first.history == second.history
    assert first.best_epoch == second.best_epoch


# Runs under the other backend: loads the forecaster saved here and predicts, then saves its
# own fitted forecaster for this process to load.
OTHER_BACKEND = """
import json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, {tests!r})
import test_training as t
from seqcast.models.forecaster import Forecaster
import keras
folder = Path({folder!r})
series, cal = t.series_and_calendar()
test = t.split_origins()["test"]
loaded = Forecaster.load(folder / "here")
np.save(folder / "there_predicts_here.npy", loaded.predict_scaled(series, cal, test))
model, _ = t.fitted()
t.save_forecaster(model, folder / "there")
np.save(folder / "there_predicts_there.npy",
        Forecaster.load(folder / "there").predict_scaled(series, cal, test))
print(json.dumps({{"backend": keras.backend.backend()}}))
"""


def save_forecaster(model, folder: Path) -> None:
    """The fitted network as a Forecaster folder (Keras format inside)."""
    Forecaster(
        name="gru",
        spec=SPEC,
        timestamp="timestamp",
        columns=["y", "x"],
        frequency="h",
        offset=np.zeros(2),
        scale=np.ones(2),
        predictor=model,
    ).save(folder)


def test_saved_model_predicts_under_the_other_backend(tmp_path: Path, default_fit) -> None:
    """Trained here, predicted there, and the other way round: the same forecasts."""
    import keras

    here = keras.backend.backend()
    other = {"tensorflow": "jax", "jax": "tensorflow"}[here]
    series, cal = series_and_calendar()
    test = split_origins()["test"]
    model, _ = default_fit
    save_forecaster(model, tmp_path / "here")
    expected_here = Forecaster.load(tmp_path / "here").predict_scaled(series, cal, test)
    code = OTHER_BACKEND.format(tests=str(ROOT / "tests"), folder=str(tmp_path))
    env = {**os.environ, "KERAS_BACKEND": other}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"backend": other}
    np.testing.assert_allclose(
        np.load(tmp_path / "there_predicts_here.npy"), expected_here, rtol=1e-5, atol=1e-6
    )
    there = Forecaster.load(tmp_path / "there").predict_scaled(series, cal, test)
    np.testing.assert_allclose(
        there, np.load(tmp_path / "there_predicts_there.npy"), rtol=1e-5, atol=1e-6
    )
