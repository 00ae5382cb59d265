"""`seqcast exps`: DVC experiments compared in a table that fits the terminal.

`dvc exp show` prints every param, every metric under its file path, and dependency hashes: 205
columns for this project, where the one changed param and the LSTM metrics fall off a 120-column
screen. This keeps what tells experiments apart: the params that differ between rows, and the
chosen metrics under short names (`gru bt_mase` for `metrics/gru.json:bt_mase`), dropping the
lowest-priority metric columns (and saying so) until the table fits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqcast.core.paths import METRIC_FILES

# The backtest means first: the decision is made on them; the test scores only report.
DEFAULT_METRICS = ("bt_mase", "mase", "bt_mae", "mae", "promoted")
DEFAULT_WIDTH = 120
SHORT = {"best_baseline": "best"}
GAP = 2  # spaces between columns


@dataclass
class Row:
    """One line of the table: an experiment, a commit, or the workspace."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def show_json(root: Path) -> list[dict]:
    """`dvc exp show --json` of the repository at root, parsed."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise ValueError(f"dvc exp show failed in {root}: {reason[-1] if reason else 'no output'}")
    return json.loads(done.stdout)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys (lists kept whole, as one value)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _row(name: str, data: dict | None) -> Row:
    """A Row from one state's `data` (None for a queued or failed experiment)."""
    row = Row(name)
    for found in ((data or {}).get("params") or {}).values():
        row.params |= _flatten(found.get("data") or {})
    for path, found in ((data or {}).get("metrics") or {}).items():
        model = Path(path).stem
        for key, value in (found.get("data") or {}).items():
            if isinstance(value, (int, float)):
                row.metrics[f"{SHORT.get(model, model)} {key}"] = value
    return row


def rows(shown: list[dict]) -> list[Row]:
    """The workspace, each commit, and the experiments based on it, in `dvc exp show` order."""
    out = []
    for state in shown:
        rev = state["rev"]
        name = state.get("name") or (rev if rev == "workspace" else rev[:7])
        out.append(_row(name, state.get("data")))
        for group in state.get("experiments") or []:
            for exp in group.get("revs", []):
                out.append(_row(f"  {exp.get('name') or exp['rev'][:7]}", exp.get("data")))
    return out


def changed_params(table: list[Row]) -> list[str]:
    """Params whose value differs between rows, in params.yaml order."""
    keys: dict[str, None] = {}
    for row in table:
        keys |= dict.fromkeys(row.params)
    return [k for k in keys if len({json.dumps(r.params.get(k)) for r in table}) > 1]


def metric_columns(table: list[Row], metrics: tuple[str, ...]) -> list[str]:
    """The chosen metrics that some row has, by priority: metric first, then model."""
    models = [SHORT.get(m, m) for m in METRIC_FILES]
    present = {k for row in table for k in row.metrics}
    extra = sorted({k.split(" ", 1)[0] for k in present} - set(models))
    return [
        f"{model} {metric}"
        for metric in metrics
        for model in [*models, *extra]
        if f"{model} {metric}" in present
    ]


def _cell(value: Any) -> str:
    """A value as printed: 4 significant digits for numbers, '-' where there is none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value) if not isinstance(value, list) else json.dumps(value)


def _param_header(key: str, keys: list[str]) -> tuple[str, str]:
    """A param's two header lines: its parent and its name (the full parent if that is shared)."""
    parent, _, name = key.rpartition(".")
    short = parent.rpartition(".")[2]
    clash = [k for k in keys if k != key and k.rpartition(".")[2] == name]
    clash = [k for k in clash if k.rpartition(".")[0].rpartition(".")[2] == short]
    return (parent if clash else short), name


def render(
    table: list[Row], width: int = DEFAULT_WIDTH, metrics: tuple[str, ...] = DEFAULT_METRICS
) -> str:
    """The comparison as text at most `width` wide (plus a note of any columns left out).

    Headers take two lines (`gru` over `units`, `lstm` over `bt_mase`) so that a column is as
    wide as its numbers; metric columns go in priority order until the next one does not fit.
    """
    params = changed_params(table)
    columns: list[tuple[str, str, list[str]]] = [("", "experiment", [r.name for r in table])]
    columns += [
        (*_param_header(k, params), [_cell(r.params.get(k)) for r in table]) for k in params
    ]
    wanted = metric_columns(table, metrics)
    left_out = []
    for i, key in enumerate(wanted):
        model, metric = key.split(" ", 1)
        column = (model, metric, [_cell(r.metrics.get(key)) for r in table])
        if _width([*columns, column]) > width:
            left_out = wanted[i:]
            break
        columns.append(column)
    widths = [
        max(len(top), len(bottom), *(len(c) for c in cells)) for top, bottom, cells in columns
    ]
    lines = [
        _line([top for top, _, _ in columns], widths),
        _line([bottom for _, bottom, _ in columns], widths),
        _line(["-" * w for w in widths], widths),
    ]
    for i in range(len(table)):
        lines.append(_line([cells[i] for _, _, cells in columns], widths))
    lines = [line[:width] for line in lines if line]  # only a too-wide param value is cut
    if not params:
        lines.append("no param differs between these rows")
    if left_out:
        note = (
            f"left out to fit {width} columns: {', '.join(left_out)} "
            "(--width, or --metrics to choose)"
        )
        lines += textwrap.wrap(note, width)
    return "\n".join(lines)


def _width(columns: list[tuple[str, str, list[str]]]) -> int:
    """Characters the table of these columns needs."""
    each = [max(len(t), len(b), *(len(c) for c in cells)) for t, b, cells in columns]
    return sum(each) + GAP * (len(columns) - 1)


def _line(cells: list[str], widths: list[int]) -> str:
    """One row: the first column left-aligned, the rest right-aligned."""
    first = cells[0].ljust(widths[0])
    rest = [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True)]
    return (" " * GAP).join([first, *rest]).rstrip()
