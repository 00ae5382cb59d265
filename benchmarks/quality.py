"""Forecast quality: the networks against the best simple baseline and the linear rival.

    python -m benchmarks.quality                                  # every case, params.yaml
    python -m benchmarks.quality --cases shipped --set models.gru.units=64 --kinds gru
    python -m benchmarks.quality --cases trend,random_walk --set train.seed=1

Each case runs the stage functions in-process (normalise, window, train) in a temporary root,
then scores every model on the identical validation and test windows (evaluation.score). Cases
are the shipped series and synthetic series it has never seen: a trend whose test period lies
above all training data, a random walk (naive is optimal), two seasons, and daily and weekly
series. The synthetic cases take params.yaml with only the data, seasons, calendar and window
keys of their frequency changed. Choose defaults on the validation table, never on test.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.common import RESULTS, ROOT, machine, table, write_results

NETWORKS = ("gru", "lstm")
SPLITS = ("val", "test")


@dataclass(frozen=True)
class Case:
    """One series and the params keys that differ from params.yaml for it."""

    description: str
    overrides: dict = field(default_factory=dict)
    frequency: str | None = None  # None: the shipped series as params.yaml reads it
    rows: int = 0
    values: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None


def synthetic(frequency: str, seasons: list[int], calendar: list[str], **window: int) -> dict:
    """The params keys a synthetic series of one frequency changes: data, seasons, calendar."""
    return {
        "data.path": "data/raw/series.csv",
        "data.targets": ["y"],
        "data.frequency": frequency,
        "data.bounds": {},
        "baselines.seasons": seasons,
        "features.reference_season": seasons[-1],
        "features.calendar": calendar,
        "evaluation.mase_season": seasons[0],
        **{f"window.{key}": value for key, value in window.items()},
    }


def cycle(t: np.ndarray, period: float, phase: float = 0.0) -> np.ndarray:
    """A sine of the given period in steps."""
    return np.sin(2 * np.pi * t / period + phase)


HOURLY = ["time_of_day", "day_of_week"]
CASES = {
    "shipped": Case("half-hourly electricity demand (params.yaml as is)"),
    "trend": Case(
        "hourly: trend + daily cycle + noise; test lies above all training data",
        synthetic("h", [24, 168], HOURLY),
        "h",
        2400,
        lambda t, rng: 100 + 0.1 * t + 10 * cycle(t, 24) + rng.normal(0, 1, len(t)),
    ),
    "random_walk": Case(
        "hourly random walk: naive is the best possible forecast",
        synthetic("h", [24, 168], []),
        "h",
        2400,
        lambda t, rng: 500 + np.cumsum(rng.normal(0, 1, len(t))),
    ),
    "two_seasons": Case(
        "hourly: daily and weekly seasons (weekly square wave) + noise",
        synthetic("h", [24, 168], HOURLY),
        "h",
        3000,
        lambda t, rng: (
            (100 + 10 * cycle(t, 24) + 6 * cycle(t, 168, 1.0) + 4 * np.sign(cycle(t, 168)))
            + rng.normal(0, 1, len(t))
        ),
    ),
    "daily": Case(
        "daily: weekly pattern + yearly cycle + trend + noise",
        synthetic("D", [7], ["day_of_week", "day_of_year"], input_width=56, horizon=14),
        "D",
        1500,
        lambda t, rng: (
            50 + 0.01 * t + 5 * (t % 7 >= 5) + 8 * cycle(t, 365.25) + rng.normal(0, 1, len(t))
        ),
    ),
    "weekly": Case(
        "weekly (W-SUN): yearly cycle + trend + noise",
        synthetic("W-SUN", [52], ["day_of_year"], input_width=26, horizon=8),
        "W-SUN",
        520,
        lambda t, rng: 200 + 0.05 * t + 20 * cycle(t, 52.18) + rng.normal(0, 2, len(t)),
    ),
}


def params_for(case: Case, base: dict, settings: dict) -> dict:
    """params.yaml with the case's keys, then the command line's, set (dotted keys)."""
    raw = copy.deepcopy(base)
    for dotted, value in {**case.overrides, **settings}.items():
        *sections, key = dotted.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return raw


def write_series(case: Case, root: Path, seed: int) -> None:
    """The case's raw CSV under root, where its params point."""
    if case.values is None:
        source = ROOT / yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["path"]
        (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / "data" / "raw" / source.name)
        return
    times = pd.date_range("2021-01-03", periods=case.rows, freq=case.frequency)
    values = case.values(np.arange(case.rows, dtype=np.float64), np.random.default_rng(seed))
    frame = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "y": values})
    (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / "data" / "raw" / "series.csv", index=False)


