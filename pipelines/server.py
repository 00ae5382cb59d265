"""One local Prefect server for a whole `dvc repro`, so each stage skips the ~5 s temporary server.

python -m pipelines.server run -- dvc repro   # reuse/start a server; stop it if we started it
python -m pipelines.server status             # is one answering, and whose is it

A background server is Prefect's own: `prefect server start --background` / `prefect server
stop` with PREFECT_HOME=.prefect (`make prefect-server`, `make prefect-stop`); a `run` reuses it.
What Prefect does not do is kept here: a server started for one `run` dies with it, even by
kill -9 (Linux: PR_SET_PDEATHSIG), and a later `run` that finds one whose recorded owner is dead
adopts it: stops it when it ends.
Ctrl-C or SIGTERM during a `run` stops the command's whole process group, then the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import consistency
from pipelines.common import child_dies_with_us
from seqcast.core.interrupts import STOP_FILE
from seqcast.models.tracking import process_alive

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200
PID_FILE = "seqcast-server.pid"  # not Prefect's server.pid, which `prefect server start -b` owns
STARTUP_TIMEOUT = 90.0  # first start runs the SQLite migrations: slow on small machines
# After Ctrl-C/SIGTERM, how long the command gets to stop (a stage ends its MLflow run FAILED,
# puts back the last good outputs, reports to Prefect) before its process group is killed.
GRACE = 30.0


@dataclass
class Server:
    """A Prefect server process we started (pid) or found answering (pid None)."""

    api_url: str
    pid: int | None = None
    process: subprocess.Popen | None = None


def api_url_for(port: int, host: str = DEFAULT_HOST) -> str:
    """The PREFECT_API_URL of a server on host:port."""
    return f"http://{host}:{port}/api"


def healthy(api_url: str, timeout: float = 1.0) -> bool:
    """True when a Prefect API answers /health at api_url."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as reply:
            return reply.status == 200
    except (OSError, ValueError):
        return False


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((DEFAULT_HOST, 0))
        return sock.getsockname()[1]


def server_env(home: Path, port: int, host: str = DEFAULT_HOST) -> dict[str, str]:
    """The environment of `prefect server start` on host:port with PREFECT_HOME=home."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    # `--port` only moves the listening socket: the UI asks /ui-settings for its API URL, which
    # comes from PREFECT_SERVER_API_HOST/PORT (default 4200) unless PREFECT_UI_API_URL is set.
    env.update(PREFECT_SERVER_API_HOST=host, PREFECT_SERVER_API_PORT=str(port))
    if not (env.get("PREFECT_SERVER_UI_API_URL") or env.get("PREFECT_UI_API_URL")):
        env["PREFECT_SERVER_UI_API_URL"] = api_url_for(port, host)  # an explicit one wins (proxy)
    return env


def start_server(
    home: Path,
    port: int,
    *,
    log: Path | None = None,
    timeout: float = STARTUP_TIMEOUT,
    owned: bool = True,
) -> Server:
    """Start `prefect server start` in its own session; await health. owned: dies with us."""
    home.mkdir(parents=True, exist_ok=True)
    out = open(log or os.devnull, "ab")  # noqa: SIM115 - the child owns it after Popen
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"]
            + ["--host", DEFAULT_HOST, "--port", str(port), "--analytics-off"],
            env=server_env(home, port),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in make is for the command; stopped by pid
            # SIGTERM when this process dies, kill -9 included: no server outlives its run.
            preexec_fn=child_dies_with_us(signal.SIGTERM) if owned else None,
        )
    finally:
        out.close()
    server = Server(api_url_for(port), proc.pid, proc)
    deadline = time.monotonic() + timeout
    try:
        while not healthy(server.api_url):
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with code {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s; see {log}")
            time.sleep(0.2)
    except BaseException:  # Ctrl-C while it starts, too
        stop_server(server)
        raise
    return server


def stop_server(server: Server, timeout: float = 15.0) -> None:
    """Terminate a server we started (its whole process group), then kill it if it lingers."""
    if server.pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None:
            if server.process.poll() is not None:
                return
        elif not process_alive(server.pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    if server.process is not None:
        server.process.wait()


def prefect_home(root: Path) -> Path:
    """The repository's own PREFECT_HOME (git-ignored): its SQLite keeps the run history."""
    return root / ".prefect"


