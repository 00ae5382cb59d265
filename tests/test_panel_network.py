"""The global panel network: shapes and units, seeds, series kept apart, the window transform."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import make_config

from seqcast.core.config import ConfigError, ModelConfig, TrainConfig
from seqcast.data.panel import Panel, _ranges, from_frame
from seqcast.models import global_network as gn

WIDTH, HORIZON = 6, 3
SPAN = WIDTH + HORIZON
TINY = ModelConfig(units=4)
# No XLA: a compile costs more than these few epochs on tiny panels.
QUICK = TrainConfig(
    seed=3, epochs=2, batch_size=16, learning_rate=0.01, patience=1, jit_compile=False
)


def monthly_panel(levels: list[float], lengths: list[int], seasonal: float = 0.2) -> Panel:
    """Positive monthly series, one per level, a yearly cycle of the given relative size."""
    frames = []
    for i, (level, n) in enumerate(zip(levels, lengths, strict=True)):
        t = np.arange(n)
        frames.append(
            pd.DataFrame(
                {
                    "id": f"s{i}",
                    "month": pd.date_range("2010-01-01", periods=n, freq="MS"),
                    "value": level * (1 + seasonal * np.sin(2 * np.pi * t / 12)),
                    "size": np.log10(level),
                }
            )
        )
    return from_frame(pd.concat(frames), "id", "month", ["value", "size"], 1)


def all_windows(panel: Panel, span: int = SPAN) -> tuple[np.ndarray, np.ndarray]:
    """Every window of every series, the last one of each for validation."""
    n = np.maximum(panel.lengths - span + 1, 0)
    starts = _ranges(panel.offsets[:-1], n)
    last = np.isin(starts, panel.offsets[:-1] + n - 1)
    return starts[~last], starts[last]


def spec(**changes) -> gn.GlobalSpec:
    """A small GRU spec."""
    return gn.GlobalSpec(
        **{"kind": "gru", "input_width": WIDTH, "horizon": HORIZON, "n_targets": 1, **changes}
    )


def last_windows(panel: Panel) -> np.ndarray:
    """Each series' latest input window (forecasting past its end)."""
    return panel.offsets[1:] - WIDTH


@pytest.fixture(scope="module")
def panel() -> Panel:
    return monthly_panel([5.0, 500.0, 50_000.0], [40, 30, 36])


@pytest.fixture(scope="module")
def net(panel: Panel) -> gn.GlobalNetwork:
    train, val = all_windows(panel)
    return gn.fit(panel, train, val, spec(), TINY, QUICK)


def test_forecast_shape_and_units(panel: Panel, net: gn.GlobalNetwork) -> None:
    f = gn.forecast(net, panel, last_windows(panel))
    assert f.shape == (3, HORIZON, 1)
    assert np.isfinite(f).all()
    # Each series' forecast is at its own level: the window scale is undone.
    ratio = f[:, :, 0].mean(axis=1) / np.array([5.0, 500.0, 50_000.0])
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio


def test_same_seed_same_forecast(panel: Panel, net: gn.GlobalNetwork) -> None:
    train, val = all_windows(panel)
    again = gn.fit(panel, train, val, spec(), TINY, QUICK)
    starts = last_windows(panel)
    np.testing.assert_array_equal(
        gn.forecast(net, panel, starts), gn.forecast(again, panel, starts)
    )
    assert net.history == again.history


def test_a_window_never_reads_the_next_series(panel: Panel, net: gn.GlobalNetwork) -> None:
    starts = last_windows(panel)[:1]
    before = gn.forecast(net, panel, starts)
    values = panel.values.copy()
    values[panel.offsets[1] :, 0] = 1e12  # every row of the series next door
    planted = Panel(panel.ids, panel.offsets, panel.times, values, panel.columns, panel.n_targets)
    np.testing.assert_array_equal(gn.forecast(net, planted, starts), before)


def test_windows_crossing_a_series_end_are_refused(panel: Panel) -> None:
    crossing = np.array([panel.offsets[1] - WIDTH + 1])
    with pytest.raises(ValueError, match=f"window at flat row {crossing[0]} needs {WIDTH} rows"):
        gn.forecast(gn.GlobalNetwork(spec(), [], panel.ids), panel, crossing)
    train, val = all_windows(panel)
    with pytest.raises(ValueError, match="train windows: window at flat row"):
        gn.fit(panel, np.append(train, panel.offsets[1] - 2), val, spec(), TINY, QUICK)


