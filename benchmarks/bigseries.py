"""A 10^7-point synthetic series: one training epoch end to end, with peak memory.

Two processes, as the DVC stages split the work: `prepare` writes the scaled series, calendar
and origins like the window stage; `train` memory-maps them like the train stage, runs the
pipeline over every training origin (stride 1) for a number of batches, then fits one epoch on
strided origins (a full stride-1 epoch is hours on 2 cores; its time is extrapolated).

    python -m benchmarks.bigseries prepare --points 10000000 --out DIR
    python -m benchmarks.bigseries train --out DIR --backend tensorflow --train-windows 20000
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit, peak_rss_mb, rss_mb

INPUT_WIDTH, HORIZON = 96, 24
SPLIT = {"train": 0.7, "val": 0.1}


def bounds(n: int) -> dict[str, tuple[int, int]]:
    """Chronological train/val/test row ranges."""
    a, b = int(n * SPLIT["train"]), int(n * (SPLIT["train"] + SPLIT["val"]))
    return {"train": (0, a), "val": (a, b), "test": (b, n)}


def prepare(points: int, out: Path) -> dict:
    """Write series.npy, calendar.npy and every origin per split (stride 1)."""
    from benchmarks.windowing import spec_for, synthetic
    from seqcast.data import windowing

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    series, cal = synthetic(points)
    spec = spec_for(INPUT_WIDTH, HORIZON)
    found = windowing.origins(bounds(points), spec.context, spec.horizon, spec.shift)
    np.save(out / "series.npy", series)
    np.save(out / "calendar.npy", cal)
    np.savez(out / "origins.npz", **found)
    return {
        "points": points,
        "seconds": time.perf_counter() - start,
        "windows": {k: int(len(v)) for k, v in found.items()},
        "peak_rss_mb": peak_rss_mb(),
    }


def train(out: Path, backend: str, train_windows: int, pipeline_batches: int, kind: str) -> dict:
    """Peak memory of the stride-1 pipeline and of one epoch's fit on strided origins."""
    from seqcast.models import training

    training.use_backend(backend)
    import keras

    from benchmarks.windowing import spec_for
    from seqcast.core.config import ModelConfig, TrainConfig
    from seqcast.models import networks

    rss_imports = rss_mb()
    spec = spec_for(INPUT_WIDTH, HORIZON)
    series = np.load(out / "series.npy", mmap_mode="r")
    cal = np.load(out / "calendar.npy", mmap_mode="r")
    with np.load(out / "origins.npz") as found:
        origins = {name: found[name] for name in found.files}
    cfg = TrainConfig(epochs=1, patience=1)
    keras.utils.set_random_seed(cfg.seed)
    start = time.perf_counter()
    pipeline = training.make_batches(
        spec, series, cal, origins["train"], cfg.batch_size, True, cfg.seed
    )
    for count, _ in enumerate(pipeline, start=1):
        if count >= pipeline_batches:
            break
    pipeline_seconds = time.perf_counter() - start
    rss_pipeline = peak_rss_mb()
    del pipeline
    stride = max(1, math.ceil(len(origins["train"]) / train_windows))
    strided = {k: v[::stride] for k, v in origins.items()}
    model = networks.build(kind, spec, ModelConfig(units=50, dropout=0.1))
    result = training.fit(model, spec, series, cal, strided["train"], strided["val"], cfg)
    rate = len(strided["train"]) / result.seconds
    return {
        "backend": backend,
        "kind": kind,
        "points": len(series),
        "train_origins": int(len(origins["train"])),
        "stride": stride,
        "fit_train_windows": int(len(strided["train"])),
        "fit_val_windows": int(len(strided["val"])),
        "fit_seconds": result.seconds,
        "fit_windows_per_second": rate,
        "full_epoch_hours_estimate": len(origins["train"]) / rate / 3600,
        "pipeline_batches": pipeline_batches,
        "pipeline_seconds": pipeline_seconds,
        "rss_after_imports_mb": rss_imports,
        "peak_rss_after_pipeline_mb": rss_pipeline,
        "peak_rss_mb": peak_rss_mb(),
        "goal_mb": 2048,
    }


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """Table headers and rows."""
    if "error" in result:
        return ["result"], [[result["error"]]]
    p, t = result["prepare"], result["train"]
    rows = [
        [
            "prepare (series, calendar, origins)",
            p["seconds"],
            p["peak_rss_mb"],
            f"{p['points']:.0e} points",
        ],
        [
            f"pipeline, stride 1, {t['pipeline_batches']} batches",
            t["pipeline_seconds"],
            t["peak_rss_after_pipeline_mb"],
            f"{t['train_origins']:,} train origins",
        ],
        [
            f"fit 1 epoch, stride {t['stride']}",
            t["fit_seconds"],
            t["peak_rss_mb"],
            f"{t['fit_train_windows']:,} windows, {t['fit_windows_per_second']:,.0f}/s; "
            f"stride-1 epoch ~{t['full_epoch_hours_estimate']:.1f} h",
        ],
        [
            "  of which imports (RSS)",
            None,
            t["rss_after_imports_mb"],
            f"goal peak <= {t['goal_mb']} MB",
        ],
    ]
    return ["10^7 series", "seconds", "peak RSS MB", "note"], rows


def main(argv: list[str] | None = None) -> None:
    """prepare | train; print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["prepare", "train"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--kind", default="gru")
    parser.add_argument("--train-windows", type=int, default=20_000)
    parser.add_argument("--pipeline-batches", type=int, default=200)
    args = parser.parse_args(argv)
    if args.action == "prepare":
        emit(prepare(args.points, args.out))
    else:
        emit(train(args.out, args.backend, args.train_windows, args.pipeline_batches, args.kind))


if __name__ == "__main__":
    main()
