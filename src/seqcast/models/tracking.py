"""The MLflow store, experiments, and the tags that make every run reproducible."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from seqcast.core import console, paths

NOTE = "mlflow.note.content"  # the run's description in the MLflow UI
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
VERSIONED = (
    "tensorflow",
    "keras",
    "jax",
    "mlflow",
    "dvc",
    "prefect",
    "great-expectations",
    "scikit-learn",
    "pandas",
    "numpy",
)


def setup(experiment: str, root: Path | None = None) -> str:
    """Point MLflow at the store and return the experiment id, creating it when new."""
    import mlflow

    uri = paths.tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    _quiet_store_logs()
    console.quiet_loggers()
    database = paths.sqlite_file(uri)
    if database is not None:
        _require_writable(database)
        _write_ahead_log(database)
    _opened.append(uri)
    # Every experiment, not just this one: a training run killed with -9 is found by the next
    # evaluate or promote too, not only by the next train.
    fail_orphaned_runs()
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    # Artifacts sit beside the SQLite file, not wherever the current directory happens to be.
    location = (database.parent / "artifacts").as_uri() if database is not None else None
    try:
        return mlflow.create_experiment(
            experiment, artifact_location=location, tags=EXPERIMENT_KIND
        )
    except mlflow.exceptions.MlflowException:
        # Another process created it between our look-up and create; else (disk full) raise.
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id


# The tracking URIs this process opened with setup: only those have runs of ours to end.
_opened: list[str] = []


def _quiet_store_logs() -> None:
    """Keep MLflow's SQL store from logging each database error with its traceback."""
    # It logs the SQLAlchemy traceback, then raises; the stage reports the error once, in one
    # line (store_failure), so the log record only doubles it.
    import logging

    logger = logging.getLogger("mlflow.store.db.utils")
    if _drop_database_errors not in logger.filters:
        logger.addFilter(_drop_database_errors)


def _drop_database_errors(record: logging.LogRecord) -> bool:
    """False for MLflow's "SQLAlchemy database error" records."""
    return not str(record.msg).startswith("SQLAlchemy database error")


# Errors of the store that no retry fixes, and what to do about each.
_STORE_HINTS = {
    "disk is full": "free space on the disk that holds it",
    "no space left": "free space on the disk that holds it",
    "readonly database": "make it writable, or set MLFLOW_TRACKING_URI to another store",
    "read-only file system": "make it writable, or set MLFLOW_TRACKING_URI to another store",
    "unable to open database": "check that its folder exists and is writable",
    "file is not a database": "it is damaged: restore it from a backup or move it aside",
    "no such table": "it is not an MLflow store (or an older one): move it aside",
}


def store_failure(exc: BaseException) -> str | None:
    """One line naming the store and the fix for a store error no retry fixes, else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        for needle, hint in _STORE_HINTS.items():
            if needle in text.lower():
                where = _opened[-1].split("?")[0] if _opened else "(not opened yet)"
                reason = text.split("(sqlite3.OperationalError) ")[-1]
                return f"the MLflow store {where}: {reason}; {hint}"
        exc = exc.__cause__ or exc.__context__
    return None


def server_failure(exc: BaseException) -> str | None:
    """One line naming the tracking server that did not answer, else None (not that failure)."""
    # MLflow's own message holds the whole urllib3 retry story and every request path.
    import re

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        found = re.match(r"API request to (https?://[^/\s]+)(\S*) failed with exception", text)
        if found and "/mlflow-artifacts/" in found.group(2):
            # The server proxies artifacts (--serve-artifacts): the store behind it failed.
            bucket = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or "its --artifacts-destination"
            return (
                f"the MLflow tracking server {found.group(1)} could not store or read artifacts "
                f"(connection dropped): is its artifact store up (S3 endpoint {bucket})? Then "
                "run the stage again"
            )
        if found:
            reason = next(
                (
                    word
                    for word in ("Connection refused", "timed out", "Name or service not known")
                    if word in text
                ),
                "no answer",
            )
            return (
                f"the MLflow tracking server {found.group(1)} did not answer ({reason}); start "
                "it or fix MLFLOW_TRACKING_URI, then run the stage again"
            )
        exc = exc.__cause__ or exc.__context__
    return None


def _require_writable(database: Path) -> None:
    """A clear error for a store this process cannot write, before SQLAlchemy's tracebacks."""
    from seqcast.core.errors import StoreError

    store = database.parent
    # SQLite writes its journal beside the database: the folder must be writable too.
    for path in (store, store / "artifacts", database):
        if path.exists() and not os.access(path, os.W_OK):
            raise StoreError(
                f"{path}: the MLflow store is read-only for this user; make {store} writable "
                "(e.g. chmod -R u+w), or set MLFLOW_TRACKING_URI to another store"
            )


