"""A zoo of seeded synthetic series, each with the few params a user would set for it.

Ten kinds (issue 31): Saturday weeks with gaps, months with a 132-step cycle, trading days,
local-time hours with a spring-forward gap, days with a yearly season, a series just long enough
for the backtest, two targets, a target driven by a feature, a level shift, intermittent zeros.
`benchmarks.unseen` runs them through every stage; tests/test_zoo.py through `dvc repro`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Kind:
    """A generator, the data keys a user writes for it, the window they choose, other params."""

    make: Callable[[], pd.DataFrame]
    data: dict
    window: dict
    # Other sections a user of this series would set (e.g. fewer origins for a short series).
    params: dict = field(default_factory=dict)


def trading_days(n: int, seed: int = 0) -> pd.DataFrame:
    """A random walk of closes on business days, with a dozen holidays a year left out."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2015-01-02", periods=int(n * 1.06))
    holidays = rng.choice(len(days), size=len(days) - n, replace=False)
    days = days.delete(np.sort(holidays))
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "close": close.round(4)})


def monthly(n: int, seed: int = 1) -> pd.DataFrame:
    """Month-start sales: a trend, a yearly season and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    sales = 200 + 1.5 * t + 40 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 5, n)
    months = pd.date_range("1990-01-01", periods=n, freq="MS")
    return pd.DataFrame({"month": months.strftime("%Y-%m-%d"), "sales": sales.round(2)})


def weekly_with_gaps(n: int, seed: int = 2) -> pd.DataFrame:
    """Saturday-week counts with a yearly season, some weeks missing and some cells empty."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    visits = 1000 + 150 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 20, n)
    weeks = pd.date_range("2005-01-01", periods=n, freq="W-SAT")
    frame = pd.DataFrame({"week": weeks.strftime("%Y-%m-%d"), "visits": visits.round(1)})
    frame.loc[rng.choice(np.arange(10, n - 10), 6, replace=False), "visits"] = np.nan
    return frame.drop(index=[100, 101, 250, 400]).reset_index(drop=True)


def solar_cycle(n: int, seed: int = 3) -> pd.DataFrame:
    """Monthly counts with an 11-year (132-month) cycle no calendar names, as sunspots have."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    cycle = np.maximum(0.0, np.sin(2 * np.pi * t / 132)) ** 1.5
    count = 10 + 120 * cycle + rng.gamma(2.0, 4.0, n) * (1 + cycle)
    months = pd.date_range("1900-01-01", periods=n, freq="MS")
    return pd.DataFrame({"month": months.strftime("%Y-%m"), "spots": count.round(1)})


def local_hours(n: int, seed: int = 4) -> pd.DataFrame:
    """Hourly load in naive local time (Europe/Paris): the spring-forward hour is absent.

    The series runs from February into April, so it holds the March change (02:00 does not
    exist that night) but not October's repeated hour, which would need UTC or an offset.
    """
    rng = np.random.default_rng(seed)
    utc = pd.date_range("2024-02-01 00:00", periods=n, freq="h", tz="UTC")
    local = utc.tz_convert("Europe/Paris").tz_localize(None)
    hour = local.hour.to_numpy() + local.minute.to_numpy() / 60
    weekend = local.dayofweek.to_numpy() >= 5
    load = 500 + 120 * np.sin(2 * np.pi * (hour - 7) / 24) - 60 * weekend
    load = load + np.cumsum(rng.normal(0, 2, n)) + rng.normal(0, 8, n)
    return pd.DataFrame({"time": local.strftime("%Y-%m-%d %H:%M"), "load_mw": load.round(1)})


def daily_yearly(n: int, seed: int = 5) -> pd.DataFrame:
    """Daily temperatures-like values: a strong yearly season, a faint week, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    value = 12 + 9 * np.sin(2 * np.pi * (t - 100) / 365.25) + 0.5 * np.sin(2 * np.pi * t / 7)
    value = value + np.convolve(rng.normal(0, 2, n + 2), np.ones(3) / 3, "valid")
    days = pd.date_range("2019-01-01", periods=n, freq="D")
    return pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "temp_c": value.round(2)})


def short(n: int, seed: int = 6) -> pd.DataFrame:
    """A short daily series with a weekly season: just long enough for the backtest."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    value = 50 + 10 * np.sin(2 * np.pi * t / 7) + 0.05 * t + rng.normal(0, 2, n)
    days = pd.date_range("2023-03-01", periods=n, freq="D")
    return pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "orders": value.round(2)})


def two_targets(n: int, seed: int = 7) -> pd.DataFrame:
    """Hourly supply and demand of one market: a shared daily cycle, demand leading supply."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    day = np.sin(2 * np.pi * t / 24)
    demand = 300 + 80 * day + np.cumsum(rng.normal(0, 1.5, n)) + rng.normal(0, 6, n)
    supply = 0.8 * np.roll(demand, 2) + 40 + rng.normal(0, 5, n)
    supply[:2] = supply[2]
    hours = pd.date_range("2024-05-01", periods=n, freq="h")
    return pd.DataFrame(
        {"hour": hours.strftime("%Y-%m-%d %H:%M"), "demand": demand.round(2),
         "supply": supply.round(2)}
    )  # fmt: skip


