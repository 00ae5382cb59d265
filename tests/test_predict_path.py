"""The compiled predict path: the same forecasts as Keras' model.predict, one trace per size."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

from seqcast.core.config import ModelConfig
from seqcast.data import features
from seqcast.data.features import InputSpec
from seqcast.models import networks
from seqcast.models.forecaster import _COMPILED, PREDICT_BATCH, network_predict, padded_size

ROOT = Path(__file__).resolve().parents[1]
# Past and future inputs both present: calendar columns and a seasonal reference.
SPEC = InputSpec(
    input_width=8,
    horizon=3,
    shift=1,
    n_targets=1,
    n_values=2,
    n_calendar=4,
    reference="seasonal_naive",
    season=4,
    calendar_names=["time_of_day", "day_of_week"],
)


def network(seed: int = 0):
    """A small GRU with random weights: the zero-initialised correction would hide the GRU."""
    model = networks.build("gru", SPEC, ModelConfig(units=4))
    rng = np.random.default_rng(seed)
    weights = [
        np.abs(w) + 0.5 if "variance" in v.path else w
        for v, w in zip(
            model.weights,
            (rng.normal(0, 0.5, v.shape).astype(np.float32) for v in model.weights),
            strict=True,
        )
    ]
    model.set_weights(weights)
    return model


def batch(rows: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Model inputs of rows origins over a random series, as Forecaster.predict_scaled makes."""
    rng = np.random.default_rng(seed)
    length = SPEC.context + rows + SPEC.horizon + SPEC.shift
    series = rng.normal(size=(length, SPEC.n_values))
    cal = rng.normal(size=(length, SPEC.n_calendar))
    origins = np.arange(SPEC.context - 1, SPEC.context - 1 + rows)
    return features.inputs(SPEC, series, cal, origins)


def test_padded_sizes_are_powers_of_two_up_to_the_predict_batch() -> None:
    sizes = {rows: padded_size(rows) for rows in (1, 2, 3, 4, 5, 1000, 1024, 1025, 4095)}
    assert sizes == {1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 1000: 1024, 1024: 1024, 1025: 2048, 4095: 4096}
    assert padded_size(PREDICT_BATCH + 1) == PREDICT_BATCH


@pytest.mark.parametrize("rows", [1, 3, 64, 1000])
def test_compiled_path_forecasts_as_model_predict(rows: int) -> None:
    model = network()
    inputs = batch(rows)
    expected = model.predict(inputs, verbose=0)
    found = network_predict(model, inputs)
    assert found.shape == (rows, SPEC.horizon, SPEC.n_targets)
    assert np.std(expected) > 0.1  # the GRU's part is not zero
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5)


def test_full_batches_take_keras_predict_on_batch() -> None:
    model = network()
    inputs = batch(PREDICT_BATCH)
    np.testing.assert_allclose(
        network_predict(model, inputs), model.predict(inputs, verbose=0), rtol=1e-5, atol=1e-5
    )
    assert PREDICT_BATCH not in _COMPILED.get(model, {})


def test_each_padded_size_is_traced_once_without_retracing_warnings(caplog) -> None:
    model = network()
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for _ in range(2):
            for rows in range(1, 10):
                network_predict(model, batch(rows))
    assert sorted(_COMPILED[model]) == [1, 2, 4, 8, 16]
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_compiled_functions_go_with_the_network() -> None:
    model = network()
    network_predict(model, batch(2))
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


JAX_CHECK = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import keras
import test_predict_path as t
from seqcast.models.forecaster import network_predict
model = t.network()
out = {{"backend": keras.backend.backend(), "differences": []}}
for rows in (1, 3, 64):
    inputs = t.batch(rows)
    found = network_predict(model, inputs)
    out["differences"].append(float(np.max(np.abs(found - model.predict(inputs, verbose=0)))))
print(json.dumps(out))
"""


def test_jax_backend_forecasts_as_model_predict() -> None:
    """The JAX backend pads the same way and runs Keras' own predict_on_batch."""
    pythonpath = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": pythonpath}
    code = JAX_CHECK.format(tests=str(ROOT / "tests"))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["backend"] == "jax"
    assert max(found["differences"]) < 1e-5