def _write_ahead_log(database: Path) -> None:
    """Switch the SQLite store to WAL once: readers stop blocking the one writer."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(database, timeout=60)) as db:
        if db.execute("pragma journal_mode").fetchone()[0] != "wal":
            db.execute("pragma journal_mode=wal")


def git_state(where: Path | None = None) -> dict[str, str]:
    """The commit and whether the working tree differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=where or Path.cwd(), capture_output=True, text=True
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}


def versions() -> dict[str, str]:
    """Exact versions of Python and the libraries a run depends on."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name if name != "tensorflow" else "tensorflow-cpu")
        except metadata.PackageNotFoundError:
            try:
                out[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
    return out


def run_tags(data_md5: str, windows_md5: str, root: Path | None = None, **extra: str) -> dict:
    """Tags every seqcast run carries: code, data, library versions, and where it ran."""
    tags = {f"seqcast.{k}": v for k, v in git_state(root).items()}
    tags |= {"seqcast.data_md5": data_md5, "seqcast.windows_md5": windows_md5}
    tags |= {f"seqcast.version.{k}": v for k, v in versions().items()}
    experiment = paths.dvc_experiment()
    tags["seqcast.origin"] = "experiment" if experiment else "checkout"
    if experiment:
        tags["seqcast.dvc_exp_name"] = experiment["name"]
        tags["seqcast.dvc_exp_baseline_rev"] = experiment["baseline_rev"]
    # Which process owns the run: the next run marks it FAILED if that process died.
    tags |= {"seqcast.host": socket.gethostname(), "seqcast.pid": str(os.getpid())}
    return tags | {f"seqcast.{k}": str(v) for k, v in extra.items()}


def run_name(what: str) -> str:
    """A run name people can scan: the DVC experiment if any, what, and when."""
    import time

    experiment = paths.dvc_experiment()
    # First: the runs list cuts long names at the end, and the experiment is what tells
    # otherwise identical runs apart (the time is in its own column anyway).
    prefix = f"{experiment['name']}: " if experiment else ""
    return f"{prefix}{what} {time.strftime('%Y-%m-%d %H:%M:%S')}"


def as_params(values: dict[str, float], prefix: str = "") -> dict[str, str]:
    """Numbers as MLflow params (whole numbers without '.0'): facts, not scores to plot."""
    return {
        f"{prefix}{k}": str(int(v)) if float(v).is_integer() else f"{float(v):.6g}"
        for k, v in values.items()
    }


def fail_orphaned_runs(experiment_ids: list[str] | None = None) -> list[str]:
    """Mark FAILED the RUNNING runs whose process, on this host, no longer exists."""
    from mlflow import MlflowClient

    client = MlflowClient()
    host = socket.gethostname()
    orphaned = []
    for run in _running(client, experiment_ids):
        tags = run.data.tags
        pid = tags.get("seqcast.pid", "")
        if tags.get("seqcast.host") != host or not pid.isdigit() or process_alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, "seqcast.failure", f"process {pid} ended without a status")
        client.set_terminated(run.info.run_id, status="FAILED")
        orphaned.append(run.info.run_id)
    return orphaned


def fail_own_runs(reason: str) -> list[str]:
    """End FAILED every run this process left RUNNING (a stop or crash cut a start_run short)."""
    # A KeyboardInterrupt inside mlflow.start_run (the run created, its context manager not yet
    # entered) or inside end_run leaves a child RUNNING, and MLflow's own exit hook would end
    # what is left on its stack FINISHED.
    if not _opened:
        return []
    import mlflow
    from mlflow import MlflowClient

    while mlflow.active_run() is not None:
        mlflow.end_run("FAILED")
    client = MlflowClient()
    ended = []
    for run in _running(client, None, f"tags.`seqcast.pid` = '{os.getpid()}'"):
        if run.data.tags.get("seqcast.host") != socket.gethostname():
            continue
        client.set_tag(run.info.run_id, "seqcast.failure", reason)
        client.set_terminated(run.info.run_id, status="FAILED")
        ended.append(run.info.run_id)
    return ended


def _running(client, experiment_ids: list[str] | None, extra: str = "") -> list:
    """The RUNNING runs of the given experiments (default: every active one in the store)."""
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    query = "attributes.status = 'RUNNING'" + (f" and {extra}" if extra else "")
    return list(client.search_runs(experiment_ids, query, max_results=1000))


def process_alive(pid: int) -> bool:
    """True when a process with this pid exists and is not a zombie (a zombie has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return True


def ui_base() -> str:
    """The tracking server when MLFLOW_TRACKING_URI is http(s), else the UI `make ui` serves."""
    # A tracking server serves its own UI; $SEQCAST_MLFLOW_UI (the Makefile sets it from
    # MLFLOW_PORT) is the local `make ui` over the SQLite store.
    server = os.environ.get("MLFLOW_TRACKING_URI", "")
    if server.startswith(("http://", "https://")):
        return server.rstrip("/")
    return os.environ.get("SEQCAST_MLFLOW_UI", "http://127.0.0.1:5000").rstrip("/")


def ui_link(experiment_id: str, run_id: str | None = None, host: str | None = None) -> str:
    """A link that opens the model-training view of the experiment (or one run)."""
    # MLflow 3 opens in its GenAI view; the query selects the view on run pages too.
    view = "?workflowType=machine_learning"
    base = (host or ui_base()).rstrip("/")
    if run_id:
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}{view}"
    return f"{base}/#/experiments/{experiment_id}/runs{view}"


