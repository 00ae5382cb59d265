"""What was tried against a real `seqcast serve`: every answer is sense or one JSON message.

One server for the module (starting one costs ~30 s); each test sends one or two requests.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
from serving_helpers import champion_store, post, raw_history, seqcast_server, split

LIMIT = 10 * 2**20
ELEVEN_MB = 11 * 10**6
EXPECTED = "expected ['timestamp', 'demand', 'temp']"
FORMATS = 'application/json ({"dataframe_split": ...} or {"dataframe_records": ...}) or text/csv'
TOO_LARGE = {
    "error_code": "REQUEST_TOO_LARGE",
    "message": f"the request body is over the limit of {LIMIT} bytes "
    "(SEQCAST_MAX_REQUEST_BYTES); send only the recent history the model needs",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The test champion in a temp store, served by `seqcast serve` on a free loopback port."""
    root = tmp_path_factory.mktemp("faults")
    with (
        champion_store(root) as store,
        seqcast_server(store["uri"], root, {"SEQCAST_MAX_REQUEST_BYTES": str(LIMIT)}) as base,
    ):
        yield store | {"base": base, "url": f"{base}/invocations"}


def _strict(text: str) -> dict:
    """Parse JSON as a strict client would: NaN and Infinity are not JSON."""

    def refuse(token: str) -> float:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def _history(**last_row: object) -> bytes:
    """20 hours of good history as a dataframe_split body, with the last row's cells replaced."""
    body = split(raw_history(20))
    for column, value in last_row.items():
        body["data"][-1][body["columns"].index(column)] = value
    return json.dumps({"dataframe_split": body}).encode()


def _refused(served: dict, body: bytes, content_type: str = "application/json") -> tuple:
    status, text = post(served["url"], body, content_type)
    return status, _strict(text)


def _invalid(message: str) -> tuple[int, dict]:
    return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message}


def test_good_history_answers_200_with_the_forecasters_finite_forecast(served: dict) -> None:
    history = raw_history(20)
    expected = served["forecaster"].forecast(history)

    status, text = post(served["url"], json.dumps({"dataframe_split": split(history)}).encode())

    assert status == 200
    assert _strict(text)["model_version"] == "1"
    served_frame = pd.DataFrame(_strict(text)["predictions"])
    assert list(served_frame.columns) == ["timestamp", "demand"]
    assert served_frame["timestamp"].tolist() == expected["timestamp"].tolist()
    assert all(math.isfinite(value) for value in served_frame["demand"])
    np.testing.assert_allclose(served_frame["demand"], expected["demand"], rtol=1e-6)


def test_csv_history_answers_200(served: dict) -> None:
    status, text = post(served["url"], raw_history(20).to_csv(index=False).encode(), "text/csv")

    assert status == 200
    assert len(_strict(text)["predictions"]) == 3


def test_value_1e308_is_outside_the_accepted_range(served: dict) -> None:
    assert _refused(served, _history(demand=1e308)) == _invalid(
        "column demand: 1e+308 at 2024-03-01 19:00:00 "
        "(row 19 of the 20 sent) is outside the accepted range [300, 750] "
        "(training range [450, 600] widened by 1 times its width on each side); "
        "1 value(s) outside in all"
    )


def test_value_minus_99999999_is_outside_the_accepted_range(served: dict) -> None:
    assert _refused(served, _history(demand=-99999999)) == _invalid(
        "column demand: -99999999 at 2024-03-01 19:00:00 "
        "(row 19 of the 20 sent) is outside the accepted range "
        "[300, 750] (training range [450, 600] widened by 1 times its width on each side); "
        "1 value(s) outside in all"
    )


def test_feature_out_of_range_names_its_column(served: dict) -> None:
    assert _refused(served, _history(temp=40.0)) == _invalid(
        "column temp: 40 at 2024-03-01 19:00:00 "
        "(row 19 of the 20 sent) is outside the accepted range [-5, 25] "
        "(training range [5, 15] widened by 1 times its width on each side); "
        "1 value(s) outside in all"
    )


def test_nan_value_is_refused(served: dict) -> None:
    body = _history(demand=float("nan"))  # json.dumps writes the NaN token Python accepts

    assert b"NaN" in body
    assert _refused(served, body) == _invalid(
        "1 null or non-finite value(s), first in column demand at 2024-03-01 19:00:00 "
        "(row 19 of the 20 sent)"
    )


def test_empty_body_is_one_message(served: dict) -> None:
    assert _refused(served, b"") == (
        400,
        {
            "error_code": "BAD_REQUEST",
            "message": f"the request body is empty: send history as {FORMATS}",
        },
    )


