"""The measured alternative input pipeline: a tf.data gather in-graph (TensorFlow only).

Kept here so `benchmarks.training` can set it against seqcast's numpy PyDataset: it gives exactly
the arrays features.inputs gives (checked before each use) and measured no faster, so seqcast
trains through the PyDataset on every backend.
"""

from __future__ import annotations

import math

import numpy as np

from seqcast.data import baselines, features
from seqcast.data.features import InputSpec
from seqcast.data.windowing import history_offsets, horizon_offsets


def graph_batch(spec: InputSpec, series: np.ndarray, cal: np.ndarray):
    """A TensorFlow function from a batch of origins to (inputs, residuals), as features.inputs."""
    import tensorflow as tf

    # Float64 until the last cast, as in features.inputs, so both give identical float32 arrays.
    values = tf.constant(np.asarray(series, dtype=np.float64))
    targets = tf.constant(np.asarray(series[:, : spec.n_targets], dtype=np.float64))
    calendar = tf.constant(np.asarray(cal, dtype=np.float32))
    past_rows = tf.constant(history_offsets(spec.input_width))
    ahead = tf.constant(horizon_offsets(spec.horizon, spec.shift))
    seasonal = spec.reference == "seasonal_naive"
    if seasonal:
        season = int(spec.season)
        back = tf.constant(baselines.seasonal_offsets(season, spec.horizon, spec.shift))
    elif spec.reference not in ("naive", "none"):
        raise ValueError(f"features.reference: unknown reference {spec.reference!r}")

    def at(table, origins, offsets):
        return tf.gather(table, origins[:, None] + offsets[None, :])

    def batch(origins):
        last = tf.gather(values, origins)[:, None, :]
        window = at(values, origins, past_rows)
        past = [window - last if spec.relative else window]
        if seasonal:
            past.append(window[:, :, : spec.n_targets] - at(targets, origins, past_rows - season))
        past = [tf.cast(part, tf.float32) for part in past]
        future = []
        if spec.n_calendar:
            past.append(at(calendar, origins, past_rows))
            future.append(at(calendar, origins, ahead))
        if seasonal:
            reference = at(targets, origins, back)
            future.append(tf.cast(reference - last[:, :, : spec.n_targets], tf.float32))
        elif spec.reference == "naive":
            reference = last[:, :, : spec.n_targets]
        else:
            reference = tf.zeros([1, 1, spec.n_targets], tf.float64)
        x = {"past": tf.concat(past, axis=2)}
        if future:
            x["future"] = tf.concat(future, axis=2)
        return x, tf.cast(at(targets, origins, ahead) - reference, tf.float32)

    return batch


def make_dataset(
    spec: InputSpec,
    series: np.ndarray,
    cal: np.ndarray,
    origins: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int,
):
    """A tf.data pipeline of batches gathered in-graph; reshuffled each epoch from one seed."""
    import tensorflow as tf

    order = tf.constant(np.asarray(origins, dtype=np.int64))
    n_batches = math.ceil(len(origins) / batch_size)
    rows = n_batches * batch_size if shuffle else len(origins)
    if shuffle:
        # One seeded draw per pass (epoch) keys a stateless shuffle of the origins: each epoch
        # gets a new order, and a rerun with the same seed gets the same orders.
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        orders = keys.map(
            lambda key: tf.random.experimental.stateless_shuffle(
                order, seed=tf.stack([key, tf.constant(seed, tf.int64)])
            )
        )
    else:
        orders = tf.data.Dataset.from_tensors(order)

    def slices(permuted):
        if shuffle:
            permuted = tf.concat([permuted, permuted[: rows - len(origins)]], axis=0)
        starts = tf.data.Dataset.range(0, rows, batch_size)
        return starts.map(lambda start: permuted[start : start + batch_size])

    dataset = orders.flat_map(slices).map(graph_batch(spec, series, cal))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))
    return dataset.prefetch(2)


def checked_dataset(
    spec: InputSpec,
    series: np.ndarray,
    cal: np.ndarray,
    origins: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int,
):
    """make_dataset, after checking its first unshuffled batch against features.inputs."""
    head = origins[:batch_size]
    same_inputs(
        spec, series, cal, head, make_dataset(spec, series, cal, head, batch_size, False, 0)
    )
    return make_dataset(spec, series, cal, origins, batch_size, shuffle, seed)


def same_inputs(
    spec: InputSpec, series: np.ndarray, cal: np.ndarray, origins: np.ndarray, pipeline
) -> None:
    """Raise unless the pipeline's first (unshuffled) batch is exactly what serving computes."""
    x, y = pipeline[0] if hasattr(pipeline, "__getitem__") else next(iter(pipeline))
    expected = features.inputs(spec, series, cal, origins)
    expected_y = features.residuals(spec, series, origins).astype(np.float32)
    got = {name: np.asarray(value) for name, value in x.items()}
    same = set(got) == set(expected) and all(
        np.array_equal(got[name], expected[name]) for name in expected
    )
    if not same or not np.array_equal(np.asarray(y), expected_y):
        # Training on other inputs than features.inputs would skew every served forecast.
        raise RuntimeError(
            "training inputs differ from features.inputs: update benchmarks.pipelines.graph_batch"
        )
