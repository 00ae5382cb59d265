"""A served model holds a request to the params' gap policy, as the pipeline holds the data.

Gaps the pipeline would interpolate (missing steps, empty cells, up to split.max_gap_steps) are
interpolated in the rows the model reads and reported; gaps before those rows are not judged;
values validation refuses (text, infinity, outside data.bounds) are refused anywhere.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import mlflow
import numpy as np
import pandas as pd
import pytest
from serving_helpers import CHAMPION, champion_store, post, raw_history, seqcast_server

from seqcast import cli
from seqcast.core.config import DataConfig
from seqcast.data import series
from seqcast.models import serving
from seqcast.models.forecaster import SETTINGS, Forecaster, ForecastInputError
from seqcast.operations import server

# The test model reads 12 hourly steps: rows 28 to 39 of raw_history(40), from 2024-03-02 04:00.
POLICY = {
    "max_gap_steps": 3,
    "max_null_fraction": 0.05,
    "max_filled_fraction": 0.1,
    "bounds": {"demand": [0.0, 1000.0]},
}
READS = "the 12 steps the model reads, from 2024-03-02 04:00:00"
FILLED = ["2024-03-02 06:00:00", "2024-03-02 07:00:00", "2024-03-02 11:00:00"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The small champion of serving_helpers, carrying POLICY."""
    with champion_store(tmp_path_factory.mktemp("gaps"), gap_policy=POLICY) as found:
        yield found


@pytest.fixture(scope="module")
def model(store: dict) -> mlflow.pyfunc.PyFuncModel:
    """The champion, loaded from the registry as the server loads it."""
    return mlflow.pyfunc.load_model(CHAMPION)


def gappy() -> pd.DataFrame:
    """40 hours with gaps the pipeline accepts: one far back, two inside the rows read."""
    history = raw_history(40)
    history.loc[5, "demand"] = np.nan  # far before the rows read
    history.loc[[30, 31], "temp"] = np.nan  # empty cells in the rows read
    return history.drop(index=35).reset_index(drop=True)  # a step missing from the grid


def pipeline_filled(history: pd.DataFrame) -> pd.DataFrame:
    """The history as seqcast.data.series.regularise fills it for training, timestamps as text."""
    cfg = DataConfig(
        path="request.csv",
        targets=["demand"],
        features=["temp"],
        frequency="h",
        max_null_fraction=POLICY["max_null_fraction"],
        max_filled_fraction=POLICY["max_filled_fraction"],
    )
    values, _ = series.regularise(history, cfg, POLICY["max_gap_steps"], "request")
    values.index = values.index.strftime("%Y-%m-%d %H:%M:%S")
    return values.reset_index()


def score(model: mlflow.pyfunc.PyFuncModel, history: pd.DataFrame) -> tuple[int, dict, dict]:
    """The server's answer to a CSV request, without the HTTP layer: status, body, headers."""
    body = history.to_csv(index=False).encode()
    response = server.score(body, "text/csv", server.CheckedModel(model))
    return response.status_code, json.loads(response.body), dict(response.headers)


def test_gaps_the_pipeline_accepts_are_interpolated_as_it_does_and_reported(
    store: dict, model: mlflow.pyfunc.PyFuncModel, tmp_path: Path
) -> None:
    history = gappy()
    expected = store["forecaster"].forecast(pipeline_filled(history))

    status, reply, headers = score(model, history)

    assert status == 200, reply
    assert reply["filled_rows"] == FILLED
    assert headers[server.FILLED_HEADER.lower()] == "3"
    served = pd.DataFrame(reply["predictions"])
    assert served["timestamp"].tolist() == expected["timestamp"].tolist()
    np.testing.assert_allclose(served["demand"], expected["demand"], rtol=1e-6)
    # The pyfunc model itself (`mlflow models serve`, Python callers) answers the same.
    pd.testing.assert_frame_equal(model.predict(history), expected)
    csv = tmp_path / "history.csv"
    history.to_csv(csv, index=False)
    said: list[str] = []
    pd.testing.assert_frame_equal(serving.forecast_csv(CHAMPION, csv, say=said.append), expected)
    assert said == [
        "3 row(s) the model reads were missing or had an empty cell and were interpolated "
        f"(gaps up to split.max_gap_steps 3): {', '.join(FILLED)}"
    ]