def score_all(cfg, root: Path, kinds: list[str]) -> dict:
    """MAE (in units) of every baseline, the linear rival and each network on val and test."""
    from seqcast.core import paths
    from seqcast.data import windowing
    from seqcast.evaluation import scores as evaluation
    from seqcast.models import networks
    from seqcast.models.forecaster import Forecaster, forecaster_for

    loaded = windowing.load_windows(root)
    spec, meta = loaded["spec"], loaded["meta"]
    targets = meta["columns"][: spec.n_targets]
    scale = evaluation.mase_scale(loaded, cfg.evaluation.mase_season)
    simple = {"naive": dataclasses.replace(spec, reference="naive", season=None)}
    for season in meta["seasons"]:
        simple[f"seasonal_naive_{season}"] = dataclasses.replace(
            spec, reference="seasonal_naive", season=season
        )
    forecasters = {name: forecaster_for(name, loaded, spec=s) for name, s in simple.items()}
    linear = networks.fit_linear_rival(loaded, cfg.baselines.linear_alpha)
    forecasters["linear"] = forecaster_for("linear", loaded, predictor=linear)
    for kind in kinds:
        forecasters[kind] = Forecaster.load(root / paths.MODELS / kind / "forecaster")
    mae = {
        name: {
            split: float(evaluation.score(f, loaded, split, scale).headline(targets)["mae"])
            for split in SPLITS
        }
        for name, f in forecasters.items()
    }
    return {"mae": mae, "baselines": list(simple), "reference": meta["reference_choice"]}


def run_case(
    name: str, case: Case, base: dict, settings: dict, kinds: list[str], work: Path, seed: int
) -> dict:
    """Validate, normalise, window and train in a fresh root; every model's val and test MAE."""
    from seqcast.core.config import parse_config
    from seqcast.data import scaling, validation, windowing
    from seqcast.models import training

    root = work / name
    write_series(case, root, seed)
    cfg = parse_config(params_for(case, base, settings), f"{name} params")
    validation.validate(cfg, root)
    scaling.normalise(cfg, root)
    windowing.window(cfg, root)
    trained = {kind: training.train(cfg, root, kind) for kind in kinds}
    out = score_all(cfg, root, kinds)
    out["train"] = {
        k: {key: t[key] for key in ("seconds", "epochs", "best_epoch")} for k, t in trained.items()
    }
    return out


def best(result: dict, split: str) -> str:
    """The simple baseline (not the linear rival) with the lowest MAE on a split."""
    return min(result["baselines"], key=lambda n: result["mae"][n][split])


def case_table(result: dict) -> str:
    """Every model's MAE, and its ratio to the best simple baseline of the same split."""
    mae = result["mae"]
    top = {split: mae[best(result, split)][split] for split in SPLITS}
    rows = [
        [
            name,
            mae[name]["val"],
            mae[name]["val"] / top["val"],
            mae[name]["test"],
            mae[name]["test"] / top["test"],
        ]
        for name in sorted(mae, key=lambda n: mae[n]["val"])
    ]
    headers = ["model", "val MAE", "val / best", "test MAE", "test / best"]
    return table(headers, rows)


def summary_table(results: dict[str, dict], kinds: list[str]) -> str:
    """One row per case: reference chosen, best baseline, and each network's ratio to it."""
    rows = []
    for name, result in results.items():
        choice = result["reference"]
        reference = choice["reference"] + (f" {choice['season']}" if choice["season"] else "")
        row = [name, reference, best(result, "val")]
        for split in SPLITS:
            top = result["mae"][best(result, split)][split]
            row += [result["mae"][n][split] / top for n in [*kinds, "linear"]]
        rows.append(row)
    ratios = [f"{split} {n}/best" for split in SPLITS for n in [*kinds, "linear"]]
    return table(["case", "reference", "best baseline (val)", *ratios], rows)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help=f"comma list of {tuple(CASES)}")
    p.add_argument("--kinds", default=",".join(NETWORKS), help="networks to train")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params key for every case, e.g. models.gru.units=64 (YAML value)",
    )
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic series")
    p.add_argument("--out", type=Path, default=RESULTS / "quality", help="results folder")
    p.add_argument("--keep", type=Path, default=None, help="keep the case roots in this folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the cases, print a table per case and a summary, write the results JSON."""
    args = parse(argv)
    settings = {}
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key.strip()] = yaml.safe_load(value)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    kinds = args.kinds.split(",")
    work = args.keep or Path(tempfile.mkdtemp(prefix="seqcast-quality-"))
    # One MLflow store for every case: its first creation costs seconds.
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    results, started = {}, time.perf_counter()
    try:
        for name in args.cases.split(","):
            print(f"\n## {name}: {CASES[name].description}", flush=True)
            results[name] = run_case(name, CASES[name], base, settings, kinds, work, args.data_seed)
            print(case_table(results[name]), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n## summary: MAE / best simple baseline's MAE on the same split\n", flush=True)
    print(summary_table(results, kinds), flush=True)
    out = {
        "settings": settings,
        "cases": results,
        "seconds": time.perf_counter() - started,
        "machine": machine(),
    }
    print(f"\nresults: {write_results(out, args.out)}", flush=True)
    return out


if __name__ == "__main__":
    main()
