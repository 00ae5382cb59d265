"""A plain request read straight into arrays: the same rows as the general path, or none at all.

seqcast.models.fastpath either reads exactly the (values, times) that fill_gaps and check_history
would give, or hands the request to them (None); the server's answer is the same either way.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from serving_helpers import SPEC, TRAIN_MAX, TRAIN_MIN, raw_history, split

from seqcast.models import fastpath, serving
from seqcast.models.forecaster import Forecaster
from seqcast.operations import server

POLICY = {
    "max_gap_steps": 3,
    "max_null_fraction": 0.05,
    "max_filled_fraction": 0.1,
    "bounds": {"demand": [0.0, 1000.0]},
}


def baseline(gap_policy: dict | None) -> Forecaster:
    """The serving helpers' model as a seasonal-naive baseline: no network to build."""
    return Forecaster(
        name="seasonal_naive",
        spec=dataclasses.replace(SPEC, n_calendar=0, calendar_names=[]),
        timestamp="timestamp",
        columns=["demand", "temp"],
        frequency="h",
        offset=np.array([500.0, 10.0]),
        scale=np.array([40.0, 3.0]),
        train_min=TRAIN_MIN,
        train_max=TRAIN_MAX,
        gap_policy=gap_policy,
    )


def general(forecaster: Forecaster, sent: pd.DataFrame) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """What the general path reads: fill_gaps, then check_history if still needed."""
    return serving.fill_gaps(forecaster, sent).checked(forecaster)


def body(sent: pd.DataFrame) -> dict:
    """sent as a parsed dataframe_split request."""
    return json.loads(json.dumps({"dataframe_split": split(sent)}))


@pytest.mark.parametrize("policy", [POLICY, None], ids=["gap-policy", "strict"])
@pytest.mark.parametrize("rows", [12, 15, 16, 40])
def test_a_plain_request_reads_as_the_general_path(policy: dict | None, rows: int) -> None:
    # As the JSON carries it (pandas writes 10 digits), for both paths.
    forecaster, sent = baseline(policy), pd.DataFrame(**body(raw_history(rows))["dataframe_split"])
    expected_values, expected_times = general(forecaster, sent)

    for found in (
        fastpath.split_rows(forecaster, body(sent)),
        fastpath.frame_rows(forecaster, sent),
    ):
        values, times = fastpath.plain_history(forecaster, *found)
        np.testing.assert_array_equal(values, expected_values)
        assert times.equals(expected_times)
        assert (times.unit, times.freq) == (expected_times.unit, expected_times.freq)


def test_rows_before_those_judged_may_be_apart_under_a_gap_policy() -> None:
    """fill_gaps judges only the rows read and max_gap_steps + 1 before: earlier rows may skip."""
    forecaster, sent = baseline(POLICY), raw_history(40).drop(index=[3, 4])

    values, times = fastpath.plain_history(forecaster, *fastpath.frame_rows(forecaster, sent))

    expected_values, expected_times = general(forecaster, sent)
    np.testing.assert_array_equal(values, expected_values)
    assert times.equals(expected_times)
    assert fastpath.plain_history(baseline(None), *fastpath.frame_rows(forecaster, sent)) is None


def _broken(kind: str) -> pd.DataFrame:
    """40 hours of history, broken (or merely unusual) in one way the general path must judge."""
    sent = raw_history(40).astype({"timestamp": object, "temp": object})
    if kind == "gap-read":
        return sent.drop(index=35)
    if kind == "empty-cell":
        sent.loc[36, "demand"] = np.nan
    elif kind == "text":
        sent.loc[2, "temp"] = "warm"
    elif kind == "out-of-range":
        sent.loc[0, "demand"] = 1e308
    elif kind == "outside-bounds":
        sent.loc[1, "demand"] = -1.0
    elif kind == "iso-t":
        sent.loc[39, "timestamp"] = "2024-03-02T15:00:00"
    elif kind == "offset":
        sent.loc[39, "timestamp"] = "2024-03-02 15:00:00+01:00"
    elif kind == "date-only":
        sent.loc[0, "timestamp"] = "2024-03-01"
    elif kind == "unordered":
        sent.loc[[0, 1], "timestamp"] = sent.loc[[1, 0], "timestamp"].to_numpy()
    elif kind == "off-grid":
        sent.loc[39, "timestamp"] = "2024-03-02 15:30:00"
    elif kind == "impossible-date":
        sent.loc[0, "timestamp"] = "2024-02-30 00:00:00"
    return sent


BROKEN = [
    "gap-read", "empty-cell", "text", "out-of-range", "outside-bounds", "iso-t", "offset",
    "date-only", "unordered", "off-grid", "impossible-date",
]  # fmt: skip