def test_forecast_command_says_which_rows_were_filled(
    store: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "history.csv"
    gappy().to_csv(csv, index=False)

    assert cli.main(["forecast", "--input", str(csv), "--model", CHAMPION, "--no-ledger"]) == 0

    out, err = capsys.readouterr()
    assert out.startswith("timestamp,demand")
    assert err.splitlines()[-1] == (
        "seqcast forecast: 3 row(s) the model reads were missing or had an empty cell and were "
        f"interpolated (gaps up to split.max_gap_steps 3): {', '.join(FILLED)}"
    )


def test_gaps_before_the_rows_read_are_not_judged(
    store: dict, model: mlflow.pyfunc.PyFuncModel
) -> None:
    # As in issue 31: a null hundreds of rows before the rows read refused the whole request.
    history = raw_history(40)
    history.loc[2, "demand"] = np.nan
    history.loc[8:20, "temp"] = np.nan  # 13 steps, longer than max_gap_steps, but never read
    history = history.drop(index=[22, 23]).reset_index(drop=True)

    status, reply, headers = score(model, history)

    assert status == 200, reply
    assert reply["filled_rows"] == [] and headers[server.FILLED_HEADER.lower()] == "0"
    expected = store["forecaster"].forecast(raw_history(40))
    np.testing.assert_allclose(
        pd.DataFrame(reply["predictions"])["demand"], expected["demand"], rtol=1e-6
    )


def _broken(kind: str) -> pd.DataFrame:
    """raw_history(40) broken in one way."""
    history = raw_history(40).astype({"demand": object, "temp": object})
    if kind == "long-gap":
        history.loc[30:33, "demand"] = None
    elif kind == "long-missing":
        history = history.drop(index=range(30, 34))
    elif kind == "straddling":
        history.loc[26:29, "temp"] = None
    elif kind == "last-row":
        history.loc[39, "temp"] = None
    elif kind == "first-rows":
        history = history.iloc[28:].reset_index(drop=True)
        history.loc[0, "demand"] = None
    elif kind == "too-little":
        history = history.iloc[:10]
    elif kind == "off-grid":
        history.loc[34, "timestamp"] = "2024-03-02 10:30:00"
    elif kind == "text":
        history.loc[3, "temp"] = "warm"
    elif kind == "inf":
        history.loc[10, "demand"] = np.inf
    elif kind == "bounds":
        history.loc[33, "demand"] = -5.0
    return history.reset_index(drop=True)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (
            "long-gap",
            "a gap of 4 steps from 2024-03-02 06:00:00 to 2024-03-02 09:00:00 (rows 30 to 33 of "
            f"the 40 sent with an empty cell in demand) in {READS}: longer than "
            "split.max_gap_steps 3, the longest gap interpolated",
        ),
        (
            "long-missing",
            "a gap of 4 steps from 2024-03-02 06:00:00 to 2024-03-02 09:00:00 (4 step(s) missing "
            f"from the h grid) in {READS}: longer than split.max_gap_steps 3, the longest gap "
            "interpolated",
        ),
        (
            "straddling",
            "a gap of 4 steps from 2024-03-02 02:00:00 to 2024-03-02 05:00:00 (rows 26 to 29 of "
            f"the 40 sent with an empty cell in temp) in {READS}: longer than "
            "split.max_gap_steps 3, the longest gap interpolated",
        ),
        (
            "last-row",
            "the history sent ends with a gap from 2024-03-02 15:00:00 (row 39 of the 40 sent "
            "with an empty cell in temp): a gap is interpolated between complete rows, so the "
            "last row sent must be complete",
        ),
        (
            "first-rows",
            "the history sent begins with a gap (4 step(s) missing from the h grid; row 0 of the "
            f"12 sent with an empty cell in demand) in {READS}: a gap is interpolated between "
            "complete rows, so send a complete row before it",
        ),
        (
            "too-little",
            "too little history: 10 rows given, from 2024-03-01 00:00:00; the model reads the "
            "last 12 steps (input width 8 + reference season 4), from 2024-02-29 22:00:00",
        ),
        (
            "off-grid",
            "column timestamp: row 34 of the 40 sent is 2024-03-02 10:30:00, off the h grid of "
            "the rows the model reads (between its steps 2024-03-02 10:00:00 and "
            "2024-03-02 11:00:00)",
        ),
        (
            "text",
            "column temp: 'warm' at 2024-03-01 03:00:00 (row 3 of the 40 sent) is not a number",
        ),
        (
            "inf",
            "column demand: inf at 2024-03-01 10:00:00 (row 10 of the 40 sent) is not a finite "
            "number",
        ),
        (
            "bounds",
            "column demand: -5 at 2024-03-02 09:00:00 (row 33 of the 40 sent) is outside "
            "data.bounds [0, 1000]; 1 value(s) outside in all",
        ),
    ],
    ids=lambda value: value if len(value) < 20 else "",
)
def test_what_the_pipeline_refuses_is_a_400_naming_it(
    model: mlflow.pyfunc.PyFuncModel, kind: str, message: str
) -> None:
    status, reply, _ = score(model, _broken(kind))

    assert (status, reply) == (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message})


