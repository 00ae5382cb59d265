"""Does the MLflow store hold what the outputs name? And the store's key, which DVC tracks.

evaluation/runs.json and models/served/refit.json name MLflow runs and logged models. With the
store deleted (`rm mlruns/mlflow.db`) or MLFLOW_TRACKING_URI naming another one, DVC would
still call every stage up to date. The `store` stage (store/dvc.yaml, always run) writes KEY_FILE:
the store's address and a generation, bumped when the store lacks what the outputs name.
evaluate, refit and promote depend on it, so they run again then; otherwise its bytes stay the
same and a no-op `dvc repro` reruns nothing.

No MLflow import (it costs seconds): SQLite read directly, or the tracking server's REST API.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from pathlib import Path

from seqcast.core import io, paths

RUNS = paths.EVALUATION / "runs.json"
REFIT = paths.SERVED / "refit.json"
KEY_FILE = Path("reports/store.json")

# Keys naming what evaluate, refit and promote log and need; the training runs they only link
# to (train_run_id) are left out: redoing evaluate does not bring those back.
RUN_KEYS = ("parent_run_id", "run_id", "backtest_run_id")


def references(root: Path) -> list[tuple[str, str, str]]:
    """(where, "run" or "model", id) for each MLflow run and logged model the outputs name."""
    found: list[tuple[str, str, str]] = []
    for name in (RUNS, REFIT):
        try:
            data = json.loads((root / name).read_text())
        except (OSError, ValueError):
            continue
        found += [(f"{name} {key}", kind, ident) for key, kind, ident in _walk(data)]
    return found


def _walk(data: object, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, kind, id) of the run ids and `models:/m-...` URIs in a JSON value."""
    out: list[tuple[str, str, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            if key in RUN_KEYS and isinstance(value, str) and value:
                out.append((path, "run", value))
            elif key == "model_uri" and isinstance(value, str) and value.startswith("models:/m-"):
                out.append((path, "model", value.removeprefix("models:/")))
            else:
                out += _walk(value, f"{path}.")
    return out


def missing_in_store(root: Path, uri: str | None = None) -> list[str]:
    """The references of the outputs that the tracking store does not hold, one line each."""
    wanted = references(root)
    if not wanted:
        return []
    uri = uri or paths.tracking_uri(root)
    database = paths.sqlite_file(uri)
    if database is not None:
        present = _present_sqlite(database, wanted)
    elif uri.startswith(("http://", "https://")):
        present = _present_rest(uri, wanted)
    else:
        return []  # a store we cannot look into cheaply: the stages will say
    if present is None:
        return []
    return [f"{where}: {kind} {ident}" for where, kind, ident in wanted if ident not in present]


def _present_sqlite(database: Path, wanted: list[tuple[str, str, str]]) -> set[str] | None:
    """The wanted ids an MLflow SQLite store holds, not deleted, their files in place."""
    if not database.is_file():
        return set()
    runs = [i for _, kind, i in wanted if kind == "run"]
    models = [i for _, kind, i in wanted if kind == "model"]
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            present = {
                run
                for (run,) in db.execute(
                    f"select run_uuid from runs where lifecycle_stage = 'active' "
                    f"and run_uuid in ({','.join('?' * len(runs))})",
                    runs,
                )
            }
            rows = db.execute(
                f"select model_id, artifact_location from logged_models "
                f"where lifecycle_stage = 'active' and model_id in ({','.join('?' * len(models))})",
                models,
            )
            present |= {model for model, where in rows if _files_exist(where)}
    except sqlite3.Error:  # not an MLflow store yet, or locked: the stages will say
        return None
    return present


def _files_exist(location: str | None) -> bool:
    """False only for a local artifact folder that is gone."""
    if not location or "://" in location and not location.startswith("file://"):
        return True
    path = Path(urllib.parse.urlparse(location).path if "://" in location else location)
    return path.exists()


def _present_rest(uri: str, wanted: list[tuple[str, str, str]]) -> set[str] | None:
    """The wanted ids a tracking server answers for (None: it does not answer)."""
    import urllib.error
    import urllib.request

    base = uri.rstrip("/")
    present = set()
    for _, kind, ident in wanted:
        if kind == "run":
            url = f"{base}/api/2.0/mlflow/runs/get?run_id={urllib.parse.quote(ident)}"
        else:
            url = f"{base}/api/2.0/mlflow/logged-models/{urllib.parse.quote(ident)}"
        try:
            with urllib.request.urlopen(url, timeout=3) as reply:
                if reply.status == 200:
                    present.add(ident)
        except urllib.error.HTTPError as err:
            if err.code >= 500:
                return None
        except OSError:
            return None
    return present


def address(uri: str, root: Path) -> str:
    """The store as the key records it: SQLite relative to the main checkout, URLs bare."""
    database = paths.sqlite_file(uri)
    if database is not None:
        # Relative, as SQLAlchemy writes it: the same key in an experiment's copy, or after
        # the checkout moves, for the same store.
        base = paths.store_root(root)
        where = database.relative_to(base) if database.is_relative_to(base) else database
        return f"sqlite:///{where}"
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    host += f":{parts.port}" if parts.port else ""
    # Credentials (user:password@, ?token=) must not land in a file meant for git.
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) or uri


def next_key(previous: dict | None, store: str, missing: list[str]) -> dict[str, object]:
    """The key to record: the store, and a generation bumped when that store lost outputs' runs.

    A new generation, not a flag: DVC's run cache maps the earlier key to the outputs that name
    the lost runs, and would put them back once the store holds the new ones.
    """
    previous = previous if isinstance(previous, dict) else {}
    generation = previous.get("generation", 0)
    generation = generation if isinstance(generation, int) and generation >= 0 else 0
    # Another store changes the key by itself (DVC's run cache may hold outputs made with it).
    if missing and previous.get("store", store) == store:
        generation += 1
    return {"generation": generation, "store": store}


def read_key(root: Path) -> dict | None:
    """The key the last `store` stage recorded, or None."""
    try:
        found = json.loads((root / KEY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def record_key(root: Path) -> tuple[dict[str, object], list[str]]:
    """The `store` stage: write KEY_FILE (bytes unchanged when nothing changed); what is missing."""
    uri = paths.tracking_uri(root)
    missing = missing_in_store(root, uri)
    key = next_key(read_key(root), address(uri, root), missing)
    text = json.dumps(key, indent=2, sort_keys=True) + "\n"
    path = root / KEY_FILE
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        io.write_text(path, text)
    return key, missing
