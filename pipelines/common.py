"""What the stage flows and the pipeline flow share, without importing Prefect (it costs ~2 s)."""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

# Each stage is one function in the module named for its concept; dvc.yaml lists that module
# (and what it imports) as the stage's dependencies.
STAGE_FUNCTIONS = {
    "validate": "seqcast.data.validation:validate",
    # One series or a panel (data.series): the entry points choose.
    "normalise": "seqcast.data.prepare:normalise",
    "window": "seqcast.data.prepare:window",
    "train": "seqcast.models.training:train",
    "backtest": "seqcast.evaluation.backtest:backtest",
    "evaluate": "seqcast.evaluation.stage:evaluate",
    "refit": "seqcast.operations.refit:refit",
    "promote": "seqcast.registry.registry:promote",
}
# Stages run once per model kind (dvc.yaml matrix stages).
PER_MODEL = ("train", "backtest")
STAGES = tuple(STAGE_FUNCTIONS)
# The stages a panel runs through so far (issue 27); the later ones refuse it in one line.
PANEL_STAGES = ("validate", "normalise", "window")
MODEL_KINDS = ("gru", "lstm")

# Exit codes of `python -m pipelines.stages`: the pipeline flow reads them back out of DVC's
# "exited with N" message to decide whether re-running `dvc repro` can help.
EXIT_UNEXPECTED = 1
EXIT_EXPECTED = 2  # bad params, bad data, failed validation: a retry cannot help
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: e.g. the MLflow tracking server did not answer
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143

# Set by the pipeline flow for the `dvc repro` it runs: the stage flow runs become its subflows.
PARENT_FLOW_RUN = "SEQCAST_PREFECT_PARENT_FLOW_RUN"
PARENT_TASK_RUN = "SEQCAST_PREFECT_PARENT_TASK_RUN"
# A file the pipeline flow names: each stage command that really runs adds its label to it.
RAN_FILE = "SEQCAST_RAN_FILE"

# After SIGINT/SIGTERM a stage gets this long to end its MLflow run, put back the last good
# outputs and report its state; then it exits regardless (e.g. its Prefect server is gone and
# the client would retry each call for a minute).
STOP_DEADLINE = 20.0

# Slow imports of a stage, done up front behind a progress line: on a busy machine Keras takes
# 20-40 s and MLflow 5-10 s, which otherwise pass in silence before the first epoch line.
WARM_UP = {
    "train": ("mlflow", "keras"),
    "backtest": ("keras",),
    "evaluate": ("mlflow", "keras"),
    "refit": ("mlflow", "keras"),
    "promote": ("mlflow",),
}

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
    from seqcast.core.errors import SeqcastError

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
    from seqcast.core.paths import workspace

    return Path(root).resolve() if root else workspace()


def stage_label(stage: str, kind: str | None = None) -> str:
    """The name people see: the stage, or `train-gru` for one model kind."""
    return f"{stage}-{kind}" if kind else stage


def run_identity(root: str | Path = ".") -> tuple[str, list[str]]:
    """A stage flow run's name suffix and tags: the DVC experiment and the git revision."""
    import subprocess

    # Four `train-gru` runs from make repro, dvc exp run and a deployment look alike in the UI;
    # the experiment (DVC sets DVC_EXP_NAME in its stage commands) and commit tell them apart.
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    )
    rev = done.stdout.strip() if done.returncode == 0 else ""
    rev = rev or os.environ.get("DVC_EXP_BASELINE_REV", "")[:7]
    experiment = os.environ.get("DVC_EXP_NAME", "")
    tags = [f"dvc-exp:{experiment}" if experiment else "checkout"]
    tags += [f"rev:{rev}"] if rev else []
    suffix = f"{experiment}@{rev}" if rev else experiment
    return (f" {suffix}" if suffix else ""), tags


def progress(label: str, message: str) -> None:
    """One progress line on stdout (the stage flows also send it to the run log)."""
    print(f"{label}: {message}", flush=True)


