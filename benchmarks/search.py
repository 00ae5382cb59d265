"""The search (`make tune`): trials per minute with 1 and 2 parallel trials, overhead per trial.

    python -m benchmarks.run --only search                     # 4 trials each way (~10 min)
    python -m benchmarks.run --only search --search-trials 6 --search-epochs 20
    python -m benchmarks.run --only search-quality --search-minutes 40   # the shipped space

search-quality runs the shipped search space (trial 0: params.yaml's settings) on the shipped
series, then the train stage with params.yaml's settings and with the best, each in its own
workspace, scored on the test windows.

On the shipped series and params (a temporary workspace and MLflow store), every trial has the
shipped settings (a space of one choice each, no pruning), so the trials are identical and only
the fan-out differs: a local Ray with 2 CPUs, 1 trial at a time, then 2 at a time. The plain
backtest stage (seqcast.evaluation.backtest.backtest, the same network on the same folds) is
timed in the worker process first; the overhead per trial is the search's wall time per trial at
1 parallel trial (start-up of the Ray workers, TensorFlow import in each, Optuna, MLflow runs)
over that stage's time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import emit


@contextlib.contextmanager
def shipped_workspace() -> Iterator[tuple[Path, Path, dict]]:
    """A temporary workspace with the shipped windows, its own MLflow store, local Ray."""
    from benchmarks.data import shipped_windows
    from seqcast.core.config import load_config

    with tempfile.TemporaryDirectory(prefix="seqcast-bench-search-") as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        os.environ.pop("RAY_ADDRESS", None)
        root = shipped_windows(Path(tmp) / "repo")
        yield Path(tmp), root, load_config(root / "params.yaml").model_dump(mode="json")


def fixed_space(cfg) -> dict:
    """The shipped settings as a space of one choice each: every trial is the same fit."""
    m = cfg.models.gru
    return {
        "input_width": [cfg.window.input_width],
        "units": [m.units],
        "layers": [m.layers],
        "dropout": [m.dropout],
        "learning_rate": [cfg.train.learning_rate],
        "batch_size": [cfg.train.batch_size],
    }


def worker(argv: list[str]) -> int:
    """Windows of the shipped data, the plain backtest stage, then the two searches."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--parallel", default="1,2")
    args = parser.parse_args(argv)
    from seqcast.core.config import parse_config
    from seqcast.models import training
    from seqcast.operations import tune

    with shipped_workspace() as (tmp, root, raw):
        raw["train"]["epochs"] = args.epochs
        base = parse_config(raw)
        training.use_backend(base.train.backend)
        import keras  # noqa: F401  (imported before timing, as a stage's warm-up does)

        from seqcast.evaluation import backtest

        start = time.perf_counter()
        backtest.backtest(base, root, "gru")
        stage = time.perf_counter() - start
        result: dict = {"stage_seconds": stage, "epochs": args.epochs, "trials": args.trials}
        for parallel in [int(p) for p in args.parallel.split(",")]:
            raw["search"] = {
                "trials": args.trials,
                "parallel": parallel,
                "cpus": 2,
                "pruner": "none",
                "space": fixed_space(base),
            }
            cfg = parse_config(raw)
            start = time.perf_counter()
            summary = tune.search(cfg, root, say=lambda line: print(line, file=sys.stderr))
            wall = time.perf_counter() - start
            trials = __import__("pandas").read_csv(root / "tune" / "trials.csv")
            result[f"parallel_{parallel}"] = {
                "wall_seconds": wall,
                "search_seconds": summary["seconds"],
                "trials_per_minute": args.trials / (wall / 60.0),
                "trial_seconds": trials["seconds"].tolist(),
                "objective": trials["objective"].tolist(),
            }
    emit(result)
    return 0


