"""The pyfunc model: same forecasts as the Forecaster offline and from `seqcast serve`.

Requests here go through the server's scoring function in-process; tests/faults/ sends them to
a real server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc.scoring_server import invocations
from serving_helpers import CHAMPION, MODEL_NAME, SPEC, champion_store, raw_history, split

from seqcast import cli
from seqcast.models import serving
from seqcast.models.forecaster import Forecaster, ForecastOutputError
from seqcast.operations import server


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A small untrained GRU Forecaster, logged, registered and aliased champion."""
    with champion_store(tmp_path_factory.mktemp("serving")) as store:
        yield store


def test_pyfunc_forecast_equals_forecaster(logged: dict, tmp_path: Path) -> None:
    history = raw_history()
    expected = logged["forecaster"].forecast(history)
    loaded = mlflow.pyfunc.load_model(CHAMPION)

    pd.testing.assert_frame_equal(loaded.predict(history), expected)
    assert isinstance(loaded.unwrap_python_model().forecaster, Forecaster)
    assert serving.load(logged["info"].model_uri).spec == SPEC
    csv = tmp_path / "history.csv"
    history.to_csv(csv, index=False)
    pd.testing.assert_frame_equal(serving.forecast_csv(logged["folder"], csv), expected)
    pd.testing.assert_frame_equal(serving.forecast_csv(CHAMPION, csv), expected)


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


def _bad(kind: str) -> dict:
    """A dataframe_split request for 20 hours of history, broken in one way."""
    good = split(raw_history(20))
    data = [list(row) for row in good["data"]]
    if kind == "short":
        data = data[:5]
    elif kind == "missing":
        return {"columns": ["timestamp", "demand"], "data": [row[:2] for row in data]}
    elif kind == "renamed":
        return {"columns": ["time", "load"], "data": [row[:2] for row in data]}
    elif kind == "null":
        data[-1][1] = None
    elif kind == "unordered":
        data[-1], data[-2] = data[-2], data[-1]
    elif kind == "irregular":
        data[-1][0] = "2024-03-01 19:30:00"
    elif kind == "text":
        data[-1][2] = "warm"
    elif kind == "huge":
        data[-1][1] = 1e308
    elif kind == "bad-time":
        data[-1][0] = "yesterday"
    return {"columns": good["columns"], "data": data}


def _score(model: mlflow.pyfunc.PyFuncModel, body: bytes, content_type: str) -> tuple[int, dict]:
    """The server's answer to one request, without the HTTP layer."""
    response = server.score(body, content_type, server.CheckedModel(model))
    return response.status_code, json.loads(response.body)


@pytest.fixture(scope="module")
def model(logged: dict) -> mlflow.pyfunc.PyFuncModel:
    """The champion, loaded from the registry as the server loads it."""
    return mlflow.pyfunc.load_model(CHAMPION)


EXPECTED = "expected ['timestamp', 'demand', 'temp']"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (
            "short",
            "too little history: 5 rows given, 12 needed (input width 8 + reference season 4)",
        ),
        ("missing", f"missing column(s) ['temp']; {EXPECTED}, got ['timestamp', 'demand']"),
        (
            "renamed",
            f"missing column(s) ['timestamp', 'demand', 'temp']; {EXPECTED}, got ['time', 'load']",
        ),
        (
            "null",
            "1 null or non-finite value(s), first in column demand at 2024-03-01 19:00:00 "
            "(row 19 of the 20 sent)",
        ),
        (
            "unordered",
            "timestamps must be increasing every h with no gaps: row 18 of the 20 sent is "
            "2024-03-01 19:00:00, expected 2024-03-01 18:00:00",
        ),
        (
            "irregular",
            "timestamps must be increasing every h with no gaps: row 19 of the 20 sent is "
            "2024-03-01 19:30:00, expected 2024-03-01 19:00:00",
        ),
        (
            "text",
            "column temp: 'warm' at 2024-03-01 19:00:00 (row 19 of the 20 sent) is not a number",
        ),
        (
            "huge",
            "column demand: 1e+308 at 2024-03-01 19:00:00 "
            "(row 19 of the 20 sent) is outside the accepted range "
            "[300, 750] (training range [450, 600] widened by 1 times its width on each side); "
            "1 value(s) outside in all",
        ),
    ],
    ids=["short", "missing", "renamed", "null", "unordered", "irregular", "text", "huge"],
)
def test_bad_history_is_a_400_with_the_reason(
    model: mlflow.pyfunc.PyFuncModel, kind: str, message: str
) -> None:
    body = json.dumps({"dataframe_split": _bad(kind)}).encode()

    assert _score(model, body, "application/json") == (
        400,
        {"error_code": "INVALID_PARAMETER_VALUE", "message": message},
    )


