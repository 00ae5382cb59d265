"""Series seqcast has never seen, run from params alone: what gets served, on data it never saw.

    python -m benchmarks.unseen [--epochs 20] [--units 32] [--only NAME,...] [--keep DIR]

Each series of the zoo (benchmarks/zoo.py: ten seeded kinds) goes through every stage in a
fresh workspace whose params.yaml changes only what a user sets for it (data keys, window, and
for the short series the number of backtest origins) and, if asked, the network size. As in a
user's trial, the newest 10 % of each series is held back: the pipeline runs on the first 90 %,
then the served champion (from the registry, as `seqcast forecast` loads it) forecasts every
origin of the held-back part. Prints, per series, the served model, its test MAE, its future MAE
against the best simple baseline's and gru/lstm/linear's (the train-split fits), and the future
coverage of its 80 and 95 % bands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.common import ROOT, table
from benchmarks.zoo import ZOO

# The three series this benchmark started with (tests/test_zoo.py runs them with the rest).
CASES = {
    name: ZOO[name]
    for name in ("trading-day random walk", "monthly seasonal with trend", "weekly with gaps")
}
HOLD_BACK = 0.1  # the newest share of each series, never shown to the pipeline


def history(name: str) -> pd.DataFrame:
    """The series without its held-back newest rows: what the pipeline sees."""
    return seen(ZOO[name].make())


def seen(full: pd.DataFrame) -> pd.DataFrame:
    """A series without its newest HOLD_BACK share of rows."""
    return full.iloc[: len(full) - int(round(len(full) * HOLD_BACK))]


def params_for(name: str, overrides: dict | None = None) -> dict:
    """The shipped params with only what a user sets for the series and `overrides` changed."""
    kind = ZOO[name]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # The shipped bounds are demand_mw's; the key stays (DVC tracks it), empty.
    params["data"] = params["data"] | {"bounds": {}} | kind.data
    params["window"] |= kind.window
    for section, values in _merged(kind.params, overrides or {}).items():
        for key, value in values.items():
            old = params[section].get(key)
            params[section][key] = old | value if isinstance(value, dict) else value
    params["tracking"] = {
        "experiment": f"unseen {name}",
        "registered_model": f"unseen-{slug(name)}",
    }
    return params


def _merged(first: dict, then: dict) -> dict:
    """Two {section: {key: value}} maps, `then` winning."""
    out = {section: dict(values) for section, values in first.items()}
    for section, values in then.items():
        out.setdefault(section, {}).update(values)
    return out


def slug(name: str) -> str:
    """A folder and model name for a series."""
    return name.replace(" ", "-")


def workspace(folder: Path, name: str, overrides: dict | None = None) -> Path:
    """A fresh workspace for the series: its params.yaml and its raw CSV (held-back part cut)."""
    root = folder / slug(name)
    write_case(root, name, overrides)
    return root


def write_case(root: Path, name: str, overrides: dict | None = None) -> None:
    """Write the series' params.yaml and raw CSV into a workspace (new or a git copy)."""
    params = params_for(name, overrides)
    (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    history(name).to_csv(root / params["data"]["path"], index=False)


def pipeline(root: Path) -> dict:
    """Every stage in order from the workspace's params; window summary, decision, comparison."""
    from seqcast.core.config import load_config
    from seqcast.data import scaling, validation, windowing
    from seqcast.evaluation import backtest, stage
    from seqcast.models import training
    from seqcast.operations import refit
    from seqcast.registry import registry

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


def future(
    root: Path, name: str, model: str | None = None, full: pd.DataFrame | None = None
) -> dict:
    """Every origin of the held-back part forecast by the served champion and each rival.

    MAE in the series' units (over targets, steps and origins; cells missing in the raw file are
    not scored) and the served bands' coverage. `model`: a registry URI or forecaster folder
    (default: the champion, as `seqcast forecast` loads it). `full`: the whole series (default:
    the zoo's `name`). Also returns the served model's forecasts, errors and actuals per origin
    (`served_point`, `served_errors`, `actual`, `future_origins`) for a closer look.
    """
    from seqcast.core.config import load_config
    from seqcast.data import series
    from seqcast.data.windowing import load_windows
    from seqcast.evaluation.scores import baseline_forecasters, units_of
    from seqcast.models import networks, serving, statistical
    from seqcast.models.forecaster import Forecaster, forecaster_for

    cfg = load_config(root / "params.yaml")
    full = ZOO[name].make() if full is None else full
    frame, _ = series.regularise(full, cfg.data, cfg.split.max_gap_steps, "the whole series")
    stamps = pd.DatetimeIndex(pd.to_datetime(full[cfg.data.timestamp]))
    raw = full[cfg.data.value_columns].astype(float).set_axis(stamps)
    observed = raw.reindex(frame.index)[cfg.data.targets].to_numpy()
    first = frame.index.get_loc(stamps[len(seen(full))])
    w = cfg.window
    origins = np.arange(first - w.shift, len(frame) - w.shift - w.horizon + 1)
    steps = origins[:, None] + w.shift + np.arange(w.horizon)[None, :]
    actual = observed[steps]  # (origins, horizon, targets), NaN where the raw cell was missing
    loaded = load_windows(root)
    best = json.loads((root / "evaluation/comparison.json").read_text())["best_baseline"]
    served = (
        Forecaster.load(Path(model))
        if model and Path(model).is_dir()
        else serving.load(model or f"models:/{cfg.tracking.registered_model}@champion")
    )
    rivals = {
        kind: Forecaster.load(root / "models" / kind / "forecaster") for kind in ("gru", "lstm")
    }
    ridge = networks.fit_linear_rival(loaded, cfg.baselines.linear_alpha)
    rivals["linear"] = forecaster_for("linear", loaded, predictor=ridge)
    # The statistical rivals as the evaluate stage fits them: on the training rows only.
    meta, spec = loaded["meta"], loaded["spec"]
    fitted, _ = statistical.fit_rivals(
        cfg.baselines.statistical,
        units_of(loaded)[: meta["rows"]["train"], : spec.n_targets],
        meta["seasons"],
    )
    rivals |= {n: forecaster_for(n, loaded, predictor=r) for n, r in fitted.items()}
    simple = baseline_forecasters(loaded)
    backtest_simple = json.loads((root / "evaluation/comparison.json").read_text())["candidate"][
        "best_simple"
    ]
    rivals |= {kind: simple[kind] for kind in {best, backtest_simple}}
    values, times = frame.to_numpy(dtype=np.float64), frame.index
    points = {
        kind: f.forecast_units(values, times, origins)
        for kind, f in {"served": served, **rivals}.items()
    }
    errors = {kind: np.abs(actual - p) for kind, p in points.items()}
    out = {kind: float(np.nanmean(e)) for kind, e in errors.items()}
    out |= {"served_kind": served.name, "best_baseline": best, "origins": len(origins)}
    # (origins, horizon, targets, levels): each origin's band as serving computes it.
    half = served.band_half_widths(values, origins)
    unscaled = dataclasses.replace(served, calibration_scale=None).half_widths()[None]
    for i, level in enumerate(served.levels):
        for key, h in (("coverage", half), ("unscaled_coverage", unscaled)):
            inside = errors["served"] <= h[..., i]
            out[f"{key}_{level:g}"] = float(inside[~np.isnan(actual)].mean())
        out[f"width_{level:g}"] = float(2 * np.mean(np.broadcast_to(half[..., i], actual.shape)))
    out["locally_scaled"] = served.locally_scaled
    out |= {
        "served_point": points["served"],
        "served_errors": errors["served"],
        "actual": actual,
        "future_origins": origins,
    }
    return out


def row(name: str, ran: dict, ahead: dict) -> list[object]:
    """One table row: served model, its test and future MAE, the rivals' future MAE, coverage."""
    test, decision = ran["comparison"]["models"], ran["decision"]
    served = decision["candidate"]["kind"]
    best = ahead["best_baseline"]
    return [
        name,
        f"{served}{' (fallback)' if decision['fallback'] else ''}",
        test[served]["mae"],
        ahead["served"],
        f"{best} {ahead[best]:.4g}",
        ahead["served"] / ahead[best],
        ahead["gru"],
        ahead["lstm"],
        ahead["linear"],
        f"{ahead['coverage_80']:.1%} / {ahead['coverage_95']:.1%}",
        f"{ahead['unscaled_coverage_80']:.1%} / {ahead['unscaled_coverage_95']:.1%}",
    ]


RULES = ("paired_test", "min_wins", "mean")
# What future() returns per origin, kept in a workspace's future.npz for a closer look.
FUTURE_ARRAYS = ("served_point", "served_errors", "actual", "future_origins")


def rule_row(name: str, ran: dict, ahead: dict) -> list[object]:
    """What each decision rule would serve, and whether it is the one with the lower future MAE.

    The rules choose between the backtest's best model and its best simple baseline; their future
    MAE is the train-split fit's (a network or the linear rival) and the baseline's.
    """
    chosen = ran["comparison"]["candidate"]
    best, simple = chosen["best"], chosen["best_simple"]
    p = chosen.get("paired_test", {}).get("p_a_better", float("nan"))
    passes = {
        "paired_test": best == simple or p < chosen["significance"],
        "min_wins": best == simple
        or chosen["wins_over_best_simple"][best] >= chosen["wins_needed"],
        "mean": True,
    }
    lower = min((best, simple), key=lambda m: ahead[m])
    picks = {rule: best if ok else simple for rule, ok in passes.items()}
    return [
        name, best, simple, p, f"{chosen['wins_over_best_simple'][best]}/{chosen['origins']}",
        ahead[best], ahead[simple],
        *(f"{picks[r]} {'yes' if picks[r] == lower else 'no'}" for r in RULES),
    ]  # fmt: skip


RULE_HEADERS = [
    "series", "best (backtest)", "best simple", "paired p", "wins", "future MAE best",
    "future MAE simple", *(f"{r}: serves / lower?" for r in RULES),
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run every series of the zoo (or those named) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (shipped: 20)")
    parser.add_argument("--units", type=int, default=None, help="units of both networks")
    parser.add_argument("--only", default=None, help="comma-separated series names")
    parser.add_argument("--keep", default=None, help="run in this folder and keep the workspaces")
    args = parser.parse_args(argv)
    overrides: dict = {}
    if args.epochs:
        overrides["train"] = {"epochs": args.epochs}
    if args.units:
        overrides["models"] = {k: {"units": args.units} for k in ("gru", "lstm")}
    names = args.only.split(",") if args.only else list(ZOO)
    rows, rules = [], []
    with tempfile.TemporaryDirectory(prefix="seqcast-unseen-") as scratch:
        tmp = args.keep or scratch
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        for name in names:
            root = workspace(Path(tmp), name, overrides)
            try:
                ran, ahead = pipeline(root), future(root, name)
                np.savez(root / "future.npz", **{k: ahead[k] for k in FUTURE_ARRAYS})
                rows.append(row(name, ran, ahead))
                rules.append(rule_row(name, ran, ahead))
            except Exception as err:  # one series' failure is a finding, not the end of the table
                rows.append([name, f"failed: {type(err).__name__}: {str(err)[:200]}"] + [""] * 9)
            print(table(HEADERS, rows[-1:]), flush=True)  # each series as it finishes
    print(table(HEADERS, rows))
    print("\nDecision rules on the held-back futures (the lower of best and best simple):")
    print(table(RULE_HEADERS, rules))
    for i, rule in enumerate(RULES):
        right = sum(r[7 + i].endswith(" yes") for r in rules)
        print(f"  {rule}: served the lower future MAE on {right} of {len(rules)} series")
    return 0


HEADERS = [
    "series", "served", "test MAE", "future MAE", "best baseline (future)", "ratio",
    "gru", "lstm", "linear", "future coverage 80 / 95", "unscaled bands 80 / 95",
]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
