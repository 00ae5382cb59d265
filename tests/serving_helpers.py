"""A small champion model in a temp MLflow store, and `seqcast serve` of it on a free port."""

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

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from seqcast.core.config import ModelConfig
from seqcast.data.features import InputSpec
from seqcast.models import networks, serving
from seqcast.models.forecaster import Forecaster

SRC = Path(__file__).resolve().parents[1] / "src"
MODEL_NAME = "seqcast-forecaster-test"
CHAMPION = f"models:/{MODEL_NAME}@champion"
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
# Training range of the test model: served demand must lie in [300, 750], temp in [-5, 25].
TRAIN_MIN = np.array([450.0, 5.0])
TRAIN_MAX = np.array([600.0, 15.0])


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


def split(frame: pd.DataFrame) -> dict:
    """A frame in MLflow's dataframe_split layout."""
    return json.loads(frame.to_json(orient="split", index=False))


@contextlib.contextmanager
def champion_store(root: Path, gap_policy: dict | None = None) -> Iterator[dict]:
    """A small untrained GRU Forecaster, logged, registered and aliased champion under root.

    MLFLOW_TRACKING_URI points at the store until the context ends. Without a gap_policy the
    model is one saved before policies were recorded: every row sent must be complete.
    """
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("serving", artifact_location=(root / "art").as_uri())
        forecaster = Forecaster(
            name="gru",
            spec=SPEC,
            timestamp="timestamp",
            columns=["demand", "temp"],
            frequency="h",
            offset=np.array([500.0, 10.0]),
            scale=np.array([40.0, 3.0]),
            predictor=networks.build("gru", SPEC, ModelConfig(units=4)),
            train_min=TRAIN_MIN,
            train_max=TRAIN_MAX,
            gap_policy=gap_policy,
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
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def seqcast_server(uri: str, folder: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`seqcast serve` of the champion (this checkout's code), until the context ends."""
    port = free_port()
    # The subprocess imports this checkout's seqcast, not the one the venv was installed from.
    pythonpath = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    full_env = os.environ | {
        "MLFLOW_TRACKING_URI": uri,
        "KERAS_BACKEND": "tensorflow",
        "PYTHONPATH": pythonpath,
    }
    command = [sys.executable, "-m", "seqcast.cli", "serve", "--model", CHAMPION]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log_path = folder / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            env=full_env | (env or {}),
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/ping", timeout=2) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start:\n" + log_path.read_text())
                time.sleep(0.5)
            yield base
        finally:
            stop(process)


def stop(process: subprocess.Popen) -> None:
    """Stop the process group we started, politely first."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):  # every process already gone
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    """POST a body; (status, response text), errors included."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
