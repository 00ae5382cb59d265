"""Console noise: native notices dropped, every other line on stderr kept."""

from __future__ import annotations

import logging
import os

import pytest

from seqcast.core import console


def test_native_notices_are_dropped_and_real_lines_kept(capfd: pytest.CaptureFixture[str]) -> None:
    with console.native_notices_hidden():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are ...\n")
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see ...\n")
        os.write(2, b"E0000 something real went wrong\n")

    assert capfd.readouterr().err == "E0000 something real went wrong\n"


def test_uv_info_lines_are_hidden_but_warnings_kept() -> None:
    console.quiet_loggers()
    logger = logging.getLogger("mlflow.utils.uv_utils")

    assert not logger.isEnabledFor(logging.INFO)
    assert logger.isEnabledFor(logging.WARNING)