def _metric_batch(prefix: str, values: dict[str, float], steps: dict[str, float] | None = None):
    """MLflow Metric entities: headline values, plus one value per horizon step."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    out = [Metric(f"{prefix}{k}", float(v), now, 0) for k, v in values.items()]
    for step, value in (steps or {}).items():
        out.append(Metric(f"{prefix}mae_by_step", float(value), now, int(step)))
    return out


def _curve_batch(history: dict[str, list[float]]):
    """Per-epoch learning curves as MLflow metrics with the epoch as step."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    # "epoch_" keeps Keras' val_mae (scaled residuals) apart from the evaluated val_mae (units).
    return [
        Metric(f"epoch_{key}", float(value), now, epoch + 1)
        for key, values in history.items()
        for epoch, value in enumerate(values)
    ]


def log_evaluation(
    *,
    experiment: str,
    root: Path,
    params: dict[str, str],
    tags: dict[str, str],
    dataset,
    results: dict[str, dict],
    curves: dict[str, dict],
    train_info: dict[str, dict],
    networks: list[str],
    models: dict[str, Path],
    input_example,
    loaded: dict | None = None,
    artifacts: dict[str, list[Path]],
    comparison: dict,
    data_facts: dict[str, float] | None = None,
    backtest: dict | None = None,
    intervals: dict[str, dict] | None = None,
    model_plots: dict[str, list[Path]] | None = None,
) -> dict:
    """One parent run for this pipeline execution, a child per model and baseline; returns ids.

    `models` are the saved Forecaster folders logged as MLflow models: the networks, and the
    best simple baseline, which is what gets served when no network beats it; `loaded` holds
    the Forecasters already in memory for some of them (by name), so they are not read again.
    `model_plots` are each model's own charts, logged to its child run under plots/.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from seqcast.models import serving

    experiment_id = setup(experiment, root)
    client = MlflowClient()
    runs: dict = {"experiment_id": experiment_id, "networks": {}, "baselines": {}}
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name("pipeline"),
        tags=tags | {"seqcast.stage": "pipeline"},
    ) as parent:
        runs["parent_run_id"] = parent.info.run_id
        # Rows per split are facts about the data, not scores: as metrics they would take
        # over the compare view's default chart.
        mlflow.log_params(params | as_params(data_facts or {}, "data_"))
        # This run scores models on the series, it does not fit them (the train runs do).
        mlflow.log_input(dataset, context="evaluation")
        for folder, files in artifacts.items():
            for path in (p for p in files if p.exists()):
                mlflow.log_artifact(str(path), artifact_path=folder)
        mlflow.log_dict(comparison, "evaluation/comparison.json")
        best = comparison["best_network"]
        best_test = results[best]["test"]
        mlflow.log_metrics({f"best_network_test_{k}": v for k, v in best_test.items()})
        runs["best_on_test"] = best_on_test(results, comparison["metric"])
        mlflow.set_tags(evaluation_tags(comparison, runs["best_on_test"]))
        for name, result in results.items():
            kind = "network" if name in networks else "baseline"
            with mlflow.start_run(
                experiment_id=experiment_id,
                run_name=name,
                nested=True,
                tags=tags | {"seqcast.model_kind": name, "seqcast.role": kind},
            ) as child:
                mlflow.log_params(params)
                batch = _metric_batch("test_", result["test"], result["test_steps"])
                batch += _metric_batch("val_", result["val"])
                batch += _curve_batch(curves.get(name, {}))
                if backtest:
                    means = {m: v[name] for m, v in backtest["means"].items()}
                    batch += _metric_batch("bt_", means)
                bands = {
                    k: v
                    for k, v in (intervals or {}).get(name, {}).items()
                    if isinstance(v, (int, float)) and not k.endswith("windows")
                }
                batch += _metric_batch("test_", bands)
                for key in ("seconds", "windows_per_second", "epochs", "best_epoch"):
                    if key in train_info.get(name, {}):
                        batch += _metric_batch("train_", {key: train_info[name][key]})
                for start in range(0, len(batch), 900):
                    client.log_batch(child.info.run_id, metrics=batch[start : start + 900])
                mlflow.log_input(dataset, context="test")
                for path in (model_plots or {}).get(name, []):
                    mlflow.log_artifact(str(path), artifact_path="plots")
                entry = {
                    "run_id": child.info.run_id,
                    "metrics": result["test"],
                    "val_metrics": result["val"],
                }
                if "train_run_id" in train_info.get(name, {}):
                    mlflow.set_tag("seqcast.train_run_id", train_info[name]["train_run_id"])
                if name in models:
                    info = serving.log_forecaster(
                        models[name],
                        name="model",
                        input_example=input_example,
                        forecaster=(loaded or {}).get(name),
                    )
                    entry["model_uri"] = info.model_uri
                runs["networks" if name in networks else "baselines"][name] = entry
        if backtest:
            own = [p for p in artifacts.get("plots", []) if p.stem == "backtest" and p.exists()]
            runs["backtest_run_id"] = _log_backtest(experiment_id, params, tags, backtest, own)
    return runs


def best_on_test(results: dict[str, dict], metric: str) -> str:
    """The model, network or baseline, with the lowest `metric` on the test windows."""
    import math

    def value(name: str) -> float:
        found = results[name]["test"].get(metric)
        return found if found is not None and math.isfinite(found) else math.inf

    return min(results, key=value)


def evaluation_tags(comparison: dict, best_test: str) -> dict[str, str]:
    """The parent run's tags, each named for what it holds and on which windows it was chosen."""
    decision = comparison.get("candidate") or {}
    tags = {
        "seqcast.best_on_test": best_test,
        "seqcast.best_network_on_val": comparison["best_network"],
        "seqcast.best_baseline_on_test": comparison["best_baseline"],
    }
    if decision:
        tags["seqcast.candidate"] = decision["candidate"]
        tags["seqcast.candidate_chosen_on"] = decision.get("mode", "backtest")
        # The promote stage replaces this with the decision; until then, what evaluate knows.
        tags[NOTE] = (
            f"Evaluation: candidate **{decision['candidate']}** (chosen on the "
            f"{decision.get('mode', 'backtest')}), best simple baseline on test "
            f"**{comparison['best_baseline']}**, lowest test {comparison['metric']} "
            f"**{best_test}**. The promote stage adds whether it was promoted and what is served."
        )
    return tags