def read_record(root: Path) -> dict[str, Any] | None:
    """The server this checkout started: {"pid", "owner" (None: background), "api_url"}."""
    try:
        text = (prefect_home(root) / PID_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(record, int):  # the older format: a bare pid, no owner known
        return {"pid": record, "owner": None, "api_url": None}
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def write_record(root: Path, server: Server, owner: int | None) -> None:
    """Record the server's pid, its owner (the process that stops it) and its URL."""
    record = {"pid": server.pid, "owner": owner, "api_url": server.api_url}
    (prefect_home(root) / PID_FILE).write_text(json.dumps(record) + "\n")


def _is_prefect_server(pid: int) -> bool:
    """The pid is alive and (where /proc tells) a `prefect server start`, not a recycled pid."""
    if not process_alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return any(part.endswith(b"prefect") for part in command) and b"server" in command


def _orphaned(record: dict[str, Any] | None, url: str) -> bool:
    """A server we recorded at url whose owning run died without stopping it."""
    if not record or record.get("api_url") != url or not record.get("owner"):
        return False
    return not process_alive(record["owner"]) and _is_prefect_server(record["pid"])


def ensure_server(root: Path, port: int = DEFAULT_PORT) -> tuple[Server, bool]:
    """(server, ours): reuse or adopt one at $PREFECT_API_URL or 127.0.0.1:port, else start one."""
    # ours: this process must stop it (started, or adopted from a run that died).
    record = read_record(root)
    for url in (os.environ.get("PREFECT_API_URL"), api_url_for(port)):
        if url and healthy(url):
            os.environ["PREFECT_API_URL"] = url
            if _orphaned(record, url):
                server = Server(url, record["pid"])
                write_record(root, server, os.getpid())
                print(
                    f"Adopted the Prefect server (pid {server.pid}) of a run that died "
                    f"(pid {record['owner']}); stopping it at the end",
                    file=sys.stderr,
                    flush=True,
                )
                return server, True
            return Server(url), False
    home = prefect_home(root)
    try:
        server = start_server(home, port, log=home / "server.log")
    except RuntimeError:
        # Another `make repro` may have started one on this port meanwhile: use that one.
        if not healthy(api_url_for(port), timeout=5.0):
            raise
        os.environ["PREFECT_API_URL"] = api_url_for(port)
        return Server(api_url_for(port)), False
    write_record(root, server, os.getpid())
    os.environ["PREFECT_API_URL"] = server.api_url
    return server, True


@contextlib.contextmanager
def serving(root: Path, port: int = DEFAULT_PORT) -> Iterator[Server]:
    """ensure_server for a block; stop the server afterwards if this block started or adopted it."""
    server, ours = ensure_server(root, port)
    try:
        yield server
    finally:
        if ours:
            stop_server(server)
            (prefect_home(root) / PID_FILE).unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_command(command: list[str], grace: float = GRACE) -> int:
    """Run command in its own process group; a SIGINT/SIGTERM here stops that whole group."""
    # Passed on as SIGINT, as Ctrl-C would: DVC ignores it while a stage runs and stops when the
    # stage exits; the stage ends its MLflow run FAILED, puts back the last good outputs and
    # reports to the Prefect server, which stays up until the group is gone. Whatever is left
    # after `grace` seconds, or at a second signal, is killed.
    received: list[int] = []
    started: list[subprocess.Popen] = []
    # A stage that starts after the stop (DVC going on because the stopped one exited 0) must
    # see it too: it reads this file (seqcast.core.interrupts). An outer run's file is kept.
    env, scratch = stop_file_env()
    timers: list[threading.Timer] = []
    deadline = [float("inf")]

    def kill_group() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(started[0].pid, signal.SIGKILL)

    def stop_group() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(started[0].pid, signal.SIGINT)
        timers.append(threading.Timer(grace, kill_group))
        timers[-1].daemon = True
        timers[-1].start()

    def forward(signum: int, frame: object) -> None:
        if received:  # asked again: stop waiting
            if started:
                kill_group()
            return
        received.append(signum)
        deadline[0] = time.monotonic() + grace
        with contextlib.suppress(OSError):
            Path(env[STOP_FILE]).write_text(f"{signum}\n")
        name = signal.Signals(signum).name
        print(f"{name}: stopping {' '.join(command[:2])}...", file=sys.stderr, flush=True)
        if started:
            stop_group()

    handled = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored: keep ignoring it
        handled.append(signal.SIGINT)
    previous = {each: signal.signal(each, forward) for each in handled}
    try:
        started.append(
            subprocess.Popen(
                command,
                env=env,
                process_group=0,  # one group to signal: the command and every process under it
                # SIGTERM to the command if we are killed (-9 included); it must react to SIGINT
                # even if we were started ignoring it (a background job of a script).
                preexec_fn=child_dies_with_us(signal.SIGTERM, reset_sigint=True),
            )
        )
    except OSError as exc:
        for each, handler in previous.items():
            signal.signal(each, handler)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"cannot run {command[0]}: {exc}", file=sys.stderr)
        return 127
    proc = started[0]
    if received:  # the signal came while the command was starting
        stop_group()
    try:
        code = proc.wait()
        # The group outlives its leader when a stage was orphaned (its DVC died first).
        while received and _group_alive(proc.pid):
            if time.monotonic() > deadline[0]:
                kill_group()
            time.sleep(0.1)
    finally:
        for timer in timers:  # the group is gone: its id may soon name another one
            timer.cancel()
        for each, handler in previous.items():
            signal.signal(each, handler)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if received:
        return 128 + received[0]
    return 128 - code if code < 0 else code


