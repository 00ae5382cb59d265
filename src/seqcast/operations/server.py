"""`seqcast serve`: MLflow's scoring server for a registered model, answering only sense.

The app is MLflow's own (`mlflow.pyfunc.scoring_server.init`: /ping, /health, /version, its
request timeout) and /invocations keeps MLflow's protocol and parsing, but:

- a body over SEQCAST_MAX_REQUEST_BYTES is refused (413) before it is read into memory or parsed;
- the history is checked as the client sent it: MLflow's schema enforcement drops the columns
  the signature does not name, so its errors could not list what was sent;
- every error is one JSON object {"error_code", "message"}: no stack trace, no request dump;
- every answer says which model produced it: X-Model-Name, X-Model-Version and X-Model-Uri
  headers, and model_name, model_version and model_uri beside the predictions;
- gaps in the rows the model reads are interpolated as the pipeline would (seqcast.models.serving's
  gap policy), and a forecast says which: `filled_rows` beside the predictions (their
  timestamps) and the X-Filled-Rows header (how many).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response
from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel, scoring_server

from seqcast.models import fastpath, serving
from seqcast.models.forecaster import ForecastInputError, ForecastOutputError
from seqcast.operations import ledger

MAX_REQUEST_BYTES_ENV = "SEQCAST_MAX_REQUEST_BYTES"
# A default model needs 432 rows, about 20 kB of CSV: 10 MiB leaves room for long histories
# while no client can make the server hold and parse hundreds of megabytes.
DEFAULT_MAX_REQUEST_BYTES = 10 * 2**20
# Messages are for people; a longer one is cut so that no error can echo a request back.
MAX_MESSAGE_CHARS = 1000
FORMATS = (
    f'application/json ({{"{scoring_server.DF_SPLIT}": ...}} or '
    f'{{"{scoring_server.DF_RECORDS}": ...}}) or text/csv'
)
# The JSON a plain request may declare (other charsets: MLflow's answer, via the general path).
PLAIN = ("", "charset=utf-8")
# invocations() prefixes a model's error with the whole parsed request frame.
_PREDICT_PREFIX = re.compile(r"^Failed to predict data .*?\nError: ", re.DOTALL)

_logger = logging.getLogger(__name__)
# The rows CheckedModel.predict filled for the request scored in this context (see score).
_FILLED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("filled", default=None)
FILLED_HEADER = "X-Filled-Rows"
# serve()'s settings for its worker processes (JSON), read by worker_app.
WORKER_ENV = "SEQCAST_SERVE_WORKER"
# Each worker holds its own model and TensorFlow runtime (about 0.5 GB): one per CPU, up to 4.
MAX_DEFAULT_WORKERS = 4
# Called with the origin (the last history timestamp) and the answer of every forecast served.
OnForecast = Callable[[str, pd.DataFrame], None]


class CheckedModel:
    """The served pyfunc model's forecaster behind its checks, run once on the history as sent."""

    def __init__(self, model: PyFuncModel, on_forecast: OnForecast | None = None) -> None:
        self.model = model
        self.forecaster = model.unwrap_python_model().forecaster
        self.on_forecast = on_forecast  # e.g. the forecast ledger (monitoring.ledger_on_serve)

    @property
    def metadata(self) -> Any:
        """The pyfunc model's metadata, which MLflow's request parsing consults."""
        return self.model.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """The forecast once the history passed the checks; a clean error otherwise."""
        forecaster = self.forecaster
        try:
            history = pd.DataFrame(data)
            prepared = serving.fill_gaps(forecaster, history)
            values, times = prepared.checked(forecaster)
        except ForecastInputError as err:
            raise serving.ForecastRequestError(str(err)) from None
        except (ValueError, TypeError) as err:
            raise serving.ForecastRequestError(f"the input is not a table of rows: {err}") from None
        # The pyfunc's predict is fill_gaps then the checked forecast: both done above on the
        # history as sent, so the forecast goes on from there rather than through the pyfunc,
        # which would check the rows again and run MLflow's schema enforcement (half a
        # request's time). The pyfunc takes no params: none to pass on.
        # The last timestamp as sent: the ledger's origin, as before gaps were filled.
        answer = pd.DataFrame(self.forecast(values, times, history[forecaster.timestamp].iloc[-1]))
        filled = _FILLED.get()
        if filled is not None:
            filled[:] = prepared.filled
        return answer

    def forecast(self, values: Any, times: pd.DatetimeIndex, origin: object) -> dict[str, Any]:
        """The forecast's columns from checked rows, recorded in the ledger if it follows them."""
        try:
            columns = self.forecaster.forecast_columns(values, times)
        except ForecastOutputError as err:
            raise serving.ForecastServerError(str(err)) from None
        except Exception as err:
            _logger.exception("forecast failed")
            raise serving.ForecastServerError(
                f"unexpected {type(err).__name__} while forecasting; the server log has details"
            ) from None
        if self.on_forecast is not None:
            try:
                self.on_forecast(str(origin), pd.DataFrame(columns))
            except Exception:  # a record of the answer, never a reason to withhold it
                _logger.exception("the forecast could not be recorded in the ledger")
        return columns


