"""The promotion lock: one promotion at a time moves the registry's aliases, on any machine.

On the local SQLite store the lock is a file beside the store (one machine shares it). On a
tracking server (PostgreSQL behind `mlflow server`, say) it lives in the registry itself: a
registered model `<registered_model>.promote-lock`. Creating a registered model is one insert
on a unique name, so exactly one of two creators succeeds and the other is told
RESOURCE_ALREADY_EXISTS, whichever machine each runs on. Its tags say who holds it (host, pid,
a token); the holder deletes it when done. A lock whose holder died is taken over: at once when
the holder ran on this host and its pid is gone, else once it is older than
SEQCAST_PROMOTE_LOCK_TIMEOUT seconds (a promotion takes seconds to minutes). A promotion waits
up to SEQCAST_PROMOTE_LOCK_WAIT seconds for a live holder, then stops naming it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from seqcast.core import paths
from seqcast.core.errors import ConfigError, SeqcastError
from seqcast.models import tracking

FILE = Path("mlruns/.promote.lock")  # under the main checkout, beside the SQLite store
SUFFIX = ".promote-lock"
TIMEOUT_ENV = "SEQCAST_PROMOTE_LOCK_TIMEOUT"  # seconds after which a held lock is stale
WAIT_ENV = "SEQCAST_PROMOTE_LOCK_WAIT"  # seconds a promotion waits for a held lock
DEFAULT_SECONDS = 900.0
POLL = 0.5  # seconds between attempts while another promotion holds the lock
TAG = "seqcast.lock."


class LockHeld(SeqcastError):
    """Another promotion held the lock for longer than this one would wait; names the holder."""


@dataclass(frozen=True)
class Holder:
    """Who holds a registry lock, read off its tags."""

    host: str
    pid: int
    token: str
    since: float  # seconds since the epoch, from the tracking server's creation timestamp

    def describe(self) -> str:
        """`process 123 on host h since 12:00:00 UTC (40 s ago)`."""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        age = max(0.0, time.time() - self.since)
        return f"process {self.pid} on host {self.host} since {when} ({age:.0f} s ago)"


def seconds(variable: str) -> float:
    """A positive number of seconds from the environment, DEFAULT_SECONDS when unset."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ConfigError(f"{variable}={text!r}: expected a positive number of seconds")
    return value


def lock_name(registered_model: str) -> str:
    """The registered model that stands for the promotion lock of `registered_model`."""
    return f"{registered_model}{SUFFIX}"


@contextlib.contextmanager
def promotion_lock(registered_model: str, root: Path) -> Iterator[None]:
    """Hold the promotion lock of `registered_model` while the block runs."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if paths.sqlite_file(uri) is not None:
        with _file_lock(paths.store_root(root) / FILE):
            yield
        return
    from mlflow import MlflowClient

    client = MlflowClient()
    name = lock_name(registered_model)
    mine = acquire(client, name)
    try:
        yield
    finally:
        try:
            release(client, name, mine.token)
        except Exception as err:  # the body's own error (server gone, say) is the one to report
            print(
                f"promote: could not release the promotion lock {name} ({type(err).__name__}); "
                f"the next promotion on this host takes it over, elsewhere after {TIMEOUT_ENV}",
                flush=True,
            )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """The file lock of the local store, with the same wait and the same error as the registry's."""
    from filelock import FileLock, Timeout

    wait = seconds(WAIT_ENV)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = FileLock(str(path), timeout=wait)
        lock.acquire()
    except Timeout:
        raise LockHeld(
            f"promote: another promotion has held {path} for over {wait:.0f} s ({WAIT_ENV}); "
            "if none is running, delete the lock file"
        ) from None
    try:
        yield
    finally:
        lock.release()


def acquire(client, name: str) -> Holder:
    """Create the lock model, taking over a stale one; LockHeld after waiting for a live one."""
    from mlflow.exceptions import MlflowException

    wait, stale_after = seconds(WAIT_ENV), seconds(TIMEOUT_ENV)
    token = uuid.uuid4().hex
    tags = {f"{TAG}host": socket.gethostname(), f"{TAG}pid": str(os.getpid()), f"{TAG}token": token}
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            created = client.create_registered_model(
                name, tags=tags, description="seqcast promotion lock: deleted when it ends"
            )
            return Holder(
                tags[f"{TAG}host"], os.getpid(), token, created.creation_timestamp / 1000.0
            )
        except MlflowException as err:
            # The server reads the holder back after a duplicate insert: RESOURCE_DOES_NOT_EXIST
            # when the holder released it in between, so try again.
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                continue
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        holder = read_holder(client, name)
        if holder is None:  # released between our attempt and the look-up
            continue
        reason = stale(holder, stale_after)
        if reason:
            print(f"promote: taking over the promotion lock {name}: {reason}", flush=True)
            release(client, name, holder.token)
            continue
        if not told:
            print(f"promote: waiting for the lock {name}, held by {holder.describe()}", flush=True)
            told = True
        if time.monotonic() >= deadline:
            raise LockHeld(
                f"promote: the promotion lock {name} on {where()} is held by "
                f"{holder.describe()}; waited {wait:.0f} s ({WAIT_ENV}). If that promotion is "
                f"not running, it is taken over once older than {stale_after:.0f} s "
                f"({TIMEOUT_ENV}), or delete the registered model {name}"
            )
        time.sleep(POLL)


def where() -> str:
    """The tracking URI, without any user:password in it."""
    from urllib.parse import urlsplit, urlunsplit

    import mlflow

    parts = urlsplit(mlflow.get_tracking_uri())
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=host))


def read_holder(client, name: str) -> Holder | None:
    """Who holds the lock, or None when nobody does."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    tags = model.tags or {}
    pid = tags.get(f"{TAG}pid", "")
    return Holder(
        host=tags.get(f"{TAG}host", "unknown"),
        pid=int(pid) if pid.isdigit() else -1,
        token=tags.get(f"{TAG}token", ""),
        since=model.creation_timestamp / 1000.0,
    )


def stale(holder: Holder, stale_after: float) -> str | None:
    """Why a held lock may be taken over (its holder died, or it is too old), else None."""
    if holder.host == socket.gethostname() and not tracking.process_alive(holder.pid):
        return f"its holder, process {holder.pid} on this host, has ended"
    age = time.time() - holder.since
    if age > stale_after:
        return f"held by {holder.describe()}, longer than {stale_after:.0f} s ({TIMEOUT_ENV})"
    return None


def release(client, name: str, token: str) -> None:
    """Delete the lock model if it is still the one with this token (never a newer holder's)."""
    from mlflow.exceptions import MlflowException

    holder = read_holder(client, name)
    if holder is None or holder.token != token:
        return
    try:
        client.delete_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
