"""Prefect orchestration of the seqcast pipeline: stage flows, the pipeline flow, its schedule."""

import sys
from pathlib import Path

# DVC runs each stage in the directory of its workspace: the checkout, or an experiment's copy
# under .dvc/tmp/exps/. The library a stage runs must be that workspace's src/, not the checkout
# the environment was installed from (an editable install points there).
_SRC = str(Path(__file__).resolve().parents[1] / "src")
if sys.path[:1] != [_SRC]:
    sys.path.insert(0, _SRC)
