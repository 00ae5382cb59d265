"""The Forecaster as an MLflow pyfunc model: logged once, served by `seqcast serve`.

The served model is a thin shell: `predict` is `Forecaster.forecast`, so the HTTP answer, the
offline `forecast_csv` answer and the evaluation code path are one and the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.types.schema import ColSpec, Schema

from seqcast import paths
from seqcast.forecaster import SETTINGS, Forecaster, ForecastInputError, ForecastOutputError

ARTIFACT = "forecaster"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
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
        """Load the Forecaster folder logged as the `forecaster` artifact."""
        self.forecaster = Forecaster.load(Path(context.artifacts[ARTIFACT]))

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Forecast after the history rows; a 400 naming the problem, a 500 if not finite."""
        if self.forecaster is None:
            raise MlflowException("ForecastModel.predict called before load_context")
        try:
            return self.forecaster.forecast(pd.DataFrame(model_input))
        except ForecastInputError as err:
            raise ForecastRequestError(str(err)) from None
        except ForecastOutputError as err:
            raise ForecastServerError(str(err)) from None


def signature(forecaster: Forecaster) -> ModelSignature:
    """Timestamp as text and value columns as doubles in; timestamp, targets and bands out."""
    # Inputs are optional so that MLflow's enforcement, which would answer a missing column
    # with a dump of the request, lets Forecaster.check_history name every missing column.
    # Enforcement also drops columns the signature lacks, so `seqcast serve` checks the
    # history as sent, before enforcement (seqcast.server).
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
    folder: Path, name: str = "model", input_example: pd.DataFrame | None = None
) -> ModelInfo:
    """Log a saved Forecaster folder as a pyfunc model in the active run."""
    folder = Path(folder)
    forecaster = Forecaster.load(folder)
    return mlflow.pyfunc.log_model(
        name=name,
        # A code file, not a pickled object: see seqcast.served_model.
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
    model_uri_or_folder: str | Path, csv_path: str | Path, identity: ModelIdentity | None = None
) -> pd.DataFrame:
    """The served model's answer for raw history in a CSV, without a server.

    With an identity from `identify`, the pinned version it names is loaded.
    """
    folder = Path(model_uri_or_folder)
    if (folder / SETTINGS).is_file():
        forecaster = Forecaster.load(folder)
    else:
        forecaster = load(identity.uri if identity else str(model_uri_or_folder))
    return forecaster.forecast(pd.read_csv(csv_path))
