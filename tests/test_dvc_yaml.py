"""dvc.yaml says what each stage reads: the code it imports and the params it uses.

A stage whose deps miss a module it imports would be called up to date after that module
changed; one whose params miss a key it reads would not rerun when the key changes.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT

from pipelines.common import STAGE_FUNCTIONS

SRC = ROOT / "src"
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# The `store` stage, in a dvc.yaml of its own (dvc.yaml's header says why).
STORE = yaml.safe_load((ROOT / "store" / "dvc.yaml").read_text())["stages"]


def source(module: str) -> Path | None:
    """The file of a seqcast module or package (its __init__.py), if there is one."""
    path = SRC / f"{module.replace('.', '/')}.py"
    package = SRC / module.replace(".", "/") / "__init__.py"
    return path if path.is_file() else package if package.is_file() else None


def imported(module: str) -> set[str]:
    """The seqcast modules a module imports anywhere (top level or inside functions).

    Importing a module imports its packages too: seqcast.evaluation.backtest brings in
    seqcast/evaluation/__init__.py.
    """
    tree = ast.parse(source(module).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    parents = {m.rsplit(".", k)[0] for m in found for k in range(1, m.count(".") + 1)}
    return {m for m in found | parents if m.startswith("seqcast.") and source(m)}


def closure(module: str) -> set[str]:
    """The module and every seqcast module it reaches by imports."""
    seen = {module} | {module.rsplit(".", k)[0] for k in range(1, module.count("."))}
    todo = list(seen)
    while todo:
        for found in imported(todo.pop()) - seen:
            seen.add(found)
            todo.append(found)
    return seen


def stage(name: str) -> dict[str, Any]:
    """A stage's definition; matrix stages by their template."""
    return DVC[name]


@pytest.mark.parametrize("name", list(STAGE_FUNCTIONS))
def test_code_deps_are_exactly_what_the_stage_imports(name: str) -> None:
    """src/ deps of each stage == the import closure of the module that holds its function."""
    module = STAGE_FUNCTIONS[name].split(":")[0]
    needed = {str(source(m).relative_to(ROOT)) for m in closure(module)}
    listed = {d for d in stage(name)["deps"] if d.startswith("src/")}
    assert listed == needed, (
        f"missing {sorted(needed - listed)}, not imported {sorted(listed - needed)}"
    )


def test_every_stage_command_runs_its_function() -> None:
    """Each stage's command execs the stage the runner maps to a seqcast function.

    `exec`: no shell stays between DVC and the stage to die of Ctrl-C first (dash does).
    """
    for name in STAGE_FUNCTIONS:
        assert stage(name)["cmd"].startswith(f"exec python -m pipelines.stages {name}")


def test_the_store_stage_runs_always_and_gates_what_needs_the_store() -> None:
    """`store` runs on every repro, its code deps its import closure; the stages that log what
    the outputs name (and promote, which registers it) depend on the key it writes.

    It alone is in store/dvc.yaml, run from the checkout (`wdir: ..`): the lock DVC rewrites
    after it runs is its own few lines, not the pipeline's.
    """
    from seqcast.registry.store import KEY_FILE

    assert list(STORE) == ["store"] and "store" not in DVC
    store = STORE["store"]
    assert store["wdir"] == ".."
    assert store["cmd"] == "exec python -m pipelines.stages store"
    assert store["always_changed"] is True
    needed = {str(source(m).relative_to(ROOT)) for m in closure("seqcast.registry.store")}
    assert set(store["deps"]) == needed
    # persist: the generation counts on from the last key (DVC would delete it first).
    assert store["outs"] == [{str(KEY_FILE): {"cache": False, "persist": True}}]
    gated = {name for name, body in DVC.items() if str(KEY_FILE) in body.get("deps", [])}
    assert gated == {"evaluate", "refit", "promote"}


