"""The rolling-origin backtest, the refit and the conformal bands on the shipped series.

    python -m benchmarks.run --only backtest            # the pipeline in one process (~6 min)
    python -m benchmarks.run --only backtest,backtest-repro   # also two cold `make repro`s

Every stage runs in order in one worker process on the shipped data and params (a temporary
workspace and MLflow store). Printed: one fit (the train stage's model.fit) against the backtest
of the same network (its refits) and the final refit on every row, as the ratio
(backtest + refit) / ((refits + 1) x one fit); the served model's test MAE on windows its model
was not trained on; coverage, width and MSIS of each model's bands on the test windows against
the best simple baseline's. `backtest-repro` times a cold `make repro` with the default backtest
and with `backtest.origins: 0`, side by side in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import ROOT, emit


def workspace(tmp: Path, params: dict | None = None) -> Path:
    """The shipped CSV and params.yaml (sections merged) in a fresh folder."""
    root = tmp / "repo"
    (root / "data" / "raw").mkdir(parents=True)
    shutil.copy(ROOT / "data/raw/electricity_demand.csv", root / "data/raw/electricity_demand.csv")
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in (params or {}).items():
        shipped[section] = {**shipped.get(section, {}), **values}
    (root / "params.yaml").write_text(yaml.safe_dump(shipped, sort_keys=False))
    return root


def pipeline(root: Path) -> dict:
    """Every stage in dvc.yaml's order, timed; what the figures are read from."""
    from pipelines.common import MODEL_KINDS, PER_MODEL, STAGE_FUNCTIONS
    from seqcast.core.config import load_config

    cfg = load_config(root / "params.yaml")
    seconds: dict[str, float] = {}
    for stage, where in STAGE_FUNCTIONS.items():
        module, name = where.split(":")
        function = getattr(__import__(module, fromlist=[name]), name)
        for kind in MODEL_KINDS if stage in PER_MODEL else [None]:
            start = time.perf_counter()
            function(cfg, root, kind) if kind else function(cfg, root)
            seconds[f"{stage}@{kind}" if kind else stage] = time.perf_counter() - start
    read = lambda *parts: json.loads(root.joinpath(*parts).read_text())  # noqa: E731
    backtest = read("evaluation", "backtest.json")
    return {
        "stage_seconds": seconds,
        "train": {k: read("models", k, "train.json") for k in MODEL_KINDS},
        "folds": {k: read("backtest", k, "folds.json")["folds"] for k in MODEL_KINDS},
        "refit": read("models", "served", "refit.json"),
        "comparison": read("evaluation", "comparison.json"),
        "intervals": read("evaluation", "intervals.json"),
        "backtest_means": backtest["means"],
        "decision": backtest["decision"],
    }


def worker(argv: list[str]) -> int:
    """Run the pipeline in a temporary workspace and store; print the figures as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args(argv)
    params = {"train": {"epochs": args.epochs}} if args.epochs else None
    with tempfile.TemporaryDirectory(prefix="seqcast-bench-backtest-") as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        emit(pipeline(workspace(Path(tmp), params)))
    return 0


def summary(result: dict) -> dict:
    """The figures the goals are stated in."""
    decision, refit = result["decision"], result["refit"]
    served = decision["candidate"]
    best = min(
        (m for m, r in _roles(decision).items() if r == "simple"),
        key=lambda m: result["intervals"][m]["msis_80"],
    )
    out: dict = {"served": served, "best_simple_by_msis": best}
    for kind, folds in result["folds"].items():
        fit = result["train"][kind]["seconds"]
        refits = sum(1 for f in folds if f["refit"])
        backtest = sum(f["seconds"] for f in folds)
        final = refit["seconds"] if refit["candidate"] == kind else fit
        out[kind] = {
            "one_fit_s": fit,
            "refits": refits,
            "backtest_s": backtest,
            "backtest_fit_s": sum(f.get("fit_seconds", 0.0) for f in folds),
            "final_refit_s": final,
            "ratio": (backtest + final) / ((refits + 1) * fit),
        }
    bands = result["intervals"]
    out["coverage"] = {
        m: {k: v for k, v in s.items() if k.startswith("coverage_") and not k.endswith("_step")}
        for m, s in bands.items()
    }
    out["msis_ratio"] = {
        lv: bands[served][f"msis_{lv}"] / bands[best][f"msis_{lv}"] for lv in ("80", "95")
    }
    out["served_test_mae"] = result["comparison"]["models"][served]["mae"]
    out["test_mae"] = {m: r["mae"] for m, r in result["comparison"]["models"].items()}
    return out


def _roles(decision: dict) -> dict[str, str]:
    """model -> simple / not, from the decision's record."""
    simple = decision["wins_over_best_simple"]
    return {m: ("simple" if m.startswith(("naive", "seasonal_naive")) else "model") for m in simple}


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """Table headers and rows."""
    if "error" in result:
        return ["result"], [[result["error"]]]
    s = summary(result)
    rows = []
    for kind in ("gru", "lstm"):
        k = s[kind]
        rows.append([
            f"{kind}: backtest ({k['refits']} refits) + final refit vs one fit",
            k["ratio"],
            f"one fit {k['one_fit_s']:.1f} s; backtest {k['backtest_s']:.1f} s "
            f"(fits {k['backtest_fit_s']:.1f} s); final refit {k['final_refit_s']:.1f} s",
        ])  # fmt: skip
    for model, cov in s["coverage"].items():
        rows.append([f"coverage {model}", None, ", ".join(f"{k} {v:.1%}" for k, v in cov.items())])
    rows.append([
        f"MSIS served ({s['served']}) / best simple ({s['best_simple_by_msis']})", None,
        ", ".join(f"{lv}%: {v:.3f}" for lv, v in s["msis_ratio"].items()),
    ])  # fmt: skip
    rows.append(
        [
            f"test MAE of the served recipe ({s['served']}, train-split model)",
            s["served_test_mae"],
            "",
        ]
    )
    return ["figure", "value", "note"], rows


def cold_pair(timeout: float) -> dict:
    """A cold `make repro` with the default backtest and with it off, one after the other."""
    from benchmarks.repro import git_copy, make_repro, streamed

    out = {}
    for label, params in (("default", None), ("off", {"backtest": {"origins": 0}})):
        with tempfile.TemporaryDirectory(prefix="seqcast-cold-") as tmp:
            repo = git_copy(Path(tmp) / "seqcast", params)
            done = streamed(make_repro(), repo, timeout)
            if done["returncode"] != 0:
                return {"error": f"cold make repro ({label}) failed:\n{done['tail']}"}
            out[label] = {"seconds": done["seconds"], "stages": done["stages"]}
    out["ratio"] = out["default"]["seconds"] / out["off"]["seconds"]
    return out


def cold_report(result: dict) -> tuple[list[str], list[list[object]]]:
    """Table headers and rows."""
    if "error" in result:
        return ["result"], [[result["error"]]]
    rows = [
        [
            f"cold make repro, backtest {k}",
            result[k]["seconds"],
            ", ".join(f"{s} {v:.0f}" for s, v in result[k]["stages"].items()),
        ]
        for k in ("default", "off")
    ]
    rows.append(["ratio default / off", result["ratio"], "goal: at most 2.5"])
    return ["run", "seconds", "stage seconds"], rows


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1:]))