def test_scale_round_trips_positive_and_signed_windows() -> None:
    x = np.array([[[2.0], [4.0], [6.0]], [[-1.0], [0.0], [4.0]]])
    y = np.array([[[8.0], [1.0]], [[-3.0], [2.0]]])
    level, spread, positive = gn.window_scale(x)
    np.testing.assert_array_equal(positive[:, 0], [True, False])
    np.testing.assert_allclose(level[:, 0], [4.0, 1.0])
    z = gn.scale(y, level, spread, positive)
    # Log ratio to the level where positive; (y - level) / mean |x| (5/3) where not.
    np.testing.assert_allclose(z[0, :, 0], np.log([2.0, 0.25]))
    np.testing.assert_allclose(z[1, :, 0], [-4.0 * 3 / 5, 1.0 * 3 / 5])
    np.testing.assert_allclose(gn.unscale(z, level, spread, positive), y)


def test_constant_ratio_series_come_back_in_units() -> None:
    # Constant series: every scaled window and target is 0, whatever the level.
    flat = monthly_panel([5.0, 5e5], [40, 40], seasonal=0.0)
    train, val = all_windows(flat)
    cfg = TrainConfig(**{**QUICK.model_dump(), "epochs": 30, "patience": 30})
    fitted = gn.fit(flat, train, val, spec(), TINY, cfg)
    f = gn.forecast(fitted, flat, last_windows(flat))[:, :, 0]
    np.testing.assert_allclose(f, [[5.0] * HORIZON, [5e5] * HORIZON], rtol=0.05)


def test_series_embedding_on_and_off(panel: Panel, net: gn.GlobalNetwork) -> None:
    assert "embedding" not in [layer.name for layer in net.members[0].layers]
    train, val = all_windows(panel)
    embedded = gn.fit(panel, train, val, spec(series_embedding=2), TINY, QUICK)
    assert embedded.members[0].get_layer("embedding").get_weights()[0].shape == (3, 2)
    f = gn.forecast(embedded, panel, last_windows(panel))
    assert f.shape == (3, HORIZON, 1)
    # Each series finds its own embedding row in a panel holding them in another order.
    shuffled = panel.take([2, 0, 1])
    reordered = gn.forecast(embedded, shuffled, last_windows(shuffled))
    np.testing.assert_allclose(reordered, f[[2, 0, 1]], rtol=1e-6)  # float32 rounding only
    # A series the fit never saw has no embedding row: named, not silently another's.
    other = monthly_panel([1.0, 2.0, 3.0, 4.0], [20, 20, 20, 20])
    with pytest.raises(KeyError, match=r"features.series_embedding: series \['s3'\]"):
        gn.forecast(embedded, other, last_windows(other))


def test_static_columns_and_members(panel: Panel) -> None:
    train, val = all_windows(panel)
    cfg = TrainConfig(**{**QUICK.model_dump(), "members": 2})
    both = gn.fit(panel, train, val, spec(static=("size",)), TINY, cfg)
    np.testing.assert_allclose(both.static_mean, [np.log10([5, 500, 50_000]).mean()])
    starts = last_windows(panel)
    members = [
        gn.GlobalNetwork(both.spec, [m], both.ids, both.static_mean, both.static_scale)
        for m in both.members
    ]
    # The served forecast is the mean of the members' forecasts in units.
    np.testing.assert_allclose(
        gn.forecast(both, panel, starts),
        np.mean([gn.forecast(m, panel, starts) for m in members], axis=0),
    )
    with pytest.raises(KeyError, match=r"features.static: columns \['nope'\]"):
        gn.fit(panel, train, val, spec(static=("nope",)), TINY, QUICK)


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"features": {"series_embedding": -1}}, "features.series_embedding"),
        ({"features": {"static": ["size"]}}, "features.static"),
        ({"train": {"loss": "huber"}}, "train.loss"),
        ({"train": {"members": 0}}, "train.members"),
    ],
)
def test_new_keys_are_validated(sections: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make_config(**sections)
