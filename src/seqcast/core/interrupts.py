"""Whether the user said stop: a Ctrl-C/SIGTERM seen by this process or by the run around it.

A stage's signal handler raises KeyboardInterrupt once. Python drops an exception raised inside
a weakref callback, a __del__ or the garbage collector ("Exception ignored in ..."), and a
library may swallow it; the stage would then finish and exit 0, and DVC would go on to promote.
So the handler also records the signal here, and whatever must not happen after a stop (the
stage exiting 0, the registry's aliases moving) asks `interrupted()` first.

`pipelines.server run` names a file in SEQCAST_STOP_FILE for the command it runs and creates it
when it passes a signal on: a stage started after that (DVC going on to `promote`) sees the stop
too, although the signal itself never reached its process.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

STOP_FILE = "SEQCAST_STOP_FILE"

_received: list[int] = []


class Interrupted(KeyboardInterrupt):
    """The user stopped the run: what was about to happen must not."""


def record(signum: int) -> None:
    """Note that `signum` (SIGINT or SIGTERM) arrived in this process."""
    _received.append(signum)


def received() -> int | None:
    """The first stop signal this process or its run received, else None."""
    if _received:
        return _received[0]
    path = os.environ.get(STOP_FILE)
    if path and Path(path).exists():
        text = Path(path).read_text().strip()
        return int(text) if text.isdigit() else signal.SIGINT
    return None


def interrupted() -> bool:
    """True once a Ctrl-C/SIGTERM reached this process or the run it belongs to."""
    return received() is not None


def raise_if_interrupted(what: str = "go on") -> None:
    """Raise Interrupted (a KeyboardInterrupt) when the user said stop; `what` names the step."""
    signum = received()
    if signum is not None:
        name = signal.Signals(signum).name
        raise Interrupted(f"{name} received: not going to {what}")


def exit_status(code: int) -> int:
    """The process exit code: 128 + the signal once one arrived, whatever the body returned."""
    signum = received()
    if signum is None or code >= 128:
        return code
    return 128 + signum
