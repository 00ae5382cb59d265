"""Where things live: the workspace a stage runs in, the MLflow store, and stage outputs.

Params, data and outputs always come from the workspace: the directory DVC runs the stage in,
which for `dvc exp run --temp` / `--queue` is a copy under `<repo>/.dvc/tmp/exps/`. Only the
MLflow store (and the locks that guard it) belongs to the main checkout, so that every
experiment's runs land in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

EXPS_TMP = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep

# Stage outputs, relative to the workspace; dvc.yaml names the same paths.
VALIDATION = Path("reports/validation")
VALIDATION_SUMMARY = VALIDATION / "summary.json"
PREPARED = Path("data/prepared")
WINDOWS = Path("data/windows")
# The normalise stage's record of a panel's calendar split (its presence says: a panel).
PANEL_SPLIT = PREPARED / "split.json"
# The window stage's output for a panel (data.series): the stages after it are not wired yet.
PANEL_WINDOWS = WINDOWS / "panel_windows.npz"
PANEL_NOT_WIRED = (
    "data.series: panels run through validate, normalise and window so far; training a global "
    "network per panel is not wired yet (issue 27)"
)
MODELS = Path("models")
BACKTEST = Path("backtest")  # one folder per network: its forecasts of every backtest block
SERVED = Path("models/served")  # the chosen recipe, refit on every row (refit stage)
METRICS = Path("metrics")
# One DVC metrics file per role, the same names for every series: the networks, the linear
# rival, the statistical rivals (nulls when off or failed), naive, and the best simple baseline
# (its name is in evaluation/comparison.json).
METRIC_FILES = ("gru", "lstm", "linear", "autoets", "autotheta", "naive", "best_baseline")
PLOTS = Path("plots")
EVALUATION = Path("evaluation")
PROMOTION_METRICS = Path("metrics/promotion.json")
REPORT = Path("reports/report")


def refuse_panel(root: Path) -> None:
    """Stop a stage after window, in one line, when the windows it reads are a panel's."""
    # Read off the window stage's output (every later stage's dep), not data.series: a params
    # key those stages do not declare, and one the single-series params.yaml does not hold.
    if (root / PANEL_WINDOWS).is_file():
        from seqcast.core.errors import ConfigError

        raise ConfigError(PANEL_NOT_WIRED)


def workspace(start: Path | None = None) -> Path:
    """The checkout or experiment copy holding dvc.yaml/params.yaml, from `start` or the cwd."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").exists() or (candidate / "params.yaml").exists():
            return candidate
    return here


def store_root(root: Path | None = None) -> Path:
    """The main checkout, whose mlruns/ holds every run: DVC_ROOT in an experiment copy."""
    root = (root or workspace()).resolve()
    text = str(root) + os.sep
    if EXPS_TMP not in text:
        return root
    # DVC sets DVC_ROOT to the parent repository for queued and temporary experiments.
    parent = os.environ.get("DVC_ROOT")
    if parent and EXPS_TMP not in str(Path(parent).resolve()) + os.sep:
        return Path(parent).resolve()
    return Path(text.split(EXPS_TMP, 1)[0])


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI when set, else the SQLite store under <main checkout>/mlruns."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = store_root(root) / "mlruns"
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        from seqcast.core.errors import StoreError

        raise StoreError(f"{store}: cannot create the MLflow store ({err.strerror})") from None
    # Concurrent writers (e.g. `dvc exp run --queue -j 2`) wait up to 60 s for SQLite's lock
    # instead of failing with "database is locked".
    return f"sqlite:///{store / 'mlflow.db'}?timeout=60"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// tracking URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]).resolve()


def dvc_experiment() -> dict[str, str]:
    """The DVC experiment this process runs in (name and baseline commit), or {} for a checkout."""
    name = os.environ.get("DVC_EXP_NAME")
    if not name:
        return {}
    return {"name": name, "baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", "")}
