"""Shared fixtures: one real Prefect server for the whole session, in a temp home."""

from __future__ import annotations

import os
import resource
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


# CPU seconds (user + sys, this process and the children it waited for) of each test's setup,
# call and teardown, summed per test id: on a shared machine wall time is mostly waiting for a
# core, so `--durations` alone ranks tests by the load more than by their own cost.
CPU_KEY = "cpu_seconds"
CPU_SHOWN = 15
# A file each finished test's CPU seconds and id are appended to, when set.
CPU_LOG = "SEQCAST_TEST_CPU_LOG"


def _cpu() -> float:
    """User + sys seconds of this process and of its reaped children."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Each phase's report carries its CPU seconds (user_properties travel through xdist)."""
    started = getattr(item, "_cpu_started", None)
    outcome = yield
    report = outcome.get_result()
    if started is not None:
        report.user_properties.append((f"{CPU_KEY}_{call.when}", _cpu() - started))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """Start the setup phase's CPU clock."""
    item._cpu_started = _cpu()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Start the call phase's CPU clock."""
    item._cpu_started = _cpu()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item):
    """Start the teardown phase's CPU clock."""
    item._cpu_started = _cpu()
    yield


_CPU_BY_TEST: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Sum each test's phases (on the xdist controller too: the reports carry the figures)."""
    for key, value in report.user_properties:
        if key == f"{CPU_KEY}_{report.when}":
            _CPU_BY_TEST[report.nodeid] = _CPU_BY_TEST.get(report.nodeid, 0.0) + float(value)
    log = os.environ.get(CPU_LOG)
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # the controller writes it, once per test
    if log and not worker and report.when == "teardown" and report.nodeid in _CPU_BY_TEST:
        # A long run followed as it goes (the summary comes only at its end).
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{_CPU_BY_TEST[report.nodeid]:.1f}\t{report.nodeid}\n")


def pytest_terminal_summary(terminalreporter) -> None:
    """The tests that cost the most CPU, and the total, beside pytest's --durations."""
    if not _CPU_BY_TEST:
        return
    top = sorted(_CPU_BY_TEST.items(), key=lambda kv: kv[1], reverse=True)[:CPU_SHOWN]
    terminalreporter.write_sep("=", f"{len(top)} most CPU (user + sys s, setup + call + teardown)")
    for nodeid, seconds in top:
        terminalreporter.write_line(f"{seconds:8.1f}  {nodeid}")
    total = sum(_CPU_BY_TEST.values())
    terminalreporter.write_line(f"{total:8.1f}  total CPU of {len(_CPU_BY_TEST)} tests")


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
