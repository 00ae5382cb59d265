"""What the console shows: progress and real warnings, not notices a user can do nothing about.

- TensorFlow's oneDNN notice (twice per process) is written by C++ before absl logging starts,
  so TF_CPP_MIN_LOG_LEVEL does not hide it: the import runs with file descriptor 2 captured and
  every other line written back.
- MLflow's uv INFO lines (a uv project found, uv.lock copied into each logged model): its logger
  is raised to WARNING, so its real warnings still show.
- MLflow's CloudPickle warning: the served model is logged from a code file
  (seqcast.models.served_model), so there is nothing to warn about.
- tf.function retracing warnings: Forecaster calls the network directly for partial batches
  (seqcast.models.forecaster), so predict_on_batch only ever sees one shape.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

# Lines that say nothing a user can act on; a line containing one of these is dropped.
NATIVE_NOTICES = (
    "oneDNN custom operations are on",
    "All log messages before absl::InitializeLog() is called",
)
QUIET_LOGGERS = ("mlflow.utils.uv_utils",)


@contextlib.contextmanager
def native_notices_hidden(notices: tuple[str, ...] = NATIVE_NOTICES) -> Iterator[None]:
    """Run the block with stderr (fd 2) captured; write back every line but the notices."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            kept = [line for line in text.splitlines(True) if not any(n in line for n in notices)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def quiet_loggers() -> None:
    """Raise the chatty INFO loggers of the libraries to WARNING."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
