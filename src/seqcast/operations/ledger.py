"""The forecast ledger: every served forecast, one MLflow run per (model version, origin, source).

It lives in the tracking store (experiment `<tracking.experiment>-ledger`), so a team shares it
wherever the store is; runs are only ever added, and recording the same version, origin and
source again (a re-run of the same night) finds the existing run instead of adding one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from seqcast.core.config import Config
from seqcast.data.series import read_raw
from seqcast.models import tracking

if TYPE_CHECKING:
    from seqcast.models.forecaster import Forecaster

SUFFIX = "-ledger"
TAG = "seqcast.ledger."
TABLE = "forecast.json"
PIPELINE = "pipeline"  # the scheduled run's own forecasts: the only ones monitoring tests
SOURCES = (PIPELINE, "forecast", "serve")
_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One recorded forecast: who made it, from which origin, and its steps (long table)."""

    run_id: str
    version: str
    origin: pd.Timestamp
    source: str
    table: pd.DataFrame  # step, timestamp, target, forecast, lower_<L>, upper_<L> per level


def experiment_name(cfg: Config) -> str:
    """The ledger's MLflow experiment: beside the pipeline's own."""
    return cfg.tracking.experiment + SUFFIX


def experiment_id(cfg: Config, root: Path | None = None) -> str:
    """The ledger experiment's id (created on first use) in the project's tracking store."""
    return tracking.setup(experiment_name(cfg), root)


def origin_text(origin: object) -> str:
    """An origin as the tag holds it: ISO 8601, so equal instants give equal tags."""
    return pd.Timestamp(origin).isoformat()


def long_table(frame: pd.DataFrame, timestamp: str, targets: list[str]) -> pd.DataFrame:
    """A served forecast (timestamp, targets, <target>_lower/upper_<L>) as one row per step."""
    rows = []
    for target in targets:
        part = pd.DataFrame(
            {
                "step": range(1, len(frame) + 1),
                "timestamp": frame[timestamp].astype(str),
                "target": target,
                "forecast": frame[target].astype(float),
            }
        )
        for column in frame.columns:
            for side in ("lower", "upper"):
                prefix = f"{target}_{side}_"
                if column.startswith(prefix):
                    part[f"{side}_{column.removeprefix(prefix)}"] = frame[column].astype(float)
        rows.append(part)
    return pd.concat(rows, ignore_index=True)


