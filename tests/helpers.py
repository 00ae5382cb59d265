"""Small shared builders for the unit tests of the core library."""

from __future__ import annotations

import contextlib
import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from seqcast.core.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[1]

BASE_PARAMS: dict = {
    "data": {
        "path": "data/raw/test.csv",
        "timestamp": "timestamp",
        "targets": ["demand_mw"],
        "features": [],
        "frequency": "30min",
        "bounds": {"demand_mw": [0.0, 100000.0]},
    },
    "split": {"train": 0.5, "val": 0.25, "max_gap_steps": 2},
    "window": {"input_width": 8, "horizon": 2},
}


def raw_params(**sections: dict) -> dict:
    """A minimal valid params mapping; each keyword updates the keys of one section."""
    raw = copy.deepcopy(BASE_PARAMS)
    for name, keys in sections.items():
        raw.setdefault(name, {}).update(keys)
    return raw


def make_config(**sections: dict) -> Config:
    """A validated Config from raw_params(**sections)."""
    return parse_config(raw_params(**sections))


def hourly(rows: int, start: str = "2024-01-01 00:00") -> pd.DatetimeIndex:
    """`rows` hourly timestamps from `start` (2024-01-01 is a Monday)."""
    return pd.date_range(start, periods=rows, freq="h")


def row_ids(rows: int, columns: int = 1) -> np.ndarray:
    """A (rows, columns) float series whose value names its row: column c holds 100 * c + row."""
    return np.arange(rows, dtype=np.float64)[:, None] + 100.0 * np.arange(columns)[None, :]


def mark_validated(root: Path, cfg: Config) -> None:
    """What the validate stage leaves for a raw CSV it passed, without running GX again."""
    from seqcast.core import paths
    from seqcast.core.io import write_json
    from seqcast.data.series import file_hash

    summary = {"raw_md5": file_hash(root / cfg.data.path), "success": True}
    write_json(root / paths.VALIDATION_SUMMARY, summary)


TINY_PARAMS: dict = {
    "window": {"input_width": 48, "horizon": 12},
    "baselines": {"seasons": [48]},
    "train": {"epochs": 2, "batch_size": 128, "patience": 1, "jit_compile": False},
    "models": {"gru": {"units": 8}, "lstm": {"units": 8}},
    "backtest": {"origins": 2},
}


def stage_root(tmp_path: Path, frame: pd.DataFrame | None = None, **sections: dict) -> Path:
    """A workspace with the shipped params (sections merged in) and a raw CSV: shipped or given."""
    import shutil

    import yaml

    root = tmp_path / "repo"
    (root / "data" / "raw").mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        params[section] = {**params.get(section, {}), **values}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    target = root / params["data"]["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    if frame is None:
        shutil.copy(ROOT / "data/raw/electricity_demand.csv", target)
    else:
        frame.to_csv(target, index=False)
    return root


def run_stage(root: Path, stage: str, *args: str, prefect: bool = False, **env: str):
    """`python -m pipelines.stages <stage> --root root` as DVC would run it; the result."""
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environ |= {"SEQCAST_PREFECT": "on" if prefect else "off", **env}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.stages", stage, *args, "--root", str(root)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_all(root: Path, until: str | None = None) -> dict:
    """Every stage in dvc.yaml's order in this process (matrix stages for each network)."""
    import importlib

    from pipelines.common import MODEL_KINDS, PER_MODEL, STAGE_FUNCTIONS
    from seqcast.core.config import load_config
    from seqcast.registry.store import record_key

    cfg = load_config(root / "params.yaml")
    results: dict = {}
    for stage, where in STAGE_FUNCTIONS.items():
        if stage == "evaluate":  # dvc.yaml's store stage runs right before evaluate
            results["store"] = record_key(root)[0]
        module, name = where.split(":")
        function = getattr(importlib.import_module(module), name)
        if stage in PER_MODEL:
            results[stage] = {kind: function(cfg, root, kind) for kind in MODEL_KINDS}
        else:
            results[stage] = function(cfg, root)
        if stage == until:
            break
    return results


@contextlib.contextmanager
def module_store(tmp_path_factory, name: str) -> Iterator[None]:
    """MLFLOW_TRACKING_URI on a fresh SQLite store while the block runs (creating one costs s)."""
    import pytest

    database = tmp_path_factory.mktemp(name) / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
        yield


def ran(done: subprocess.CompletedProcess) -> set[str]:
    """Stages DVC ran, read off its output, by name (`store/dvc.yaml:store` is `store`)."""
    text = done.stdout + done.stderr
    return {
        line.split("'")[1].rsplit(":", 1)[-1]
        for line in text.splitlines()
        if line.startswith("Running stage '")
    }