def test_garbled_body_is_one_message(served: dict) -> None:
    assert _refused(served, b'{"dataframe_split": {"columns": [') == (
        400,
        {
            "error_code": "BAD_REQUEST",
            "message": "the request body is not valid JSON: Expecting value: line 1 column 34 "
            "(char 33)",
        },
    )


def test_text_value_is_refused_with_its_row(served: dict) -> None:
    assert _refused(served, _history(temp="warm")) == _invalid(
        "column temp: 'warm' at 2024-03-01 19:00:00 (row 19 of the 20 sent) is not a number"
    )


def test_wrong_columns_lists_the_columns_sent(served: dict) -> None:
    rows = split(raw_history(20))["data"]
    body = {"dataframe_split": {"columns": ["time", "load"], "data": [row[:2] for row in rows]}}

    assert _refused(served, json.dumps(body).encode()) == _invalid(
        f"missing column(s) ['timestamp', 'demand', 'temp']; {EXPECTED}, got ['time', 'load']"
    )


def test_unordered_timestamps_are_refused(served: dict) -> None:
    body = split(raw_history(20))
    body["data"][-1], body["data"][-2] = body["data"][-2], body["data"][-1]

    assert _refused(served, json.dumps({"dataframe_split": body}).encode()) == _invalid(
        "timestamps must be increasing every h with no gaps: row 18 of the 20 sent is "
        "2024-03-01 19:00:00, expected 2024-03-01 18:00:00"
    )


def test_too_little_history_is_refused(served: dict) -> None:
    body = json.dumps({"dataframe_records": raw_history(3).to_dict(orient="records")}).encode()

    assert _refused(served, body) == _invalid(
        "too little history: 3 rows given, 12 needed (input width 8 + reference season 4)"
    )


def test_unsupported_content_type_is_a_415(served: dict) -> None:
    assert _refused(served, b"<history/>", "application/xml") == (
        415,
        {
            "error_code": "UNSUPPORTED_MEDIA_TYPE",
            "message": f"content type 'application/xml': send {FORMATS}",
        },
    )


def test_11_mb_body_is_a_413_and_the_server_carries_on(served: dict) -> None:
    assert _refused(served, b"x" * ELEVEN_MB, "text/csv") == (413, TOO_LARGE)
    assert post(served["url"], _history())[0] == 200


def test_11_mb_chunked_body_without_length_is_a_413(served: dict) -> None:
    url = urlsplit(served["base"])
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        # An iterable body and no Content-Length: http.client sends it chunked.
        chunks = (b"x" * 10**6 for _ in range(11))
        connection.request(
            "POST", "/invocations", body=chunks, headers={"Content-Type": "text/csv"}
        )
        reply = connection.getresponse()

        assert (reply.status, _strict(reply.read().decode())) == (413, TOO_LARGE)
    finally:
        connection.close()


def test_oversize_body_awaiting_100_continue_is_refused_before_it_is_sent(served: dict) -> None:
    url = urlsplit(served["base"])
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        connection.putrequest("POST", "/invocations")
        connection.putheader("Content-Type", "text/csv")
        connection.putheader("Content-Length", str(ELEVEN_MB))
        connection.putheader("Expect", "100-continue")
        connection.endheaders()  # headers only: the body waits for a 100 that never comes
        reply = connection.getresponse()

        assert (reply.status, _strict(reply.read().decode())) == (413, TOO_LARGE)
    finally:
        connection.close()


def _long_history(rows: int = 10_000) -> pd.DataFrame:
    """rows hours of history inside the model's accepted range (no upward drift)."""
    history = raw_history(rows)
    history["demand"] = 500 + 40 * np.sin(2 * np.pi * np.arange(rows) / 24)
    return history


def _long_body(history: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": split(history)}).encode()


def test_10000_rows_with_1e308_in_an_early_row_are_refused(served: dict) -> None:
    history = _long_history()
    assert post(served["url"], _long_body(history))[0] == 200
    history.loc[3, "demand"] = 1e308

    assert _refused(served, _long_body(history)) == _invalid(
        "column demand: 1e+308 at 2024-03-01 03:00:00 (row 3 of the 10000 sent) is outside "
        "the accepted range [300, 750] (training range [450, 600] widened by 1 times its width "
        "on each side); 1 value(s) outside in all"
    )


def test_10000_rows_with_a_gap_in_an_early_row_are_refused(served: dict) -> None:
    history = _long_history().drop(index=5)

    assert _refused(served, _long_body(history)) == _invalid(
        "timestamps must be increasing every h with no gaps: row 5 of the 9999 sent is "
        "2024-03-01 06:00:00, expected 2024-03-01 05:00:00"
    )


def test_health_and_version_endpoints_still_answer(served: dict) -> None:
    for path in ("/ping", "/health", "/version"):
        with urllib.request.urlopen(served["base"] + path, timeout=10) as reply:
            assert reply.status == 200
