"""`seqcast exps` on a real tiny DVC repository with a commit and two experiments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqcast import cli
from seqcast.operations import experiments

STAGE = """\
stages:
  evaluate:
    cmd: >-
      python -c "import json, yaml; p = yaml.safe_load(open('params.yaml'));
      u = p['models']['gru']['units']; s = p['models']['lstm']['units'];
      json.dump({'mae': u / 3, 'mase': 0.9, 'bt_mae': 1.5, 'bt_mase': u / 20},
      open('metrics/gru.json', 'w'));
      json.dump({'mae': s / 3, 'mase': 0.8, 'bt_mae': 1.25, 'bt_mase': s / 40},
      open('metrics/lstm.json', 'w'));
      json.dump({'mae': 9.0, 'mase': 1.0, 'bt_mae': 2.0, 'bt_mase': 1.0},
      open('metrics/best_baseline.json', 'w'))"
    params: [train, models]
    metrics:
      - metrics/gru.json:
          cache: false
      - metrics/lstm.json:
          cache: false
      - metrics/best_baseline.json:
          cache: false
"""
PARAMS = "train:\n  epochs: 3\n  seed: 0\nmodels:\n  gru:\n    units: 8\n  lstm:\n    units: 8\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repo: the committed baseline and experiments `wide` and `seeded`."""
    root = tmp_path_factory.mktemp("exps")
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }

    def run(*command: str) -> None:
        subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)

    (root / "params.yaml").write_text(PARAMS)
    (root / "dvc.yaml").write_text(STAGE)
    (root / "metrics").mkdir()
    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    dvc_exp = (sys.executable, "-m", "dvc", "exp", "run", "-q")
    run(*dvc_exp, "-n", "wide", "-S", "models.gru.units=16", "-S", "models.lstm.units=32")
    run(*dvc_exp, "-n", "seeded", "-S", "train.seed=1")
    return root


def test_table_shows_changed_params_and_short_metric_names(repo: Path) -> None:
    table = experiments.rows(experiments.show_json(repo))

    assert [r.name for r in table][:2] == ["workspace", "master"]
    assert sorted(r.name for r in table[2:]) == ["  seeded", "  wide"]
    text = experiments.render(table, 120)

    lines = text.splitlines()
    assert lines[0].split() == ["train", "gru", "lstm"] + ["gru", "lstm", "best"] * 4
    assert lines[1].split() == ["experiment", "seed", "units", "units"] + [
        *["bt_mase"] * 3, *["mase"] * 3, *["bt_mae"] * 3, *["mae"] * 3
    ]  # fmt: skip
    assert "epochs" not in text  # the same in every row
    wide = next(line for line in lines if line.startswith("  wide"))
    assert wide.split() == ["wide", "0", "16", "32", "0.8", "0.8", "1", "0.9", "0.8", "1"] + [
        "1.5", "1.25", "2", "5.333", "10.67", "9"
    ]  # fmt: skip
    assert next(line for line in lines if line.startswith("master")).split()[4:] == ["-"] * 12
    assert max(len(line) for line in lines) <= 120


def test_narrow_width_leaves_out_low_priority_metrics_and_says_so(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)

    assert cli.main(["exps", "--width", "60", "--metrics", "bt_mase,mae"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert lines[0].split() == ["train", "gru", "lstm", "gru", "lstm", "best"]
    assert " ".join(lines[-2:]) == (
        "left out to fit 60 columns: gru mae, lstm mae, best mae (--width, or --metrics to choose)"
    )