def with_feature(n: int, seed: int = 8) -> pd.DataFrame:
    """Daily ice-cream sales driven by the (observed) temperature, with a weekly season."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    temp = 15 + 10 * np.sin(2 * np.pi * (t - 100) / 365.25) + np.cumsum(rng.normal(0, 0.6, n))
    temp = temp - np.linspace(0, temp[-1] - temp[0], n)  # a bounded wander, not a drift
    weekly = 15 * (pd.date_range("2020-01-01", periods=n, freq="D").dayofweek >= 5)
    sales = 100 + 6 * temp + weekly + rng.normal(0, 5, n)
    days = pd.date_range("2020-01-01", periods=n, freq="D")
    return pd.DataFrame(
        {"day": days.strftime("%Y-%m-%d"), "sales": sales.round(1), "temp": temp.round(2)}
    )


def level_shift(n: int, shift_at: float = 0.54, seed: int = 9) -> pd.DataFrame:
    """Hourly flow: a noisy level until a daily cycle and a level shift start mid-series.

    Before the shift the best simple forecast is the last value; after it, the same hour of
    the day before: folds on either side of it choose different references.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    after = t >= int(n * shift_at)
    flow = 200 + np.cumsum(rng.normal(0, 1.0, n)) + rng.normal(0, 1.0, n)
    flow = flow + after * (80 + 40 * np.sin(2 * np.pi * t / 24))
    hours = pd.date_range("2024-01-01", periods=n, freq="h")
    return pd.DataFrame({"hour": hours.strftime("%Y-%m-%d %H:%M"), "flow": flow.round(2)})


def intermittent(n: int, seed: int = 10) -> pd.DataFrame:
    """Daily spare-part demand: mostly zeros, then weekday orders once a weekly routine starts.

    Zeros and rare lumps favour the last value; from the routine on, last week's same day.
    """
    rng = np.random.default_rng(seed)
    days = pd.date_range("2021-01-01", periods=n, freq="D")
    lumps = rng.binomial(1, 0.15, n) * rng.poisson(4, n)
    routine = (np.arange(n) >= int(n * 0.6)) & (days.dayofweek.to_numpy() == 0)
    demand = lumps + routine * (12 + rng.poisson(2, n))
    return pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "units": demand.astype(float)})


SHORT_ROWS = 192

# name -> the series and what a user sets for it (data keys, window, anything else).
ZOO: dict[str, Kind] = {
    "trading-day random walk": Kind(
        lambda: trading_days(1500),
        {"path": "data/raw/closes.csv", "timestamp": "date", "targets": ["close"],
         "frequency": "rows", "step_frequency": "B"},
        {"input_width": 20, "horizon": 5},
    ),
    "monthly seasonal with trend": Kind(
        lambda: monthly(333),
        {"path": "data/raw/sales.csv", "timestamp": "month", "targets": ["sales"],
         "frequency": "MS"},
        {"input_width": 24, "horizon": 6},
    ),
    "weekly with gaps": Kind(
        lambda: weekly_with_gaps(624),
        {"path": "data/raw/visits.csv", "timestamp": "week", "targets": ["visits"],
         "frequency": "W-SAT", "max_null_fraction": 0.02},
        {"input_width": 26, "horizon": 8},
    ),
    "monthly 132-step cycle": Kind(
        lambda: solar_cycle(880),
        {"path": "data/raw/spots.csv", "timestamp": "month", "targets": ["spots"],
         "frequency": "MS"},
        {"input_width": 36, "horizon": 12},
    ),
    "hourly local time with DST gap": Kind(
        lambda: local_hours(1600),
        {"path": "data/raw/load.csv", "timestamp": "time", "targets": ["load_mw"],
         "frequency": "h"},
        {"input_width": 48, "horizon": 24},
    ),
    "daily with yearly season": Kind(
        lambda: daily_yearly(1500),
        {"path": "data/raw/temps.csv", "timestamp": "day", "targets": ["temp_c"],
         "frequency": "D"},
        {"input_width": 28, "horizon": 7},
    ),
    "just long enough": Kind(
        lambda: short(SHORT_ROWS),
        {"path": "data/raw/orders.csv", "timestamp": "day", "targets": ["orders"],
         "frequency": "D", "features": []},
        {"input_width": 14, "horizon": 7},
        {"backtest": {"origins": 2}},
    ),
    "two targets": Kind(
        lambda: two_targets(1200),
        {"path": "data/raw/market.csv", "timestamp": "hour", "targets": ["demand", "supply"],
         "frequency": "h"},
        {"input_width": 48, "horizon": 12},
    ),
    "target with a feature": Kind(
        lambda: with_feature(1500),
        {"path": "data/raw/icecream.csv", "timestamp": "day", "targets": ["sales"],
         "features": ["temp"], "frequency": "D"},
        {"input_width": 28, "horizon": 7},
    ),
    "level shift": Kind(
        lambda: level_shift(1400),
        {"path": "data/raw/flow.csv", "timestamp": "hour", "targets": ["flow"],
         "frequency": "h"},
        {"input_width": 48, "horizon": 12},
    ),
    "intermittent zeros": Kind(
        lambda: intermittent(1500),
        {"path": "data/raw/parts.csv", "timestamp": "day", "targets": ["units"],
         "frequency": "D"},
        {"input_width": 28, "horizon": 7},
    ),
}  # fmt: skip
