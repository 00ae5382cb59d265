"""The run report the pipeline flow publishes: a table artifact and a Markdown artifact."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pipelines.common import MODEL_KINDS
from seqcast.tracking import ui_link

COMPARISON = Path("evaluation/comparison.json")
PROMOTION = Path("reports/report/decision.json")
RUNS = Path("evaluation/runs.json")
METRICS = ("mae", "rmse", "mase", "smape")
LABELS = {"mae": "MAE", "rmse": "RMSE", "mase": "MASE", "smape": "sMAPE"}


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


def _number(value: Any) -> float | None:
    """A finite number rounded to 4 significant digits, else None (JSON has no NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(f"{value:.4g}")


def _models(comparison: Any) -> dict[str, dict]:
    models = comparison.get("models") if isinstance(comparison, dict) else None
    if not isinstance(models, dict):
        return {}
    return {str(k): v if isinstance(v, dict) else {} for k, v in models.items()}


def _metric(metric: str | None) -> str:
    return metric if metric in METRICS else "mase"


def _ranked(comparison: Any, metric: str | None) -> list[tuple[str, dict]]:
    """Models by `metric` on the test split, lower first; models without it last."""
    key = _metric(metric)

    def rank(item: tuple[str, dict]) -> float:
        value = item[1].get(key)
        return value if _number(value) is not None else math.inf

    return sorted(_models(comparison).items(), key=rank)


def _notes(name: str, comparison: Any, promotion: Any) -> str:
    """What a model is in this run: best network/baseline, fallback, promoted candidate."""
    notes = []
    comparison = comparison if isinstance(comparison, dict) else {}
    if comparison.get("best_network") == name:
        notes.append("best network")
    if comparison.get("best_baseline") == name:
        notes.append("best baseline")
    if comparison.get("fallback") == name:
        notes.append("fallback")
    candidate = promotion.get("candidate") if isinstance(promotion, dict) else None
    kind = candidate.get("kind") if isinstance(candidate, dict) else candidate
    if kind == name:
        notes.append(f"candidate ({promotion.get('outcome') or 'undecided'})")
    return ", ".join(notes)


def comparison_rows(
    comparison: Any, metric: str | None = None, promotion: Any = None
) -> list[dict[str, Any]]:
    """Rows of the table artifact: model, role, test metrics, notes; best first."""
    rows = []
    for name, scores in _ranked(comparison, metric):
        row: dict[str, Any] = {
            "model": name,
            "role": "network" if name in MODEL_KINDS else "baseline",
        }
        row |= {LABELS[m]: _number(scores.get(m)) for m in METRICS}
        row["notes"] = _notes(name, comparison, promotion)
        rows.append(row)
    return rows


def comparison_table(comparison: Any, metric: str | None = None) -> str:
    """Models as rows, metrics as columns, sorted by `metric` (lower is better), best in bold."""
    rows = _ranked(comparison, metric)
    if not rows:
        return "_No model comparison (evaluation/comparison.json) yet._"
    key = _metric(metric)
    lines = ["| model | " + " | ".join(LABELS[m] for m in METRICS) + " |"]
    lines.append("|---" * (len(METRICS) + 1) + "|")
    for i, (name, scores) in enumerate(rows):
        best = i == 0 and _number(scores.get(key)) is not None
        label = f"**{_cell(name)}**" if best else _cell(name)
        lines.append(f"| {label} | " + " | ".join(_cell(scores.get(m)) for m in METRICS) + " |")
    return "\n".join(lines) + f"\n\nSorted by {LABELS[key]} on the test split; lower is better."


def _who(entry: Any, metric: str) -> str:
    """A candidate, champion or baseline entry of decision.json in a few words."""
    if entry is None:
        return "none"
    if not isinstance(entry, dict):
        return f"`{_cell(entry)}`"
    name = entry.get("kind") or entry.get("name") or "?"
    text = f"`{_cell(name)}`"
    if entry.get("version") is not None:
        text += f" v{_cell(entry['version'])}"
    if _number(entry.get("score")) is not None:
        text += f", test {LABELS.get(metric, metric)} {_cell(entry['score'])}"
    return text


def promotion_section(promotion: Any) -> str:
    """The decision in words: summary, outcome, reasons as bullets, then who was compared."""
    if promotion is None:
        return "_No promotion decision (reports/report/decision.json) yet._"
    if not isinstance(promotion, dict):
        return f"`{_cell(promotion)}`"
    if "error" in promotion and len(promotion) == 1:
        return f"_{_cell(promotion['error'])}_"
    metric = str(promotion.get("metric") or "mase")
    outcome = promotion.get("outcome")
    if outcome is None and "promoted" in promotion:
        outcome = "promoted" if promotion["promoted"] else "not promoted"
    summary = promotion.get("summary") or outcome or "no summary"
    parts = [f"**{_cell(summary)}**" + (f" (outcome: `{_cell(outcome)}`)" if outcome else "")]
    reasons = promotion.get("reasons")
    if isinstance(reasons, list) and reasons:
        parts.append("Why:\n\n" + "\n".join(f"- {_cell(reason)}" for reason in reasons))
    facts = [
        f"- **Candidate:** {_who(promotion.get('candidate'), metric)}",
        f"- **Champion before:** {_who(promotion.get('champion'), metric)}",
        f"- **Best simple baseline:** {_who(promotion.get('best_baseline'), metric)}",
    ]
    aliases = promotion.get("aliases_set")
    if isinstance(aliases, dict) and aliases:
        moved = ", ".join(f"`{_cell(a)}` → v{_cell(v)}" for a, v in aliases.items())
        facts.append(f"- **Aliases set:** {moved}")
    elif "aliases_set" in promotion:
        facts.append("- **Aliases set:** none")
    if "fallback" in promotion:
        facts.append(f"- **Fallback to the baseline:** {'yes' if promotion['fallback'] else 'no'}")
    rule = [f"metric {LABELS.get(metric, metric)}"]
    if _number(promotion.get("margin")) is not None:
        rule.append(f"margin {promotion['margin']:.2%}")
    facts.append(f"- **Rule:** {', '.join(rule)}")
    parts.append("Compared:\n\n" + "\n".join(facts))
    return "\n\n".join(parts)


def mlflow_section(runs: Any) -> str:
    """A link to the MLflow parent run of this evaluation (model-training view)."""
    if not isinstance(runs, dict) or not runs.get("parent_run_id"):
        return "_No MLflow run recorded (evaluation/runs.json) yet._"
    experiment = str(runs.get("experiment_id", "0"))
    run = str(runs["parent_run_id"])
    return f"[MLflow parent run `{run}`]({ui_link(experiment, run)}) (experiment {experiment})"


def inputs(root: Path) -> tuple[Any, Any, Any]:
    """comparison.json, decision.json and runs.json of a workspace (None where missing)."""
    return _read(root / COMPARISON), _read(root / PROMOTION), _read(root / RUNS)


def render(
    root: Path, stages: list[str], ingested: dict[str, Any] | None, metric: str | None = None
) -> str:
    """The whole Markdown report for one pipeline run."""
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
    comparison, promotion, runs = inputs(root)
    return "\n\n".join(
        [
            "# seqcast pipeline",
            f"**Ingestion:** {ingest}",
            f"**Stages reproduced:** {ran}",
            "## Promotion",
            promotion_section(promotion),
            "## Model comparison",
            comparison_table(comparison, metric),
            "## MLflow",
            mlflow_section(runs),
        ]
    )
