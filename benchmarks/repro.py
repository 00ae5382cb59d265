"""End-to-end `dvc repro` on the shipped data in a temporary git copy of the repository.

Cold runs `make repro`'s command (one Prefect server for the whole run) on a fresh copy; the
no-op reruns it with nothing to do, and plain `dvc repro` (which starts no server when no stage
runs). Stage times are read off DVC's "Running stage" lines as they stream.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import ROOT, median

BIN = Path(sys.executable).parent
TRAIN_PREFIX = "train@"


def git_copy(dest: Path, params: dict | None = None, source: Path = ROOT) -> Path:
    """The working tree's tracked and new files, committed in a new git repo at dest."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        path = source / name
        if path.is_file() and not name.startswith("benchmarks/results/"):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / name)
    if params:
        merged = _merge(yaml.safe_load((dest / "params.yaml").read_text()), params)
        (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    for args in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        [
            "git",
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            "commit",
            "-qm",
            "benchmark copy",
        ],
    ):
        subprocess.run(args, cwd=dest, check=True, capture_output=True)
    return dest


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def environment() -> dict[str, str]:
    """The project's environment first on PATH; the copy's own MLflow and Prefect stores."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME"):
        env.pop(key, None)
    return env


def streamed(command: list[str], cwd: Path, timeout: float) -> dict:
    """Run command; wall and CPU seconds, exit code, output and the second each stage started."""
    # CPU of the command and the stages it waited for: comparable on a loaded machine, where
    # wall time is mostly waiting for a core.
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    stages: list[tuple[str, float]] = []
    lines = []
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Running stage '"):
                stages.append((line.split("'")[1], time.perf_counter() - start))
            if time.perf_counter() - start > timeout:
                proc.kill()
                break
        code = proc.wait()
    seconds = time.perf_counter() - start
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = done.ru_utime - used.ru_utime + done.ru_stime - used.ru_stime
    ends = [at for _, at in stages[1:]] + [seconds] * bool(stages)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "returncode": code,
        "output": "".join(lines),
        "tail": "".join(lines[-20:]),
        "stages": {name: end - at for (name, at), end in zip(stages, ends, strict=True)},
    }


def free_port() -> int:
    """A port for this run's own Prefect server."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_repro() -> list[str]:
    """`make repro`'s command on a free port."""
    return [
        str(BIN / "python"),
        "-m",
        "pipelines.server",
        "run",
        "--port",
        str(free_port()),
        "--",
        "dvc",
        "repro",
    ]


