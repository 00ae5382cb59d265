"""The per-series work over chunks of series: the same windows on every engine, failures named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from helpers import make_config, raw_params

from seqcast.core.config import ParallelConfig, parse_config
from seqcast.core.errors import ConfigError
from seqcast.core.parallel import ClusterError, map_ranges, ranges, session
from seqcast.data.panel import Panel, from_frame
from seqcast.data.panel_chunks import map_series
from seqcast.models.panel_parallel import rivals_by_chunk
from seqcast.models.panel_rivals import RivalWindows, forecast_origins

ORIGINS = ["2021-06-01", "2021-12-01"]
# (origins, horizon, rivals, seasons, frequency) as forecast_origins takes them.
RIVALS = (ORIGINS, 6, ["autoets", "autotheta"], [12], "MS")


def synthetic_panel(n_series: int = 12, seed: int = 0) -> Panel:
    """Monthly series of 18 to 80 rows, all ending 2022-06: seasons, trends, one constant."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        n = int(rng.integers(18, 81))
        month = pd.date_range(end="2022-06-01", periods=n, freq="MS")
        t = np.arange(n)
        y = 50 + i + 0.3 * t + 8 * np.sin(2 * np.pi * t / 12 + i) + rng.normal(0, 2, n)
        frames.append(pd.DataFrame({"id": f"s{i:02d}", "month": month, "y": y}))
    if n_series > 3:
        frames[3]["y"] = 7.0  # constant: the seasonal-naive stand-in
    return from_frame(pd.concat(frames), "id", "month", ["y"], 1)


def broken(panel: Panel, series: int) -> Panel:
    """The panel with an infinite value in one series: AutoETS raises on it."""
    values = panel.values.copy()
    values[panel.offsets[series] + 2, 0] = np.inf
    return dataclasses.replace(panel, values=values)


def assert_same(found: RivalWindows, expected: RivalWindows) -> None:
    """Bit for bit the same windows, forecasts, stand-ins and counts."""
    assert found.origin_rows.tolist() == expected.origin_rows.tolist()
    assert found.series.tolist() == expected.series.tolist()
    assert found.seasons == expected.seasons and found.counts == expected.counts
    for name in expected.forecasts:
        assert np.array_equal(found.forecasts[name], expected.forecasts[name]), name
        assert found.fallback[name].tolist() == expected.fallback[name].tolist(), name


def without(windows: RivalWindows, series: int) -> RivalWindows:
    """The windows of every other series, numbered as before (what a failed series leaves)."""
    keep = windows.series != series
    return dataclasses.replace(
        windows,
        origin_rows=windows.origin_rows[keep],
        series=windows.series[keep],
        forecasts={n: f[keep] for n, f in windows.forecasts.items()},
        fallback={n: f[keep] for n, f in windows.fallback.items()},
        counts={
            n: {k: int(np.sum(f[keep] == k)) for k in ("seasonal_naive", "naive")}
            for n, f in windows.fallback.items()
        },
    )


def _squares(payload: np.ndarray, start: int, stop: int) -> np.ndarray:
    """A range's squares; item 5 breaks."""
    if start <= 5 < stop:
        raise ArithmeticError("item 5 breaks")
    return payload[start:stop] ** 2


def test_ranges_cover_every_item_once() -> None:
    assert ranges(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert ranges(0, 3) == [] and ranges(2, 5) == [(0, 2)]


def test_a_failing_range_is_cut_until_the_breaking_item_alone_is_named() -> None:
    out = map_ranges(_squares, np.arange(11.0), 11, 4, engine="local")
    assert out.failed == {5: "ArithmeticError: item 5 breaks"}
    assert [(a, b) for a, b, _ in out.results] == [(0, 4), (4, 5), (6, 8), (8, 11)]
    assert np.concatenate([r for _, _, r in out.results]).tolist() == [
        float(i * i) for i in range(11) if i != 5
    ]


def test_parallel_section_defaults_and_refuses_an_unknown_engine() -> None:
    assert ParallelConfig() == ParallelConfig(engine="ray", cpus=None, chunk_series=2000, retries=3)
    assert make_config().parallel == ParallelConfig()
    with pytest.raises(ConfigError, match="parallel.engine"):
        parse_config(raw_params(parallel={"engine": "dask"}))


def test_local_chunks_give_the_sequential_windows_and_name_a_broken_series() -> None:
    panel = synthetic_panel()
    expected = forecast_origins(panel, *RIVALS)
    assert set(expected.series.tolist()) == set(range(12))  # every series holds an origin
    found = rivals_by_chunk(panel, *RIVALS, ParallelConfig(engine="local", chunk_series=5))
    assert found.failed == {} and found.where == "this process"
    assert_same(found.windows, expected)
    bad = rivals_by_chunk(broken(panel, 7), *RIVALS, ParallelConfig(engine="local", chunk_series=5))
    assert bad.failed == {"s07": "ValueError: This function does not handle missing values"}
    assert_same(bad.windows, without(expected, 7))


def test_local_ray_with_two_cpus_gives_the_sequential_windows(monkeypatch) -> None:
    """One Ray session: identical windows, and a broken series named while the others go on."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    panel = broken(synthetic_panel(), 7)
    expected = without(forecast_origins(synthetic_panel(), *RIVALS), 7)
    with session(cpus=2) as where:
        assert where == "local Ray, 2 CPUs"
        found = rivals_by_chunk(panel, *RIVALS, ParallelConfig(chunk_series=3))
        assert ray.is_initialized()  # the caller's session is used, not shut down
    assert not ray.is_initialized()
    assert found.failed == {"s07": "ValueError: This function does not handle missing values"}
    assert_same(found.windows, expected)
    assert found.windows.cpu_seconds > 0  # the workers' CPU, summed over chunks


def test_an_unreachable_ray_address_is_one_line_naming_it(monkeypatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ClusterError) as err:
        map_series(np.sum, synthetic_panel(3), ParallelConfig())
    assert str(err.value).startswith(f"RAY_ADDRESS='127.0.0.1:{port}': no Ray cluster answers")
    assert "\n" not in str(err.value)
