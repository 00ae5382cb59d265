"""Nightly arrivals replayed through the scheduled pipeline: does monitoring alarm when it should?

The shipped series minus its last `nights` x `rows` rows is the initial history; a cold run of
the pipeline flow trains and promotes the first champion. Then, in two copies of that
workspace, each night drops the next `rows` rows into `ingest.source` and runs the pipeline flow
(`make pipeline`'s command) with `monitoring.retrain: on_alarm`: once unchanged, once with a
level shift of `shift` (a fraction of the level) from night `shift_night` on. Figures: the night
of the first alarm, alarms on the unchanged replay, live coverage of the bands against nominal,
and seconds of a night that does not retrain against `make repro` with nothing to do.

    python -m benchmarks.replay [--nights 14 --rows 48 --shift-night 8 --shift 0.1]
                                [--retrain-every ROWS] [--no-shift]

With `--retrain-every ROWS` the pipeline retrains every ROWS new rows (`monitoring.retrain:
every_n_rows`), so each retrain's refit recalibrates the served bands on the scored live errors
and reads them at the levels adaptive conformal inference moved (`intervals.adapt_rate`): on
the unchanged replay with `on_alarm` nothing retrains, and the first champion's bands are never
recalibrated. `--no-shift` runs the unchanged replay only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import ROOT, emit, machine, median, table
from benchmarks.repro import BIN, free_port, git_copy, streamed

DATA = "data/raw/electricity_demand.csv"
INCOMING = "incoming/night.csv"
# Smaller than the shipped params so that a cold run and a retrain take minutes, not tens.
PARAMS = {
    "train": {"epochs": 3},
    "backtest": {"origins": 2, "refit_every": "once"},
    "ingest": {"source": INCOMING, "mode": "extend"},
    "monitoring": {"retrain": "on_alarm", "cooldown_rows": 336},
}


def pipeline(root: Path, timeout: float) -> dict:
    """`make pipeline` on root: one Prefect server for the run, the pipeline flow."""
    command = [str(BIN / "python"), "-m", "pipelines.server", "run", "--port", str(free_port())]
    command += ["--", str(BIN / "python"), "-m", "pipelines.pipeline", "--root", str(root)]
    return streamed(command, root, timeout)


def pipeline_from(code: Path, root: Path, timeout: float) -> float:
    """Seconds of `make pipeline` on root with the pipelines/ of another checkout (before)."""
    command = [str(BIN / "python"), "-m", "pipelines.server", "run", "--port", str(free_port())]
    command += ["--", str(BIN / "python"), "-m", "pipelines.pipeline", "--root", str(root)]
    ran = streamed(command, code, timeout)
    if ran["returncode"] != 0:
        raise RuntimeError(f"{code}: make pipeline failed:\n{ran['tail']}")
    return ran["seconds"]


STEPS = """
import json, sys, time
from pathlib import Path
start = time.perf_counter()
from seqcast.operations import ledger, monitoring
from seqcast.core.config import load_config
root = Path(sys.argv[1]); cfg = load_config(root / "params.yaml"); out = {}
out["import"] = time.perf_counter() - start; at = time.perf_counter()
assessment, decision = monitoring.check(cfg, root, False)
out["check"] = time.perf_counter() - at; at = time.perf_counter()
ledger.record_champion(cfg, root)
out["record_forecast"] = time.perf_counter() - at; at = time.perf_counter()
monitoring.new_alarms(cfg, root, assessment)
monitoring.record_check(cfg, root, assessment, decision, False)
out["record_check"] = time.perf_counter() - at
print(json.dumps(out))
"""


def monitoring_steps(root: Path) -> dict:
    """Seconds of each step a night adds, in a fresh process as the flow runs them."""
    import subprocess

    done = subprocess.run(
        [str(BIN / "python"), "-c", STEPS, str(root)], capture_output=True, text=True, cwd=root
    )
    if done.returncode != 0:
        raise RuntimeError(f"monitoring steps failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def noop_repro(root: Path, timeout: float) -> float:
    """Seconds of `make repro` with nothing stale: today's cost of a night with nothing to do."""
    command = [str(BIN / "python"), "-m", "pipelines.server", "run", "--port", str(free_port())]
    command += ["--", "dvc", "repro"]
    return streamed(command, root, timeout)["seconds"]