def test_unparseable_timestamp_is_a_400(model: mlflow.pyfunc.PyFuncModel) -> None:
    body = json.dumps({"dataframe_split": _bad("bad-time")}).encode()

    status, reply = _score(model, body, "application/json")

    assert status == 400 and set(reply) == {"error_code", "message"}
    assert reply["message"].startswith("column timestamp: unparseable timestamp: ")
    assert "yesterday" in reply["message"]


def _csv_with_text() -> bytes:
    """20 hours of history as CSV with text for a temperature, in a row the forecast uses."""
    history = raw_history(20).astype({"temp": object})
    history.loc[19, "temp"] = "warm"
    return history.to_csv(index=False).encode()


FORMATS = 'application/json ({"dataframe_split": ...} or {"dataframe_records": ...}) or text/csv'


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "message"),
    [
        (
            b"",
            "application/json",
            400,
            "BAD_REQUEST",
            f"the request body is empty: send history as {FORMATS}",
        ),
        (
            b"{nope",
            "application/json",
            400,
            "BAD_REQUEST",
            "the request body is not valid JSON: Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1)",
        ),
        (
            b"[1, 2]",
            "application/json",
            400,
            "BAD_REQUEST",
            'the JSON body must be an object with one key "dataframe_split" or '
            '"dataframe_records"; got a JSON list',
        ),
        (
            b"<history/>",
            "application/xml",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"content type 'application/xml': send {FORMATS}",
        ),
        (
            _csv_with_text(),
            "text/csv",
            400,
            "INVALID_PARAMETER_VALUE",
            "column temp: 'warm' at 2024-03-01 19:00:00 (row 19 of the 20 sent) is not a number",
        ),
    ],
    ids=["empty", "garbled", "json-list", "xml", "csv-text"],
)
def test_unusable_body_is_one_json_message(
    model: mlflow.pyfunc.PyFuncModel,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
    message: str,
) -> None:
    assert _score(model, body, content_type) == (status, {"error_code": code, "message": message})


def test_good_history_in_every_format_answers_like_the_forecaster(
    logged: dict, model: mlflow.pyfunc.PyFuncModel
) -> None:
    history = raw_history(20)
    expected = logged["forecaster"].forecast(history)
    bodies = {
        "application/json": json.dumps({"dataframe_split": split(history)}),
        "application/json; charset=utf-8": json.dumps(
            {"dataframe_records": history.to_dict(orient="records")}
        ),
        "text/csv": history.to_csv(index=False),
    }
    for content_type, body in bodies.items():
        status, reply = _score(model, body.encode(), content_type)

        assert status == 200, reply
        served = pd.DataFrame(reply["predictions"])
        assert served["timestamp"].tolist() == expected["timestamp"].tolist()
        np.testing.assert_allclose(served["demand"], expected["demand"], rtol=1e-6)


def test_model_without_training_range_never_answers_a_non_finite_forecast(logged: dict) -> None:
    # A model saved before the window stage recorded the training range: no range check.
    old = mlflow.pyfunc.load_model(CHAMPION)
    forecaster = old.unwrap_python_model().forecaster
    forecaster.train_min = forecaster.train_max = None
    history = pd.DataFrame(_bad("huge")["data"], columns=["timestamp", "demand", "temp"])
    message = (
        "the forecast of demand for 2024-03-01 20:00:00 is not a finite number; "
        "no forecast is returned rather than NaN or infinity"
    )

    assert forecaster.check_history(history)[0][-1, 0] == 1e308
    with pytest.raises(ForecastOutputError, match="not a finite number"):
        forecaster.forecast(history)
    body = json.dumps({"dataframe_split": _bad("huge")}).encode()
    assert _score(old, body, "application/json") == (
        500,
        {"error_code": "INTERNAL_ERROR", "message": message},
    )


def test_mlflow_scoring_server_gets_the_reason_too(model: mlflow.pyfunc.PyFuncModel) -> None:
    # `mlflow models serve` of the same model: the reason, without the request dump.
    body = json.dumps({"dataframe_split": _bad("short")})
    with pytest.raises(mlflow.exceptions.MlflowException) as caught:
        invocations(body, "application/json", model, model.metadata.get_input_schema())
    reply = json.loads(caught.value.serialize_as_json())

    assert caught.value.get_http_status_code() == 400
    assert reply["message"].startswith("too little history: 5 rows given, 12 needed")
    assert "stack_trace" not in reply