class Recorder:
    """A read-only view of a config that records every dotted key read through it."""

    def __init__(self, target: Any, prefix: str, seen: set[str]) -> None:
        self._target, self._prefix, self._seen = target, prefix, seen

    def __getattr__(self, key: str) -> Any:
        import inspect
        import types

        from pydantic import BaseModel

        found = getattr(type(self._target), key, None)
        # Derived values and helper methods read their sections through the recorder too.
        if isinstance(found, property):
            return found.fget(self)
        if inspect.isfunction(found) and not key.startswith("model_"):
            return types.MethodType(found, self)
        value = getattr(self._target, key)
        if callable(value) or key.startswith("model_"):
            return value
        dotted = f"{self._prefix}{key}"
        if isinstance(value, BaseModel):
            return Recorder(value, f"{dotted}.", self._seen)
        self._seen.add(dotted)
        return value


def declared(name: str, kind: str = "gru") -> list[str]:
    """The params keys a stage declares, the matrix item filled in."""
    return [str(p).replace("${item.model}", kind) for p in stage(name).get("params", [])]


def covered(key: str, params: list[str]) -> bool:
    """True when a declared params entry (a key or a whole section) covers the key."""
    return any(key == p or key.startswith(f"{p}.") for p in params)


@pytest.mark.e2e
def test_stages_read_only_the_params_they_declare(tmp_path: Path, monkeypatch) -> None:
    """Every stage runs on tiny params through a recording config: each key read is declared."""
    from helpers import TINY_PARAMS, stage_root

    from seqcast.core import config as config_module
    from seqcast.data import scaling, validation, windowing
    from seqcast.evaluation import backtest, stage
    from seqcast.models import training
    from seqcast.operations import refit
    from seqcast.registry import registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # The backtest's second fold reuses the first's model: both of its branches read their keys,
    # for one fit per network instead of two (the fits are most of this test's time).
    once = {"backtest": TINY_PARAMS["backtest"] | {"refit_every": "once"}}
    root = stage_root(tmp_path, **(TINY_PARAMS | once))
    cfg = config_module.load_config(root / "params.yaml")
    # Properties derived from several sections (seasons from data.frequency and
    # baselines.seasons) are read through the sections they derive from.
    runs = [
        ("validate", lambda c: validation.validate(c, root)),
        ("normalise", lambda c: scaling.normalise(c, root)),
        ("window", lambda c: windowing.window(c, root)),
        ("train", lambda c: training.train(c, root, "gru")),
        ("train", lambda c: training.train(c, root, "lstm")),
        ("backtest", lambda c: backtest.backtest(c, root, "gru")),
        ("backtest", lambda c: backtest.backtest(c, root, "lstm")),
        ("evaluate", lambda c: stage.evaluate(c, root)),
        ("refit", lambda c: refit.refit(c, root)),
        ("promote", lambda c: registry.promote(c, root)),
    ]
    for i, (name, call) in enumerate(runs):
        seen: set[str] = set()
        call(Recorder(cfg, "", seen))
        kind = "lstm" if i in (4, 6) else "gru"
        undeclared = sorted(k for k in seen if not covered(k, declared(name, kind)))
        assert not undeclared, f"{name} reads {undeclared}, not in its dvc.yaml params"


@pytest.mark.parametrize(
    "params", ["params.yaml", *sorted(p.name for p in (ROOT / "examples").glob("*.yaml"))]
)
def test_shipped_params_hold_every_key_dvc_tracks(params: str) -> None:
    """DVC refuses a stage whose tracked params are missing, defaults or not."""
    from seqcast.core.config import missing_dvc_params

    path = ROOT / params if params == "params.yaml" else ROOT / "examples" / params
    assert missing_dvc_params(path, ROOT / "dvc.yaml") == []


def test_seqcast_check_names_a_key_dvc_would_miss(tmp_path: Path) -> None:
    """`seqcast check` says which tracked key a params file lacks, before DVC refuses to run."""
    import subprocess
    import sys

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params["data"]["step_frequency"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "seqcast.cli", "check", "--params", str(tmp_path / "params.yaml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert f"{tmp_path / 'params.yaml'}: data.step_frequency: missing; dvc.yaml's window" in (
        done.stderr
    )
