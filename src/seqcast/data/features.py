"""Network inputs: values relative to the last observation, seasonal differences, calendar.

Everything here works in scaled units on one (rows, columns) array and a batch of origins, so
training, evaluation and the served model share one code path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from seqcast.data import baselines
from seqcast.data.offsets import gather, history_offsets, horizon_offsets

TWO_PI = 2.0 * np.pi


def calendar(times: pd.DatetimeIndex, names: list[str]) -> np.ndarray:
    """sin/cos of each named cycle at each time, in local wall-clock time: (rows, 2 per name)."""
    if not names:
        return np.zeros((len(times), 0), dtype=np.float32)
    day_fraction = (
        times.hour.to_numpy() * 3600 + times.minute.to_numpy() * 60 + times.second.to_numpy()
    ) / 86400.0
    phases = {
        "time_of_day": day_fraction,
        "day_of_week": (times.day_of_week.to_numpy() + day_fraction) / 7.0,
        "day_of_year": (times.day_of_year.to_numpy() - 1 + day_fraction)
        / np.where(times.is_leap_year, 366.0, 365.0),
    }
    columns = []
    for name in names:
        columns += [np.sin(TWO_PI * phases[name]), np.cos(TWO_PI * phases[name])]
    return np.stack(columns, axis=1).astype(np.float32)


def future_times(
    last: pd.Timestamp, frequency: str, horizon: int, shift: int = 1
) -> pd.DatetimeIndex:
    """Timestamps of the forecast steps after the last observation."""
    steps = pd.date_range(last, periods=shift + horizon, freq=step_offset(frequency, last))
    return steps[shift:]


def step_offset(frequency: str, last: pd.Timestamp):
    """What dates the steps after `last`: a pandas alias, or an exchange's sessions (XNYS)."""
    try:
        pd.tseries.frequencies.to_offset(frequency)
    except ValueError:
        return _sessions(frequency, int(pd.Timestamp(last).year))
    return frequency


@functools.lru_cache(maxsize=8)
def _sessions(code: str, year: int):
    """An exchange's trading days (holidays skipped) around a year, as a pandas offset."""
    # Built once per exchange and year (0.2 s), not per request.
    import exchange_calendars as xcals

    start, end = pd.Timestamp(year - 1, 1, 1), pd.Timestamp(year + 4, 12, 31)
    try:
        return xcals.get_calendar(code, start=start, end=end).day
    except ValueError:  # before the calendar's first session: its own earliest bound
        return xcals.get_calendar(code, end=end).day


@dataclass(frozen=True)
class InputSpec:
    """What a model reads: widths, reference, and which columns are targets."""

    input_width: int
    horizon: int
    shift: int
    n_targets: int
    n_values: int
    n_calendar: int
    reference: str = "none"
    season: int | None = None
    calendar_names: list[str] = field(default_factory=list)

    @property
    def relative(self) -> bool:
        """Inputs are taken relative to the last observation when learning a residual."""
        return self.reference != "none"

    @property
    def seasonal(self) -> bool:
        """A seasonal reference adds seasonal differences and the reference path as inputs."""
        return self.reference == "seasonal_naive"

    @property
    def context(self) -> int:
        """Rows of history one forecast needs, origin included."""
        return self.input_width + (int(self.season) if self.seasonal else 0)

    @property
    def past_width(self) -> int:
        """Features per input step."""
        return self.n_values + (self.n_targets if self.seasonal else 0) + self.n_calendar

    @property
    def future_width(self) -> int:
        """Features per horizon step (known in advance)."""
        return self.n_calendar + (self.n_targets if self.seasonal else 0)


def reference_forecast(spec: InputSpec, series: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """The reference over the horizon for the targets: (windows, horizon, targets)."""
    targets = series[:, : spec.n_targets]
    return baselines.reference(
        targets, origins, spec.reference, spec.season, spec.horizon, spec.shift
    )


def inputs(
    spec: InputSpec, series: np.ndarray, cal: np.ndarray, origins: np.ndarray
) -> dict[str, np.ndarray]:
    """Model inputs for a batch of origins: `past` (B, W, P) and, when any, `future` (B, H, F)."""
    past_rows = history_offsets(spec.input_width)
    values = gather(series, origins, past_rows)
    last = series[origins][:, None, :]
    parts = [values - last if spec.relative else values]
    if spec.seasonal:
        season = int(spec.season)
        earlier = gather(series[:, : spec.n_targets], origins, past_rows - season)
        parts.append(values[:, :, : spec.n_targets] - earlier)
    if spec.n_calendar:
        parts.append(gather(cal, origins, past_rows))
    out = {"past": np.concatenate(parts, axis=2).astype(np.float32)}
    future = []
    if spec.n_calendar:
        future.append(gather(cal, origins, horizon_offsets(spec.horizon, spec.shift)))
    if spec.seasonal:
        future.append(reference_forecast(spec, series, origins) - last[:, :, : spec.n_targets])
    if future:
        out["future"] = np.concatenate(future, axis=2).astype(np.float32)
    return out


def targets(spec: InputSpec, series: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """Actual target values over the horizon: (windows, horizon, targets)."""
    rows = horizon_offsets(spec.horizon, spec.shift)
    return gather(series[:, : spec.n_targets], origins, rows)


def residuals(spec: InputSpec, series: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """What the network learns: actual minus reference."""
    return targets(spec, series, origins) - reference_forecast(spec, series, origins)


def flat(batch: dict[str, np.ndarray]) -> np.ndarray:
    """Inputs flattened to one row per window, for the linear model."""
    return np.concatenate([v.reshape(len(v), -1) for v in batch.values()], axis=1)