def bench(
    noop_repeats: int = 3,
    params: dict | None = None,
    timeout: float = 1800,
    dry: bool = False,
    keep: Path | None = None,
) -> dict:
    """Cold and no-op repro seconds, per-stage seconds, share of cold time not training."""
    with tempfile.TemporaryDirectory(prefix="seqcast-repro-") as tmp:
        repo = git_copy(Path(tmp) / "seqcast", params)
        if dry:  # smoke tests: DVC reads the copy's pipeline and lists it, running nothing
            done = streamed(["dvc", "stage", "list"], repo, timeout)
            return {
                "dry": True,
                "seconds": done["seconds"],
                "returncode": done["returncode"],
                "stages": [line.split()[0] for line in done["output"].splitlines() if line],
            }
        cold = streamed(make_repro(), repo, timeout)
        if cold["returncode"] != 0:
            return {"error": f"cold dvc repro failed ({cold['returncode']}):\n{cold['tail']}"}
        noop_served = [streamed(make_repro(), repo, timeout) for _ in range(noop_repeats)]
        noop_plain = [streamed(["dvc", "repro"], repo, timeout) for _ in range(noop_repeats)]
        reran = sorted({s for run in noop_served + noop_plain for s in run["stages"]})
        # Another seed trains both networks again; back to the first, DVC's run cache restores.
        shipped = (repo / "params.yaml").read_text()
        seed = yaml.safe_load(shipped)["train"]["seed"]
        (repo / "params.yaml").write_text(shipped.replace(f"seed: {seed}", f"seed: {seed + 1}"))
        other_seed = streamed(make_repro(), repo, timeout)
        (repo / "params.yaml").write_text(shipped)
        restore = streamed(make_repro(), repo, timeout)
        training = sum(s for name, s in cold["stages"].items() if name.startswith(TRAIN_PREFIX))
        fits = {
            kind.name: json.loads((kind / "train.json").read_text())
            for kind in sorted((repo / "models").iterdir())
            if (kind / "train.json").exists()
        }
        fit_seconds = sum(f["seconds"] for f in fits.values())
        comparison = json.loads((repo / "evaluation" / "comparison.json").read_text())
        if keep is not None:  # the trained GRU forecaster, for the serving benchmark
            shutil.copytree(repo / "models" / "gru" / "forecaster", keep, dirs_exist_ok=True)
        return {
            "cold_seconds": cold["seconds"],
            "stage_seconds": cold["stages"],
            "noop_seconds": [r["seconds"] for r in noop_served],
            "noop_plain_dvc_seconds": [r["seconds"] for r in noop_plain],
            "noop_plain_dvc_cpu_seconds": [r["cpu_seconds"] for r in noop_plain],
            "noop_reran_stages": reran,
            "other_seed_seconds": other_seed["seconds"],
            "other_seed_ran": sorted(other_seed["stages"]),
            "restore_seconds": restore["seconds"],
            "restore_ran": sorted(restore["stages"]),
            "restored": sorted(
                line.split("'")[1]
                for line in restore["output"].splitlines()
                if line.startswith("Stage '") and "is cached" in line
            ),
            "train_stage_seconds": training,
            "fit_seconds": fit_seconds,
            "not_training_share": 1.0 - training / cold["seconds"],
            "not_fitting_share": 1.0 - fit_seconds / cold["seconds"],
            "train": {
                k: {
                    key: f[key]
                    for key in ("seconds", "epochs", "windows_per_second", "backend", "jit_compile")
                }
                for k, f in fits.items()
            },
            "test_metrics": {k: comparison["models"][k] for k in comparison["models"]},
        }


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """Table headers and rows."""
    if "error" in result or result.get("dry"):
        return ["result"], [[result.get("error") or f"dry run: {result}"]]
    rows = [
        ["cold (make repro)", result["cold_seconds"], ""],
        ["no-op (make repro, median)", median(result["noop_seconds"]), ""],
        ["no-op (dvc repro, median)", median(result["noop_plain_dvc_seconds"]), ""],
        [
            "no-op (dvc repro, median CPU)",
            median(result["noop_plain_dvc_cpu_seconds"]),
            "user + sys of dvc and the store stage",
        ],
        [
            "train.seed + 1 (make repro)",
            result["other_seed_seconds"],
            "ran " + ", ".join(result["other_seed_ran"]),
        ],
        [
            "back to the first seed: run-cache restore",
            result["restore_seconds"],
            f"restored {', '.join(result['restored'])}; ran {', '.join(result['restore_ran'])}",
        ],
    ]
    rows += [[f"  stage {name}", s, ""] for name, s in result["stage_seconds"].items()]
    rows += [
        ["share of cold not in train stages", result["not_training_share"], "fraction"],
        ["share of cold not in model.fit", result["not_fitting_share"], "fraction"],
    ]
    return ["dvc repro", "seconds", "note"], rows


def fit_seconds(repo: Path) -> dict[str, float]:
    """Seconds inside the networks' `fit` calls per stage, read off the stages' outputs."""
    fits: dict[str, float] = {}
    for kind in ("gru", "lstm"):
        train = repo / "models" / kind / "train.json"
        if train.exists():
            fits[f"train@{kind}"] = json.loads(train.read_text())["seconds"]
        folds = repo / "backtest" / kind / "folds.json"
        if folds.exists():
            info = json.loads(folds.read_text())["folds"]
            fits[f"backtest@{kind}"] = sum(f.get("fit_seconds", 0.0) for f in info)
    refit = repo / "models" / "served" / "refit.json"
    if refit.exists():
        info = json.loads(refit.read_text())
        # Older refits recorded only the whole refit's seconds (fit, linear start, calibration).
        fits["refit"] = info.get("fit_seconds", info["seconds"] if "epochs" in info else 0.0)
    return fits


