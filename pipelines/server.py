"""One local Prefect server for a whole `dvc repro`, so each stage skips the ~5 s temporary server.

python -m pipelines.server run -- dvc repro   # reuse/start a server; stop it if we started it
python -m pipelines.server start|stop|status  # manage the background server under .prefect/
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200
PID_FILE = "seqcast-server.pid"  # not Prefect's server.pid, which `prefect server start -b` owns
STARTUP_TIMEOUT = 90.0  # first start runs the SQLite migrations: slow on small machines


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


def start_server(
    home: Path, port: int, *, log: Path | None = None, timeout: float = STARTUP_TIMEOUT
) -> Server:
    """Start `prefect server start` in its own session with PREFECT_HOME=home; await health."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    out = open(log or os.devnull, "ab")  # noqa: SIM115 - the child owns it after Popen
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"]
            + ["--host", DEFAULT_HOST, "--port", str(port), "--analytics-off"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives Ctrl-C in make; stopped by pid
        )
    finally:
        out.close()
    server = Server(api_url_for(port), proc.pid, proc)
    deadline = time.monotonic() + timeout
    while not healthy(server.api_url):
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s; see {log}")
        time.sleep(0.2)
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
        elif not _alive(server.pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    if server.process is not None:
        server.process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; treat it as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    return True


def prefect_home(root: Path) -> Path:
    """The repository's own PREFECT_HOME (git-ignored): its SQLite keeps the run history."""
    return root / ".prefect"


def ensure_server(root: Path, port: int = DEFAULT_PORT) -> tuple[Server, bool]:
    """Reuse a server at $PREFECT_API_URL or 127.0.0.1:port, else start one; (server, started)."""
    for url in (os.environ.get("PREFECT_API_URL"), api_url_for(port)):
        if url and healthy(url):
            os.environ["PREFECT_API_URL"] = url
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
    (home / PID_FILE).write_text(f"{server.pid}\n")
    os.environ["PREFECT_API_URL"] = server.api_url
    return server, True


@contextlib.contextmanager
def serving(root: Path, port: int = DEFAULT_PORT, keep: bool = False) -> Iterator[Server]:
    """ensure_server for a block; stop the server afterwards if this block started it."""
    server, started = ensure_server(root, port)
    try:
        yield server
    finally:
        if started and not keep:
            stop_server(server)
            (prefect_home(root) / PID_FILE).unlink(missing_ok=True)


def stop_background(root: Path) -> bool:
    """Stop the server recorded in .prefect/seqcast-server.pid; False when none was running."""
    pid_file = prefect_home(root) / PID_FILE
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    running = _alive(pid)
    if running:
        stop_server(Server("", pid))
    pid_file.unlink(missing_ok=True)
    return running


def main(argv: list[str] | None = None) -> int:
    """CLI: run [--keep] -- CMD..., start, stop, status."""
    from seqcast.paths import store_root

    parser = argparse.ArgumentParser(prog="python -m pipelines.server", description=__doc__)
    parser.add_argument("action", choices=["run", "start", "stop", "status"])
    default_port = int(os.environ.get("SEQCAST_PREFECT_PORT", DEFAULT_PORT))
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--keep", action="store_true", help="run: leave a started server running")
    argv = sys.argv[1:] if argv is None else argv
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    root = store_root()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.action == "run":
        if not command:
            parser.error("run needs a command after --, e.g. run -- dvc repro")
        with serving(root, args.port, keep=args.keep) as server:
            print(f"Prefect API: {server.api_url}", file=sys.stderr, flush=True)
            return subprocess.call(command)  # inherits PREFECT_API_URL from os.environ
    if args.action == "start":
        server, started = ensure_server(root, args.port)
        verb = "started" if started else "already running"
        ui = server.api_url.removesuffix("/api")
        print(f"Prefect server {verb}: {ui} (export PREFECT_API_URL={server.api_url})")
        return 0
    if args.action == "stop":
        print("stopped" if stop_background(root) else "no background server from this repo")
        return 0
    url = os.environ.get("PREFECT_API_URL") or api_url_for(args.port)
    ok = healthy(url)
    print(f"{url}: {'healthy' if ok else 'not answering'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
