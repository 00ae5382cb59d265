"""GRU and LSTM forecasters: a linear path plus a recurrent correction, every horizon step at once.

The residual over the reference is mostly linear in the inputs (the linear rival gets most of the
way), so the network is that linear map plus a recurrent correction (as LSTNet's autoregressive
highway). Warm-started from the fitted linear rival and frozen, the network starts exactly where
the rival is and early stopping on validation keeps only the correction that helps.
"""

from __future__ import annotations

import numpy as np

from seqcast.core.config import ModelConfig
from seqcast.data.features import InputSpec

RECURRENT = {"gru": "GRU", "lstm": "LSTM"}
# The linear rival is fit on at most this many (the latest) training windows.
LINEAR_MAX_WINDOWS = 50_000
LINEAR = "linear"
# Batch statistics settle within the few dozen steps of an epoch on small series.
NORM_MOMENTUM = 0.9


def build(kind: str, spec: InputSpec, cfg: ModelConfig):
    """A linear path over the flattened inputs plus a recurrent correction, to a residual."""
    import keras
    from keras import layers

    past = keras.Input((spec.input_width, spec.past_width), name="past")
    future = (
        keras.Input((spec.horizon, spec.future_width), name="future") if spec.future_width else None
    )
    inputs = [past] if future is None else [past, future]
    flat = [layers.Flatten(name=f"{x.name}_flat")(x) for x in inputs]
    joined = flat[0] if len(flat) == 1 else layers.Concatenate(name="linear_inputs")(flat)
    linear = layers.Dense(spec.horizon * spec.n_targets, name=LINEAR)(joined)
    residual = layers.Add(name="residual")([linear, _correction(kind, spec, cfg, past, future)])
    out = layers.Reshape((spec.horizon, spec.n_targets), name="forecast")(residual)
    return keras.Model(inputs=inputs, outputs=out, name=kind)


def recurrent_stack(x, kind: str, cfg: ModelConfig):
    """`cfg.layers` GRU or LSTM layers over a sequence, the last returning its final state."""
    from keras import layers

    recurrent = getattr(layers, RECURRENT[kind])
    for depth in range(cfg.layers):
        x = recurrent(
            cfg.units,
            dropout=cfg.dropout,
            recurrent_dropout=cfg.recurrent_dropout,
            return_sequences=depth < cfg.layers - 1,
            name=f"{kind}_{depth}",
        )(x)
    return x


def _correction(kind: str, spec: InputSpec, cfg: ModelConfig, past, future):
    """A recurrent summary of the normalised history, decoded per step with that step's future."""
    from keras import layers

    # Seasonal differences are a tenth the size of levels and calendar: normalise every channel.
    x = normed = layers.BatchNormalization(momentum=NORM_MOMENTUM, name="past_norm")(past)
    x = recurrent_stack(x, kind, cfg)
    x = layers.Dropout(cfg.dropout, name="dropout")(x)
    # The last observation's own inputs, next to the summary the encoder made of the history.
    last = layers.Cropping1D((spec.input_width - 1, 0), name="last_step")(normed)
    state = layers.Concatenate(name="state")([x, layers.Flatten(name="last_flat")(last)])
    # Zero-initialised outputs: before training the correction adds nothing to the linear path.
    whole = layers.Dense(
        spec.horizon * spec.n_targets, kernel_initializer="zeros", name="horizon_correction"
    )(state)
    if future is None:
        return whole
    known = layers.BatchNormalization(momentum=NORM_MOMENTUM, name="future_norm")(future)
    steps = layers.Concatenate(name="steps")([layers.RepeatVector(spec.horizon)(state), known])
    steps = layers.Dense(cfg.units, activation="relu", name="step_hidden")(steps)
    steps = layers.Dense(spec.n_targets, kernel_initializer="zeros", name="step_correction")(steps)
    return layers.Add(name="correction")([whole, layers.Flatten(name="steps_flat")(steps)])


def fit_linear_rival(loaded: dict, alpha: float):
    """Ridge on the networks' own inputs and reference, fit on the latest training windows."""
    from seqcast.data import features
    from seqcast.data.baselines import fit_linear

    spec, series, cal = loaded["spec"], np.asarray(loaded["series"]), np.asarray(loaded["calendar"])
    rows = loaded["origins"]["train"][-LINEAR_MAX_WINDOWS:]
    x = features.flat(features.inputs(spec, series, cal, rows))
    y = features.residuals(spec, series, rows).reshape(len(rows), -1)
    return fit_linear(x, y, alpha)


def start_from_linear(model, linear) -> None:
    """Copy a Ridge fit on the same inputs (the linear rival) into the linear path; freeze it."""
    layer = model.get_layer(LINEAR)
    kernel, bias = layer.get_weights()
    coef = np.atleast_2d(np.asarray(linear.coef_, dtype=np.float32)).T
    intercept = np.broadcast_to(np.asarray(linear.intercept_, dtype=np.float32), bias.shape)
    if coef.shape != kernel.shape:
        raise ValueError(
            f"the linear model maps {coef.shape[0]} inputs to {coef.shape[1]} outputs; the "
            f"network's linear path maps {kernel.shape[0]} to {kernel.shape[1]} (fit it on the "
            "same inputs)"
        )
    layer.set_weights([coef, intercept])
    layer.trainable = False