def test_request_limit_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(server.MAX_REQUEST_BYTES_ENV, raising=False)
    assert server.max_request_bytes() == 10 * 2**20
    monkeypatch.setenv(server.MAX_REQUEST_BYTES_ENV, "2048")
    assert server.max_request_bytes() == 2048
    for bad in ("0", "-5", "10MB"):
        monkeypatch.setenv(server.MAX_REQUEST_BYTES_ENV, bad)
        with pytest.raises(ValueError, match="expected a positive number of bytes"):
            server.max_request_bytes()


def test_answer_names_the_model_version(logged: dict, model: mlflow.pyfunc.PyFuncModel) -> None:
    identity = serving.identify(CHAMPION)
    pinned = f"models:/{MODEL_NAME}/1"
    body = json.dumps({"dataframe_split": split(raw_history(20))}).encode()

    answer = server.score(body, "application/json", server.CheckedModel(model), identity)
    refused = server.score(b"", "application/json", server.CheckedModel(model), identity)

    assert identity == serving.ModelIdentity(uri=pinned, name=MODEL_NAME, version="1")
    assert identity.describe() == f"version 1 of {MODEL_NAME} ({pinned})"
    expected = {"x-model-name": MODEL_NAME, "x-model-version": "1", "x-model-uri": pinned}
    for response in (answer, refused):
        assert {k: v for k, v in response.headers.items() if k.startswith("x-model")} == expected
    reply = json.loads(answer.body)
    assert (reply["model_name"], reply["model_version"], reply["model_uri"]) == (
        MODEL_NAME,
        "1",
        pinned,
    )
    assert len(reply["predictions"]) == SPEC.horizon
    assert serving.identify(pinned) == identity
    run_uri = logged["info"].model_uri
    assert serving.identify(run_uri) == serving.ModelIdentity(uri=run_uri)


def test_forecast_command_says_which_model(
    logged: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "history.csv"
    raw_history(20).to_csv(csv, index=False)

    assert cli.main(["forecast", "--input", str(csv), "--model", CHAMPION]) == 0

    out, err = capsys.readouterr()
    assert out.startswith("timestamp,demand")
    assert err == (
        f"seqcast forecast: {CHAMPION}: version 1 of {MODEL_NAME} (models:/{MODEL_NAME}/1)\n"
    )


# The served_model.py every model logged before src/seqcast moved into packages carries: MLflow
# runs this copy on load, so that old module path must keep answering (an import shim after
# issue 25, which relayout.py writes).
SERVED_MODEL_BEFORE_THE_MOVE = """\
from mlflow.models import set_model

from seqcast.serving import ForecastModel  # the path before the move (relayout: keep)

set_model(ForecastModel())
"""


def test_a_model_logged_before_the_package_move_still_loads_and_serves(
    logged: dict, tmp_path: Path
) -> None:
    code = tmp_path / "served_model.py"
    code.write_text(SERVED_MODEL_BEFORE_THE_MOVE)
    mlflow.set_tracking_uri(logged["uri"])
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("serving").experiment_id):
        info = mlflow.pyfunc.log_model(
            name="old_layout",
            python_model=str(code),
            artifacts={serving.ARTIFACT: str(logged["folder"])},
            pip_requirements=serving.requirements(),
        )
    history = raw_history()
    loaded = mlflow.pyfunc.load_model(info.model_uri)

    pd.testing.assert_frame_equal(loaded.predict(history), logged["forecaster"].forecast(history))


def test_loading_the_model_traces_the_one_series_call(logged: dict) -> None:
    """load_context warms the compiled path: no request pays the trace."""
    from seqcast.models.forecaster import _COMPILED

    forecaster = mlflow.pyfunc.load_model(CHAMPION).unwrap_python_model().forecaster

    assert list(_COMPILED[forecaster.predictor]) == [1]


def test_server_answers_as_the_pyfunc_with_one_check(
    logged: dict, model: mlflow.pyfunc.PyFuncModel
) -> None:
    """The server forecasts from its own checks, not through the pyfunc: the same answer."""
    sent = split(raw_history())
    body = json.dumps({"dataframe_split": sent}).encode()

    response = server.score(body, "application/json", server.CheckedModel(model))

    assert response.status_code == 200
    served = pd.DataFrame(json.loads(response.body)["predictions"])
    expected = model.predict(pd.DataFrame(sent["data"], columns=sent["columns"]))
    pd.testing.assert_frame_equal(served, expected, check_exact=True, check_dtype=False)


def test_workers_must_be_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--model", "models:/nothing/1", "--workers", "0"]) == 2
    assert "--workers 0: expected at least 1 server process" in capsys.readouterr().err
    assert 1 <= server.default_workers() <= server.MAX_DEFAULT_WORKERS
