"""GRU and LSTM forecasters built from config, predicting every horizon step of every target."""

from __future__ import annotations

from seqcast.config import ModelConfig
from seqcast.features import InputSpec

RECURRENT = {"gru": "GRU", "lstm": "LSTM"}


def build(kind: str, spec: InputSpec, cfg: ModelConfig):
    """A recurrent encoder over the history, joined with the known future, to a (horizon, targets) residual."""
    import keras
    from keras import layers

    past = keras.Input((spec.input_width, spec.past_width), name="past")
    inputs = [past]
    x = past
    recurrent = getattr(layers, RECURRENT[kind])
    for depth in range(cfg.layers):
        x = recurrent(
            cfg.units,
            dropout=cfg.dropout,
            recurrent_dropout=cfg.recurrent_dropout,
            return_sequences=depth < cfg.layers - 1,
            name=f"{kind}_{depth}",
        )(x)
    x = layers.Dropout(cfg.dropout, name="dropout")(x)
    if spec.future_width:
        future = keras.Input((spec.horizon, spec.future_width), name="future")
        inputs.append(future)
        x = layers.Concatenate(name="join")([x, layers.Flatten(name="future_flat")(future)])
    x = layers.Dense(spec.horizon * spec.n_targets, name="residual")(x)
    out = layers.Reshape((spec.horizon, spec.n_targets), name="forecast")(x)
    return keras.Model(inputs=inputs, outputs=out, name=kind)