def cold(source: Path = ROOT, timeout: float = 1800, keep: Path | None = None) -> dict:
    """One cold `make repro` of source's working tree: per-stage wall and fit seconds."""
    with tempfile.TemporaryDirectory(prefix="seqcast-cold-") as tmp:
        repo = git_copy(Path(tmp) / "seqcast", source=source)
        load = os.getloadavg()[0]
        # CPU seconds of every process the run waited for (DVC, stages, the Prefect server): on
        # a shared machine less noisy than wall seconds.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = streamed(make_repro(), repo, timeout)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run["returncode"] != 0:  # the stages that ran are still worth printing
            return {
                "error": f"cold dvc repro failed ({run['returncode']}):\n{run['tail']}",
                "stages": run["stages"],
            }
        fits = fit_seconds(repo)
        if keep is not None:  # outputs kept to compare bytes between revisions
            shutil.copytree(repo, keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
        return {
            "seconds": run["seconds"],
            "stages": run["stages"],
            "fits": fits,
            "fit_seconds": sum(fits.values()),
            "fixed_seconds": run["seconds"] - sum(fits.values()),
            "cpu_seconds": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
            "load": [load, os.getloadavg()[0]],
        }


def print_cold(runs: dict[str, dict]) -> None:
    """A table per stage: wall, fit and the rest, for each labelled cold run side by side."""
    labels = list(runs)
    stages = list(dict.fromkeys(s for r in runs.values() for s in r.get("stages", {})))
    head = " | ".join(f"{x} wall | {x} fit | {x} rest" for x in labels)
    print(f"| stage | {head} |")
    print("|---" * (1 + 3 * len(labels)) + "|")

    def cells(run: dict, stage: str | None) -> str:
        if "error" in run:
            wall = run["stages"].get(stage, float("nan")) if stage else float("nan")
            return f"{wall:.1f} | ? | ?"
        wall = run["seconds"] if stage is None else run["stages"].get(stage, float("nan"))
        fit = run["fit_seconds"] if stage is None else run["fits"].get(stage, 0.0)
        return f"{wall:.1f} | {fit:.1f} | {wall - fit:.1f}"

    for stage in stages:
        print(f"| {stage} | " + " | ".join(cells(runs[x], stage) for x in labels) + " |")
    print("| **total** | " + " | ".join(cells(runs[x], None) for x in labels) + " |")
    for label, run in runs.items():
        if "error" in run:
            print(f"{label}: {run['error']}")
        else:
            print(
                f"{label}: cold {run['seconds']:.1f} s, fits {run['fit_seconds']:.1f} s, fixed "
                f"overhead {run['fixed_seconds']:.1f} s; CPU {run['cpu_seconds']:.1f} s; "
                f"1-min load {run['load'][0]:.2f} -> "
                f"{run['load'][1]:.2f}"
            )


def checkout(rev: str, dest: Path) -> Path:
    """A clone of this repository at rev (the baseline of a before/after run)."""
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(dest)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=dest, check=True)
    return dest


def main(argv: list[str] | None = None) -> None:
    """python -m benchmarks.repro [--before REV]: cold runs, before then after, per stage."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--before", help="a git revision to run first, as the baseline")
    parser.add_argument("--keep", type=Path, help="copy each run's outputs under this folder")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per cold run")
    parser.add_argument("--label", default="this tree", help="the run's name in the table")
    args = parser.parse_args(argv)
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="seqcast-before-") as tmp:
        if args.before:
            base = checkout(args.before, Path(tmp) / "before")
            keep = args.keep / "before" if args.keep else None
            runs[f"before ({args.before})"] = cold(base, args.timeout, keep)
        runs["after" if args.before else args.label] = cold(
            ROOT, args.timeout, args.keep / "after" if args.keep else None
        )
    print(f"{os.cpu_count()} CPUs")
    print_cold(runs)


if __name__ == "__main__":
    main()
