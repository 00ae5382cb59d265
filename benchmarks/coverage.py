"""Do the served bands hold on the future? The shipped series cut to its first 90 %.

    python -m benchmarks.coverage [--epochs N] [--keep DIR] [--root DIR]

As a user's trial (issue 31): the pipeline runs every stage on the first 90 % of the shipped
series (data/raw/electricity_demand.csv, the shipped params otherwise), then the registered
champion forecasts every origin of the held-back 10 %. Prints the served model, its future MAE
and the coverage of its 80 and 95 % bands on the held-back part, overall and per horizon step.
`--keep DIR` keeps the workspace (and writes `future.npz` there: the served forecasts, errors and
actuals per origin); `--root DIR` rescores a kept workspace without running the pipeline again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks import unseen
from benchmarks.common import ROOT, machine, table

NAME = "shipped"


def shipped() -> pd.DataFrame:
    """The shipped series, every row."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return pd.read_csv(ROOT / params["data"]["path"])


def workspace(root: Path, overrides: dict) -> Path:
    """A fresh workspace: the shipped params (with overrides) and the first 90 % of the series."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section] |= values
    params["tracking"] = {"experiment": "coverage shipped", "registered_model": "coverage-shipped"}
    (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    unseen.seen(shipped()).to_csv(root / params["data"]["path"], index=False)
    return root


def report(ahead: dict, levels: list[float]) -> list[list[object]]:
    """Rows: the served model, its future MAE, coverage per level, and per step (1, 6, 12, 24)."""
    errors, actual = ahead["served_errors"], ahead["actual"]
    rows: list[list[object]] = [
        ["served", ahead["served_kind"]],
        ["future origins", ahead["origins"]],
        ["future MAE (served)", f"{ahead['served']:.1f}"],
    ]
    scaled = "locally scaled" if ahead.get("locally_scaled") else "unscaled"
    for level in levels:
        rows.append(
            [f"future coverage {level:g} ({scaled})", f"{ahead[f'coverage_{level:g}']:.1%}"]
        )
        rows.append([f"mean band width {level:g}", f"{ahead[f'width_{level:g}']:.0f}"])
        rows.append(
            [
                f"future coverage {level:g}, the same errors unscaled",
                f"{ahead[f'unscaled_coverage_{level:g}']:.1%}",
            ]
        )
    for q in (50, 80, 95):
        per_step = np.nanpercentile(errors, q, axis=(0, 2))
        rows.append([f"future |error| p{q}, steps 1/6/12/24", _steps(per_step)])
    bias = np.nanmean(actual - ahead["served_point"])
    rows.append(["future mean error (actual - point)", f"{bias:.1f}"])
    return rows


def _steps(values: np.ndarray) -> str:
    """Values at steps 1, 6, 12 and the last."""
    picks = [0, 5, 11, len(values) - 1]
    return " / ".join(f"{values[i]:.0f}" for i in picks if i < len(values))


def main(argv: list[str] | None = None) -> int:
    """Run (or rescore) the shipped series cut to 90 % and print the served bands' coverage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (shipped: 20)")
    parser.add_argument("--keep", default=None, help="run in this folder and keep it")
    parser.add_argument("--root", default=None, help="rescore this kept workspace")
    args = parser.parse_args(argv)
    overrides = {"train": {"epochs": args.epochs}} if args.epochs else {}
    tmp = None
    if args.root:
        root = Path(args.root)
    else:
        folder = Path(args.keep) if args.keep else Path(tmp := tempfile.mkdtemp(prefix="cov-"))
        root = workspace(folder / unseen.slug(NAME), overrides)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root.parent / 'mlflow.db'}"
    try:
        if not args.root:
            unseen.pipeline(root)
        ahead = unseen.future(root, NAME, full=shipped())
        np.savez(
            root / "future.npz",
            **{k: ahead[k] for k in unseen.FUTURE_ARRAYS},
        )
        levels = [float(k.split("_")[1]) for k in ahead if k.startswith("coverage_")]
        print(table(["figure", "value"], report(ahead, levels)))
        print(f"load average: {machine()['load_average_1_5_15']}", flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