def max_request_bytes() -> int:
    """The request body limit: SEQCAST_MAX_REQUEST_BYTES, else 10 MiB."""
    raw = os.environ.get(MAX_REQUEST_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_REQUEST_BYTES
    if not raw.isdigit() or int(raw) == 0:
        raise ValueError(f"{MAX_REQUEST_BYTES_ENV}={raw!r}: expected a positive number of bytes")
    return int(raw)


def error(status: int, code: str, message: str) -> Response:
    """One JSON error object: the code and a message of at most MAX_MESSAGE_CHARS."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    body = json.dumps({"error_code": code, "message": message})
    return Response(body, status_code=status, media_type="application/json")


def _too_large(limit: int) -> Response:
    return error(
        413,
        "REQUEST_TOO_LARGE",
        f"the request body is over the limit of {limit} bytes ({MAX_REQUEST_BYTES_ENV}); "
        "send only the recent history the model needs",
    )


def _reason(err: MlflowException) -> str:
    """The readable part of an MLflow error: no request dump, no protocol lecture."""
    if isinstance(err, serving.ForecastRequestError):
        return err.reason
    message = _PREDICT_PREFIX.sub("", err.message).split("\nInput:", 1)[0]
    return message.replace(scoring_server.SCORING_PROTOCOL_CHANGE_INFO, "").strip()


def score(
    body: bytes,
    content_type: str,
    model: CheckedModel,
    identity: serving.ModelIdentity | None = None,
) -> Response:
    """The /invocations answer for one request body: forecasts, or one JSON error."""
    plain = _score_plain(body, content_type, model, identity)
    if plain is not None:
        return plain
    filled: list[str] = []
    token = _FILLED.set(filled)  # CheckedModel.predict, called below, says what it filled
    try:
        response = _score(body, content_type, model)
    finally:
        _FILLED.reset(token)
    headers = identity.headers() if identity is not None else {}
    response.headers.update(headers)
    if response.status_code == 200 and response.media_type == "application/json":
        answer = json.loads(response.body) | {"filled_rows": filled}
        if identity is not None:
            answer |= identity.fields()
        response = Response(
            json.dumps(answer),
            status_code=200,
            media_type="application/json",
            headers=headers | {FILLED_HEADER: str(len(filled))},
        )
    return response


def _score_plain(
    body: bytes,
    content_type: str,
    model: CheckedModel,
    identity: serving.ModelIdentity | None,
) -> Response | None:
    """The answer to a plain JSON request (seqcast.models.fastpath); None: the general path's."""
    mime, _, charset = content_type.lower().partition(";")
    if mime.strip() != scoring_server.CONTENT_TYPE_JSON or charset.replace(" ", "") not in PLAIN:
        return None
    forecaster = model.forecaster
    rows = fastpath.split_rows(forecaster, fastpath.parse(body))
    read = None if rows is None else fastpath.plain_history(forecaster, *rows)
    if rows is None or read is None:
        return None
    headers = identity.headers() if identity is not None else {}
    try:
        columns = model.forecast(*read, origin=rows[0][-1])
    except serving.ForecastRequestError as err:
        answer = error(err.get_http_status_code(), err.error_code, _reason(err))
        answer.headers.update(headers)
        return answer
    extra = {"filled_rows": []} | (identity.fields() if identity is not None else {})
    return Response(
        fastpath.answer(columns, extra),
        status_code=200,
        media_type="application/json",
        headers=headers | {FILLED_HEADER: "0"},
    )


def _score(body: bytes, content_type: str, model: CheckedModel) -> Response:
    """The answer without the model's identity."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime not in scoring_server.CONTENT_TYPES:
        shown = repr(content_type) if content_type else "missing"
        return error(415, "UNSUPPORTED_MEDIA_TYPE", f"content type {shown}: send {FORMATS}")
    if not body.strip():
        return error(400, "BAD_REQUEST", f"the request body is empty: send history as {FORMATS}")
    data: Any = body
    if mime == scoring_server.CONTENT_TYPE_JSON:
        try:
            data = json.loads(body)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            return error(400, "BAD_REQUEST", f"the request body is not valid JSON: {err}")
        keys = list(data) if isinstance(data, dict) else []
        if len(set(keys) & scoring_server.SUPPORTED_FORMATS) != 1:
            got = f"keys {keys}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
            return error(
                400,
                "BAD_REQUEST",
                f"the JSON body must be an object with one key "
                f'"{scoring_server.DF_SPLIT}" or "{scoring_server.DF_RECORDS}"; got {got}',
            )
    try:
        # No input schema: MLflow would cast, and drop, columns before CheckedModel saw them.
        result = scoring_server.invocations(data, content_type, model, None)
    except MlflowException as err:
        return error(err.get_http_status_code(), err.error_code, _reason(err))
    except Exception:
        _logger.exception("scoring failed")
        return error(500, "INTERNAL_ERROR", "unexpected error while scoring; see the server log")
    if result.status != 200:  # e.g. a charset other than UTF-8, answered as plain text
        code = "UNSUPPORTED_MEDIA_TYPE" if result.status == 415 else "BAD_REQUEST"
        message = result.response.replace(scoring_server.SCORING_PROTOCOL_CHANGE_INFO, "")
        return error(result.status, code, message.strip())
    return Response(result.response, status_code=200, media_type=result.mimetype)


def build_app(
    model: PyFuncModel,
    max_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    identity: serving.ModelIdentity | None = None,
    on_forecast: OnForecast | None = None,
) -> FastAPI:
    """MLflow's scoring app for a loaded pyfunc model, with the checked /invocations."""
    app = scoring_server.init(model)
    checked = CheckedModel(model, on_forecast)
    # MLflow's /invocations gives way to this one: same protocol, checked input, clean errors.
    app.router.routes[:] = [
        route for route in app.router.routes if getattr(route, "path", None) != "/invocations"
    ]
    # MLflow's request timeout is a Starlette BaseHTTPMiddleware (a task and a stream per
    # request, about 1 ms of a 4 ms request); /invocations bounds its body read itself below,
    # and a forecast cannot be interrupted either way.
    app.user_middleware[:] = []
    timeout = MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        """Forecasts for the history in the body, or one JSON error."""
        headers = identity.headers() if identity else {}
        declared = request.headers.get("content-length", "")
        expects = request.headers.get("expect", "").lower() == "100-continue"
        if expects and declared.isdigit() and int(declared) > max_bytes:
            return _too_large(max_bytes)  # the client waits for a go-ahead: no body comes
        try:
            async with asyncio.timeout(timeout):
                body, size = await _read_body(request, max_bytes)
        except TimeoutError:
            answer = error(
                504,
                "REQUEST_TIMEOUT",
                f"the request body did not arrive within {timeout} s "
                f"({MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name})",
            )
            answer.headers.update(headers)
            return answer
        if size > max_bytes:
            answer = _too_large(max_bytes)
            answer.headers.update(headers)
            return answer
        content_type = request.headers.get("content-type", "")
        # Scored here on the event loop, not in a thread: a forecast is a few milliseconds of
        # CPU under the GIL, so a thread would add a hand-off each way and no parallelism.
        return score(body, content_type, checked, identity)

    return app


async def _read_body(request: Request, max_bytes: int) -> tuple[bytes, int]:
    """The body, or nothing past max_bytes: (body, size sent)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= max_bytes:
            chunks.append(chunk)
        else:
            # Drop the rest as it arrives, unparsed: answering before the client has sent it
            # all would close the socket with unread data, a reset that the client sees
            # instead of the 413 (the timeout above still bounds a sender that never stops).
            chunks.clear()
    return b"".join(chunks), size


def default_workers() -> int:
    """Server processes by default: one per CPU, at most MAX_DEFAULT_WORKERS."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def serve(
    model_uri: str,
    host: str,
    port: int,
    params: Path | None = None,
    workers: int = 1,
) -> None:
    """Load a model as `mlflow models serve` would (e.g. models:/name@champion) and serve it.

    With workers > 1, as many processes answer on the one port, each with its own copy of the
    model; params (a params.yaml) says whether each forecast goes to the ledger.
    """
    import uvicorn

    if workers < 1:
        raise ValueError(f"--workers {workers}: expected at least 1 server process")
    limit = max_request_bytes()  # a bad setting fails before the slow model load
    _one_thread_tensorflow()
    serving.use_project_store()
    identity = serving.identify(model_uri)
    # Loaded here even when workers load their own: a model that cannot load is one message
    # from this process (seqcast.cli), not a traceback from each worker.
    model = scoring_server.load_model_with_mlflow_config(identity.uri)
    on_forecast = ledger.on_serve(params, model_uri, say=_say) if params else None
    processes = f"{workers} worker processes" if workers > 1 else "1 process"
    print(
        f"seqcast serve: {model_uri}, {identity.describe()}, at http://{host}:{port} "
        f"(body limit {limit} B, {processes})",
        flush=True,
    )
    if workers == 1:
        uvicorn.run(build_app(model, limit, identity, on_forecast), host=host, port=port)
        return
    del model, on_forecast  # each worker loads its own
    # uvicorn starts workers as fresh processes that import the app by name: what they need
    # to build it travels in the environment they inherit.
    os.environ[WORKER_ENV] = json.dumps(
        {
            "tracking_uri": mlflow.get_tracking_uri(),
            "model_uri": model_uri,
            "identity": dataclasses.asdict(identity),
            "limit": limit,
            "params": None if params is None else str(Path(params).resolve()),
        }
    )
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, host=host, port=port)


