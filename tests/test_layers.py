"""The import graph of src/seqcast: no circles, and every arrow points down the layers.

Read with `ast`, nothing imported. Every import counts, at module level, inside a function
(lazy) or under TYPE_CHECKING: a lazy import still runs when its function does, so it can
close a circle, and it is still knowledge of that module, so it counts for the layers too.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "seqcast"
# The packages of src/seqcast, lowest first, in the order the data flows: a module may import
# its own layer (without a circle) and the layers below it, never one above.
LAYERS = ["core", "data", "models", "evaluation", "registry", "operations"]
# Above every layer: the command line.
TOP = "top"
# The flat layout before the move into packages (issue 25): each module's package-to-be. After
# the move only `cli` and `serving` (the old path of the served pyfunc, an import shim) are flat.
FLAT = {
    "errors": "core",
    "config": "core",
    "paths": "core",
    "io": "core",
    "outputs": "core",
    "console": "core",
    "interrupts": "core",
    "data": "data",
    "validation": "data",
    "scaling": "data",
    "seasonality": "data",
    "offsets": "data",
    "baselines": "data",
    "features": "data",
    "windowing": "data",
    "metrics": "models",
    "models": "models",
    "statistical": "models",
    "forecaster": "models",
    "training": "models",
    "tracking": "models",
    "serving": "models",
    "served_model": "models",
    "plots": "evaluation",
    "registry": "registry",
    "locks": "registry",
    "report": "registry",
    "store": "registry",
    "server": "operations",
    "ledger": "operations",
    "monitoring": "operations",
    "refit": "operations",
    "tune": "operations",
    "experiments": "operations",
    "cli": TOP,
}
# The layers that read and shape data know nothing of tracking, networks or orchestration.
NO_HEAVY = {"core", "data"}
HEAVY = {"mlflow", "keras", "tensorflow", "prefect"}


@cache
def modules() -> dict[str, Path]:
    """Every module under src/seqcast by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """The seqcast modules a module imports, with line numbers, at any level of the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                # `from seqcast.pkg import mod` imports a module; else a name from `base`.
                child = f"{base}.{alias.name}"
                found.append((child if child in known else base, node.lineno))
    return [(target, line) for target, line in found if target.split(".")[0] == ROOT]


def third_party(path: Path) -> set[str]:
    """Top-level names of the distributions a file imports, at any level."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def layer(name: str) -> str | None:
    """A module's layer: its package under seqcast, or FLAT's entry for a flat module."""
    parts = name.split(".")
    if len(parts) == 1:
        return None  # the root package: imported by everything, imports nothing of seqcast
    if parts[1] in LAYERS:
        return parts[1]
    return FLAT.get(parts[1])


def rank(name: str) -> int:
    """Position in LAYERS; TOP above all, the root below all."""
    found = layer(name)
    if found is None:
        return -1
    return len(LAYERS) if found == TOP else LAYERS.index(found)


@cache
def graph() -> dict[str, list[tuple[str, int]]]:
    """Module -> the seqcast modules it imports (with lines), self-imports dropped."""
    known = modules()
    return {
        name: sorted({(t, line) for t, line in imported(name, path, known) if t != name})
        for name, path in known.items()
    }


def where(name: str) -> str:
    """A module's file relative to the repository."""
    return str(modules()[name].relative_to(SRC.parent))


def circles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _ in edges.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    """A new flat module must be given its package (FLAT) or be put in one."""
    missing = [where(name) for name in modules() if name != ROOT and layer(name) is None]
    assert not missing, f"no layer for {missing}: move it into one of {LAYERS} (or list it in FLAT)"


def test_no_import_circles():
    """No module reaches itself through its imports, lazy ones included."""
    edges = graph()
    found = circles(edges)
    described = []
    for component in found:
        inside = set(component)
        lines = [
            f"{where(name)}:{line} imports {target}"
            for name in component
            for target, line in edges[name]
            if target in inside
        ]
        described.append("circle " + " <-> ".join(component) + ":\n  " + "\n  ".join(lines))
    assert not found, "\n".join(described)


def test_no_upward_imports():
    """Every import points to the module's own layer or one below it."""
    upward = [
        f"{where(name)}:{line} ({layer(name)}) imports {target} ({layer(target)})"
        for name, targets in graph().items()
        for target, line in targets
        if target in modules() and rank(target) > rank(name)
    ]
    assert not upward, "upward imports:\n  " + "\n  ".join(upward)


def test_imports_name_modules_that_exist():
    """Every seqcast import resolves to a module of src/seqcast (nothing stale after a move)."""
    known = modules()
    stale = [
        f"{where(name)}:{line} imports {target}"
        for name, targets in graph().items()
        for target, line in targets
        if target not in known
    ]
    assert not stale, "imports of missing modules:\n  " + "\n  ".join(stale)


def test_data_layers_import_no_tracking_or_networks():
    """core and data import no MLflow, Keras, TensorFlow or Prefect, not even lazily."""
    found = [
        f"{where(name)} imports {sorted(third_party(path) & HEAVY)}"
        for name, path in modules().items()
        if layer(name) in NO_HEAVY and third_party(path) & HEAVY
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": [("b", 1)], "b": [("a", 2)]}, [["a", "b"]]),
        ({"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 1)], "d": [("a", 1)]}, [["a", "b", "c"]]),
        ({"a": [("b", 1)], "b": []}, []),
    ],
)
def test_circles_finds_exactly_the_cycles(edges, expected):
    """The circle finder itself: a two-cycle, a three-cycle with a tail, and none."""
    assert circles(edges) == expected
