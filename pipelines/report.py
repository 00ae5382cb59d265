"""The Markdown run report the pipeline flow publishes as a Prefect artifact."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

COMPARISON = Path("evaluation/comparison.json")
PROMOTION = Path("reports/report/decision.json")
RUNS = Path("evaluation/runs.json")
METRICS = ("mae", "rmse", "mase", "smape")
LABELS = {"mae": "MAE", "rmse": "RMSE", "mase": "MASE", "smape": "sMAPE"}


def mlflow_ui() -> str:
    """Base URL of the MLflow UI the links point at (SEQCAST_MLFLOW_UI, default local)."""
    return os.environ.get("SEQCAST_MLFLOW_UI", "http://127.0.0.1:5000").rstrip("/")


def _read(path: Path) -> Any:
    """Parsed JSON, or None when the stage has not produced the file (yet)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        return {"error": f"{path.name} is not valid JSON: {err}"}


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int | float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def comparison_table(comparison: Any, metric: str | None = None) -> str:
    """Models as rows, metrics as columns, sorted by `metric` (lower is better), best in bold."""
    models = comparison.get("models") if isinstance(comparison, dict) else None
    if not isinstance(models, dict) or not models:
        return "_No model comparison (evaluation/comparison.json) yet._"
    key = metric if metric in METRICS else "mase"

    def rank(item: tuple[str, Any]) -> float:
        value = item[1].get(key) if isinstance(item[1], dict) else None
        return value if isinstance(value, int | float) else float("inf")

    rows = sorted(models.items(), key=rank)
    lines = ["| model | " + " | ".join(LABELS[m] for m in METRICS) + " |"]
    lines.append("|---" * (len(METRICS) + 1) + "|")
    for i, (name, scores) in enumerate(rows):
        scores = scores if isinstance(scores, dict) else {}
        label = f"**{_cell(name)}**" if i == 0 and rank(rows[0]) != float("inf") else _cell(name)
        lines.append(f"| {label} | " + " | ".join(_cell(scores.get(m)) for m in METRICS) + " |")
    return "\n".join(lines) + f"\n\nSorted by {LABELS[key]} on the test split; lower is better."


def promotion_section(promotion: Any) -> str:
    """The promotion decision as a short key/value table."""
    if promotion is None:
        return "_No promotion decision (reports/report/decision.json) yet._"
    if not isinstance(promotion, dict):
        return f"`{_cell(promotion)}`"
    lines = ["| | |", "|---|---|"]
    for key, value in promotion.items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
        lines.append(f"| {_cell(key)} | {_cell(shown)} |")
    return "\n".join(lines)


def mlflow_section(runs: Any) -> str:
    """A link to the MLflow parent run of this evaluation."""
    if not isinstance(runs, dict) or not runs.get("parent_run_id"):
        return "_No MLflow run recorded (evaluation/runs.json) yet._"
    experiment = runs.get("experiment_id", "0")
    run = runs["parent_run_id"]
    url = f"{mlflow_ui()}/#/experiments/{experiment}/runs/{run}"
    return f"[MLflow parent run `{run}`]({url}) (experiment {experiment})"


def render(
    root: Path, stages: list[str], ingested: dict[str, Any] | None, metric: str | None = None
) -> str:
    """The whole report for one pipeline run."""
    if ingested is None:
        ingest = "No ingestion configured (`ingest.source` is empty)."
    elif not ingested.get("changed"):
        ingest = f"`{ingested['source']}`: no new data."
    else:
        ingest = (
            f"`{ingested['source']}` ({ingested['mode']}): {ingested['rows_before']} → "
            f"{ingested['rows_after']} rows."
        )
    ran = ", ".join(f"`{s}`" for s in stages) if stages else "none (everything was up to date)"
    return "\n\n".join(
        [
            "# seqcast pipeline",
            f"**Ingestion:** {ingest}",
            f"**Stages reproduced:** {ran}",
            "## Model comparison",
            comparison_table(_read(root / COMPARISON), metric),
            "## Promotion",
            promotion_section(_read(root / PROMOTION)),
            "## MLflow",
            mlflow_section(_read(root / RUNS)),
        ]
    )