def _log_backtest(
    experiment_id: str, params: dict, tags: dict, backtest: dict, plots: list[Path]
) -> str:
    """One run for the whole backtest: each model's metrics stepped by origin, the table and
    its own per-origin plot."""
    import time

    import mlflow
    import pandas as pd
    from mlflow.entities import Metric

    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name="backtest",
        nested=True,
        tags=tags | {"seqcast.stage": "backtest", "seqcast.role": "backtest"},
    ) as run:
        mlflow.log_params(params)
        now = int(time.time() * 1000)
        batch = [
            Metric(f"{model}_{metric}", float(fold[metric]), now, k + 1)
            for model, folds in backtest["per_origin"].items()
            for k, fold in enumerate(folds)
            for metric in ("mae", "rmse", "mase", "smape")
        ]
        batch += [
            Metric(f"{model}_mean_{metric}", float(value), now, 0)
            for metric, means in backtest["means"].items()
            for model, value in means.items()
        ]
        client = mlflow.tracking.MlflowClient()
        for start in range(0, len(batch), 900):
            client.log_batch(run.info.run_id, metrics=batch[start : start + 900])
        rows = [
            {"model": model, "origin": k + 1, "cutoff": backtest["folds"][k]["cutoff"]}
            | {m: fold[m] for m in ("mae", "rmse", "mase", "smape")}
            for model, folds in backtest["per_origin"].items()
            for k, fold in enumerate(folds)
        ]
        mlflow.log_table(pd.DataFrame(rows), "backtest/per_origin.json")
        mlflow.log_dict(backtest, "backtest/backtest.json")
        for path in plots:
            mlflow.log_artifact(str(path), artifact_path="plots")
        decision = backtest["decision"]
        mlflow.set_tags(
            {
                "seqcast.candidate": decision["candidate"],
                "seqcast.candidate_chosen_on": decision["mode"],
                "seqcast.best_simple_on_backtest": decision["best_simple"],
            }
        )
        return run.info.run_id
