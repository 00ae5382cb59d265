"""Does the workspace agree with the MLflow store and with dvc.lock? Checked by the runner.

Before a run: evaluation/runs.json and models/served/refit.json name MLflow runs and logged
models. With the store deleted (`rm mlruns/mlflow.db`) or MLFLOW_TRACKING_URI pointing at
another one, DVC still finds every stage up to date (or restores it from its run cache), and
promote then fails on a model that does not exist. The runner redoes evaluate and what follows.

After a failed run: a stage killed with -9 could not put back the outputs DVC deleted before
running it; the runner puts back the last good ones from DVC's cache, or says what is missing.

No MLflow or DVC import (they cost seconds): SQLite or the tracking server's REST API, and
dvc.lock read as YAML.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from seqcast import paths

RUNS = paths.EVALUATION / "runs.json"
REFIT = paths.SERVED / "refit.json"
# What to redo when the store lacks them: the stage that logs the runs, and all after it.
REDO = ["dvc", "repro", "--force", "--downstream", "evaluate"]


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


def store_advice(root: Path, missing: list[str]) -> str:
    """What the runner prints before redoing evaluate onwards."""
    shown = missing[:4] + ([f"... and {len(missing) - 4} more"] if len(missing) > 4 else [])
    lines = [
        f"The MLflow store ({paths.tracking_uri(root).split('?')[0]}) lacks what the "
        "workspace's outputs name:",
        *(f"  {line}" for line in shown),
        "It was deleted or MLFLOW_TRACKING_URI names another store; DVC cannot see that and "
        "would call every stage up to date.",
        f"Redoing evaluate and the stages after it first: {' '.join(REDO)}",
    ]
    return "\n".join(lines)


def missing_outputs(root: Path) -> dict[str, list[str]]:
    """Stage -> the outputs dvc.lock records for it that are not in the workspace."""
    try:
        lock = yaml.safe_load((root / "dvc.lock").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    missing: dict[str, list[str]] = {}
    for stage, entry in (lock.get("stages") or {}).items():
        for out in (entry or {}).get("outs", []):
            if "path" in out and not (root / out["path"]).exists():
                missing.setdefault(stage, []).append(out["path"])
    return missing


def put_back_outputs(root: Path, before: dict[str, list[str]]) -> list[str]:
    """After a failed run: put back the outputs a killed stage left deleted; lines to print."""
    # Only what went missing during the run: what `make clean` removed before it is not news.
    missing = {
        stage: gone
        for stage, outs in missing_outputs(root).items()
        if (gone := [out for out in outs if out not in before.get(stage, [])])
    }
    if not missing:
        return []
    from seqcast.outputs import restore_last_good

    lines = []
    for stage, outs in missing.items():
        restored = restore_last_good(root, stage)
        if restored:
            lines.append(
                f"{stage} did not finish (killed?): put back its last good "
                f"{', '.join(restored)} from DVC's cache"
            )
        if still := [out for out in outs if not (root / out).exists()]:
            lines.append(
                f"{stage} did not finish (killed?) and {', '.join(still)} is missing: "
                f"`dvc checkout {stage}` puts back the last good one, `make repro` remakes it"
            )
    return lines
