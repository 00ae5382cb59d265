"""What the stage flows and the pipeline flow share, without importing Prefect (it costs ~2 s)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

# Each stage is one function in the module named for its concept; dvc.yaml lists that module
# (and what it imports) as the stage's dependencies.
STAGE_FUNCTIONS = {
    "validate": "seqcast.validation:validate",
    "normalise": "seqcast.scaling:normalise",
    "window": "seqcast.windowing:window",
    "train": "seqcast.training:train",
    "evaluate": "seqcast.evaluation:evaluate",
    "promote": "seqcast.registry:promote",
}
STAGES = tuple(STAGE_FUNCTIONS)
MODEL_KINDS = ("gru", "lstm")

# Exit codes of `python -m pipelines.stages`: the pipeline flow reads them back out of DVC's
# "exited with N" message to decide whether re-running `dvc repro` can help.
EXIT_UNEXPECTED = 1
EXIT_EXPECTED = 2  # bad params, bad data, failed validation: a retry cannot help
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: e.g. the MLflow tracking server did not answer

# OSErrors that describe the local files, not a flaky connection: retrying will not fix them.
_PERMANENT_OS_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def is_expected(exc: BaseException) -> bool:
    """True for the library's own failures (bad params, bad data, failed validation)."""
    from seqcast.errors import SeqcastError

    return isinstance(exc, SeqcastError)


def is_transient(exc: BaseException | None) -> bool:
    """True when exc (or what caused it) is a connection-type error worth retrying."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if is_expected(exc):
            return False
        if isinstance(exc, ConnectionError | TimeoutError):
            return True
        if isinstance(exc, OSError) and not isinstance(exc, _PERMANENT_OS_ERRORS):
            return True
        # MLflow and DVC wrap the socket error in their own exception types.
        exc = exc.__cause__ or exc.__context__
    return False


def exit_code(exc: BaseException | None) -> int:
    """The stage process exit code for a failure."""
    if exc is not None and is_expected(exc):
        return EXIT_EXPECTED
    if is_transient(exc):
        return EXIT_TRANSIENT
    return EXIT_UNEXPECTED


def resolve_root(root: str | Path | None) -> Path:
    """The workspace: the given path, else the checkout or experiment copy we run in."""
    from seqcast.paths import workspace

    return Path(root).resolve() if root else workspace()


def call_stage(stage: str, root: Path, kind: str | None = None) -> dict[str, Any]:
    """Load params.yaml and call the stage's function; a failure puts back the last good outputs."""
    import importlib

    from seqcast.config import load_config

    module, name = STAGE_FUNCTIONS[stage].split(":")
    function = getattr(importlib.import_module(module), name)
    try:
        cfg = load_config(root / "params.yaml")
        return function(cfg, root, kind) if stage == "train" else function(cfg, root)
    except BaseException:
        from seqcast.outputs import restore_last_good

        restored = restore_last_good(root)
        if restored:
            print(f"{stage}: kept the last good {', '.join(restored)}", file=sys.stderr)
        raise


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so open MLflow runs end FAILED and cleanup runs."""
    import signal
    import threading

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """`<stage> [--model gru|lstm] [--root PATH]`."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.stages",
        description="Run one pipeline stage as a Prefect flow (SEQCAST_PREFECT=off: without).",
    )
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--model", choices=MODEL_KINDS, help="train: the model kind")
    parser.add_argument("--root", help="repository root (default: the checkout here)")
    args = parser.parse_args(argv)
    if args.stage == "train" and not args.model:
        parser.error("train needs --model gru|lstm")
    if args.stage != "train" and args.model:
        parser.error("--model only applies to train")
    return args


def report_failure(stage: str, message: str) -> None:
    """Print the failure as its own lines on stderr, with no traceback."""
    print(f"{stage} failed: {message.strip()}", file=sys.stderr, flush=True)


def prefect_disabled() -> bool:
    """SEQCAST_PREFECT=off: run the bare stage functions (fast CI, debugging)."""
    return os.environ.get("SEQCAST_PREFECT", "").strip().lower() in ("0", "off", "false", "no")


def main_plain(argv: list[str] | None = None) -> int:
    """The stage CLI without Prefect: same arguments, output and exit codes."""
    args = parse_args(argv)
    stop_on_sigterm()
    try:
        call_stage(args.stage, resolve_root(args.root), args.model)
    except Exception as exc:
        if exit_code(exc) == EXIT_UNEXPECTED:
            raise  # a bug: keep the traceback
        report_failure(args.stage, f"{type(exc).__name__}: {exc}")
        return exit_code(exc)
    return 0