def worker_app() -> FastAPI:
    """The app of one worker process of serve(), from the settings its parent left it."""
    from seqcast.core.console import native_notices_hidden

    with native_notices_hidden():  # as `seqcast serve` itself imports Keras (seqcast.cli)
        import keras  # noqa: F401
    _one_thread_tensorflow()
    settings = json.loads(os.environ[WORKER_ENV])
    mlflow.set_tracking_uri(settings["tracking_uri"])
    identity = serving.ModelIdentity(**settings["identity"])
    model = scoring_server.load_model_with_mlflow_config(identity.uri)
    params = settings["params"]
    on_forecast = ledger.on_serve(Path(params), settings["model_uri"]) if params else None
    return build_app(model, settings["limit"], identity, on_forecast)


def _one_thread_tensorflow() -> None:
    """One TensorFlow thread per server process, set before the model loads."""
    # A request is one series: its ops have nothing to share out among threads, and with
    # several workers on few CPUs each worker's idle pool threads only compete (one thread:
    # 2.8 against 3.4 ms of CPU per forecast, benchmarks/serving.py).
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return  # another Keras backend
    with contextlib.suppress(RuntimeError):  # already running (a test's process): as it is
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _say(message: str) -> None:
    print(f"seqcast serve: {message}", flush=True)
