"""Work over contiguous ranges of items (a panel's series) as Ray tasks, or in this process.

Ray owns the scheduling and the retries: a task whose worker dies (`kill -9`, out of memory) or
that raises a transient error is rerun by Ray (`max_retries`, `retry_exceptions`). A range that
still fails is cut in halves and rerun, down to single items, so one item that breaks its work
(a series that breaks a statistical fit) is named with its reason and the others go on. The
same cutting runs in this process with `engine: local`, so both engines give the same results.

Ray is imported only when a task runs on it: the layers above import this module freely.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqcast.core.errors import SeqcastError

# Errors a rerun may cure (a file system or network hiccup, memory taken by a neighbour). A
# ValueError from a fit is not among them: the same series breaks the same fit every time.
TRANSIENT = (OSError, MemoryError)

# Tasks a CPU gets at least (when the items allow): a small panel is spread, and a slow chunk
# at the end leaves the other CPUs idle for less of the run.
TASKS_PER_CPU = 4
RangeWork = Callable[..., Any]  # (payload, start, stop, *args) -> the result of items [start, stop)


class ClusterError(SeqcastError):
    """RAY_ADDRESS names no Ray cluster that answers."""


@dataclass
class Ranges:
    """The results of each range that ran, in item order, and the items that failed."""

    results: list[tuple[int, int, Any]]  # (start, stop, result), sorted by start
    failed: dict[int, str] = field(default_factory=dict)  # item -> the reason, in one line
    where: str = "this process"


def ranges(n_items: int, size: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges of at most `size` items covering 0..n_items."""
    return [(start, min(start + size, n_items)) for start in range(0, n_items, size)]


def check_address(
    address: str, timeout: float = 5.0, error: type[Exception] = ClusterError
) -> None:
    """Refuse an unreachable RAY_ADDRESS in one line, before anything runs."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise error(f"RAY_ADDRESS={address!r}: expected host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise error(
            f"RAY_ADDRESS={address!r}: no Ray cluster answers there ({err.strerror or err}); "
            "start one (`ray start --head`) or unset RAY_ADDRESS to run locally"
        ) from None


def connect(cpus: int | None, error: type[Exception] = ClusterError) -> str:
    """ray.init on RAY_ADDRESS's cluster, else a local Ray with `cpus` or every CPU."""
    import ray

    import seqcast

    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address:
        check_address(address, error=error)
        # The cluster's nodes need the project's dependencies; seqcast itself is shipped.
        ray.init(address=address, runtime_env={"py_modules": [seqcast]}, log_to_driver=False)
        return f"Ray cluster at {address} ({ray.cluster_resources().get('CPU', 0):g} CPUs)"
    cpus = cpus or os.cpu_count() or 1
    source = str(Path(seqcast.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
        # Workers import this checkout's seqcast, whatever the environment was installed from.
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    return f"local Ray, {cpus} CPUs"


@contextmanager
def session(cpus: int | None) -> Iterator[str]:
    """A Ray session for the block: the caller's if one runs, else one started and shut down."""
    import ray

    if ray.is_initialized():
        yield "the running Ray session"
        return
    where = connect(cpus)
    try:
        yield where
    finally:
        ray.shutdown()


def map_ranges(
    work: RangeWork,
    payload: Any,
    n_items: int,
    size: int,
    args: tuple = (),
    engine: str = "ray",
    cpus: int | None = None,
    retries: int = 3,
) -> Ranges:
    """`work(payload, start, stop, *args)` over ranges of `size` items, on Ray or here."""
    if engine == "local":
        return _run_here(work, payload, ranges(n_items, size), args)
    with session(cpus) as where:
        import ray

        # At most `size` items a task, and few enough that every CPU gets some tasks to share.
        spread = math.ceil(
            n_items / (TASKS_PER_CPU * max(1, ray.cluster_resources().get("CPU", 1)))
        )
        chunks = ranges(n_items, max(1, min(size, spread)))
        out = _run_on_ray(work, payload, chunks, args, retries)
    out.where = where
    return out


def _run_here(work: RangeWork, payload: Any, chunks: list[tuple[int, int]], args: tuple) -> Ranges:
    """The ranges one after the other in this process, failing ranges cut as on Ray."""
    out = Ranges(results=[])
    todo = list(reversed(chunks))
    while todo:
        start, stop = todo.pop()
        try:
            out.results.append((start, stop, work(payload, start, stop, *args)))
        except SeqcastError:  # bad params or data: the user's to fix, not a series' failure
            raise
        except Exception as err:  # noqa: BLE001 (any error of one series' fit is that series')
            todo.extend(reversed(_halves(start, stop, _reason(err), out.failed)))
    out.results.sort(key=lambda r: r[0])
    return out


def _run_on_ray(
    work: RangeWork, payload: Any, chunks: list[tuple[int, int]], args: tuple, retries: int
) -> Ranges:
    """The ranges as Ray tasks of one CPU each; Ray reruns dead workers and transient errors."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=list(TRANSIENT))(run_range)
    # Put once: every task on a node reads the same copy (numpy arrays without a copy).
    shared = ray.put(payload)
    pending = {
        task.remote(work, shared, start, stop, *args): (start, stop) for start, stop in chunks
    }
    out = Ranges(results=[])
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            start, stop = pending.pop(ref)
            try:
                out.results.append((start, stop, ray.get(ref)))
            except ray.exceptions.RayTaskError as err:
                if isinstance(err.cause, SeqcastError):
                    raise err.cause from None
                for half in _halves(start, stop, _reason(err), out.failed):
                    pending[task.remote(work, shared, *half, *args)] = half
            except ray.exceptions.RayError as err:  # its worker died more often than retries
                for half in _halves(start, stop, _reason(err), out.failed):
                    pending[task.remote(work, shared, *half, *args)] = half
    out.results.sort(key=lambda r: r[0])
    return out


def run_range(work: RangeWork, payload: Any, start: int, stop: int, *args: Any) -> Any:
    """One Ray task: the work of items [start, stop)."""
    return work(payload, start, stop, *args)


def _halves(start: int, stop: int, reason: str, failed: dict[int, str]) -> list[tuple[int, int]]:
    """The two halves of a failed range to rerun, or, for one item, the item marked failed."""
    if stop - start == 1:
        failed[start] = reason
        return []
    middle = (start + stop) // 2
    return [(start, middle), (middle, stop)]


def _reason(err: BaseException) -> str:
    """An error in one line: the exception a task raised, or how its worker died."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        err = cause
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
