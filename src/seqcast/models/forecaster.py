"""A forecaster carries everything a forecast needs: settings, scaler, reference and model.

Baselines, the linear rival and the networks are all Forecasters, so every one of them is
scored, saved and served through the same code.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast.core.config import ROWS
from seqcast.data import features
from seqcast.data.features import InputSpec
from seqcast.data.scaling import to_scaled, to_units
from seqcast.models import metrics

SETTINGS = "forecaster.json"
KERAS_FILE = "model.keras"
LINEAR_FILE = "linear.pkl"
STATISTICAL_FILE = "statistical.pkl"
CALIBRATION_FILE = "calibration.npy"
CALIBRATION_SCALE_FILE = "calibration_scale.npy"
PREDICT_BATCH = 4096
# How forecasts and examples write timestamps (a tz-aware series adds %z).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Served history may leave the training range [train_min, train_max] by this many times its
# width on either side: demand may well set a new record, but a value a whole range beyond
# anything seen is a unit or sensor error, and the network extrapolates it without bound.
RANGE_MARGIN = 1.0
# Network batches under PREDICT_BATCH are padded up to the next power of two and run by a
# function compiled once per padded size: a one-series request runs compiled code rather than
# Keras' eager call (about 100x slower), and no new batch size traces again (nor warns about it).
# Keyed weakly by the network: forecasters copied with dataclasses.replace (backtest folds)
# share the compiled functions, which go when the network does.
_COMPILED: weakref.WeakKeyDictionary[Any, dict[int, Callable]] = weakref.WeakKeyDictionary()
_COMPILED_LOCK = threading.Lock()
# Conformal quantiles per (calibration, scales, levels): a served model's bands are the same for
# every request until it is recalibrated, and the partial sort of 2,000 x horizon errors costs a
# request several ms (16 ms at load 16). Keyed by the arrays' identity, which the value's own
# references keep unique; calibration arrays are replaced, never changed in place.
_QUANTILES: dict[tuple, tuple[Any, Any, np.ndarray]] = {}
_QUANTILES_KEPT = 32


class ForecastInputError(ValueError):
    """History that cannot be forecast from; the message says what was expected."""


class ForecastOutputError(ValueError):
    """A forecast that is not a number (NaN or infinity): never handed out."""


@dataclass
class Forecaster:
    """One model's forecasting recipe, in the series' units at both ends."""

    name: str
    spec: InputSpec
    timestamp: str
    columns: list[str]
    frequency: str
    offset: np.ndarray
    scale: np.ndarray
    # A Keras model, a Ridge, a statistical rival (seqcast.models.statistical), or None for a
    # baseline.
    predictor: Any = None
    # With frequency "rows" (rows are consecutive steps): the alias dating forecast steps.
    step_frequency: str | None = None
    # Per-column range of the training split, in units: served history is checked against it.
    train_min: np.ndarray | None = None
    train_max: np.ndarray | None = None
    # Absolute out-of-sample errors (n, horizon, targets), the latest n: conformal bands at serve
    # time, at each of `levels` (percent). None: point forecasts only.
    calibration: np.ndarray | None = None
    levels: list[float] = dataclasses.field(default_factory=list)
    # The quantile levels the bands of `levels` are read at, adapted to the live misses
    # (intervals.adaptive_levels); None: the nominal levels.
    band_levels: list[float] | None = None
    # Rows the predictor was fit on, as timestamps [first, last] (the refit: every row).
    fit_rows: list[str] | None = None
    # The params' gap policy served history is held to (seqcast.models.serving.GapPolicy's fields:
    # split.max_gap_steps, data.max_null_fraction, data.max_filled_fraction, data.bounds).
    # None, as in models saved before it was recorded: every row sent must be complete.
    gap_policy: dict[str, Any] | None = None
    # Locally scaled (normalised) conformal bands: the local scale of each calibration error's
    # origin (n, targets; metrics.local_scale), and {"window": rows read, "floor": per target}
    # to compute the scale of a request's history. None: bands are +/- the errors' quantiles.
    calibration_scale: np.ndarray | None = None
    band_scale: dict[str, Any] | None = None

    def band_columns(self) -> list[str]:
        """Names of the band columns after the targets: <target>_lower_<L>, <target>_upper_<L>."""
        if self.calibration is None:
            return []
        return [
            f"{target}_{side}_{level:g}"
            for target in self.targets
            for level in self.levels
            for side in ("lower", "upper")
        ]

    def half_widths(self) -> np.ndarray:
        """Conformal quantiles (horizon, targets, levels) of the calibration errors.

        The half-widths themselves unless the bands are locally scaled: then the quantiles of
        the scaled errors, which band_half_widths multiplies by the request's local scale.
        """
        read_at = self.band_levels or self.levels
        scales = self.calibration_scale if self.locally_scaled else None
        key = (id(self.calibration), id(scales), tuple(read_at))
        found = _QUANTILES.get(key)
        if found is not None:
            return found[2]
        scores = np.asarray(self.calibration, dtype=np.float64)
        if scales is not None:
            scores = scores / np.asarray(scales, dtype=np.float64)[:, None, :]
        half = np.moveaxis(metrics.quantiles(scores, read_at), 0, -1)
        half.setflags(write=False)  # shared by every request
        with _COMPILED_LOCK:  # server threads
            if len(_QUANTILES) >= _QUANTILES_KEPT:
                _QUANTILES.pop(next(iter(_QUANTILES)))  # the oldest
            _QUANTILES[key] = (self.calibration, scales, half)
        return half

    @property
    def locally_scaled(self) -> bool:
        """True when the bands scale with the local scale of the history at each origin."""
        return self.calibration_scale is not None and self.band_scale is not None

    def band_half_widths(self, values: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """Half-widths (origins, horizon, targets, levels) of forecasts at origins of values.

        values are rows in units (every column); with local scaling each origin's band is the
        scaled errors' quantile times the local scale of the rows up to it, else the same band.
        """
        half = self.half_widths()
        if not self.locally_scaled:
            return np.broadcast_to(half, (len(origins), *half.shape))
        scale = metrics.local_scale(
            np.asarray(values)[:, : self.spec.n_targets],
            origins,
            int(self.band_scale["window"]),
            np.asarray(self.band_scale["floor"], dtype=np.float64),
        )
        return half[None] * scale[:, None, :, None]

    @property
    def targets(self) -> list[str]:
        """Target column names."""
        return self.columns[: self.spec.n_targets]

    @property
    def calendar_frequency(self) -> str:
        """The pandas alias from one step to the next, for calendar inputs and forecast times."""
        return self.frequency if self.frequency != ROWS else str(self.step_frequency)

    @property
    def min_history(self) -> int:
        """Rows of history a forecast needs."""
        return self.spec.context

    def predict_scaled(
        self, series: np.ndarray, cal: np.ndarray, origins: np.ndarray
    ) -> np.ndarray:
        """Forecasts in scaled units at each origin: reference plus predicted residual."""
        if _predictor_kind(self.predictor) == "statistical":
            return self._statistical(series, origins)
        out = np.empty((len(origins), self.spec.horizon, self.spec.n_targets), dtype=np.float64)
        for start in range(0, len(origins), PREDICT_BATCH):
            batch = origins[start : start + PREDICT_BATCH]
            forecast = features.reference_forecast(self.spec, series, batch).astype(np.float64)
            if self.predictor is not None:
                forecast += self._residual(features.inputs(self.spec, series, cal, batch))
            out[start : start + len(batch)] = forecast
        return out

    def _statistical(self, series: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """A statistical rival's forecasts, scaled: it models each target in units on its own."""
        n = self.spec.n_targets
        units = to_units(series[:, :n], self.offset[:n], self.scale[:n])
        found = self.predictor.forecast_targets(units, origins, self.spec.horizon, self.spec.shift)
        return to_scaled(found, self.offset[:n], self.scale[:n])

    @property
    def keeps_series(self) -> bool:
        """True for a statistical rival that carries the series it was evaluated on (refit)."""
        return getattr(self.predictor, "history", None) is not None

    def steps_read(self, times: pd.DatetimeIndex) -> int:
        """Steps a forecast reads, up to the last of times: min_history, or more for a kept series.

        A rival with its kept series reads every step after that series, so a gap policy judges
        (and interpolates) them all, and a client bridges the steps since the refit by sending them.
        """
        if not self.keeps_series or self.frequency == ROWS or not len(times):
            return self.min_history
        end = _stamp(int(self.predictor.history_times[-1]), times.tz)
        if times[-1] <= end:
            return self.min_history
        after = pd.date_range(end, times[-1], freq=features.step_offset(self.frequency, end))
        return max(self.min_history, len(after) - 1)

    def _served_statistical(self, values: np.ndarray, times: pd.DatetimeIndex) -> np.ndarray:
        """A served rival's forecast (horizon, targets) in units: kept series, then the rows sent.

        Its states are filtered from the first fit row, as the evaluation filtered them, rather
        than from the fit's initial state through the rows sent only: the same origin and the
        same series give the forecast the evaluation scored.
        """
        rival, n = self.predictor, self.spec.n_targets
        series, origin, cut = join_kept(
            rival.history, rival.history_times, rival.fit_rows, values[:, :n], times,
            self.frequency, self.calendar_frequency,
        )  # fmt: skip
        return rival.forecast_served(series, origin, self.spec.horizon, self.spec.shift, cut)

    def _residual(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        shape = (len(batch["past"]), self.spec.horizon, self.spec.n_targets)
        if hasattr(self.predictor, "predict_on_batch"):
            found = network_predict(self.predictor, batch)
            return np.asarray(found, dtype=np.float64).reshape(shape)
        return self.predictor.predict(features.flat(batch)).reshape(shape)

    def forecast_units(
        self, values: np.ndarray, times: pd.DatetimeIndex, origins: np.ndarray
    ) -> np.ndarray:
        """Forecasts in the series' units at each origin of a regular series given in units."""
        series = to_scaled(np.asarray(values, dtype=np.float64), self.offset, self.scale)
        # Every row after the last observation up to the last target: shift - 1 + horizon rows.
        steps = pd.date_range(
            times[-1],
            periods=self.spec.shift + self.spec.horizon,
            freq=features.step_offset(self.calendar_frequency, times[-1]),
        )[1:]
        cal = features.calendar(times.append(steps), self.spec.calendar_names)
        scaled = self.predict_scaled(series, cal, origins)
        n = self.spec.n_targets
        return to_units(scaled, self.offset[:n], self.scale[:n])

    def forecast(self, history: pd.DataFrame) -> pd.DataFrame:
        """Forecast the horizon after raw recent history (timestamp plus value columns)."""
        return self.forecast_checked(*self.check_history(history))

    def forecast_checked(self, values: np.ndarray, times: pd.DatetimeIndex) -> pd.DataFrame:
        """The forecast after history that check_history has already returned (values, times)."""
        return pd.DataFrame(self.forecast_columns(values, times))

    def forecast_columns(self, values: np.ndarray, times: pd.DatetimeIndex) -> dict[str, Any]:
        """forecast_checked's columns before they make a frame: the server writes them directly."""
        if self.keeps_series:
            forecast = self._served_statistical(values, times)
        else:
            forecast = self.forecast_units(values, times, np.array([len(values) - 1]))[0]
        ahead = features.future_times(
            times[-1], self.calendar_frequency, self.spec.horizon, self.spec.shift
        )
        bad = np.argwhere(~np.isfinite(forecast))
        if len(bad):
            step, col = bad[0]
            raise ForecastOutputError(
                f"the forecast of {self.targets[col]} for {ahead[step]} is not a finite number; "
                "no forecast is returned rather than NaN or infinity"
            )
        # A tz-aware series keeps its UTC offset: the repeated autumn hour stays unambiguous.
        fmt = TIME_FORMAT + ("%z" if ahead.tz is not None else "")
        # Every column first, one frame made at the end: a column added at a time costs a
        # served request about 1 ms more.
        columns: dict[str, Any] = {self.timestamp: ahead.strftime(fmt)}
        columns |= {target: forecast[:, t] for t, target in enumerate(self.targets)}
        if self.calibration is not None:
            half = self.band_half_widths(values, np.array([len(values) - 1]))[0]
            for t, target in enumerate(self.targets):
                for i, level in enumerate(self.levels):
                    columns[f"{target}_lower_{level:g}"] = forecast[:, t] - half[:, t, i]
                    columns[f"{target}_upper_{level:g}"] = forecast[:, t] + half[:, t, i]
        return columns

    def check_history(self, history: pd.DataFrame) -> tuple[np.ndarray, pd.DatetimeIndex]:
        """The last min_history rows as (values, times), once every row sent passed the checks."""
        # Every row is checked, not only the ones the model reads: a client that sends 1e308
        # or a gap anywhere has a broken feed and should hear so. Vectorised: about 5 ms per
        # 10,000 rows on 2 cores, mostly parsing timestamps (benchmarks/serving.py).
        needed = [self.timestamp, *self.columns]
        missing = [c for c in needed if c not in history.columns]
        if missing:
            raise ForecastInputError(
                f"missing column(s) {missing}; expected {needed}, got {list(history.columns)}"
            )
        if len(history) < self.min_history:
            raise ForecastInputError(
                f"too little history: {len(history)} rows given, {self.min_history} needed "
                f"(input width {self.spec.input_width}"
                + (f" + reference season {self.spec.season})" if self.spec.seasonal else ")")
            )
        times = parse_times(history[self.timestamp])
        if times.isna().any():
            at = int(np.argmax(times.isna()))
            raise ForecastInputError(
                f"column {self.timestamp}: missing timestamp at {_row(at, len(times))}"
            )
        values = cell_values(history, times, self.columns)
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            row, col = bad[0]
            raise ForecastInputError(
                f"{len(bad)} null or non-finite value(s), first in column {self.columns[col]} "
                f"at {times[row]} ({_row(row, len(times))})"
            )
        self.check_range(values, times)
        if self.frequency == ROWS:
            if not times.is_monotonic_increasing or not times.is_unique:
                at = int(np.argmax(np.diff(times.asi8) <= 0)) + 1
                raise ForecastInputError(
                    f"timestamps must increase: {_row(at, len(times))} is "
                    f"{times[at]}, after {times[at - 1]}"
                )
        else:
            expected = pd.date_range(times[0], periods=len(times), freq=self.frequency)
            if not times.equals(expected):
                at = int(np.argmax(times != expected))
                raise ForecastInputError(
                    f"timestamps must be increasing every {self.frequency} with no gaps: "
                    f"{_row(at, len(times))} is {times[at]}, expected {expected[at]}"
                )
        # A rival with its kept series reads every row sent: they extend that series, and a
        # client can bridge the steps since the refit by sending all of them.
        read = len(values) if self.keeps_series else self.min_history
        return values[-read:], times[-read:]

    def check_range(self, values: np.ndarray, times: pd.DatetimeIndex) -> None:
        """Refuse values RANGE_MARGIN training ranges beyond the training range (if known)."""
        if self.train_min is None or self.train_max is None:
            return  # saved before the window stage recorded the range
        spread = self.train_max - self.train_min
        low = self.train_min - RANGE_MARGIN * spread
        high = self.train_max + RANGE_MARGIN * spread
        outside = (values < low) | (values > high)
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise ForecastInputError(
                f"column {self.columns[col]}: {values[row, col]:.10g} at {times[row]} "
                f"({_row(row, len(times))}) is outside "
                f"the accepted range [{low[col]:.6g}, {high[col]:.6g}] (training range "
                f"[{self.train_min[col]:.6g}, {self.train_max[col]:.6g}] widened by "
                f"{RANGE_MARGIN:g} times its width on each side); {int(outside.sum())} value(s) "
                "outside in all"
            )

    def warm_up(self) -> None:
        """Trace the network's compiled one-series call now, so that no request pays for it."""
        if not hasattr(self.predictor, "predict_on_batch"):
            return  # a baseline or the linear rival: nothing to compile
        batch = {x.name: np.zeros((1, *x.shape[1:]), dtype=x.dtype) for x in self.predictor.inputs}
        network_predict(self.predictor, batch)

    def fingerprint(self) -> str:
        """MD5 of what makes forecasts: settings and predictor weights (same model, same hash)."""
        import hashlib

        digest = hashlib.md5(json.dumps(self._settings(), sort_keys=True).encode())
        if hasattr(self.predictor, "get_weights"):
            weights = self.predictor.get_weights()
        elif _predictor_kind(self.predictor) == "statistical":
            weights = self.predictor.weights()
        elif self.predictor is not None:
            weights = [self.predictor.coef_, np.atleast_1d(self.predictor.intercept_)]
        else:
            weights = []
        if self.calibration is not None:
            weights = [*weights, self.calibration]
        if self.calibration_scale is not None:
            weights = [*weights, self.calibration_scale]
        for array in weights:
            digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def _settings(self) -> dict[str, Any]:
        """forecaster.json: everything but the predictor's weights."""
        # gap_policy and band_levels only when set: a model without them keeps its settings and
        # fingerprint.
        return (
            {
                "name": self.name,
                "spec": dataclasses.asdict(self.spec),
                "timestamp": self.timestamp,
                "columns": self.columns,
                "frequency": self.frequency,
                "step_frequency": self.step_frequency,
                "offset": self.offset.tolist(),
                "scale": self.scale.tolist(),
                "predictor": _predictor_kind(self.predictor),
                "train_min": None
                if self.train_min is None
                else np.asarray(self.train_min).tolist(),
                "train_max": None
                if self.train_max is None
                else np.asarray(self.train_max).tolist(),
                "levels": list(self.levels),
                "calibration_errors": None if self.calibration is None else len(self.calibration),
                "fit_rows": self.fit_rows,
            }
            | ({} if self.gap_policy is None else {"gap_policy": self.gap_policy})
            | ({} if self.band_levels is None else {"band_levels": list(self.band_levels)})
            | ({} if self.band_scale is None else {"band_scale": self.band_scale})
        )

    def save(self, folder: Path) -> None:
        """Write settings and model into a folder (which the caller makes atomic)."""
        folder.mkdir(parents=True, exist_ok=True)
        settings = self._settings()
        (folder / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
        if settings["predictor"] == "keras":
            self.predictor.save(folder / KERAS_FILE)
        elif settings["predictor"] == "linear":
            (folder / LINEAR_FILE).write_bytes(pickle.dumps(self.predictor))
        elif settings["predictor"] == "statistical":
            (folder / STATISTICAL_FILE).write_bytes(pickle.dumps(self.predictor))
        if self.calibration is not None:
            np.save(folder / CALIBRATION_FILE, np.asarray(self.calibration, dtype=np.float64))
        if self.calibration_scale is not None:
            np.save(
                folder / CALIBRATION_SCALE_FILE,
                np.asarray(self.calibration_scale, dtype=np.float64),
            )

    @classmethod
    def load(cls, folder: Path) -> Forecaster:
        """Read a forecaster written by save(); Keras models load under any backend."""
        folder = Path(folder)
        settings = json.loads((folder / SETTINGS).read_text())
        predictor = None
        if settings["predictor"] == "keras":
            import keras

            predictor = keras.saving.load_model(folder / KERAS_FILE, compile=False)
        elif settings["predictor"] == "linear":
            predictor = pickle.loads((folder / LINEAR_FILE).read_bytes())
        elif settings["predictor"] == "statistical":
            predictor = pickle.loads((folder / STATISTICAL_FILE).read_bytes())
        forecaster = from_settings(
            settings["name"], InputSpec(**settings["spec"]), settings, predictor
        )
        if (folder / CALIBRATION_FILE).is_file():
            forecaster.calibration = np.load(folder / CALIBRATION_FILE)
        if (folder / CALIBRATION_SCALE_FILE).is_file():
            forecaster.calibration_scale = np.load(folder / CALIBRATION_SCALE_FILE)
        return forecaster


def join_kept(
    kept: np.ndarray,
    kept_times: np.ndarray,
    fit_rows: int,
    sent: np.ndarray,
    times: pd.DatetimeIndex,
    frequency: str,
    step: str,
) -> tuple[np.ndarray, int, int]:
    """The kept series (from the first fit row) extended by the rows sent: (series, origin, cut).

    The origin is the row of the last row sent; the first cut rows are the kept series' own.

    kept_times are int64 nanoseconds as DatetimeIndex.asi8 gives them (UTC when tz-aware).
    """
    sent_ns = times.asi8
    before = int(np.searchsorted(kept_times, sent_ns[0], side="left"))
    # Rows sent over the fit rows give way to the kept ones: those are what the model was fit
    # on and what the evaluation filtered, and a revised fit row would move the forecast off
    # the one scored without a refit. After the fit end (all_rows: false keeps the validation
    # and test rows too) the rows sent win: they are the client's latest word on those steps,
    # as on every step after the kept series.
    cut = max(before, fit_rows)
    newer = sent_ns > kept_times[cut - 1]
    if not newer.any():
        # Every row sent is at or before a kept row: the origin is the kept row of the last.
        at = int(np.searchsorted(kept_times[:cut], sent_ns[-1]))
        if at >= cut or kept_times[at] != sent_ns[-1]:
            raise ForecastInputError(
                f"the last row sent, {times[-1]}, is not a step of the series the model was fit on"
            )
        return kept[: at + 1], at, at + 1
    first = int(np.argmax(newer))
    if frequency != ROWS:  # with frequency "rows" each row is the next step: no gap to see
        end = _stamp(int(kept_times[cut - 1]), times.tz)
        after = pd.date_range(end, periods=2, freq=features.step_offset(step, end))[1]
        if times[first] != after:
            what = "fit on" if cut == fit_rows else "kept (refit)"
            if times[first] < after:
                raise ForecastInputError(
                    f"the row sent at {times[first]} is off the {step} grid of the series "
                    f"the model was {what}: its step after {end} is {after}"
                )
            gap = pd.date_range(after, times[first], freq=features.step_offset(step, after))
            raise ForecastInputError(
                f"a gap between the series the model was {what} (up to {end}) and the "
                f"rows sent (from {times[first]}): the {len(gap) - 1} step(s) {after} .. "
                f"{gap[-2]} are missing; send every row from {after} on (or refit the model)"
            )
    series = np.concatenate([kept[:cut], sent[first:]])
    return series, len(series) - 1, cut


def _stamp(nanoseconds: int, tz: Any) -> pd.Timestamp:
    """A kept time (asi8) as a Timestamp in the time zone of the rows sent."""
    if tz is None:
        return pd.Timestamp(nanoseconds)
    return pd.Timestamp(nanoseconds, tz="UTC").tz_convert(tz)


def padded_size(rows: int) -> int:
    """The batch size rows are padded to: the next power of two, at most PREDICT_BATCH."""
    return min(PREDICT_BATCH, 1 << max(rows - 1, 0).bit_length())


def network_predict(model: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
    """A Keras network's outputs for a batch, run compiled for the batch's padded size."""
    rows = len(batch["past"])
    if rows >= PREDICT_BATCH:
        return np.asarray(model.predict_on_batch(batch))  # evaluation: Keras' own traced step
    size = padded_size(rows)
    padded = {name: _pad(array, size) for name, array in batch.items()}
    return np.asarray(_compiled(model, size)(padded))[:rows]


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """array with zero rows appended up to size rows (each row is forecast on its own)."""
    if len(array) == size:
        return array
    out = np.zeros((size, *array.shape[1:]), dtype=array.dtype)
    out[: len(array)] = array
    return out


def _compiled(model: Any, size: int) -> Callable[[dict[str, np.ndarray]], Any]:
    """The model's compiled inference call for batches of size rows, made on first use."""
    with _COMPILED_LOCK:  # server threads: one function per size, hence one trace
        functions = _COMPILED.setdefault(model, {})
        if size not in functions:
            functions[size] = _compile(model, size)
        return functions[size]


def _compile(model: Any, size: int) -> Callable[[dict[str, np.ndarray]], Any]:
    """Inference for batches of exactly size rows: XLA on TensorFlow, Keras' own jit on JAX."""
    import keras

    # A weak reference: the function is the cache's value, and must not keep its key alive.
    network = weakref.ref(model)
    if keras.backend.backend() != "tensorflow":
        # JAX's predict_on_batch compiles once per input shape, and padding bounds the shapes.
        return lambda inputs: network().predict_on_batch(inputs)
    import tensorflow as tf

    signature = {x.name: tf.TensorSpec((size, *x.shape[1:]), x.dtype) for x in model.inputs}

    def call(inputs: dict[str, Any]) -> Any:
        return network()(inputs, training=False)

    # One fixed shape, traced here once; XLA fuses the recurrent steps (under 1 ms a series),
    # and the concrete function skips tf.function's per-call argument matching (~0.3 ms).
    compiled = tf.function(call, input_signature=[signature], jit_compile=True)
    return compiled.get_concrete_function()


def forecaster_for(name: str, loaded: dict, predictor: Any = None, spec: InputSpec | None = None):
    """A Forecaster over the window stage's series: a baseline, the linear rival or a network."""
    return from_settings(name, spec or loaded["spec"], loaded["meta"], predictor)


def from_settings(name: str, spec: InputSpec, settings: dict, predictor: Any) -> Forecaster:
    """A Forecaster from forecaster.json or the window stage's meta.json (the same keys)."""
    return Forecaster(
        name=name,
        spec=spec,
        timestamp=settings["timestamp"],
        columns=settings["columns"],
        frequency=settings["frequency"],
        step_frequency=settings.get("step_frequency"),
        offset=np.asarray(settings["offset"]),
        scale=np.asarray(settings["scale"]),
        predictor=predictor,
        train_min=_array(settings.get("train_min")),
        train_max=_array(settings.get("train_max")),
        levels=[float(v) for v in settings.get("levels") or []],
        fit_rows=settings.get("fit_rows"),
        gap_policy=settings.get("gap_policy"),
        band_levels=settings.get("band_levels"),
        band_scale=settings.get("band_scale"),
    )


def parse_times(raw: pd.Series) -> pd.DatetimeIndex:
    """Timestamps sent as text or dates; a ForecastInputError naming the column if one fails."""
    if pd.api.types.is_string_dtype(raw) or pd.api.types.is_object_dtype(raw):
        # The layout every answer and example uses, tried first: pandas' per-request guess of
        # the format costs more than the parse itself (0.6 against 0.27 ms for 432 rows).
        try:
            return pd.DatetimeIndex(pd.to_datetime(raw, format=TIME_FORMAT))
        except (ValueError, TypeError):
            pass  # another layout (a date, an offset, ISO 'T'): pandas guesses, as before
    try:
        return pd.DatetimeIndex(pd.to_datetime(raw))
    except (ValueError, TypeError) as err:
        raise ForecastInputError(f"column {raw.name}: unparseable timestamp: {err}") from None


def cell_values(
    sent: pd.DataFrame, times: pd.DatetimeIndex, columns: list[str] | None = None
) -> np.ndarray:
    """Every value sent in columns (all) as a float, NaN where empty; refused where text."""
    # Columns one at a time: selecting a list of them first copies the frame (~0.5 ms).
    columns = list(sent.columns) if columns is None else columns
    values = np.empty((len(sent), len(columns)))
    for j, column in enumerate(columns):
        try:
            numbers = pd.to_numeric(sent[column], errors="coerce")
        except OverflowError as err:  # an integer with hundreds of digits
            raise ForecastInputError(f"column {column}: {err}") from None
        text = (numbers.isna() & sent[column].notna()).to_numpy()
        if text.any():
            at = int(np.argmax(text))
            shown = repr(sent[column].iloc[at])
            shown = shown if len(shown) <= 40 else shown[:36] + "...'"
            raise ForecastInputError(
                f"column {column}: {shown} at {times[at]} ({_row(at, len(times))}) is not a number"
            )
        values[:, j] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def _row(at: int, rows: int) -> str:
    """Where a row sits in the history sent, counted from 0 as in the request's data."""
    return f"row {at} of the {rows} sent"


def _array(values: list | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64)


def _predictor_kind(predictor: Any) -> str:
    if predictor is None:
        return "none"
    if hasattr(predictor, "forecast_targets"):
        return "statistical"
    return "keras" if hasattr(predictor, "predict_on_batch") else "linear"