def test_mase(raw: dict, folder: Path) -> dict:
    """The train stage with these params in its own workspace; its MASE on the test windows."""
    import shutil

    import yaml

    from benchmarks.common import ROOT
    from seqcast.core.config import parse_config
    from seqcast.data import scaling, validation, windowing
    from seqcast.evaluation.scores import mase_scale, score
    from seqcast.models import training
    from seqcast.models.forecaster import Forecaster

    cfg = parse_config(raw)
    raw_csv = folder / cfg.data.path
    raw_csv.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / cfg.data.path, raw_csv)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    validation.validate(cfg, folder)
    scaling.normalise(cfg, folder)
    windowing.window(cfg, folder)
    fitted = training.train(cfg, folder, "gru")
    loaded = windowing.load_windows(folder)
    forecaster = Forecaster.load(folder / "models" / "gru" / "forecaster")
    scored = score(forecaster, loaded, "test", mase_scale(loaded, loaded["meta"]["mase_season"]))
    test = scored.headline(cfg.data.targets)
    return {"test_mase": test["mase"], "test_mae": test["mae"], "train_seconds": fitted["seconds"]}


def quality(argv: list[str]) -> int:
    """The shipped search space on the shipped series; best vs params.yaml, then on test."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--timeout-minutes", type=float, default=None)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args(argv)
    from seqcast.core.config import parse_config
    from seqcast.operations import tune

    with shipped_workspace() as (tmp, root, raw):
        raw["search"] |= {
            "trials": args.trials,
            "timeout_minutes": args.timeout_minutes,
            "parallel": args.parallel,
            "cpus": 2,
        }
        cfg = parse_config(raw)
        summary = tune.search(cfg, root, say=lambda line: print(line, file=sys.stderr))
        best = tune.apply(cfg, summary["overrides"]).model_dump(mode="json")
        trials = __import__("pandas").read_csv(root / "tune" / "trials.csv")
        result = {
            "search": summary,
            "trials": trials.fillna("").to_dict(orient="records"),
            "test_params_yaml": test_mase(raw, Path(tmp) / "default"),
            "test_best": test_mase(best, Path(tmp) / "best"),
        }
    emit(result)
    return 0


def quality_report(result: dict) -> tuple[list[str], list[list[object]]]:
    """Table headers and rows: backtest and test MASE, params.yaml's settings against the best."""
    if "error" in result:
        return ["result"], [[result["error"]]]
    s = result["search"]
    base, best = result["test_params_yaml"]["test_mase"], result["test_best"]["test_mase"]
    rows = [
        ["trials (complete, pruned, failed)", sum(s["trials"].values()), str(s["trials"])],
        ["search seconds", s["seconds"], f"{s['trials_per_minute']} trials/min"],
        ["backtest mean MASE, params.yaml (trial 0)", s["params_yaml_objective"], ""],
        [f"backtest mean MASE, best (trial {s['trial']})", s["objective"], str(s["overrides"])],
        ["backtest improvement", s["improvement"], "goal: at least 0.05"],
        ["test MASE, params.yaml (train stage)", base, ""],
        ["test MASE, best settings (train stage)", best, ""],
        ["test improvement", 1.0 - best / base, "goal: at least half the backtest's"],
    ]
    return ["search quality", "figure", "detail"], rows


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """Table headers and rows."""
    if "error" in result:
        return ["result"], [[result["error"]]]
    stage = result["stage_seconds"]
    rows: list[list[object]] = [
        [f"plain backtest stage (gru, {result['epochs']} epochs max)", stage, "s, in-process"]
    ]
    speeds = {}
    for key in sorted(k for k in result if k.startswith("parallel_")):
        r = result[key]
        n = int(key.split("_")[1])
        speeds[n] = r["trials_per_minute"]
        per_trial = r["wall_seconds"] / result["trials"]
        rows.append(
            [
                f"{n} parallel trial(s) on 2 CPUs: trials/min",
                r["trials_per_minute"],
                f"{result['trials']} trials in {r['wall_seconds']:.0f} s (Ray start-up "
                f"included); {per_trial:.0f} s each; in-trial objective "
                + ", ".join(f"{s:.0f}" for s in r["trial_seconds"])
                + " s",
            ]
        )
        if n == 1:
            rows.append(
                [
                    "overhead per trial over the plain stage",
                    per_trial / stage - 1.0,
                    "wall per trial at 1 parallel / stage - 1 (goal: at most 0.10)",
                ]
            )
    if 1 in speeds and 2 in speeds:
        rows.append(["speed-up, 2 vs 1 parallel", speeds[2] / speeds[1], "goal: at least 1.5"])
    return ["search", "figure", "detail"], rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["quality"]:
        sys.exit(quality(sys.argv[2:]))
    sys.exit(worker(sys.argv[1:]))