def warm_up(stage: str, cfg: Any, label: str) -> None:
    """Import the stage's slow libraries with a progress line before and after each."""
    import importlib

    for module in WARM_UP.get(stage, ()):
        if module in sys.modules:
            continue
        name = "MLflow"
        if module == "keras":
            from seqcast.models.training import use_backend

            use_backend(cfg.train.backend)  # must precede the first `import keras`
            name = f"Keras ({cfg.train.backend} backend)"
        progress(label, f"importing {name}...")
        started = time.perf_counter()
        # The oneDNN notice TensorFlow prints on import is hidden (seqcast.core.console).
        from seqcast.core.console import native_notices_hidden

        hidden = native_notices_hidden() if module == "keras" else contextlib.nullcontext()
        with signals_held(), hidden:
            importlib.import_module(module)
        progress(label, f"{name} ready ({time.perf_counter() - started:.1f} s)")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then deliver them to whoever handles them then."""
    # KeyboardInterrupt raised inside TensorFlow's import aborts the process ("terminate called
    # after throwing an instance of 'nanobind::python_error'"): no cleanup, the flow run left
    # Running. Holding the signal costs at most the rest of the import.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous = {}
    for each in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(each)
        if handler not in (None, signal.SIG_IGN, signal.SIG_DFL):  # only Python-level handlers
            previous[each] = signal.signal(each, hold)
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
        for each in dict.fromkeys(held):
            os.kill(os.getpid(), each)


def call_stage(stage: str, root: Path, kind: str | None = None) -> dict[str, Any]:
    """Load params.yaml and call the stage's function; a failure puts back the last good outputs."""
    import importlib

    from seqcast.core.config import load_config
    from seqcast.core.paths import refuse_panel

    module, name = STAGE_FUNCTIONS[stage].split(":")
    function = getattr(importlib.import_module(module), name)
    try:
        cfg = load_config(root / "params.yaml")
        if stage not in PANEL_STAGES:  # before Keras' import: a panel stops here in one line
            refuse_panel(root)
        warm_up(stage, cfg, stage_label(stage, kind))
        return function(cfg, root, kind) if stage in PER_MODEL else function(cfg, root)
    except BaseException as exc:
        from seqcast.core.outputs import restore_last_good

        end_own_runs(stage, exc)
        restored = restore_last_good(root)
        if restored:
            print(f"{stage}: kept the last good {', '.join(restored)}", file=sys.stderr)
        if store_error := _store_error(exc):
            raise store_error from None  # one line, exit 2: not a traceback of SQLAlchemy's
        if down := _server_down(exc):
            raise down from None  # one line, still transient (exit 75): worth running again
        raise


def _store_error(exc: BaseException) -> Exception | None:
    """A StoreError naming the store and the fix, for a store failure no retry fixes."""
    if "seqcast.models.tracking" not in sys.modules or isinstance(
        exc, KeyboardInterrupt | SystemExit
    ):
        return None
    from seqcast.core.errors import StoreError
    from seqcast.models.tracking import store_failure

    line = None if is_expected(exc) else store_failure(exc)
    return StoreError(line) if line else None


def _server_down(exc: BaseException) -> ConnectionError | None:
    """A ConnectionError naming the MLflow tracking server that did not answer, else None."""
    if "seqcast.models.tracking" not in sys.modules or not is_transient(exc):
        return None
    from seqcast.models.tracking import server_failure

    line = server_failure(exc)
    return ConnectionError(line) if line else None


def end_own_runs(stage: str, exc: BaseException) -> None:
    """End FAILED the MLflow runs this stage left RUNNING; a store that does not answer is left."""
    # Not for connection errors: MLflow would retry each call for minutes; the next stage that
    # opens the store ends them (tracking.fail_orphaned_runs).
    if "seqcast.models.tracking" not in sys.modules or is_transient(exc):
        return
    from seqcast.models import tracking

    if tracking.store_failure(exc):  # the store cannot take the write either
        return
    reason = "interrupted" if _is_stop(exc) else f"{type(exc).__name__}: {exc}"[:500]
    try:
        tracking.fail_own_runs(reason)
    except Exception as error:  # the stage's own failure is the one to report
        print(f"{stage}: could not end its MLflow runs: {error}", file=sys.stderr)


