"""Faults: params and data that cannot drive a run. Each is refused up front, exit 2, one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import ROOT, mark_validated, run_stage, stage_root

from seqcast.core.config import load_config


def check(params: Path) -> subprocess.CompletedProcess:
    """`seqcast check --params FILE`."""
    return subprocess.run(
        [sys.executable, "-m", "seqcast.cli", "check", "--params", str(params)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def shipped_with(tmp_path: Path, section: str, **values: object) -> Path:
    """The shipped params.yaml with one section's keys replaced."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[section] = {**params[section], **values}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("section", "values", "says"),
    [
        ("tracking", {"experiment": ""}, "tracking.experiment: String should have at least 1"),
        ("tracking", {"registered_model": "my/model"}, "tracking.registered_model: String should"),
        ("tracking", {"registered_model": "it's"}, "tracking.registered_model: String should"),
        ("data", {"frequency": "rows"}, "step_frequency is required when frequency is rows"),
        ("promotion", {"from_experiments": "always"}, "promotion.from_experiments: Input should"),
    ],
    ids=["empty-experiment", "slash-in-model-name", "quote-in-model-name", "rows-alone", "policy"],
)
def test_seqcast_check_refuses(tmp_path: Path, section: str, values: dict, says: str) -> None:
    """`seqcast check` catches what used to fail only mid-run (or at promote)."""
    done = check(shipped_with(tmp_path, section, **values))
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_two_rows_are_refused_with_exit_2(tmp_path: Path) -> None:
    """A two-row file: one line naming the file and the split, not a bare ValueError."""
    frame = pd.DataFrame(
        {"timestamp": ["2024-01-01 00:00", "2024-01-01 00:30"], "demand_mw": [1.0, 2.0]}
    )
    root = stage_root(tmp_path, frame)
    mark_validated(root, load_config(root / "params.yaml"))
    done = run_stage(root, "normalise")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "normalise failed: DataError: data/raw/electricity_demand.csv: 2 rows are too few to "
        "split: split.val: leaves no rows of 2 for the val split"
    ]


def test_constant_series_is_refused_up_front(tmp_path: Path) -> None:
    """A flat line has no MASE scale and nothing to learn: refused at normalise, never NaN."""
    times = pd.date_range("2024-01-01", periods=2000, freq="30min")
    frame = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M"), "demand_mw": 5.0})
    root = stage_root(tmp_path, frame)
    mark_validated(root, load_config(root / "params.yaml"))
    done = run_stage(root, "normalise")
    assert done.returncode == 2
    assert "column demand_mw is constant (5) over the 1400 training rows" in done.stderr
    assert not (root / "data/prepared").exists()


def test_series_that_repeats_exactly_has_no_mase_scale(tmp_path: Path) -> None:
    """A series equal to itself one MASE season back: a named error, not a division by zero."""
    times = pd.date_range("2024-01-01", periods=2000, freq="30min")
    values = 100.0 + np.tile(np.arange(48, dtype=float), 2000 // 48 + 1)[:2000]
    frame = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M"), "demand_mw": values})
    from seqcast.core.errors import ConfigError
    from seqcast.models import metrics

    with pytest.raises(ConfigError, match="evaluation.mase_season: the training split repeats"):
        metrics.seasonal_naive_scale(frame[["demand_mw"]].to_numpy(), 48)
