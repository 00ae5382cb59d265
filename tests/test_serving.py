"""The pyfunc model: same forecasts as the Forecaster, offline and from `mlflow models serve`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.pyfunc.scoring_server import invocations

from seqcast import models, serving
from seqcast.config import ModelConfig
from seqcast.features import InputSpec
from seqcast.forecaster import Forecaster

MODEL_NAME = "seqcast-forecaster-test"
SPEC = InputSpec(
    input_width=8,
    horizon=3,
    shift=1,
    n_targets=1,
    n_values=2,
    n_calendar=4,
    reference="seasonal_naive",
    season=4,
    calendar_names=["time_of_day", "day_of_week"],
)


def raw_history(rows: int = 40) -> pd.DataFrame:
    """Raw rows as a client holds them: text timestamps, a target and a feature."""
    t = np.arange(rows)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-03-01", periods=rows, freq="h").strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "demand": 500 + 40 * np.sin(2 * np.pi * t / 24) + t,
            "temp": 10 + 3 * np.cos(2 * np.pi * t / 24),
        }
    )


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A small untrained GRU Forecaster, logged, registered and aliased champion."""
    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("serving", artifact_location=(root / "art").as_uri())
    forecaster = Forecaster(
        name="gru",
        spec=SPEC,
        timestamp="timestamp",
        columns=["demand", "temp"],
        frequency="h",
        offset=np.array([500.0, 10.0]),
        scale=np.array([40.0, 3.0]),
        predictor=models.build("gru", SPEC, ModelConfig(units=4)),
    )
    folder = root / "forecaster"
    forecaster.save(folder)
    with mlflow.start_run(experiment_id=experiment):
        info = serving.log_forecaster(folder, input_example=raw_history())
    version = mlflow.register_model(info.model_uri, MODEL_NAME).version
    MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", version)
    yield {
        "root": root,
        "uri": uri,
        "info": info,
        "folder": folder,
        "forecaster": Forecaster.load(folder),
    }
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


def test_pyfunc_forecast_equals_forecaster(logged: dict, tmp_path: Path) -> None:
    history = raw_history()
    expected = logged["forecaster"].forecast(history)
    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")

    pd.testing.assert_frame_equal(loaded.predict(history), expected)
    assert isinstance(loaded.unwrap_python_model().forecaster, Forecaster)
    assert serving.load(logged["info"].model_uri).spec == SPEC
    csv = tmp_path / "history.csv"
    history.to_csv(csv, index=False)
    pd.testing.assert_frame_equal(serving.forecast_csv(logged["folder"], csv), expected)
    pd.testing.assert_frame_equal(
        serving.forecast_csv(f"models:/{MODEL_NAME}@champion", csv), expected
    )


def test_signature_and_input_example(logged: dict) -> None:
    info = logged["info"]
    inputs = info.signature.inputs.to_dict()
    assert [(c["name"], c["type"]) for c in inputs] == [
        ("timestamp", "string"),
        ("demand", "double"),
        ("temp", "double"),
    ]
    example = mlflow.models.Model.load(info.model_uri).load_input_example()
    assert len(example) == SPEC.context == logged["forecaster"].min_history
    assert example["timestamp"].iloc[-1] == raw_history()["timestamp"].iloc[-1]


def _split(frame: pd.DataFrame) -> dict:
    return json.loads(frame.to_json(orient="split", index=False))


def _bad(kind: str) -> dict:
    """A dataframe_split request broken in one way."""
    good = _split(raw_history(20))
    data = [list(row) for row in good["data"]]
    if kind == "short":
        data = data[:5]
    elif kind == "missing":
        return {"columns": ["timestamp", "demand"], "data": [row[:2] for row in data]}
    elif kind == "null":
        data[-1][1] = None
    elif kind == "unordered":
        data[-1], data[-2] = data[-2], data[-1]
    elif kind == "irregular":
        data[-1][0] = "2024-03-01 19:30:00"
    elif kind == "text":
        data[-1][2] = "warm"
    elif kind == "bad-time":
        data[-1][0] = "yesterday"
    return {"columns": good["columns"], "data": data}


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("short", "5 rows given, 12 needed"),
        ("missing", "missing column(s) ['temp']"),
        ("null", "null or non-finite value(s), first in column demand"),
        ("unordered", "timestamps must be increasing every h"),
        ("irregular", "timestamps must be increasing every h"),
        ("text", "Failed to convert column temp"),
        ("bad-time", "unparseable timestamp"),
    ],
)
def test_bad_request_is_a_400_with_the_reason(logged: dict, kind: str, says: str) -> None:
    model = mlflow.pyfunc.load_model(logged["info"].model_uri)
    body = json.dumps({"dataframe_split": _bad(kind)})
    with pytest.raises(mlflow.exceptions.MlflowException) as caught:
        invocations(body, "application/json", model, model.metadata.get_input_schema())
    reply = json.loads(caught.value.serialize_as_json())
    assert caught.value.get_http_status_code() == 400
    assert says in reply["message"]
    assert "Traceback" not in reply["message"] and "stack_trace" not in reply


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def server(logged: dict, tmp_path: Path) -> Iterator[str]:
    """`mlflow models serve` of the champion alias; stopped (its process group) afterwards."""
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    # The CLI starts `uvicorn` by name through bash, so the venv's bin must be on PATH.
    env = os.environ | {
        "MLFLOW_TRACKING_URI": logged["uri"],
        "KERAS_BACKEND": "tensorflow",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    mlflow_cli = bin_dir / "mlflow"
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [
            str(mlflow_cli),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL_NAME}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("server did not start:\n" + (tmp_path / "serve.log").read_text())
            time.sleep(0.5)
        yield base
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen) -> None:
    """Stop the process group we started: the CLI runs uvicorn as its child."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):  # every process already gone
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_served_champion_answers_like_the_forecaster(logged: dict, server: str) -> None:
    history = raw_history()
    expected = logged["forecaster"].forecast(history)

    status, reply = _post(f"{server}/invocations", {"dataframe_split": _split(history)})

    assert status == 200
    served = pd.DataFrame(reply["predictions"])
    assert list(served.columns) == ["timestamp", "demand"]
    assert served["timestamp"].tolist() == expected["timestamp"].tolist()
    np.testing.assert_allclose(served["demand"], expected["demand"], rtol=1e-9)

    status, reply = _post(f"{server}/invocations", {"dataframe_split": _bad("short")})
    assert status == 400
    assert reply["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "5 rows given, 12 needed" in reply["message"]
