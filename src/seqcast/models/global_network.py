"""One GRU or LSTM for every series of a panel, fed windows scaled by their own input level.

A window is named by the flat row of its first input (the panel window contract): inputs are rows
``[s, s + input_width)``, targets the ``horizon`` rows from ``s + input_width + shift - 1``.
Batches are gathered from the panel's flat arrays by those start rows, so memory stays
O(total rows). Each window is scaled by its own level (the log of the ratio to its input mean;
where an input is not strictly positive, the deviation from that mean over the mean absolute
input), so one network serves series of any size, and `forecast` applies the same transform and
its inverse: forecasts come back in each series' units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from seqcast.core.config import MODEL_KINDS, ModelConfig, TrainConfig
from seqcast.data.panel import Panel
from seqcast.models.networks import recurrent_stack

# Targets below this fraction of a positive window's level are clipped before the log: a zero
# after positive inputs would otherwise be -inf (training only; forecasts are never clipped).
FLOOR = 1e-3
# Scaled forecasts above this are cut before exp: one wild window must not overflow to inf.
MAX_LOG = 20.0
# Month of year as sin/cos of every input row: the calendar channels.
CALENDAR = 2
# Windows per forecast call: memory bounded for any number of windows.
FORECAST_BATCH = 4096
# Validation windows per evaluation batch (one shape, one compile).
VAL_BATCH = 2048


@dataclass(frozen=True)
class GlobalSpec:
    """What a global network reads and predicts; fixed at fit, needed again to forecast."""

    kind: str
    input_width: int
    horizon: int
    n_targets: int
    shift: int = 1
    series_embedding: int = 0
    static: tuple[str, ...] = ()


@dataclass
class GlobalNetwork:
    """The fitted members (their forecasts are averaged), the series they know, static scaling."""

    spec: GlobalSpec
    members: list
    ids: np.ndarray  # the fit panel's series names: the embedding's rows
    static_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    static_scale: np.ndarray = field(default_factory=lambda: np.ones(0))
    history: list[dict[str, list[float]]] = field(default_factory=list)


def gather(values: np.ndarray, starts: np.ndarray, width: int, offset: int = 0) -> np.ndarray:
    """Rows ``[s + offset, s + offset + width)`` of ``values`` for every start: (n, width, ...)."""
    # Any flat array (values, or the times for calendar inputs) at any offset, where
    # seqcast.data.panel_split.gather builds a window's (inputs, targets) pair of values.
    return values[np.asarray(starts, dtype=np.int64)[:, None] + offset + np.arange(width)]


def check_windows(panel: Panel, starts: np.ndarray, span: int, what: str) -> None:
    """Fail, naming a window, when one would read past its series' last row."""
    starts = np.asarray(starts, dtype=np.int64)
    series = np.searchsorted(panel.offsets, starts, side="right") - 1
    bad = (starts < 0) | (series >= panel.n_series)
    bad |= ~bad & (starts + span > panel.offsets[np.minimum(series + 1, panel.n_series)])
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what}: window at flat row {int(starts[first])} needs {span} rows of one series "
            "and crosses its series' end (or the panel's)"
        )


def window_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each window's level (input mean), spread (mean |input|) and whether it is all positive."""
    level = x.mean(axis=1)
    spread = np.abs(x).mean(axis=1)
    spread = np.where(spread > 0, spread, 1.0)
    positive = (x > 0).all(axis=1)
    return level, spread, positive