def _find(
    client, experiment: str, model: str, version: str, origin: str, source: str
) -> str | None:
    """The finished ledger run of this version, origin and source, if one was recorded."""
    found = client.search_runs(
        [experiment],
        filter_string=(
            f"tags.`{TAG}registered_model` = '{model}' and tags.`{TAG}version` = '{version}' "
            f"and tags.`{TAG}origin` = '{origin}' and tags.`{TAG}source` = '{source}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return found[0].info.run_id if found else None


def on_serve(
    params: Path, model: str, say: Callable[[str], None] | None = None
) -> ServeRecorder | None:
    """With monitoring.ledger_on_serve: a callback recording each served forecast, else None."""
    from seqcast.core.config import load_config

    if not params.is_file():
        return None  # no project here: nothing says which registered model the ledger follows
    cfg = load_config(params)
    version = registered_version(cfg, model) if cfg.monitoring.ledger_on_serve else None
    if version is None:
        return None
    root, targets = params.resolve().parent, list(cfg.data.targets)

    def write(origin: str, answer: pd.DataFrame) -> None:
        record(cfg, answer, version, origin, "serve", answer.columns[0], targets, root)

    if say is not None:
        say(f"v{version}'s forecasts are recorded in the forecast ledger")
    return ServeRecorder(write)


class ServeRecorder:
    """Records served forecasts off the request path: each origin once per process, in order."""

    def __init__(self, write: Callable[[str, pd.DataFrame], None]) -> None:
        self._write = write
        # One writer thread: records go to the store in the order they were served. Measured
        # on the request path, a record cost 160 ms for a new origin and 60 ms to find that an
        # origin was already recorded (a store search); now a request only queues it.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqcast-ledger")
        self._lock = threading.Lock()
        self._queued: dict[str, Future] = {}

    def __call__(self, origin: str, answer: pd.DataFrame) -> None:
        """Queue the forecast from origin for the ledger, unless this process queued it before."""
        key = origin_text(origin)
        with self._lock:
            if key not in self._queued:
                self._queued[key] = self._pool.submit(self._record, key, origin, answer)

    def _record(self, key: str, origin: str, answer: pd.DataFrame) -> None:
        try:
            self._write(origin, answer)
        except Exception:  # a record of the answer, never a reason to stop serving
            _logger.exception("the forecast from %s could not be recorded in the ledger", origin)
            with self._lock:
                self._queued.pop(key, None)  # the next request from this origin tries again

    def wait(self) -> None:
        """Return once every forecast queued so far is recorded (or failed)."""
        with self._lock:
            pending = list(self._queued.values())
        futures.wait(pending)


def record(
    cfg: Config,
    frame: pd.DataFrame,
    version: str,
    origin: object,
    source: str,
    timestamp: str,
    targets: list[str],
    root: Path | None = None,
) -> tuple[str, bool]:
    """Record a forecast once per (version, origin, source): (run id, True when added now)."""
    from mlflow import MlflowClient

    assert source in SOURCES, source
    experiment = experiment_id(cfg, root)
    client = MlflowClient()
    model, at = cfg.tracking.registered_model, origin_text(origin)
    # Per source: a `serve` record at tonight's origin must not stand in for the pipeline's own.
    existing = _find(client, experiment, model, str(version), at, source)
    if existing is not None:
        return existing, False
    tags = {
        f"{TAG}registered_model": model,
        f"{TAG}version": str(version),
        f"{TAG}origin": at,
        f"{TAG}source": source,
        f"{TAG}horizon": str(len(frame)),
    }
    run = client.create_run(experiment, run_name=f"v{version} from {at}", tags=tags)
    try:
        client.log_table(run.info.run_id, long_table(frame, timestamp, targets), TABLE)
    except BaseException:
        # Killed or failed half-way: the run is not FINISHED, so no reader ever takes it.
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id, True


def entries(cfg: Config, root: Path | None = None) -> list[Entry]:
    """Every finished ledger forecast of the registered model, oldest origin first, one per
    (version, origin, source)."""
    from mlflow import MlflowClient

    experiment = experiment_id(cfg, root)
    client = MlflowClient()
    runs = []
    token = None
    while True:
        page = client.search_runs(
            [experiment],
            filter_string=(
                f"tags.`{TAG}registered_model` = '{cfg.tracking.registered_model}' "
                "and attributes.status = 'FINISHED'"
            ),
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            break
    first = {}
    for run in runs:  # two writers racing on one night: the earliest run counts, once
        tags = run.data.tags
        key = (tags[f"{TAG}version"], tags[f"{TAG}origin"], tags.get(f"{TAG}source", "?"))
        first.setdefault(key, run)
    if not first:
        return []
    found = [
        Entry(
            run_id=run.info.run_id,
            version=version,
            origin=pd.Timestamp(origin),
            source=source,
            table=_table(client, run.info.run_id),
        )
        for (version, origin, source), run in first.items()
    ]
    return sorted(found, key=lambda e: (e.origin, int(e.version), e.source))


def _table(client, run_id: str) -> pd.DataFrame:
    """A ledger run's forecast table (log_table's JSON: columns and data)."""
    # One small file per forecast: MLflow's progress bar would print a line for each.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="seqcast-ledger-") as tmp:
        logged = json.loads(Path(client.download_artifacts(run_id, TABLE, tmp)).read_text())
    return pd.DataFrame(logged["data"], columns=logged["columns"])


def champion_version(cfg: Config) -> str | None:
    """The version the champion alias points at, or None when there is none."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        found = MlflowClient().get_model_version_by_alias(cfg.tracking.registered_model, "champion")
        return str(found.version)
    except MlflowException:
        return None


@functools.lru_cache(maxsize=4)
def load_version(model: str, version: str) -> Forecaster:
    """A registered version's Forecaster, loaded once per process (scoring and recording)."""
    from seqcast.models import serving

    return serving.load(f"models:/{model}/{version}")


def registered_version(cfg: Config, model_uri: str) -> str | None:
    """The version of tracking.registered_model a models:/ URI names (by alias or number)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    prefix = f"models:/{cfg.tracking.registered_model}"
    if not model_uri.startswith(prefix) or len(model_uri) == len(prefix):
        return None
    rest = model_uri[len(prefix) :]
    if rest.startswith("/") and rest[1:].isdigit():
        return rest[1:]
    if not rest.startswith("@"):
        return None
    try:
        found = MlflowClient().get_model_version_by_alias(cfg.tracking.registered_model, rest[1:])
    except MlflowException:
        return None
    return str(found.version)


def record_champion(cfg: Config, root: Path, source: str = PIPELINE) -> dict | None:
    """The champion's forecast from the latest rows of the raw data, recorded in the ledger."""
    tracking.setup(cfg.tracking.experiment, root)
    version = champion_version(cfg)
    if version is None:
        return None
    forecaster = load_version(cfg.tracking.registered_model, version)
    history = read_raw(Path(root) / cfg.data.path).tail(forecaster.min_history)
    frame = forecaster.forecast(history)
    origin = history[cfg.data.timestamp].iloc[-1]
    run_id, added = record(
        cfg, frame, version, origin, source, forecaster.timestamp, forecaster.targets, root
    )
    return {"version": version, "origin": origin_text(origin), "run_id": run_id, "added": added}