def stop_on_signals() -> None:
    """SIGINT/SIGTERM (and parent death) end the stage once, as an exception, within a deadline."""
    # KeyboardInterrupt / SystemExit(143) let open MLflow runs end FAILED and the last good
    # outputs be put back; a second signal (the runner passing Ctrl-C on, the parent dying) must
    # not break into that cleanup, and the deadline ends a cleanup that hangs. Each signal is
    # also recorded (seqcast.core.interrupts): the exception can be lost, the record cannot.
    if threading.current_thread() is not threading.main_thread():
        return
    from seqcast.core import interrupts

    stopping: list[int] = []
    again: list[int] = []  # a re-raise is due: the first one was dropped by Python

    def stop(signum: int, frame: object) -> None:
        interrupts.record(signum)
        if _exiting:  # the exit code is settled: the record is all that is needed
            return
        if stopping and not again:  # a flag, not SIG_IGN: Prefect puts this handler back
            return
        if not stopping:
            stopping.append(signum)
            timer = threading.Timer(STOP_DEADLINE, os._exit, (128 + signum,))
            timer.daemon = True
            timer.start()
        again.clear()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def reraise_dropped(unraisable: Any) -> None:
        # Raised inside a weakref callback, __del__ or the GC, the stop is printed as "Exception
        # ignored in ..." and dropped; the stage would run on. Raise it again in the main thread.
        exc = unraisable.exc_value
        signum = getattr(exc, "signal", None) or (stopping[0] if stopping else None)
        if signum and _is_stop(exc) and not _exiting and len(again) < _MAX_RERAISES:
            interrupts.record(signum)
            again.append(signum)
            name = signal.Signals(signum).name
            print(f"stopping: {name} arrived inside a cleanup callback", file=sys.stderr)
            # From a thread, a moment later: raised here, it would be dropped again.
            later = threading.Timer(0.01, _thread.interrupt_main, (signum,))
            later.daemon = True
            later.start()
            return
        previous_hook(unraisable)

    for each in (signal.SIGINT, signal.SIGTERM):
        # Over an inherited SIG_IGN too: a shell starts background jobs with SIGINT ignored
        # (`nohup make test &`), yet the runner stops a stage with SIGINT, and so does
        # die_with_parent below; kept ignored, the stage would run on and exit 0.
        signal.signal(each, stop)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = reraise_dropped
    # DVC killed (e.g. with `make repro` by kill -9) would leave this stage running unobserved:
    # stop as on Ctrl-C instead. SIGINT, because Prefect's engine takes SIGTERM over while a
    # flow runs and reports the crash before our handler (and its deadline) gets a say.
    die_with_parent(signal.SIGINT)


_MAX_RERAISES = 20
# Set once the stage's exit code is settled (finish): a late signal is recorded, not raised.
_exiting = False
_settled: list[int] = []


def _is_stop(exc: BaseException | None) -> bool:
    """A stop raised by a signal handler: ours (KeyboardInterrupt, SystemExit) or Prefect's."""
    return isinstance(exc, KeyboardInterrupt | SystemExit) or (
        type(exc).__name__ == "TerminationSignal" and hasattr(exc, "signal")
    )


def finish(label: str, code: int) -> int:
    """The stage's exit code: 128 + signal once one arrived, whatever the body returned."""
    # The stop may have been swallowed (a library's `except BaseException`, a callback): the
    # record decides, so DVC never takes an interrupted stage for a finished one.
    global _exiting
    from seqcast.core import interrupts

    final = interrupts.exit_status(code)
    if final != code:
        report_failure(label, "interrupted")
    _exiting = True
    _settled[:] = [final]
    return final


def guard_exit() -> None:
    """At exit: a stop signal, however the body ended, makes the exit code 128 + signal."""
    # Registered before the libraries' own atexit functions, so it runs after all of them: a
    # Ctrl-C while MLflow or Prefect clean up at exit is printed as "Exception ignored" and lost.
    import atexit

    def last_word() -> None:
        from seqcast.core import interrupts

        signum = interrupts.received()
        # Not settled: a KeyboardInterrupt escaped the body (a second one raised inside its
        # `except`), and Python would end by killing itself with SIGINT; DVC and the flow read
        # 130 as "interrupted", -2 as a crash.
        if signum is not None and (not _settled or _settled[0] < 128):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signum)

    atexit.register(last_word)