@pytest.mark.parametrize("kind", BROKEN)
def test_anything_but_a_plain_request_is_left_to_the_general_path(kind: str) -> None:
    forecaster, sent = baseline(POLICY), _broken(kind)
    parsed = body(sent)
    rows = fastpath.split_rows(forecaster, parsed)

    assert rows is None or fastpath.plain_history(forecaster, *rows) is None


@pytest.mark.parametrize(
    "parsed",
    [
        {"dataframe_records": [{"timestamp": "2024-03-01 00:00:00", "demand": 1.0, "temp": 1.0}]},
        {"dataframe_split": {"columns": ["timestamp", "demand"], "data": [["x", 1.0]]}},
        {"dataframe_split": {"columns": ["timestamp", "demand", "temp"], "data": [["x", 1.0]]}},
        {"dataframe_split": {"columns": ["timestamp", "demand", "temp"], "data": [["x", 1, True]]}},
        {"dataframe_split": {"columns": ["timestamp", "demand", "temp"], "data": [["x", 1, None]]}},
        {"dataframe_split": {"columns": ["timestamp", "demand", "temp"], "data": [], "index": []}},
        {"dataframe_split": {"columns": ["timestamp", "demand", "demand"], "data": [["x", 1, 2]]}},
        [1, 2],
        None,
    ],
    ids=["records", "missing", "short-row", "bool", "null", "index", "duplicate", "list", "bad"],
)
def test_bodies_other_than_a_plain_split_are_left_to_the_general_path(parsed: object) -> None:
    assert fastpath.split_rows(baseline(POLICY), parsed) is None


def test_json_only_orjson_reads_is_left_to_json() -> None:
    """NaN and Infinity are Python's JSON, not orjson's: the general path parses and judges them."""
    assert fastpath.parse(b'{"a": NaN}') is None
    assert fastpath.parse(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.CheckedModel]:
    """The baseline with a gap policy, logged and loaded as a pyfunc, as the server holds it."""
    root = tmp_path_factory.mktemp("fastpath")
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.create_experiment("fastpath", artifact_location=(root / "art").as_uri())
    folder = root / "forecaster"
    baseline(POLICY).save(folder)
    with mlflow.start_run(experiment_id=experiment):
        info = serving.log_forecaster(folder, input_example=raw_history())
    yield server.CheckedModel(mlflow.pyfunc.load_model(info.model_uri))


def test_the_server_answers_a_plain_request_as_the_general_path(
    checked: server.CheckedModel,
) -> None:
    sent = pd.DataFrame(**body(raw_history(40))["dataframe_split"])  # both at the JSON's digits
    identity = serving.ModelIdentity(uri="models:/m/3", name="m", version="3")
    plain = json.dumps({"dataframe_split": split(sent)}).encode()

    fast = server.score(plain, "application/json", checked, identity)
    slow = server.score(sent.to_csv(index=False).encode(), "text/csv", checked, identity)

    assert fast.status_code == slow.status_code == 200
    assert json.loads(fast.body) == json.loads(slow.body)
    assert dict(fast.headers) | {"content-length": ""} == dict(slow.headers) | {
        "content-length": ""
    }
    assert json.loads(fast.body)["filled_rows"] == [] and fast.headers["X-Filled-Rows"] == "0"
    # And the pyfunc's own predict, which reads a plain frame the same way.
    expected = pd.DataFrame(json.loads(slow.body)["predictions"])
    pd.testing.assert_frame_equal(checked.model.predict(sent), expected, check_exact=True)


def test_a_request_with_a_gap_still_says_what_it_filled(checked: server.CheckedModel) -> None:
    sent = raw_history(40).drop(index=35)

    answer = server.score(
        json.dumps({"dataframe_split": split(sent)}).encode(), "application/json", checked
    )

    assert answer.status_code == 200
    assert json.loads(answer.body)["filled_rows"] == ["2024-03-02 11:00:00"]
    assert answer.headers["X-Filled-Rows"] == "1"


def test_ledger_records_each_origin_once_off_the_request_path(tmp_path: Path) -> None:
    from seqcast.operations.ledger import ServeRecorder

    written: list[str] = []
    recorder = ServeRecorder(lambda origin, answer: written.append(origin))
    frame = pd.DataFrame({"timestamp": ["2024-03-02 16:00:00"], "demand": [1.0]})
    for origin in ("2024-03-02 15:00:00", "2024-03-02 15:00:00", "2024-03-02 16:00:00"):
        recorder(origin, frame)
    recorder.wait()

    assert written == ["2024-03-02 15:00:00", "2024-03-02 16:00:00"]