def last_check(root: Path) -> dict:
    """The latest `check` run's tags in the workspace's ledger experiment."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    found = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("seqcast-ledger").experiment_id],
        filter_string="tags.`seqcast.check.reason` != ''",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    tags = found[0].data.tags if found else {}
    return {k.removeprefix("seqcast.check."): v for k, v in tags.items() if "check." in k}


def night(root: Path, rows: pd.DataFrame, timeout: float) -> dict:
    """One night: the new rows into ingest.source, then the pipeline flow."""
    (root / INCOMING).parent.mkdir(exist_ok=True)
    rows.to_csv(root / INCOMING, index=False)
    ran = pipeline(root, timeout)
    check = last_check(root)
    refit = root / "models" / "served" / "refit.json"
    served = json.loads(refit.read_text()) if refit.is_file() else {}
    return {
        # What the latest refit served: live forecasts it recalibrated on, the ACI levels.
        "live_forecasts": served.get("live_forecasts"),
        "band_levels": served.get("band_levels"),
        "seconds": ran["seconds"],
        "returncode": ran["returncode"],
        "alarm": "Alarm:" in ran["output"],
        "reason": check.get("reason"),
        "retrained": check.get("retrained") == "true",
        "decay": check.get("decay"),
        "drift": check.get("drift"),
        "drift_message": check.get("drift_message"),
        "decay_message": check.get("decay_message"),
        "tail": ran["tail"] if ran["returncode"] else "",
    }


def replay(
    base: Path, work: Path, name: str, future: pd.DataFrame, args: argparse.Namespace
) -> dict:
    """A copy of the trained workspace through every night; shifted from shift_night if asked."""
    root = work / name
    shutil.copytree(base, root, symlinks=True)
    nights = []
    for n in range(args.nights):
        rows = future.iloc[n * args.rows : (n + 1) * args.rows].copy()
        if name == "shift" and n + 1 >= args.shift_night:
            rows["demand_mw"] = rows["demand_mw"] * (1.0 + args.shift)
        nights.append(night(root, rows, args.timeout))
        done = nights[-1]
        print(
            f"{name} night {n + 1}: {done['seconds']:.0f} s, {done['reason']}, "
            f"decay {done['decay']}, drift {done['drift']}, retrained {done['retrained']}, "
            f"bands from {done['live_forecasts']} live forecasts at {done['band_levels']}",
            file=sys.stderr,
            flush=True,
        )
    live = root / "reports/live/live.csv"
    frame = pd.read_csv(live) if live.is_file() else pd.DataFrame()
    coverage = {c: float(frame[c].mean()) for c in frame.columns if c.startswith("coverage_")}
    return {"nights": nights, "coverage": coverage, "scored": len(frame)}


def bench(args: argparse.Namespace) -> dict:
    """Cold run, the no-op figure, then the unchanged and the shifted replay."""
    full = pd.read_csv(ROOT / DATA)
    cut = len(full) - args.nights * args.rows
    params = PARAMS
    if args.retrain_every:
        every = {"retrain": "every_n_rows", "every_n_rows": args.retrain_every}
        params = PARAMS | {"monitoring": PARAMS["monitoring"] | every}
    with tempfile.TemporaryDirectory(prefix="seqcast-replay-") as tmp:
        work = Path(tmp)
        base = git_copy(work / "base", params)
        full.iloc[:cut].to_csv(base / DATA, index=False)
        (base / "incoming").mkdir()
        full.iloc[cut - args.rows : cut].to_csv(base / INCOMING, index=False)  # nothing new
        start = time.perf_counter()
        cold = pipeline(base, args.timeout)
        if cold["returncode"] != 0:
            raise RuntimeError(f"cold pipeline run failed:\n{cold['tail']}")
        result = {"cold_seconds": time.perf_counter() - start, "rows_history": cut}
        result["noop_repro_seconds"] = [noop_repro(base, args.timeout) for _ in range(2)]
        result["steps"] = [monitoring_steps(base) for _ in range(2)]
        if args.before:
            # Alternated, on the same workspace with nothing new: before and after, like for like.
            for _ in range(2):
                before = pipeline_from(args.before, base, args.timeout)
                result.setdefault("noop_pipeline_before", []).append(before)
                after = pipeline(base, args.timeout)["seconds"]
                result.setdefault("noop_pipeline_after", []).append(after)
        future = full.iloc[cut:].reset_index(drop=True)
        for name in ("unchanged",) if args.no_shift else ("unchanged", "shift"):
            result[name] = replay(base, work, name, future, args)
    return result


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """One row per figure of issue 20 item 6."""
    unchanged = result["unchanged"]["nights"]
    shift = result["shift"]["nights"] if "shift" in result else []
    shift_night = result["settings"]["shift_night"]
    first = next((i + 1 for i, n in enumerate(shift) if n["alarm"]), None) if shift else "-"
    quiet = [n["seconds"] for n in unchanged if not n["retrained"]]
    rows = [
        ["cold pipeline run (train + promote), s", f"{result['cold_seconds']:.0f}"],
        ["first alarm, shifted replay (shift at night)", f"{first} ({shift_night})"],
        ["alarms on the unchanged replay", sum(n["alarm"] for n in unchanged)],
        [
            "retrains: unchanged / shifted",
            f"{sum(n['retrained'] for n in unchanged)} / {sum(n['retrained'] for n in shift)}",
        ],  # fmt: skip
    ]
    for level, value in result["unchanged"]["coverage"].items():
        rows.append([f"live {level.replace('_', ' ')}% (unchanged)", f"{100 * value:.1f}%"])
    last = unchanged[-1] if unchanged else {}
    rows.append(
        [
            "last refit (unchanged): live forecasts recalibrated on, ACI levels",
            f"{last.get('live_forecasts')}, {last.get('band_levels')}",
        ]
    )
    noop = median(result["noop_repro_seconds"])
    rows += [
        ["`make repro` with nothing stale, s", f"{noop:.1f}"],
        ["night without retrain (`make pipeline`), median s", f"{median(quiet):.1f}"],
    ]
    for step in result["steps"][0]:
        seconds = median(s[step] for s in result["steps"])
        rows.append([f"  of which monitoring step `{step}` (fresh process), s", f"{seconds:.1f}"])
    if "noop_pipeline_before" in result:
        before, after = (median(result[f"noop_pipeline_{k}"]) for k in ("before", "after"))
        rows += [
            ["`make pipeline`, nothing new, before monitoring (today's no-op), s", f"{before:.1f}"],
            ["`make pipeline`, nothing new, with monitoring (no retrain), s", f"{after:.1f}"],
            ["extra cost of a no-retrain night, s", f"{after - before:+.1f}"],
        ]
    return ["figure", "value"], rows


def main(argv: list[str] | None = None) -> int:
    """Run the replay and print its table; the JSON goes to --out."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nights", type=int, default=14)
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--shift-night", type=int, default=8)
    parser.add_argument("--shift", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--retrain-every", type=int, default=None,
        help="retrain every this many new rows (recalibration and ACI act at each refit)",
    )  # fmt: skip
    parser.add_argument("--no-shift", action="store_true", help="the unchanged replay only")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout before monitoring (e.g. `git archive <rev> pipelines | tar -x -C DIR`): "
        "its `make pipeline` no-op is today's cost of a night with nothing to do",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    before = machine()
    result = bench(args)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    result |= {"settings": settings, "machine_before": before, "machine_after": machine()}
    print(table(*report(result)), file=sys.stderr if args.out is None else sys.stdout, flush=True)
    print(f"load average before/after: {before['load_average_1_5_15']} / "
          f"{result['machine_after']['load_average_1_5_15']}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))
    else:  # a worker of `python -m benchmarks.run --only replay`
        emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
