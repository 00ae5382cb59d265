"""`make bench`: every seqcast benchmark, a printed table per section and one JSON result.

    python -m benchmarks.run                      # all sections, defaults sized for ~10 minutes
    python -m benchmarks.run --only training --variants all --epochs 6

Figures only, never pass/fail: times depend on the machine and on whatever else it runs, so
the CPU count and load averages are written beside them (benchmarks/results/latest.json).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import (
    backtest,
    bigseries,
    panel_validation,
    replay,
    repro,
    search,
    serving,
    statistical,
    team,
    training,
    windowing,
)
from benchmarks.common import ROOT, machine, median, run_worker, table, write_results

SECTIONS = (
    "windowing",
    "training",
    "bigseries",
    "repro",
    "serving",
    "statistical",
    "backtest",
    "backtest-repro",
    "search",
    "team",
    "panel-validation",
)
# Only with --only: replay is 15-20 min of nightly pipeline runs, search-quality a 30-trial search.
OPT_IN = ("replay", "search-quality")
BASELINE = ("tensorflow", "keras")  # the plain Keras model.fit every ratio is taken against


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; defaults are what `make bench` runs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma list of {SECTIONS}, or the opt-in {OPT_IN}",
    )
    p.add_argument("--out", type=Path, default=None, help="results folder (benchmarks/results)")
    g = p.add_argument_group("windowing")
    g.add_argument("--sizes", default="1e5,1e6,1e7", help="series lengths")
    g.add_argument("--horizons", default="1,24")
    g.add_argument("--input-width", type=int, default=96)
    g.add_argument("--max-windows", type=int, default=100_000, help="windows gathered per timing")
    g.add_argument("--repeats", type=int, default=3)
    g = p.add_argument_group("training")
    g.add_argument("--backends", default="tensorflow,jax")
    g.add_argument("--kinds", default="gru,lstm")
    g.add_argument("--variants", default="default", help=training.pick.__doc__)
    g.add_argument(
        "--epochs",
        type=int,
        default=6,
        help="the first compiles, the rest are timed; 0: the train stage's own fit "
        "(config epochs, early stopping), for test metrics",
    )
    g.add_argument("--seeds", default=None, help="comma list of train.seed, e.g. for test metrics")
    g.add_argument(
        "--side-by-side",
        action="store_true",
        help="run the backends' workers at once (smoke tests: figures not comparable)",
    )
    g.add_argument("--units", type=int, default=None, help="override model units (smoke tests)")
    g.add_argument("--train-max-windows", type=int, default=None, help="cap windows (smoke tests)")
    g = p.add_argument_group("bigseries")
    g.add_argument("--big-points", type=float, default=1e7)
    g.add_argument("--big-train-windows", type=int, default=20_000)
    g.add_argument("--big-pipeline-batches", type=int, default=200)
    g = p.add_argument_group("repro")
    g.add_argument("--noop-repeats", type=int, default=3)
    g.add_argument("--repro-dry", action="store_true", help="dvc repro --dry only (smoke tests)")
    g = p.add_argument_group("team")
    g.add_argument("--team-writers", type=int, default=team.WRITERS, help="concurrent writers")
    g.add_argument("--team-runs", type=int, default=team.RUNS_PER_WRITER, help="runs per writer")
    g.add_argument("--team-no-dvc", action="store_true", help="skip the DVC push/pull part")
    g = p.add_argument_group("panel-validation")
    g.add_argument("--panel-rows", default="2e6", help="rows of the synthetic panel (and M1)")
    g = p.add_argument_group("serving")
    g.add_argument("--requests", type=int, default=100)
    g.add_argument("--series", type=int, default=1000)
    g.add_argument(
        "--forecaster",
        type=Path,
        default=None,
        help="a saved Forecaster folder (default: the GRU of the repro section)",
    )
    g = p.add_argument_group("search")
    g.add_argument("--search-trials", type=int, default=4, help="trials per fan-out")
    g.add_argument("--search-epochs", type=int, default=6, help="train.epochs of every trial")
    g.add_argument("--search-minutes", type=float, default=40, help="search-quality time budget")
    g.add_argument("--timeout", type=float, default=1800, help="seconds per worker process")
    return p.parse_args(argv)


def run_training(args: argparse.Namespace, work: Path) -> dict:
    """One worker process per backend on the shipped windows."""
    from benchmarks.data import shipped_windows

    root = shipped_windows(work / "windows")
    extra = ["--kinds", args.kinds, "--variants", args.variants, "--epochs", str(args.epochs)]
    if args.units:
        extra += ["--units", str(args.units)]
    if args.seeds:
        extra += ["--seeds", args.seeds]
    if args.train_max_windows:
        extra += ["--max-windows", str(args.train_max_windows)]
    backends = args.backends.split(",")

    def one(backend: str) -> dict:
        worker = ["--backend", backend, "--root", str(root), *extra]
        return run_worker("benchmarks.training", worker, args.timeout)

    if args.side_by_side:  # smoke tests: quicker, but the workers share the CPUs
        with ThreadPoolExecutor(len(backends)) as pool:
            return dict(zip(backends, pool.map(one, backends), strict=True))
    return {backend: one(backend) for backend in backends}


def training_report(result: dict) -> str:
    """Every run, then the summary the goals are stated in (medians over seeds, if several)."""
    runs = [r for backend in result.values() for r in backend["runs"]]
    grouped: dict[tuple, list[dict]] = {}
    for r in runs:
        grouped.setdefault((r["kind"], r["backend"], r["variant"]), []).append(r)
    speed = {k: median(r["windows_per_second"] for r in rs) for k, rs in grouped.items()}
    base = {k[0]: v for k, v in speed.items() if k[1:] == BASELINE}
    rows = [
        [
            r["kind"],
            r["backend"],
            r["variant"],
            r.get("seed"),
            r["windows_per_second"],
            r["windows_per_second"] / base[r["kind"]] if r["kind"] in base else None,
            r.get("best_epoch_windows_per_second"),
            r["cpu_seconds_per_epoch"],
            r["first_epoch_seconds"],
            r["fit_seconds"],
            r.get("epochs_run", r["epochs"]),
            r["test_mse"],
        ]
        for r in runs
    ]
    headers = [
        "model",
        "backend",
        "variant",
        "seed",
        "train windows/s",
        "x plain Keras",
        "best epoch windows/s",
        "CPU s/epoch",
        "1st epoch s",
        "fit s",
        "epochs",
        "test MSE",
    ]
    columns = [
        ("plain Keras (TF)", "tensorflow", "keras"),
        ("Keras jit_compile", "tensorflow", "keras_jit"),
        ("Keras on JAX", "jax", "keras"),
        ("seqcast default (TF, jit auto)", "tensorflow", "seqcast"),
        ("seqcast backend jax", "jax", "seqcast"),
    ]
    summary, metrics = [], []
    for kind in sorted(base):
        cells = [speed.get((kind, b, v)) for _, b, v in columns]
        summary.append([kind, *(f"{c:,.0f} ({c / base[kind]:.2f}x)" if c else "-" for c in cells)])
        mse = [grouped.get((kind, b, v)) for _, b, v in columns]
        metrics.append([kind, *(median(r["test_mse"] for r in rs) if rs else None for rs in mse)])
    names = ["model", *(c[0] for c in columns)]
    return "\n\n".join(
        [
            table(headers, rows),
            "Training windows/s (ratio to plain Keras model.fit):\n" + table(names, summary),
            "Test MSE of scaled residuals (median over seeds):\n" + table(names, metrics),
        ]
    )


def run_bigseries(args: argparse.Namespace, work: Path) -> dict:
    """prepare then train, each in its own process so peak memory is its own."""
    folder = work / "big"
    prepared = run_worker(
        "benchmarks.bigseries",
        ["prepare", "--out", str(folder), "--points", str(int(args.big_points))],
        args.timeout,
    )
    trained = run_worker(
        "benchmarks.bigseries",
        [
            "train",
            "--out",
            str(folder),
            "--train-windows",
            str(args.big_train_windows),
            "--pipeline-batches",
            str(args.big_pipeline_batches),
        ],
        args.timeout,
    )
    shutil.rmtree(folder, ignore_errors=True)
    return {"prepare": prepared, "train": trained}


def pick_forecaster(args: argparse.Namespace, work: Path) -> Path:
    """The given folder, else the repro section's GRU, else the repo's, else a baseline."""
    for folder in (args.forecaster, work / "gru-forecaster", ROOT / "models/gru/forecaster"):
        if folder is not None and (folder / "forecaster.json").exists():
            return folder
    from benchmarks.data import shipped_windows
    from seqcast.data import windowing
    from seqcast.models.forecaster import forecaster_for

    root = shipped_windows(work / "serving-windows")
    folder = work / "baseline-forecaster"
    forecaster_for("seasonal_naive", windowing.load_windows(root)).save(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections in order, print their tables, write the JSON."""
    args = parse(argv)
    chosen = [s for s in args.only.split(",") if s]
    unknown = sorted(set(chosen) - set(SECTIONS) - set(OPT_IN))
    if unknown:
        print(
            f"--only: unknown section(s) {unknown}; expected {SECTIONS + OPT_IN}", file=sys.stderr
        )
        return 2
    results: dict = {"machine_before": machine(), "sections": {}, "seconds": {}}
    print(
        f"seqcast benchmarks on {results['machine_before']['cpu_count']} CPUs "
        f"({results['machine_before']['cpu_model']}), load average "
        f"{results['machine_before']['load_average_1_5_15']}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="seqcast-bench-") as tmp:
        work = Path(tmp)
        for section in chosen:
            start = time.perf_counter()
            print(f"\n## {section}", flush=True)
            try:
                result, text = run_section(section, args, work)
            except Exception as err:  # a failing section must not hide the others' figures
                result, text = {"error": f"{type(err).__name__}: {err}"}, f"failed: {err}"
            results["sections"][section] = result
            results["seconds"][section] = time.perf_counter() - start
            print(text, flush=True)
    results["machine_after"] = machine()
    path = write_results(results, args.out) if args.out else write_results(results)
    print(
        f"\nload average after: {results['machine_after']['load_average_1_5_15']}; results: {path}",
        flush=True,
    )
    return 0


def run_section(section: str, args: argparse.Namespace, work: Path) -> tuple[dict, str]:
    """One section's result and its printed table."""
    if section == "windowing":
        sizes = [int(float(s)) for s in args.sizes.split(",")]
        horizons = [int(h) for h in args.horizons.split(",")]
        result = windowing.bench(sizes, horizons, args.input_width, args.max_windows, args.repeats)
        return result, table(*windowing.report(result))
    if section == "training":
        result = run_training(args, work)
        return result, training_report(result)
    if section == "bigseries":
        result = run_bigseries(args, work)
        return result, table(*bigseries.report(result))
    if section == "replay":
        result = run_worker("benchmarks.replay", [], 4 * args.timeout)
        return result, table(*replay.report(result))
    if section == "statistical":
        result = run_worker("benchmarks.statistical", ["--plain", "--json"], args.timeout)
        return result, table(*statistical.report(result))
    if section == "backtest":
        result = run_worker("benchmarks.backtest", [], args.timeout)
        return result, table(*backtest.report(result))
    if section == "backtest-repro":
        result = backtest.cold_pair(args.timeout)
        return result, table(*backtest.cold_report(result))
    if section == "search":
        worker = ["--trials", str(args.search_trials), "--epochs", str(args.search_epochs)]
        result = run_worker("benchmarks.search", worker, args.timeout)
        return result, table(*search.report(result))
    if section == "search-quality":
        worker = ["quality", "--timeout-minutes", str(args.search_minutes)]
        result = run_worker("benchmarks.search", worker, args.timeout + 60 * args.search_minutes)
        return result, table(*search.quality_report(result))
    if section == "panel-validation":
        worker = ["--rows", args.panel_rows, "--json"]
        result = run_worker("benchmarks.panel_validation", worker, args.timeout)
        return result, table(*panel_validation.report(result))
    if section == "team":
        result = team.bench(work / "team", args.team_writers, args.team_runs, not args.team_no_dvc)
        return result, table(*team.report(result))
    if section == "repro":
        result = repro.bench(
            args.noop_repeats,
            dry=args.repro_dry,
            timeout=args.timeout,
            keep=work / "gru-forecaster",
        )
        return result, table(*repro.report(result))
    folder = pick_forecaster(args, work)
    result = run_worker(
        "benchmarks.serving",
        [
            "--forecaster",
            str(folder),
            "--requests",
            str(args.requests),
            "--series",
            str(args.series),
        ],
        args.timeout,
    )
    return result, table(*serving.report(result))


if __name__ == "__main__":
    sys.exit(main())
