"""Shared fixtures: one real Prefect server for the whole session, in a temp home."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The code under test is this checkout's src/, whichever checkout the environment was installed
# from (a git worktree shares the .venv of another).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
# tests/helpers.py for test modules in sub-folders (tests/faults/) too.
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# `import dvc` binds DVC's console log handlers to the sys.stdout of that moment. Imported first
# inside a test that captures output (capsys), they would write to its closed stream in every
# later test that logs through DVC ("I/O operation on closed file"): bind them to the session's.
import dvc  # noqa: E402, F401

# The slowest modules, slowest first (from `--durations` of a full run). `make test` hands whole
# files to two pytest-xdist workers in collection order (`--dist loadfile --no-loadscope-reorder`):
# started first, the long end-to-end modules overlap the many short ones instead of trailing them.
SLOW_FIRST = (
    "test_e2e_dvc.py",
    "test_zoo.py",
    "test_stages.py",
    "test_team.py",
    "test_dvc_yaml.py",
    "test_tune.py",
    "test_benchmarks.py",
    "faults/test_interrupts.py",
    "test_prefect_server.py",
    "test_backtest.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Known-slow modules first, in SLOW_FIRST order; the rest keep their order after them."""

    def rank(item: pytest.Item) -> int:
        path = item.path.as_posix()
        found = [i for i, name in enumerate(SLOW_FIRST) if path.endswith(f"tests/{name}")]
        return found[0] if found else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: each module's tests keep their order


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start` on a free local port; PREFECT_API_URL points at it."""
    from pipelines.server import free_port, start_server, stop_server

    home = tmp_path_factory.mktemp("prefect-home")
    server = start_server(home, free_port(), log=home / "server.log")
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        yield server.api_url
    finally:
        stop_server(server)
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