def _prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Ask Linux to send this process `signum` when its parent dies; False where unsupported."""
    prctl = _prctl()
    if prctl is None:
        return False
    parent = os.getppid()
    if prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # orphaned meanwhile: nothing will signal us any more
        os.kill(os.getpid(), signum)
    return True


def child_dies_with_us(
    signum: int = signal.SIGTERM, reset_sigint: bool = False
) -> Callable[[], None]:
    """A Popen preexec_fn: the child gets `signum` when this process dies, even by SIGKILL."""
    prctl = _prctl()  # resolved here: the forked child should only make the call
    parent = os.getpid()

    def preexec() -> None:
        if reset_sigint:
            # A SIGINT we ignore (started in the background) must still stop the child on cue.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
            if os.getppid() != parent:  # we died between fork and prctl
                os._exit(128 + signum)

    return preexec


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """`<stage> [--model gru|lstm] [--root PATH]`."""
    import argparse  # here: the `store` stage, run on every `dvc repro`, does without it

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.stages",
        description="Run one pipeline stage as a Prefect flow (SEQCAST_PREFECT=off: without).",
    )
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--model", choices=MODEL_KINDS, help="train, backtest: the model kind")
    parser.add_argument("--root", help="repository root (default: the checkout here)")
    args = parser.parse_args(argv)
    if args.stage in PER_MODEL and not args.model:
        parser.error(f"{args.stage} needs --model gru|lstm")
    if args.stage not in PER_MODEL and args.model:
        parser.error(f"--model only applies to {' and '.join(PER_MODEL)}")
    return args


def report_failure(stage: str, message: str) -> None:
    """Print the failure as its own lines on stderr, with no traceback."""
    print(f"{stage} failed: {message.strip()}", file=sys.stderr, flush=True)


def prefect_disabled() -> bool:
    """SEQCAST_PREFECT=off: run the bare stage functions (fast CI, debugging)."""
    return os.environ.get("SEQCAST_PREFECT", "").strip().lower() in ("0", "off", "false", "no")


def note_ran(label: str) -> None:
    """Under the pipeline flow, add this stage to RAN_FILE: DVC ran it, not restored it."""
    if os.environ.get(RAN_FILE):
        with open(os.environ[RAN_FILE], "a") as ran:
            ran.write(f"{label}\n")


def main_plain(argv: list[str] | None = None) -> int:
    """The stage CLI without Prefect: same arguments, output and exit codes."""
    args = parse_args(argv)
    note_ran(stage_label(args.stage, args.model))
    if stopped_before_start(args.stage):
        return EXIT_INTERRUPTED
    stop_on_signals()
    try:
        call_stage(args.stage, resolve_root(args.root), args.model)
    except KeyboardInterrupt:
        report_failure(args.stage, "interrupted")
        return finish(args.stage, EXIT_INTERRUPTED)
    except SystemExit as exc:
        if exc.code == EXIT_TERMINATED:
            report_failure(args.stage, "terminated")
        raise
    except Exception as exc:
        if exit_code(exc) == EXIT_UNEXPECTED:
            finish(args.stage, EXIT_UNEXPECTED)
            raise  # a bug: keep the traceback
        report_failure(args.stage, f"{type(exc).__name__}: {exc}")
        return finish(args.stage, exit_code(exc))
    return finish(args.stage, 0)


def stopped_before_start(label: str) -> bool:
    """True (and says so) when the run this stage belongs to was stopped before it started."""
    # DVC goes on to the next stage when the interrupted one exited 0 anyway (a Ctrl-C it never
    # saw, one dropped by Python): `pipelines.server run` left a stop file for that case.
    from seqcast.core import interrupts

    if not interrupts.interrupted():
        return False
    report_failure(label, "not started: the run was stopped (Ctrl-C or SIGTERM)")
    return True