def test_a_model_saved_without_a_policy_keeps_the_strict_check(store: dict, tmp_path: Path) -> None:
    folder = tmp_path / "old"
    store["forecaster"].save(folder)
    settings = json.loads((folder / SETTINGS).read_text())
    assert settings["gap_policy"] == POLICY
    del settings["gap_policy"]
    (folder / SETTINGS).write_text(json.dumps(settings))
    old = Forecaster.load(folder)
    history = gappy()

    assert old.gap_policy is None
    assert serving.fill_gaps(old, history).history is history
    with pytest.raises(ForecastInputError, match=r"^3 null or non-finite value\(s\), first in "):
        old.forecast(serving.fill_gaps(old, history).history)


def _post_with_headers(url: str, body: bytes) -> tuple[int, dict, dict]:
    """POST a CSV body; status, JSON body and headers (names in lower case), errors included."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "text/csv"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return (
                reply.status,
                json.loads(reply.read()),
                {k.lower(): v for k, v in reply.headers.items()},
            )
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), {k.lower(): v for k, v in err.headers.items()}


def test_seqcast_serve_answers_accepted_gaps_and_refuses_long_ones(
    store: dict, tmp_path: Path
) -> None:
    with seqcast_server(store["uri"], tmp_path) as base:
        url = f"{base}/invocations"
        status, reply, headers = _post_with_headers(url, gappy().to_csv(index=False).encode())
        refused = post(url, _broken("long-gap").to_csv(index=False).encode(), "text/csv")

    assert status == 200, reply
    assert reply["filled_rows"] == FILLED and headers[server.FILLED_HEADER.lower()] == "3"
    assert reply["model_version"] == "1" and len(reply["predictions"]) == 3
    assert refused[0] == 400
    assert json.loads(refused[1])["message"].startswith(
        "a gap of 4 steps from 2024-03-02 06:00:00 to 2024-03-02 09:00:00 (rows 30 to 33"
    )


@pytest.mark.parametrize("gaps", [False, True])
def test_the_rows_read_go_on_as_check_history_would_read_them(store: dict, gaps: bool) -> None:
    """fill_gaps hands its rows on unless check_history, reading their text, could differ."""
    forecaster = store["forecaster"]
    prepared = serving.fill_gaps(forecaster, gappy() if gaps else raw_history(40))

    values, times = prepared.checked(forecaster)

    assert prepared.times is not None  # check_history was not run again
    expected_values, expected_times = forecaster.check_history(prepared.history)
    np.testing.assert_array_equal(values, expected_values)
    assert times.equals(expected_times) and times.dtype == expected_times.dtype
    pd.testing.assert_frame_equal(
        forecaster.forecast_checked(values, times), forecaster.forecast(prepared.history)
    )


def test_rows_with_a_utc_offset_are_read_again_from_their_text(store: dict) -> None:
    history = raw_history(40)
    stamps = pd.to_datetime(history["timestamp"]).dt.tz_localize("Europe/Berlin")
    history["timestamp"] = stamps.dt.strftime("%Y-%m-%d %H:%M:%S%z")
    prepared = serving.fill_gaps(store["forecaster"], history)

    assert prepared.times is None  # a time zone: check_history reads the text
    values, times = prepared.checked(store["forecaster"])
    assert str(times[-1]) == "2024-03-02 15:00:00+01:00" and len(values) == 12
