"""Does the workspace agree with the MLflow store and with dvc.lock? Checked by the runner.

Before a run: evaluation/runs.json and models/served/refit.json name MLflow runs and logged
models. With the store deleted (`rm mlruns/mlflow.db`) or MLFLOW_TRACKING_URI pointing at
another one, they name what is gone. Plain `dvc repro` sees it through the `store` stage
(record_store, seqcast.registry.store); the runner checks before any command (`make promote`, `dvc
exp run` too) and redoes evaluate and what follows.

After a failed run: a stage killed with -9 could not put back the outputs DVC deleted before
running it; the runner puts back the last good ones from DVC's cache, or says what is missing.

No MLflow or DVC import (they cost seconds): SQLite or the tracking server's REST API, and
dvc.lock read as YAML.
"""

from __future__ import annotations

import sys
from pathlib import Path

from seqcast.core import paths

# The check lives in seqcast.registry.store, beside the `store` stage that shares it.
from seqcast.registry.store import KEY_FILE, missing_in_store, record_key  # noqa: F401

# What to redo when the store lacks them: the stage that logs the runs, and all after it.
REDO = ["dvc", "repro", "--force", "--downstream", "evaluate"]


def record_store(root: Path) -> int:
    """The `store` stage: record the store's key for DVC; say why the stages after it rerun."""
    from seqcast.core.errors import StoreError

    try:
        key, missing = record_key(root)
    except StoreError as exc:
        print(f"store failed: {exc}", file=sys.stderr, flush=True)
        return 2
    if missing:
        shown = missing[:4] + ([f"... and {len(missing) - 4} more"] if len(missing) > 4 else [])
        print(
            f"store: the MLflow store {key['store']} lacks what the outputs name:",
            *(f"  {line}" for line in shown),
            f"store: new key in {KEY_FILE}: evaluate, refit and promote are out of date",
            sep="\n",
            flush=True,
        )
    return 0


def store_advice(root: Path, missing: list[str]) -> str:
    """What the runner prints before redoing evaluate onwards."""
    shown = missing[:4] + ([f"... and {len(missing) - 4} more"] if len(missing) > 4 else [])
    lines = [
        f"The MLflow store ({paths.tracking_uri(root).split('?')[0]}) lacks what the "
        "workspace's outputs name:",
        *(f"  {line}" for line in shown),
        "It was deleted or MLFLOW_TRACKING_URI names another store.",
        f"Redoing evaluate and the stages after it first: {' '.join(REDO)}",
    ]
    return "\n".join(lines)


def missing_outputs(root: Path) -> dict[str, list[str]]:
    """Stage -> the outputs dvc.lock records for it that are not in the workspace."""
    import yaml  # here: the `store` stage, run on every repro, does without it

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
    from seqcast.core.outputs import restore_last_good

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
