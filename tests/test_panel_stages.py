"""The panel through the normalise and window stages by real `dvc repro` (issue 27).

A git copy of the project with examples/m1_panel.yaml as its params and 40 of the M1 series:
validate, normalise and window run; the stages after window stop in one line (not wired yet).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import ROOT

from benchmarks.repro import environment, git_copy
from seqcast.core.paths import PANEL_NOT_WIRED

pytestmark = pytest.mark.e2e

M1 = ROOT / "data" / "raw" / "m1_monthly.csv"
EVERY = 15  # every 15th series of the 617: 42 series, short and long ones alike


def m1_slice() -> pd.DataFrame:
    """Every 15th M1 series (in sorted id order), rows as in the file."""
    frame = pd.read_csv(M1)
    kept = sorted(frame["series_id"].unique())[::EVERY]
    return frame[frame["series_id"].isin(kept)]


@pytest.fixture(scope="module")
def panel_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git copy whose params.yaml is the M1 panel example and whose data is the slice."""
    repo = git_copy(tmp_path_factory.mktemp("panel") / "seqcast")
    params = yaml.safe_load((repo / "examples" / "m1_panel.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    m1_slice().to_csv(repo / params["data"]["path"], index=False)
    return repo


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """`dvc repro ...` in the copy, its own code first on the path (Prefect off: no server)."""
    env = environment() | {
        "SEQCAST_PREFECT": "off",
        "PYTHONPATH": os.pathsep.join([str(repo / "src"), str(repo)]),
    }
    return subprocess.run(
        ["dvc", "repro", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )


def test_dvc_repro_window_writes_the_panel_windows_then_train_stops_in_one_line(
    panel_repo: Path,
) -> None:
    """Exact window counts and cuts on the slice; `dvc repro` then stops at train, one line."""
    done = dvc(panel_repo, "window")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    split = json.loads((panel_repo / "data/prepared/split.json").read_text())
    assert split["cuts"]["test_start"].startswith("2018-07-01")
    assert split["cuts"]["val_start"].startswith("2017-01-01")
    assert split["rows"] == {"train": 2206, "val": 756, "test": 756}
    assert {p.name for p in (panel_repo / "data/prepared").iterdir()} == {
        "panel.parquet", "scaler.npz", "split.json",
    }  # fmt: skip
    summary = json.loads((panel_repo / "data/windows/summary.json").read_text())
    print(json.dumps({k: summary[k] for k in ("windows", "series", "too_short_to_train")}))
    with np.load(panel_repo / "data/windows/panel_windows.npz") as saved:
        starts = {name: saved[name] for name in saved.files}
    assert {name: len(s) for name, s in starts.items()} == summary["windows"]
    assert summary["windows"] == EXPECTED_WINDOWS
    # Counted series by series from the raw months: a train window is 18 inputs and 18 targets
    # before 2017-01; every test window's targets are a series' last 18 months (one each).
    months = pd.to_datetime(m1_slice()["month"])
    before = months[months < "2017-01-01"].groupby(m1_slice()["series_id"]).size()
    assert EXPECTED_WINDOWS["train"] == int(np.maximum(before - 35, 0).sum())
    assert EXPECTED_WINDOWS["test"] == summary["series"] == 42
    assert summary["too_short_to_train"] == int((before < 36).sum()) == 12

    done = dvc(panel_repo)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    print(said[-1500:])
    assert PANEL_NOT_WIRED in said
    assert "Traceback" not in said
    assert not (panel_repo / "models" / "gru").exists()


# Per split and backtest fold (fit, early-stopping val, block) on the slice, window 18 + 18.
EXPECTED_WINDOWS = {
    "train": 898, "val": 38, "test": 42,
    "fold0_fit": 3, "fold0_val": 7, "fold0_block": 12,
    "fold1_fit": 92, "fold1_val": 12, "fold1_block": 13,
    "fold2_fit": 269, "fold2_val": 13, "fold2_block": 30,
    "fold3_fit": 498, "fold3_val": 30, "fold3_block": 38,
}  # fmt: skip


def test_no_train_window_in_any_series_is_refused_naming_the_key(panel_repo: Path) -> None:
    """window.input_width longer than every series' training rows: one line naming the key."""
    from seqcast.core.config import load_config
    from seqcast.core.errors import ConfigError
    from seqcast.data.prepare import window

    if not (panel_repo / "data/prepared/split.json").is_file():
        assert dvc(panel_repo, "normalise").returncode == 0
    params = yaml.safe_load((panel_repo / "params.yaml").read_text())
    params["window"]["input_width"] = 100
    (panel_repo / "long.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cfg = load_config(panel_repo / "long.yaml")
    with pytest.raises(ConfigError, match=r"^window.input_width: 100 .* no train windows"):
        window(cfg, panel_repo)


def test_every_stage_after_window_refuses_a_panel_at_its_start(panel_repo: Path) -> None:
    """train, backtest, evaluate, refit and promote called directly: the same one line."""
    from seqcast.core.config import load_config
    from seqcast.core.errors import ConfigError
    from seqcast.evaluation import backtest, stage
    from seqcast.models import training
    from seqcast.operations import refit
    from seqcast.registry import registry

    if not (panel_repo / "data/windows/panel_windows.npz").is_file():
        assert dvc(panel_repo, "window").returncode == 0
    cfg = load_config(panel_repo / "params.yaml")
    calls = [
        lambda: training.train(cfg, panel_repo, "gru"),
        lambda: backtest.backtest(cfg, panel_repo, "lstm"),
        lambda: stage.evaluate(cfg, panel_repo),
        lambda: refit.refit(cfg, panel_repo),
        lambda: registry.promote(cfg, panel_repo),
    ]
    for call in calls:
        with pytest.raises(ConfigError) as raised:
            call()
        assert str(raised.value) == PANEL_NOT_WIRED
