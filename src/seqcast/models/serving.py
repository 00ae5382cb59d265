"""The Forecaster as an MLflow pyfunc model: logged once, served by `seqcast serve`.

The served model is a thin shell: `predict` is `Forecaster.forecast`, so the HTTP answer, the
offline `forecast_csv` answer and the evaluation code path are one and the same.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.types.schema import ColSpec, Schema

from seqcast.core import paths
from seqcast.core.config import ROWS
from seqcast.data.series import _runs as runs
from seqcast.models import fastpath
from seqcast.models.forecaster import (
    SETTINGS,
    TIME_FORMAT,
    Forecaster,
    ForecastInputError,
    ForecastOutputError,
    _row,
    cell_values,
    parse_times,
)

ARTIFACT = "forecaster"
# Pinned for other env managers; `--env-manager local` serves from this environment, which
# also provides seqcast itself (installed from this checkout).
REQUIREMENTS = (
    "mlflow",
    "cloudpickle",
    "keras",
    "tensorflow-cpu",
    "numpy",
    "pandas",
    "scikit-learn",
    "statsforecast",  # a served statistical rival unpickles its statsforecast fits
)


class ForecastRequestError(MlflowException):
    """Unusable forecast input: HTTP 400 (or error_code's status) whose message is the reason."""

    def __init__(self, reason: str, error_code: int = INVALID_PARAMETER_VALUE) -> None:
        super().__init__(reason, error_code=error_code)
        self.reason = reason

    def serialize_as_json(self) -> str:
        """The server's error body; the reason without the request dump the server prepends."""
        # mlflow's scoring server rewrites `message` to "Failed to predict data '<whole request
        # frame>'. Error: ..." before serialising; the caller only needs the reason.
        body = json.loads(super().serialize_as_json())
        return json.dumps(body | {"message": self.reason})


class ForecastServerError(ForecastRequestError):
    """No usable forecast for usable input (e.g. not finite): HTTP 500 with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, error_code=INTERNAL_ERROR)


class ForecastModel(mlflow.pyfunc.PythonModel):
    """Raw recent history in, the next horizon of every target out (series units)."""

    def __init__(self) -> None:
        self.forecaster: Forecaster | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the Forecaster folder logged as the `forecaster` artifact, its network warmed."""
        self.forecaster = Forecaster.load(Path(context.artifacts[ARTIFACT]))
        # Traced at load, not by the first request (a second or so, and no retracing later).
        self.forecaster.warm_up()

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Forecast after the history rows; a 400 naming the problem, a 500 if not finite."""
        if self.forecaster is None:
            raise MlflowException("ForecastModel.predict called before load_context")
        forecaster = self.forecaster
        try:
            # A plain frame is read straight into arrays; any other goes through the checks.
            plain = isinstance(model_input, pd.DataFrame) and fastpath.frame_rows(
                forecaster, model_input
            )
            read = fastpath.plain_history(forecaster, *plain) if plain else None
            if read is None:
                read = fill_gaps(forecaster, pd.DataFrame(model_input)).checked(forecaster)
            return forecaster.forecast_checked(*read)
        except ForecastInputError as err:
            raise ForecastRequestError(str(err)) from None
        except ForecastOutputError as err:
            raise ForecastServerError(str(err)) from None


def signature(forecaster: Forecaster) -> ModelSignature:
    """Timestamp as text and value columns as doubles in; timestamp, targets and bands out."""
    # Inputs are optional so that MLflow's enforcement, which would answer a missing column
    # with a dump of the request, lets Forecaster.check_history name every missing column.
    # Enforcement also drops columns the signature lacks, so `seqcast serve` checks the
    # history as sent, before enforcement (seqcast.operations.server).
    inputs = [ColSpec("string", forecaster.timestamp, required=False)]
    inputs += [ColSpec("double", column, required=False) for column in forecaster.columns]
    outputs = [ColSpec("string", forecaster.timestamp)]
    outputs += [ColSpec("double", column) for column in forecaster.targets]
    outputs += [ColSpec("double", column) for column in forecaster.band_columns()]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def example(forecaster: Forecaster, history: pd.DataFrame) -> pd.DataFrame:
    """The last min_history rows of raw history, timestamps as text like a JSON request."""
    rows = history[[forecaster.timestamp, *forecaster.columns]].tail(forecaster.min_history)
    rows = rows.reset_index(drop=True)
    stamps = rows[forecaster.timestamp]
    if not pd.api.types.is_string_dtype(stamps) and not pd.api.types.is_object_dtype(stamps):
        rows[forecaster.timestamp] = pd.to_datetime(stamps).dt.strftime(TIME_FORMAT)
    return rows.astype({c: "float64" for c in forecaster.columns})


def requirements() -> list[str]:
    """Pinned pip requirements of the served model (skips MLflow's slow inference)."""
    pinned = []
    for name in REQUIREMENTS:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pinned


def log_forecaster(
    folder: Path,
    name: str = "model",
    input_example: pd.DataFrame | None = None,
    forecaster: Forecaster | None = None,
) -> ModelInfo:
    """Log a saved Forecaster folder as a pyfunc model in the active run."""
    folder = Path(folder)
    # The caller's copy of what the folder holds, when it has one: loading a network costs
    # a Keras model build (about a second), and MLflow loads it once more to check the example.
    forecaster = forecaster if forecaster is not None else Forecaster.load(folder)
    return mlflow.pyfunc.log_model(
        name=name,
        # A code file, not a pickled object: see seqcast.models.served_model.
        python_model=str(Path(__file__).with_name("served_model.py")),
        artifacts={ARTIFACT: str(folder)},
        signature=signature(forecaster),
        input_example=None if input_example is None else example(forecaster, input_example),
        pip_requirements=requirements(),
    )


def use_project_store() -> None:
    """Point MLflow at the project's store unless a tracking URI is already set."""
    # A registry URI such as models:/name@alias needs the project's store, not MLflow's default.
    if not mlflow.is_tracking_uri_set():
        mlflow.set_tracking_uri(paths.tracking_uri())


@dataclass(frozen=True)
class ModelIdentity:
    """Which model answers: registered name and version when it is in the registry, and its URI."""

    uri: str
    name: str = ""
    version: str = ""

    def headers(self) -> dict[str, str]:
        """X-Model-Name, X-Model-Version (when registered) and X-Model-Uri of every answer."""
        found = {"X-Model-Name": self.name, "X-Model-Version": self.version}
        return {key: value for key, value in found.items() if value} | {"X-Model-Uri": self.uri}

    def fields(self) -> dict[str, str]:
        """The same facts as JSON body fields: model_name, model_version, model_uri."""
        return {
            key.removeprefix("X-").lower().replace("-", "_"): v for key, v in self.headers().items()
        }

    def describe(self) -> str:
        """One line for people: version N of NAME (URI), or the URI alone."""
        if self.version:
            return f"version {self.version} of {self.name} ({self.uri})"
        return self.uri


def identify(model_uri: str) -> ModelIdentity:
    """Pin models:/name@alias (or /version) to its version now, so the answer can name it."""
    if not model_uri.startswith("models:/"):
        return ModelIdentity(uri=model_uri)  # a run's model or a folder: no registry version
    use_project_store()
    name, sep, alias = model_uri.removeprefix("models:/").partition("@")
    if sep:
        # Resolved once, before loading: if the alias moves later, this server still says
        # which version it loaded and answers with.
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
    else:
        name, _, version = name.partition("/")
        if not version.isdigit():  # a logged model (models:/m-<id>), models:/name/latest
            return ModelIdentity(uri=model_uri)
    return ModelIdentity(uri=f"models:/{name}/{version}", name=name, version=str(version))


def load(model_uri: str) -> Forecaster:
    """The Forecaster inside a logged or registered model (e.g. models:/name@champion)."""
    use_project_store()
    model = mlflow.pyfunc.load_model(model_uri)
    return model.unwrap_python_model().forecaster


def forecast_csv(
    model_uri_or_folder: str | Path,
    csv_path: str | Path,
    identity: ModelIdentity | None = None,
    say: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """The served model's answer for raw history in a CSV, without a server.

    With an identity from `identify`, the pinned version it names is loaded; `say` hears which
    rows the model reads were filled, if any.
    """
    folder = Path(model_uri_or_folder)
    if (folder / SETTINGS).is_file():
        forecaster = Forecaster.load(folder)
    else:
        forecaster = load(identity.uri if identity else str(model_uri_or_folder))
    prepared = fill_gaps(forecaster, pd.read_csv(csv_path, float_precision="round_trip"))
    answer = forecaster.forecast(prepared.history)
    if say is not None and prepared.filled:
        say(prepared.describe())
    return answer


# --- the params' gap policy, applied to the rows a served model reads ------------------------


@dataclass(frozen=True)
class GapPolicy:
    """What the pipeline accepts and interpolates (params.yaml), carried by a served model."""

    max_gap_steps: int
    max_null_fraction: float
    max_filled_fraction: float
    bounds: dict[str, tuple[float, float]]

    @classmethod
    def of(cls, forecaster: Forecaster) -> GapPolicy | None:
        """The forecaster's policy; None for a model saved before policies were recorded."""
        found = forecaster.gap_policy
        if found is None:
            return None
        return cls(
            max_gap_steps=int(found["max_gap_steps"]),
            max_null_fraction=float(found["max_null_fraction"]),
            max_filled_fraction=float(found["max_filled_fraction"]),
            bounds={c: (float(lo), float(hi)) for c, (lo, hi) in found["bounds"].items()},
        )

    @property
    def fills_empty_cells(self) -> bool:
        """True when validation lets empty cells through for normalise to interpolate."""
        return self.max_null_fraction > 0 and self.max_filled_fraction > 0

    @property
    def fills_missing_rows(self) -> bool:
        """True when normalise interpolates steps absent from the time grid."""
        return self.max_filled_fraction > 0


@dataclass(frozen=True)
class FilledHistory:
    """The history a forecast reads, and the timestamps of its rows filled by interpolation."""

    history: pd.DataFrame
    filled: list[str]
    max_gap_steps: int = 0
    # The rows read as Forecaster.check_history would return them from `history`, when that
    # could only repeat the checks made here (see checked); None: check_history decides.
    values: np.ndarray | None = None
    times: pd.DatetimeIndex | None = None

    def checked(self, forecaster: Forecaster) -> tuple[np.ndarray, pd.DatetimeIndex]:
        """The (values, times) a forecast reads: Forecaster.check_history's, run only if needed."""
        if self.times is not None and self.values is not None:
            return self.values, self.times
        return forecaster.check_history(self.history)

    def describe(self) -> str:
        """One line for people: which rows the model reads were interpolated."""
        return (
            f"{len(self.filled)} row(s) the model reads were missing or had an empty cell and "
            f"were interpolated (gaps up to split.max_gap_steps {self.max_gap_steps}): "
            + ", ".join(self.filled)
        )


def fill_gaps(forecaster: Forecaster, history: pd.DataFrame) -> FilledHistory:
    """The rows the model reads, gaps interpolated as the pipeline does; a ForecastInputError else.

    Every row sent must have a parseable, increasing timestamp and no text, infinity, value
    outside data.bounds or outside the accepted range. Gaps (missing steps, empty cells) are
    judged only in the steps the model reads (Forecaster.steps_read): each at most
    split.max_gap_steps long, between complete rows, and only of a kind validation lets
    through. A model without a gap policy gets the history back as sent, for
    Forecaster.check_history to judge every row.
    """
    policy = GapPolicy.of(forecaster)
    if policy is None:
        return FilledHistory(history, [])
    ts, columns = forecaster.timestamp, forecaster.columns
    needed = [ts, *columns]
    missing = [c for c in needed if c not in history.columns]
    if missing:
        raise ForecastInputError(
            f"missing column(s) {missing}; expected {needed}, got {list(history.columns)}"
        )
    if history.empty:
        raise ForecastInputError(f"too little history: 0 rows given; {_needed(forecaster)}")
    times = _times(history[ts])
    values = cell_values(history, times, columns)
    _check_values(forecaster, policy, values, times)
    grid, rows = _read_span(forecaster, policy, times)
    span = np.full((len(grid), len(columns)), np.nan)
    span[rows >= 0] = values[rows[rows >= 0]]
    filled = _judge_gaps(forecaster, policy, grid, rows, span, len(times))
    frame = pd.DataFrame(span, columns=columns)
    if filled.size:
        frame = frame.interpolate(method="linear", limit_area="inside")
    read = slice(len(grid) - forecaster.steps_read(times), None)
    out = frame.iloc[read].reset_index(drop=True)
    values = out.to_numpy(dtype=np.float64)
    # A tz-aware series keeps its UTC offset, as the forecast's own timestamps do.
    fmt = TIME_FORMAT + ("%z" if grid.tz is not None else "")
    out.insert(0, ts, grid[read].strftime(fmt))
    found = FilledHistory(out, [str(t) for t in grid[filled]], policy.max_gap_steps)
    # Every value sent passed the range checks, a gap is interpolated between complete rows,
    # and the steps are the grid's: check_history would find nothing more. It reads the rows
    # from their text, so the rows are handed on as they are only where the text says the
    # same (naive whole seconds on a grid: a time zone or a fraction of a second would differ).
    times = grid[read]
    same_text = times.tz is None and forecaster.frequency != ROWS
    if same_text and times.floor("s").equals(times) and np.isfinite(values).all():
        # In the time unit parsing the text gives (one row parsed, not all of them).
        unit = parse_times(out[ts].iloc[-1:]).unit
        times = pd.DatetimeIndex(times, freq=None).as_unit(unit)
        return dataclasses.replace(found, values=values, times=times)
    return found


def _needed(forecaster: Forecaster) -> str:
    """What a forecast needs, for a message about too little history."""
    spec = forecaster.spec
    season = f" + reference season {spec.season}" if spec.seasonal else ""
    return (
        f"the model reads the last {forecaster.min_history} steps "
        f"(input width {spec.input_width}{season})"
    )


def _times(raw: pd.Series) -> pd.DatetimeIndex:
    """Every timestamp sent, parsed; refused unless each parses and each is later than the last."""
    column = raw.name
    times = parse_times(raw)
    if times.isna().any():
        at = int(np.argmax(times.isna()))
        raise ForecastInputError(f"column {column}: missing timestamp at {_row(at, len(times))}")
    later = np.diff(times.asi8) > 0
    if not later.all():
        at = int(np.argmin(later)) + 1
        raise ForecastInputError(
            f"column {column}: timestamps must increase: {_row(at, len(times))} is "
            f"{times[at]}, after {times[at - 1]}"
        )
    return times


def _check_values(
    forecaster: Forecaster, policy: GapPolicy, values: np.ndarray, times: pd.DatetimeIndex
) -> None:
    """Refuse an infinity, a value outside data.bounds or outside the accepted range, anywhere."""
    # Empty cells (NaN) compare False everywhere below: they are gaps, judged where read.
    n = len(times)
    infinite = np.isinf(values)
    if infinite.any():
        row, col = np.argwhere(infinite)[0]
        raise ForecastInputError(
            f"column {forecaster.columns[col]}: {values[row, col]} at {times[row]} "
            f"({_row(row, n)}) is not a finite number"
        )
    low = np.array([policy.bounds.get(c, (-np.inf, np.inf))[0] for c in forecaster.columns])
    high = np.array([policy.bounds.get(c, (-np.inf, np.inf))[1] for c in forecaster.columns])
    outside = (values < low) | (values > high)
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise ForecastInputError(
            f"column {forecaster.columns[col]}: {values[row, col]:.10g} at {times[row]} "
            f"({_row(row, n)}) is outside data.bounds [{low[col]:g}, {high[col]:g}]; "
            f"{int(outside.sum())} value(s) outside in all"
        )
    forecaster.check_range(values, times)


def _read_span(
    forecaster: Forecaster, policy: GapPolicy, times: pd.DatetimeIndex
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The steps judged, and the row sent at each (-1: missing).

    They are the min_history steps the model reads and the max_gap_steps + 1 before them, which
    hold the complete row a gap at the start of the read rows is interpolated from.
    """
    steps = forecaster.steps_read(times) + policy.max_gap_steps + 1
    n = len(times)
    if forecaster.frequency == ROWS:  # each row is the next step: nothing can be missing
        if n < forecaster.min_history:
            raise ForecastInputError(f"too little history: {n} rows given; {_needed(forecaster)}")
        first = max(0, n - steps)
        return times[first:], np.arange(first, n)
    grid = pd.date_range(end=times[-1], periods=steps, freq=forecaster.frequency)
    if grid[-1] != times[-1]:
        raise ForecastInputError(
            f"column {forecaster.timestamp}: {_row(n - 1, n)} is {times[-1]}, off the "
            f"{forecaster.frequency} grid (the step before it is {grid[-1]})"
        )
    start = int(times.searchsorted(grid[0]))
    found = grid.get_indexer(times[start:])
    if (found < 0).any():
        at = start + int(np.argmax(found < 0))
        before = grid[grid < times[at]][-1]
        raise ForecastInputError(
            f"column {forecaster.timestamp}: {_row(at, n)} is {times[at]}, off the "
            f"{forecaster.frequency} grid of the rows the model reads (between its steps "
            f"{before} and {before + grid.freq})"
        )
    rows = np.full(steps, -1)
    rows[found] = np.arange(start, n)
    return grid, rows


def _judge_gaps(
    forecaster: Forecaster,
    policy: GapPolicy,
    grid: pd.DatetimeIndex,
    rows: np.ndarray,
    span: np.ndarray,
    sent: int,
) -> np.ndarray:
    """Positions of the read steps to interpolate; a ForecastInputError for a gap refused."""
    first_read = len(grid) - forecaster.steps_read(grid)
    reads = f"the {len(grid) - first_read} steps the model reads, from {grid[first_read]}"
    held = np.flatnonzero(rows >= 0)
    # Rows sent before the judged steps: a gap at their start is longer than it looks here.
    earlier = rows[held[0]] > 0
    filled: list[int] = []
    for start, length in runs(np.isnan(span).any(axis=1)):
        end = start + length
        if end <= first_read:
            continue  # never read: the pipeline's limits are not the request's business
        what = _gap_detail(forecaster, grid, rows, span, start, end, sent)
        if start == 0 and not earlier:
            if held[0] > first_read:
                raise ForecastInputError(
                    f"too little history: {sent} rows given, from {grid[held[0]]}; "
                    f"{_needed(forecaster)}, from {grid[first_read]}"
                )
            raise ForecastInputError(
                f"the history sent begins with a gap ({what}) in {reads}: a gap is "
                "interpolated between complete rows, so send a complete row before it"
            )
        if end == len(grid):
            since = f"{grid[start]}{' or earlier' if start == 0 else ''}"
            raise ForecastInputError(
                f"the history sent ends with a gap from {since} ({what}): a gap is "
                "interpolated between complete rows, so the last row sent must be complete"
            )
        if length > policy.max_gap_steps or start == 0:
            least = "at least " if start == 0 else ""
            raise ForecastInputError(
                f"a gap of {least}{length} steps from {grid[start]} to {grid[end - 1]} ({what}) "
                f"in {reads}: longer than split.max_gap_steps {policy.max_gap_steps}, the "
                "longest gap interpolated"
            )
        if (rows[start:end] < 0).any() and not policy.fills_missing_rows:
            raise ForecastInputError(
                f"a gap from {grid[start]} to {grid[end - 1]} ({what}) in {reads}: "
                f"data.max_filled_fraction {policy.max_filled_fraction:g} lets no gap be "
                "interpolated"
            )
        if (rows[start:end] >= 0).any() and not policy.fills_empty_cells:
            raise ForecastInputError(
                f"a gap from {grid[start]} to {grid[end - 1]} ({what}) in {reads}: "
                f"data.max_null_fraction {policy.max_null_fraction:g} and "
                f"data.max_filled_fraction {policy.max_filled_fraction:g} let no empty cell "
                "through to be interpolated"
            )
        filled += range(max(start, first_read), end)
    return np.array(filled, dtype=int)


def _gap_detail(
    forecaster: Forecaster,
    grid: pd.DatetimeIndex,
    rows: np.ndarray,
    span: np.ndarray,
    start: int,
    end: int,
    sent: int,
) -> str:
    """What a gap holds: steps missing from the grid, rows sent with an empty cell, and where."""
    inside = rows[start:end]
    parts = []
    missing = int((inside < 0).sum())
    if missing:
        parts.append(f"{missing} step(s) missing from the {forecaster.frequency} grid")
    given = inside[inside >= 0]
    if len(given):
        empty = np.isnan(span[start:end][inside >= 0]).any(axis=0)
        columns = ", ".join(c for c, e in zip(forecaster.columns, empty, strict=True) if e)
        where = f"row {given[0]}" if len(given) == 1 else f"rows {given[0]} to {given[-1]}"
        parts.append(f"{where} of the {sent} sent with an empty cell in {columns}")
    return "; ".join(parts)
