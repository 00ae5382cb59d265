"""A two-node Ray cluster on this machine, as two machines would run it: `ray start` twice.

Each node is its own `ray start --block` in its own session and temp dir, with every port it
opens chosen free (colleagues' Ray on the same machine keeps theirs); stopping kills only these
two process groups, never `ray stop` (which stops every Ray of the user on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
# Nodes, driver and workers alike: no token file shared with other users' clusters.
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass
class Cluster:
    """The head's address and each node's process group."""

    address: str
    groups: list[int]


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> bool:
    """Whether the environment has the `ray` command."""
    return RAY.is_file() or shutil.which("ray") is not None


def _ports() -> list[str]:
    """Every port a node opens, free: the defaults (10001, 52365, ...) may be a colleague's."""
    names = [
        "node-manager-port",
        "object-manager-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    ]
    return [f"--{name}={free_port()}" for name in names]


def _start(arguments: list[str], log: Path) -> subprocess.Popen:
    """One `ray start --block` in its own session, so its group is ours to kill."""
    command = [str(RAY if RAY.is_file() else "ray"), "start", "--block", *arguments]
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    with log.open("w") as out:
        return subprocess.Popen(
            command + common + _ports(),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ENV},
            start_new_session=True,
        )


@contextmanager
def two_nodes(root: Path, timeout: float = 120.0) -> Iterator[Cluster]:
    """A head and a second node of one CPU each; both killed (their groups) at the end."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    processes = []
    try:
        head = [
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={root / 'head'}",
            f"--ray-client-server-port={free_port()}",
            "--include-dashboard=false",
            f"--dashboard-port={free_port()}",
        ]
        processes.append(_start(head, root / "head.log"))
        _wait_for_port(port, timeout, root / "head.log")
        node = [
            f"--address={address}",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={root / 'node'}",
        ]
        processes.append(_start(node, root / "node.log"))
        _wait_for_cpus(address, 2, timeout)
        yield Cluster(address, [p.pid for p in processes])
    finally:
        for process in reversed(processes):
            stop(process)


def _wait_for_port(port: int, timeout: float, log: Path) -> None:
    """Until the head's GCS listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(
        f"ray head on port {port} not up in {timeout:.0f} s: {log.read_text()[-500:]}"
    )


def _wait_for_cpus(address: str, cpus: int, timeout: float) -> None:
    """Until the cluster counts `cpus` CPUs (the second node has joined)."""
    import ray

    os.environ.update(ENV)
    ray.init(address=address, log_to_driver=False)
    try:
        deadline = time.monotonic() + timeout
        while ray.cluster_resources().get("CPU", 0) < cpus:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address}: fewer than {cpus} CPUs after {timeout:.0f} s")
            time.sleep(0.5)
    finally:
        ray.shutdown()


def stop(process: subprocess.Popen) -> None:
    """SIGTERM its group (`ray start --block` stops its node), then SIGKILL what is left."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20.0)
    # The node's own children (raylet, GCS) may outlive `ray start`: the group holds them too.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5.0)


def workers(groups: list[int], title: str) -> list[int]:
    """Pids of the nodes' workers whose process title starts with `title` (ray::<task>)."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True, text=True, check=True
    ).stdout
    table = [line.strip().split(None, 3) for line in out.splitlines()]
    table = [(int(pid), int(ppid), int(pgid), args) for pid, ppid, pgid, args in table]
    ours = {pid for pid, _, pgid, _ in table if pgid in groups}
    # A worker leads its own group: it is ours when a raylet of our groups started it.
    return [pid for pid, ppid, _, args in table if ppid in ours and args.startswith(title)]
