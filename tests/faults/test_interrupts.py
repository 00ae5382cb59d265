"""Faults: a Ctrl-C that Python drops must still stop the stage, and nothing promotes after it.

A stage's SIGINT handler raises KeyboardInterrupt once; raised inside a weakref callback, a
__del__ or an exit function, Python prints "Exception ignored" and drops it. The stage must then
still stop, exit 130, and DVC must not go on to promote.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import ROOT

# The stage's exit path (pipelines.common) around a body that signals itself where Python drops
# the exception: in a weakref callback, in __del__, in a library's `except`, at exit.
RACE = textwrap.dedent(
    """
    import atexit, os, signal, sys, time, weakref
    from pipelines import common

    common.guard_exit()
    common.stop_on_signals()
    where = sys.argv[1]

    def land(*_):
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(1000))  # the handler runs here, inside the callback

    class Plain:
        pass

    class Box:
        def __del__(self):
            land()

    try:
        if where == "weakref":
            plain = Plain()
            ref = weakref.ref(plain, land)
            del plain
        elif where == "__del__":
            box = Box()
            del box
        elif where == "library":
            try:
                land()
            except KeyboardInterrupt:
                pass  # what a library's broad `except` does
        elif where == "atexit":
            atexit.register(land)
        for _ in range(100):  # the rest of the stage's work
            time.sleep(0.01)
        print("body finished", flush=True)
    except KeyboardInterrupt:
        print("body stopped", flush=True)
        sys.exit(common.finish("race", 130))
    sys.exit(common.finish("race", 0))
    """
)


def environment(shell: str | None = None) -> dict[str, str]:
    """This environment for a stage process: no Prefect, no outside tracking URI or stop file.

    `shell` is the SHELL DVC runs stage commands with; None leaves SHELL unset (cron, CI), and
    DVC then uses /bin/sh.
    """
    drop = {"MLFLOW_TRACKING_URI", "SEQCAST_STOP_FILE", "SHELL"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return (
        env
        | {"SEQCAST_PREFECT": "off", "PYTHONPATH": str(ROOT)}
        | ({"SHELL": shell} if shell else {})
    )


@pytest.mark.parametrize("where", ["weakref", "__del__", "library", "atexit"])
def test_a_dropped_interrupt_still_exits_130(where: str) -> None:
    """Ctrl-C landing where Python drops it: exit 130, never 0; a dropped one is raised again."""
    done = subprocess.run(
        [sys.executable, "-c", RACE, where],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 130, done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr or where == "atexit"
    if where in ("weakref", "__del__"):  # raised again in the main thread: the stage stops
        assert "body stopped" in done.stdout, done.stdout + done.stderr
        assert "SIGINT arrived inside a cleanup callback" in done.stderr
    if where == "library":  # swallowed for good: the body finishes, the exit code still says so
        assert "body finished" in done.stdout
        assert done.stderr.strip().endswith("race failed: interrupted")


def test_a_stage_started_with_sigint_ignored_still_stops_on_it() -> None:
    """A shell's background job (`nohup make test &`) starts with SIGINT ignored: the stage
    installs its handler anyway, so the runner's Ctrl-C still stops it with 130."""
    done = subprocess.run(
        [sys.executable, "-c", RACE, "weakref"],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert done.returncode == 130 and "body stopped" in done.stdout, done.stdout + done.stderr


def test_a_stage_started_after_the_stop_does_not_run(
    tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner got Ctrl-C, DVC went on anyway: the next stage (promote) refuses to start."""
    from pipelines.server import run_command

    # DVC as the stage after a dropped Ctrl-C sees it: SIGINT ignored, then promote started.
    stage = [sys.executable, "-m", "pipelines.stages", "promote", "--root", str(tmp_path)]
    script = f"trap '' INT; kill -INT $PPID; sleep 0.3; exec {' '.join(stage)}"
    monkeypatch.delenv("SEQCAST_STOP_FILE", raising=False)
    monkeypatch.setenv("SEQCAST_PREFECT", "off")
    # The runner here is pytest's own process: give it Python's SIGINT handler, as `make` in a
    # terminal has, even when pytest runs in the background (SIGINT ignored, which the runner
    # keeps) as under `nohup make test &`.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = run_command(["sh", "-c", script], grace=20)
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capfd.readouterr().err
    assert code == 130
    assert "promote failed: not started: the run was stopped (Ctrl-C or SIGTERM)" in err
    assert not (tmp_path / "metrics").exists()


# A stage that logs MLflow models in a loop (where the weakref race of issue 18 happened), and
# a promote stage that sets a registry alias: a Ctrl-C during the first must keep the second
# from running.
LOGGER_STAGE = textwrap.dedent(
    """
    import sys
    from pipelines import common

    common.guard_exit()
    common.stop_on_signals()
    code = 0
    try:
        import mlflow
        from mlflow.pyfunc import PythonModel

        class Echo(PythonModel):
            def predict(self, context, model_input):
                return model_input

        mlflow.set_tracking_uri(sys.argv[1])
        with mlflow.start_run():
            for k in range(40):
                print(f"logging model {k}", flush=True)
                mlflow.pyfunc.log_model(name=f"m{k}", python_model=Echo())
    except KeyboardInterrupt:
        code = 130
    open("evaluated", "w").write("done\\n")
    sys.exit(common.finish("evaluate", code))
    """
)
PROMOTE_STAGE = textwrap.dedent(
    """
    import sys
    import mlflow
    from mlflow import MlflowClient
    from seqcast.core import interrupts

    mlflow.set_tracking_uri(sys.argv[1])
    client = MlflowClient()
    client.create_registered_model("toy")
    interrupts.raise_if_interrupted("set the champion alias")
    open("promoted", "w").write("done\\n")
    """
)


def dvc_repo(tmp_path: Path) -> tuple[Path, str]:
    """A git+DVC repo with the two stages above; its MLflow store's URI."""
    repo = tmp_path / "toy"
    repo.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (repo / "evaluate.py").write_text(LOGGER_STAGE)
    (repo / "promote.py").write_text(PROMOTE_STAGE)
    python = sys.executable
    (repo / "dvc.yaml").write_text(
        textwrap.dedent(
            f"""
            stages:
              evaluate:
                cmd: exec {python} evaluate.py {uri}
                deps: [evaluate.py]
                outs: [{{evaluated: {{cache: false}}}}]
              promote:
                cmd: exec {python} promote.py {uri}
                deps: [evaluated, promote.py]
                outs: [{{promoted: {{cache: false}}}}]
            """
        )
    )
    for args in (["git", "init", "-q"], [str(Path(python).parent / "dvc"), "init", "-q"]):
        subprocess.run(args, cwd=repo, check=True, capture_output=True)
    return repo, uri


SHELLS = [None] + [s for s in ("/bin/bash",) if Path(s).exists()]


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: f"SHELL={s or 'unset'}")
def test_ctrl_c_while_mlflow_logs_models_never_reaches_promote(
    tmp_path: Path, shell: str | None
) -> None:
    """Real `dvc repro`, Ctrl-C to its process group at several points of model logging.

    With SHELL unset DVC runs commands with /bin/sh: dash on Debian, which does not exec a
    `-c` command and dies of the Ctrl-C before the stage ends; dvc.yaml's `exec` removes it.
    """
    repo, uri = dvc_repo(tmp_path)
    database = tmp_path / "mlflow.db"
    # Three moments where CI and cron run (SHELL unset); one for an interactive shell.
    for delay in (0.0, 0.4, 1.1) if shell is None else (0.4,):
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dvc"), "repro"],
            cwd=repo,
            env=environment(shell),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group, as the terminal's foreground job
        )
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("logging model 1"):
                break
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        lines += proc.stdout.readlines()
        code = proc.wait(timeout=60)
        output = "".join(lines)
        assert code != 0, output
        assert "exited with 130" in output, output
        assert not (repo / "promoted").exists(), output
        with sqlite3.connect(database) as db:
            assert db.execute("select count(*) from registered_models").fetchone() == (0,)
