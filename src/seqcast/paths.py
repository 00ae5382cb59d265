"""Where things live: the repository root, the MLflow store, stage outputs."""

from __future__ import annotations

import os
from pathlib import Path

EXPS_TMP = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep


def repo_root(start: Path | None = None) -> Path:
    """The checkout that holds params.yaml, seen through DVC's temporary experiment copies."""
    here = (start or Path.cwd()).resolve()
    text = str(here) + os.sep
    # `dvc exp run --temp/--queue` runs in <repo>/.dvc/tmp/exps/<name>: runs belong to <repo>.
    if EXPS_TMP in text:
        return Path(text.split(EXPS_TMP, 1)[0])
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").exists() or (candidate / ".git").exists():
            return candidate
    return here


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI when set, else the SQLite store under <repo>/mlruns."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = (root or repo_root()).resolve() / "mlruns"
    store.mkdir(parents=True, exist_ok=True)
    # Concurrent writers (e.g. `dvc exp run --queue -j 2`) wait up to 60 s for SQLite's lock
    # instead of failing with "database is locked".
    return f"sqlite:///{store / 'mlflow.db'}?timeout=60"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// tracking URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).resolve()
