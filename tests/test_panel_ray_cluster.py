"""The per-series rivals on a two-node Ray cluster (two `ray start` on this machine): the local
sequential windows bit for bit, with a worker killed (`kill -9`) mid-run retried by Ray."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
from test_panel_parallel import RIVALS, assert_same, synthetic_panel

from benchmarks.ray_cluster import ENV, available, two_nodes, workers
from seqcast.core.config import ParallelConfig
from seqcast.models.panel_parallel import rivals_by_chunk
from seqcast.models.panel_rivals import forecast_origins

pytestmark = pytest.mark.skipif(not available(), reason="the `ray` command is not installed")


def kill_first_worker(groups: list[int], killed: list[int], done: threading.Event) -> None:
    """kill -9 the first worker of these nodes seen running a chunk, once."""
    while not done.is_set():
        running = workers(groups, "ray::run_range")
        if running:
            os.kill(running[0], signal.SIGKILL)
            killed.append(running[0])
            return
        time.sleep(0.1)


def rivals_on_cluster(address: str) -> object:
    """The per-series rivals from a fresh process connected to `address`, as a stage would be."""
    os.environ.update({**ENV, "RAY_ADDRESS": address})
    return rivals_by_chunk(synthetic_panel(), *RIVALS, ParallelConfig(chunk_series=2))


def test_two_nodes_give_the_local_windows_and_a_killed_worker_loses_nothing() -> None:
    panel = synthetic_panel()
    expected = forecast_origins(panel, *RIVALS)
    # Short: Ray's socket paths under it must fit in 107 bytes (pytest's tmp_path may not).
    root = Path(tempfile.mkdtemp(prefix="seqcast-ray-", dir="/tmp"))
    try:
        with two_nodes(root) as cluster:
            killed: list[int] = []
            done = threading.Event()
            killer = threading.Thread(
                target=kill_first_worker, args=(cluster.groups, killed, done), daemon=True
            )
            killer.start()
            try:
                # A fresh process, as a stage connects once: a driver that already ran and shut
                # down a local Ray (another test of this worker) got OwnerDiedError for its own
                # objects on this cluster once a worker died.
                spawn = multiprocessing.get_context("spawn")
                with spawn.Pool(1) as pool:
                    found = pool.apply(rivals_on_cluster, (cluster.address,))
            finally:
                done.set()
                killer.join()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert found.where == f"Ray cluster at {cluster.address} (2 CPUs)"
    assert len(killed) == 1  # a worker died mid-run ...
    assert found.failed == {}  # ... and Ray reran its chunk: no series lost
    assert_same(found.windows, expected)