def stop_file_env() -> tuple[dict[str, str], Path | None]:
    """This environment with SEQCAST_STOP_FILE set; the scratch folder made for it, if any."""
    if os.environ.get(STOP_FILE):
        return dict(os.environ), None
    scratch = Path(tempfile.mkdtemp(prefix="seqcast-run-"))
    return os.environ | {STOP_FILE: str(scratch / "stopped")}, scratch


def run_checked(command: list[str]) -> int:
    """run_command, after redoing what the MLflow store lost; then put back what a kill left."""
    from seqcast.core.paths import workspace

    here = workspace()
    if missing := consistency.missing_in_store(here):
        print(consistency.store_advice(here, missing), file=sys.stderr, flush=True)
        code = run_command(consistency.REDO)
        if code != 0:
            return code
    before = consistency.missing_outputs(here)
    code = run_command(command)
    if code != 0:
        for line in consistency.put_back_outputs(here, before):
            print(line, file=sys.stderr, flush=True)
    return code


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """CLI: run -- CMD..., status."""
    from seqcast.core.paths import store_root

    parser = argparse.ArgumentParser(prog="python -m pipelines.server", description=__doc__)
    parser.add_argument("action", choices=["run", "status"])
    default_port = int(os.environ.get("SEQCAST_PREFECT_PORT", DEFAULT_PORT))
    parser.add_argument("--port", type=int, default=default_port)
    argv = sys.argv[1:] if argv is None else argv
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    root = store_root()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.action == "run":
        if not command:
            parser.error("run needs a command after --, e.g. run -- dvc repro")
        # Until the command runs: SIGTERM unwinds like Ctrl-C, so a started server is stopped.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            with serving(root, args.port) as server:
                ui = server.api_url.removesuffix("/api")
                print(f"Prefect UI: {ui} (API {server.api_url})", file=sys.stderr, flush=True)
                return run_checked(command)  # inherits PREFECT_API_URL from os.environ
        except KeyboardInterrupt:
            return 128 + signal.SIGINT
    url = os.environ.get("PREFECT_API_URL") or api_url_for(args.port)
    ok = healthy(url)
    print(f"{url}: {'healthy' if ok else 'not answering'}")
    if record := read_record(root):
        owner = record.get("owner")
        whose = (
            f"run pid {owner} ({'alive' if process_alive(owner) else 'dead'})" if owner else "none"
        )
        print(f"recorded server: pid {record['pid']}, owner: {whose}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