def scale(y: np.ndarray, level: np.ndarray, spread: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Log ratio to the level where the window is positive, else (y - level) / spread."""
    # The two agree to first order (log(y/l) ~ (y - l)/l, and spread = l when positive), so one
    # network serves both kinds of window.
    lv, sp, pos = level[:, None], spread[:, None], positive[:, None]
    safe_level = np.where(pos, lv, 1.0)
    ratio = np.maximum(np.where(pos, y, 1.0), FLOOR * safe_level) / safe_level
    return np.where(pos, np.log(ratio), (y - lv) / sp)


def unscale(
    z: np.ndarray, level: np.ndarray, spread: np.ndarray, positive: np.ndarray
) -> np.ndarray:
    """The inverse of `scale`: scaled values back in the series' units."""
    lv, sp, pos = level[:, None], spread[:, None], positive[:, None]
    return np.where(pos, lv * np.exp(np.minimum(z, MAX_LOG)), lv + z * sp)


def month_channels(times: np.ndarray) -> np.ndarray:
    """Month of year of each time as (sin, cos), shape (..., 2)."""
    month = times.astype("datetime64[M]").astype(np.int64) % 12
    angle = 2.0 * np.pi * month / 12.0
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def static_values(panel: Panel, static: tuple[str, ...]) -> np.ndarray:
    """Each series' static columns, read from its first row: (n_series, n_static)."""
    missing = [c for c in static if c not in panel.columns]
    if missing:
        raise KeyError(f"features.static: columns {missing} are not in the panel {panel.columns}")
    index = [panel.columns.index(c) for c in static]
    return panel.values[panel.offsets[:-1]][:, index].astype(np.float64)


def inputs(
    net: GlobalNetwork, panel: Panel, starts: np.ndarray
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The network's inputs for windows and their scale (level, spread, positive) per target."""
    spec = net.spec
    x = gather(panel.targets, starts, spec.input_width)
    level, spread, positive = window_scale(x)
    past = np.concatenate(
        [
            scale(x, level, spread, positive),
            month_channels(gather(panel.times, starts, spec.input_width)),
        ],
        axis=-1,
    )
    feed = {"window": past.astype(np.float32)}
    series = np.searchsorted(panel.offsets, starts, side="right") - 1
    if spec.series_embedding:
        feed["series"] = _embedding_rows(net, panel)[series][:, None].astype(np.int32)
    if spec.static:
        values = (static_values(panel, spec.static) - net.static_mean) / net.static_scale
        feed["static"] = values[series].astype(np.float32)
    return feed, (level, spread, positive)


def targets(net: GlobalNetwork, panel: Panel, starts: np.ndarray, scaling: tuple) -> np.ndarray:
    """The windows' targets scaled as their inputs: (n, horizon, n_targets) float32."""
    spec = net.spec
    y = gather(panel.targets, starts, spec.horizon, spec.input_width + spec.shift - 1)
    return scale(y, *scaling).astype(np.float32)


def _embedding_rows(net: GlobalNetwork, panel: Panel) -> np.ndarray:
    """Each panel series' row in the embedding, failing on a series the fit never saw."""
    # A sorter: a panel from `take` may hold its series in any order.
    order = np.argsort(net.ids)
    rows = order[np.minimum(np.searchsorted(net.ids, panel.ids, sorter=order), len(order) - 1)]
    unseen = net.ids[rows] != panel.ids
    if unseen.any():
        raise KeyError(
            f"features.series_embedding: series {list(panel.ids[unseen][:5])} were not in the "
            "panel the network was fit on (it has no embedding for them)"
        )
    return rows


def build(spec: GlobalSpec, mcfg: ModelConfig, n_series: int):
    """Recurrent layers over the scaled window, joined with embedding/statics, to every step."""
    import keras
    from keras import layers

    if spec.kind not in MODEL_KINDS:
        raise ValueError(f"models: unknown model kind {spec.kind!r}; expected one of {MODEL_KINDS}")
    window = keras.Input((spec.input_width, spec.n_targets + CALENDAR), name="window")
    inputs_, parts = [window], []
    x = recurrent_stack(window, spec.kind, mcfg)
    parts.append(x)
    if spec.series_embedding:
        series = keras.Input((1,), dtype="int32", name="series")
        embedded = layers.Embedding(n_series, spec.series_embedding, name="embedding")(series)
        parts.append(layers.Flatten(name="embedding_flat")(embedded))
        inputs_.append(series)
    if spec.static:
        static = keras.Input((len(spec.static),), name="static")
        parts.append(static)
        inputs_.append(static)
    joined = parts[0] if len(parts) == 1 else layers.Concatenate(name="joined")(parts)
    out = layers.Dense(spec.horizon * spec.n_targets, name="horizon")(joined)
    out = layers.Reshape((spec.horizon, spec.n_targets), name="forecast")(out)
    return keras.Model(inputs=inputs_, outputs=out, name=f"global_{spec.kind}")


def make_batches(
    net: GlobalNetwork, panel: Panel, starts: np.ndarray, batch_size: int, seed: int | None
):
    """A Keras PyDataset gathering each batch from the flat arrays; shuffled per epoch if seeded."""
    import keras

    class PanelBatches(keras.utils.PyDataset):
        """Batches built on demand from window start rows: memory is one batch."""

        def __init__(self) -> None:
            super().__init__()
            self.rng = None if seed is None else np.random.default_rng(seed)
            self.order = np.asarray(starts, dtype=np.int64).copy()
            self.on_epoch_end()

        def __len__(self) -> int:
            return math.ceil(len(self.order) / batch_size)

        def __getitem__(self, index: int):
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            feed, scaling = inputs(net, panel, rows)
            return feed, targets(net, panel, rows, scaling)

        def on_epoch_end(self) -> None:
            if self.rng is not None:
                order = self.rng.permutation(np.asarray(starts, dtype=np.int64))
                # Every batch one shape: the last is completed from the epoch's first windows,
                # so XLA compiles the train step once.
                self.order = np.concatenate([order, order[: (-len(order)) % batch_size]])

    return PanelBatches()


def resolve_loss(cfg: TrainConfig) -> str:
    """train.loss for the panel network: auto is MAE of the window-scaled targets."""
    return "mae" if cfg.loss == "auto" else cfg.loss


def fit(
    panel: Panel,
    train_starts: np.ndarray,
    val_starts: np.ndarray,
    spec: GlobalSpec,
    mcfg: ModelConfig,
    cfg: TrainConfig,
) -> GlobalNetwork:
    """Fit train.members networks (seeds train.seed, +1, ...) with early stopping on validation."""
    import keras

    from seqcast.models.training import resolve_jit

    span = spec.input_width + spec.shift - 1 + spec.horizon
    check_windows(panel, train_starts, span, "train windows")
    check_windows(panel, val_starts, span, "validation windows")
    if len(train_starts) == 0 or len(val_starts) == 0:
        raise ValueError(
            f"the panel network needs training and validation windows; got {len(train_starts)} "
            f"and {len(val_starts)} (input_width {spec.input_width}, horizon {spec.horizon})"
        )
    net = GlobalNetwork(spec=spec, members=[], ids=np.asarray(panel.ids))
    if spec.static:
        # Statistics of the fit panel's series only: a static column has one value per series.
        values = static_values(panel, spec.static)
        net.static_mean = values.mean(axis=0)
        spread = values.std(axis=0)
        net.static_scale = np.where(spread > 0, spread, 1.0)
    batch = min(cfg.batch_size, len(train_starts))
    val_batch = min(len(val_starts), VAL_BATCH)
    for member in range(cfg.members):
        seed = cfg.seed + member
        # Seeded before building: the initial weights are drawn then.
        keras.utils.set_random_seed(seed)
        model = build(spec, mcfg, panel.n_series)
        model.compile(
            optimizer=keras.optimizers.Adam(cfg.learning_rate),
            loss=resolve_loss(cfg),
            jit_compile=resolve_jit(cfg),
        )
        stop = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.patience, restore_best_weights=True
        )
        history = model.fit(
            make_batches(net, panel, train_starts, batch, seed),
            validation_data=make_batches(net, panel, val_starts, val_batch, None),
            epochs=cfg.epochs,
            callbacks=[stop],
            shuffle=False,  # the batches reshuffle from the seed themselves
            verbose=0,
        ).history
        net.members.append(model)
        net.history.append({k: [float(v) for v in vs] for k, vs in history.items()})
    return net


def forecast(net: GlobalNetwork, panel: Panel, starts: np.ndarray) -> np.ndarray:
    """Forecasts of windows in the series' units, the members' mean: (n, horizon, n_targets)."""
    starts = np.asarray(starts, dtype=np.int64)
    check_windows(panel, starts, net.spec.input_width, "forecast windows")
    out = np.empty((len(starts), net.spec.horizon, net.spec.n_targets))
    for begin in range(0, len(starts), FORECAST_BATCH):
        rows = starts[begin : begin + FORECAST_BATCH]
        feed, scaling = inputs(net, panel, rows)
        # Inverse-transformed per member, then averaged: the mean of forecasts in units.
        out[begin : begin + len(rows)] = np.mean(
            [unscale(_predict(m, feed), *scaling) for m in net.members], axis=0
        )
    return out


def _predict(model, feed: dict[str, np.ndarray]) -> np.ndarray:
    """One batch through the model without training behaviour (dropout off)."""
    return np.asarray(model(feed, training=False), dtype=np.float64)
