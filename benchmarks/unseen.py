"""Series seqcast has never seen, run from params alone: test MAE of what gets served.

    python -m benchmarks.unseen [--epochs 20] [--units 32]

Three seeded synthetic series (a trading-day random walk with holidays, monthly sales with a
trend and a yearly season, Saturday weeks with gaps and empty cells) each go through every
stage in a fresh workspace whose params.yaml changes only the data keys, the window and, if
asked, the network size; the shipped model settings otherwise. Prints, per series, the test MAE
of the served model, both networks, the linear rival and the best simple baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.common import ROOT, table


def trading_days(n: int, seed: int = 0) -> pd.DataFrame:
    """A random walk of closes on business days, with a dozen holidays a year left out."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2015-01-02", periods=int(n * 1.06))
    holidays = rng.choice(len(days), size=len(days) - n, replace=False)
    days = days.delete(np.sort(holidays))
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "close": close.round(4)})


def monthly(n: int, seed: int = 1) -> pd.DataFrame:
    """Month-start sales: a trend, a yearly season and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    sales = 200 + 1.5 * t + 40 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 5, n)
    months = pd.date_range("1990-01-01", periods=n, freq="MS")
    return pd.DataFrame({"month": months.strftime("%Y-%m-%d"), "sales": sales.round(2)})


def weekly_with_gaps(n: int, seed: int = 2) -> pd.DataFrame:
    """Saturday-week counts with a yearly season, some weeks missing and some cells empty."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    visits = 1000 + 150 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 20, n)
    weeks = pd.date_range("2005-01-01", periods=n, freq="W-SAT")
    frame = pd.DataFrame({"week": weeks.strftime("%Y-%m-%d"), "visits": visits.round(1)})
    frame.loc[rng.choice(np.arange(10, n - 10), 6, replace=False), "visits"] = np.nan
    return frame.drop(index=[100, 101, 250, 400]).reset_index(drop=True)


# name: (raw CSV, the data keys a user writes, the window they choose)
CASES = {
    "trading-day random walk": (
        lambda: trading_days(1500),
        {"path": "data/raw/closes.csv", "timestamp": "date", "targets": ["close"],
         "frequency": "rows", "step_frequency": "B"},
        {"input_width": 20, "horizon": 5},
    ),
    "monthly seasonal with trend": (
        lambda: monthly(300),
        {"path": "data/raw/sales.csv", "timestamp": "month", "targets": ["sales"],
         "frequency": "MS"},
        {"input_width": 24, "horizon": 6},
    ),
    "weekly with gaps": (
        lambda: weekly_with_gaps(624),
        {"path": "data/raw/visits.csv", "timestamp": "week", "targets": ["visits"],
         "frequency": "W-SAT", "max_null_fraction": 0.02},
        {"input_width": 26, "horizon": 8},
    ),
}  # fmt: skip


def workspace(folder: Path, name: str, overrides: dict | None = None) -> Path:
    """The shipped params with only the data keys, the window and `overrides` changed."""
    make, data, window = CASES[name]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {k: v for k, v in params["data"].items() if k != "bounds"} | data
    params["window"] |= window
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            old = params[section].get(key)
            params[section][key] = old | value if isinstance(value, dict) else value
    slug = name.replace(" ", "-")
    params["tracking"] = {"experiment": f"unseen {name}", "registered_model": f"unseen-{slug}"}
    root = folder / slug
    (root / "data" / "raw").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make().to_csv(root / data["path"], index=False)
    return root


def pipeline(root: Path) -> dict:
    """Every stage in order from the workspace's params; window summary, decision, comparison."""
    from seqcast import refit, registry, scaling, training, validation, windowing
    from seqcast.config import load_config
    from seqcast.evaluation import backtest, stage

    cfg = load_config(root / "params.yaml")
    validation.validate(cfg, root)
    scaling.normalise(cfg, root)
    summary = windowing.window(cfg, root)
    for kind in ("gru", "lstm"):
        training.train(cfg, root, kind)
        backtest.backtest(cfg, root, kind)
    stage.evaluate(cfg, root)
    refit.refit(cfg, root)
    decision = registry.promote(cfg, root)
    comparison = json.loads((root / "evaluation" / "comparison.json").read_text())
    comparison["intervals"] = json.loads((root / "evaluation" / "intervals.json").read_text())
    return {"window": summary, "decision": decision, "comparison": comparison}


def row(name: str, ran: dict) -> list[object]:
    """One table row: served model and every rival's test MAE."""
    test, decision = ran["comparison"]["models"], ran["decision"]
    best = ran["comparison"]["best_baseline"]
    served = decision["candidate"]["kind"]
    return [
        name,
        f"{served}{' (fallback)' if decision['fallback'] else ''}",
        test[served]["mae"],
        test["gru"]["mae"],
        test["lstm"]["mae"],
        test["linear"]["mae"],
        f"{best} {test[best]['mae']:.4g}",
        test[served]["mae"] / test[best]["mae"],
        _coverage(ran["comparison"]["intervals"][served]),
        ran["comparison"]["intervals"][served]["msis_80"]
        / ran["comparison"]["intervals"][best]["msis_80"],
    ]


def _coverage(bands: dict) -> str:
    """Test coverage of the served model's bands, e.g. '80: 79.1%, 95: 94.3%'."""
    return ", ".join(
        f"{k.removeprefix('coverage_')}: {v:.1%}"
        for k, v in bands.items()
        if k.startswith("coverage_") and not k.endswith("_step")
    )


def main(argv: list[str] | None = None) -> int:
    """Run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (shipped: 20)")
    parser.add_argument("--units", type=int, default=None, help="units of both networks")
    args = parser.parse_args(argv)
    overrides: dict = {}
    if args.epochs:
        overrides["train"] = {"epochs": args.epochs}
    if args.units:
        overrides["models"] = {k: {"units": args.units} for k in ("gru", "lstm")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="seqcast-unseen-") as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        for name in CASES:
            rows.append(row(name, pipeline(workspace(Path(tmp), name, overrides))))
    headers = [
        "series", "served", "served MAE", "gru", "lstm", "linear", "best baseline", "ratio",
        "served coverage", "MSIS 80 vs best baseline",
    ]  # fmt: skip
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
