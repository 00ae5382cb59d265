"""One model of the run report, rendered to reports/report/report.md and the Prefect artifacts.

The promote stage and the pipeline flow both build a `Report` from the same files (runs.json,
decision.json, backtest.json, intervals.json) and render it here, so a model is called the same
thing ("linear rival", "best baseline", "fallback" only when one happened) wherever it is read.
"""

from __future__ import annotations

import base64
import math
from io import BytesIO
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from seqcast.core import io, paths
from seqcast.core.config import STATISTICAL_MODELS
from seqcast.models.tracking import ui_link

METRICS = ("mae", "rmse", "mase", "smape")
LABELS = {"mae": "MAE", "rmse": "RMSE", "mase": "MASE", "smape": "sMAPE"}
RUNS = paths.EVALUATION / "runs.json"
DECISION = paths.REPORT / "decision.json"
LINEAR = "linear"
STATISTICAL_ROLE = "statistical rival"
# Wide enough to read in the Prefect UI's artifact pane, small enough that six plots stay a few
# hundred kB of Markdown in the Prefect database.
EMBED_WIDTH = 900


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelRow(_Model):
    """One model of the comparison: what it is in this run and its test metrics."""

    name: str
    role: str  # network | linear rival | baseline | champion (re-scored)
    metrics: dict[str, float | None]
    val_metric: float | None = None
    notes: list[str] = []


class Promotion(_Model):
    """The promotion decision, and whether this run made it or an earlier one did."""

    summary: str
    outcome: str
    reasons: list[str]
    aliases_set: dict[str, str]
    decided_now: bool = True


class Report(_Model):
    """Everything a person reads about one run: models, backtest, bands, decision, monitoring."""

    metric: str
    margin: float | None = None
    data_md5: str | None = None
    test_id: str | None = None
    data_facts: dict[str, float] | None = None
    parent_run_id: str | None = None
    run_link: str | None = None
    models: list[ModelRow] = []
    promotion: Promotion | None = None
    backtest: dict[str, Any] | None = None
    intervals: dict[str, Any] | None = None
    plots: list[str] = []
    # Where each plot is read from, by file name; absent: `plots/<name>` beside report.md.
    plot_sources: dict[str, str] = {}
    # Set by the pipeline flow only: what this scheduled run ingested, ran and decided.
    ingestion: str | None = None
    stages: list[str] | None = None
    retrain: str | None = None
    monitoring: list[str] = []


def _finite(value: Any) -> float | None:
    """A finite float, else None (JSON has no NaN, and a missing metric is not zero)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def model_rows(runs: dict, decision: dict | None, metric: str) -> list[ModelRow]:
    """Every network and baseline of runs.json (and a re-scored champion), best `metric` first."""
    candidate = (decision or {}).get("candidate") or {}
    fallback = bool((decision or {}).get("fallback"))
    rows = []
    groups = [("network", runs.get("networks", {})), ("baseline", runs.get("baselines", {}))]
    for group, entries in groups:
        for name, entry in entries.items():
            role = LINEAR + " rival" if group == "baseline" and name == LINEAR else group
            role = STATISTICAL_ROLE if group == "baseline" and name in STATISTICAL_MODELS else role
            notes = []
            if group == "network" and name == runs.get("best_network"):
                notes.append("best network")
            if group == "baseline" and name == runs.get("best_baseline"):
                notes.append("best baseline")
            if name == candidate.get("kind"):
                notes.append(f"candidate v{candidate.get('version')}")
                if fallback and group == "baseline":
                    notes.append("fallback")
            rows.append(
                ModelRow(
                    name=name,
                    role=role,
                    metrics={m: _finite(entry.get("metrics", {}).get(m)) for m in METRICS},
                    val_metric=_finite(entry.get("val_metrics", {}).get(metric)),
                    notes=notes,
                )
            )
    champion = (decision or {}).get("champion") or {}
    if champion.get("rescored_metrics"):
        rows.append(
            ModelRow(
                name=f"champion v{champion['version']}",
                role="champion (re-scored)",
                metrics={m: _finite(champion["rescored_metrics"].get(m)) for m in METRICS},
                notes=[f"was scored on `{champion.get('test_id')}`"],
            )
        )
    return sorted(rows, key=lambda r: (r.metrics.get(metric) is None, r.metrics.get(metric) or 0))


def build(
    runs: dict,
    decision: dict | None,
    metric: str,
    plots: list[str] | None = None,
    backtest: dict | None = None,
    intervals: dict | None = None,
    decided_now: bool = True,
) -> Report:
    """The report of one evaluation and its decision (decided_now: this run made it)."""
    promotion = None
    if decision:
        promotion = Promotion(
            summary=decision["summary"],
            outcome=decision["outcome"],
            reasons=list(decision.get("reasons", [])),
            aliases_set={str(k): str(v) for k, v in decision.get("aliases_set", {}).items()},
            decided_now=decided_now,
        )
    run_id = runs.get("parent_run_id")
    return Report(
        metric=metric,
        margin=(decision or {}).get("margin"),
        data_md5=runs.get("data_md5"),
        test_id=runs.get("test_id"),
        data_facts=runs.get("data"),
        parent_run_id=run_id,
        run_link=ui_link(str(runs.get("experiment_id", "0")), run_id) if run_id else None,
        models=model_rows(runs, decision, metric),
        promotion=promotion,
        backtest=backtest,
        intervals=intervals,
        plots=plots or [],
    )


def _read(path: Path) -> Any:
    """Parsed JSON, or None when the stage has not produced the file (yet)."""
    return io.read_json(path) if path.is_file() else None


def embedded(png: Path, max_width: int = EMBED_WIDTH) -> str:
    """A PNG as a data: URI, scaled down to max_width pixels wide."""
    # The Prefect UI renders a Markdown artifact apart from any file: a relative path resolves
    # against the UI's own URL, a data: URI needs nothing else (and no MLflow UI running).
    from PIL import Image

    with Image.open(png) as image:
        image.thumbnail((max_width, max_width * 4))
        # A chart needs few colours: a 256-colour palette is a third of the bytes of RGBA.
        small = image.convert("RGB").quantize(colors=256)
    out = BytesIO()
    small.save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def from_workspace(
    root: Path, metric: str, stages: list[str] | None = None, embed: bool = False
) -> Report:
    """The report of what a workspace holds; `stages` (those this run ran) say what is new;
    `embed`: the plots as data: URIs, for a report read away from its folder (Prefect)."""
    root = Path(root)
    runs = _read(root / RUNS) or {}
    decision = _read(root / DECISION)
    extra = {k: _read(root / paths.EVALUATION / f"{k}.json") for k in ("backtest", "intervals")}
    plots = root / paths.REPORT / "plots"
    pngs = sorted(p.name for p in plots.glob("*.png")) if plots.is_dir() else []
    decided_now = stages is None or any(s.split("@")[0] == "promote" for s in stages)
    built = build(runs, decision, metric, pngs, decided_now=decided_now, **extra)
    sources = {name: embedded(plots / name) for name in pngs} if embed else {}
    return built.model_copy(update={"stages": stages, "plot_sources": sources})


def _number(value: float | None, bold: bool = False) -> str:
    """A metric to 4 significant digits; '-' when absent."""
    if value is None:
        return "-"
    text = f"{value:.4g}"
    return f"**{text}**" if bold else text


def _best(report: Report) -> float | None:
    """The lowest value of the promotion metric: the one figure set in bold."""
    values = [r.metrics.get(report.metric) for r in report.models]
    values = [v for v in values if v is not None]
    return min(values) if values else None


def table_rows(report: Report) -> list[dict[str, Any]]:
    """Rows of the Prefect table artifact: model, role, test metrics, notes; best first."""
    rows = []
    for row in report.models:
        cells: dict[str, Any] = {"model": row.name, "role": row.role}
        cells |= {
            LABELS[m]: None if v is None else float(f"{v:.4g}") for m, v in row.metrics.items()
        }
        cells["notes"] = ", ".join(row.notes)
        rows.append(cells)
    return rows


def promotion_lines(report: Report) -> list[str]:
    """The decision in words; a run that did not decide says so instead of restating one."""
    promotion = report.promotion
    if promotion is None:
        return ["_No promotion decision (reports/report/decision.json) yet._"]
    if not promotion.decided_now:
        return [
            "**No promotion this run:** the promote stage did not run (nothing it reads "
            f"changed). The standing decision, made earlier: {promotion.summary}."
        ]
    lines = [f"**{promotion.summary}** (outcome: `{promotion.outcome}`)", ""]
    lines += [f"- {reason}" for reason in promotion.reasons]
    moved = ", ".join(f"`{a}` → v{v}" for a, v in promotion.aliases_set.items())
    lines.append(f"- aliases set: {moved or 'none'}")
    return lines


def served_after(decision: dict) -> tuple[str | None, str | None]:
    """The champion's version and kind once the decision is made (None, None: no champion)."""
    candidate, champion = decision["candidate"], decision.get("champion") or {}
    if decision["outcome"] in ("promoted", "unchanged"):
        return str(candidate["version"]), candidate["kind"]
    if champion.get("version"):
        return str(champion["version"]), champion.get("kind")
    return None, None


def description(decision: dict, runs: dict) -> str:
    """The evaluation parent run's description: the decision in one paragraph (MLflow Markdown)."""
    label = LABELS.get(decision["metric"], decision["metric"])
    candidate, baseline = decision["candidate"], decision["best_baseline"]
    role = "fallback baseline" if decision.get("fallback") else "the backtest's choice"
    version, kind = served_after(decision)
    served = f"v{version}" + (f" ({kind})" if kind else "") if version else "none"
    best_test = runs.get("best_on_test")
    test_note = (
        f" Lowest test {label}: {best_test} (reported only, not decided on)."
        if best_test and best_test != candidate["kind"]
        else ""
    )
    return (
        f"**{decision['summary']}.** Candidate: **{candidate['kind']}** ({role}), registered as "
        f"v{candidate['version']}, backtest mean {label} {candidate['score']:.4g}. Best simple "
        f"baseline: **{baseline['name']}**, test {label} {baseline['score']:.4g}. Served model "
        f"(`champion`): **{served}**. Promoted: **{'yes' if decision['promoted'] else 'no'}** "
        f"(outcome `{decision['outcome']}`).{test_note} The reasons and plots are in the "
        "report/ artifacts."
    )


def markdown(report: Report, title: str = "# seqcast: model comparison") -> str:
    """The whole report as Markdown: run facts, models, backtest, bands, decision, plots."""
    metric, label = report.metric, LABELS.get(report.metric, report.metric)
    lines = [title, ""]
    if report.ingestion is not None:
        lines.append(f"- ingestion: {report.ingestion}")
    if report.stages is not None:
        skipped = (report.retrain or "").endswith("(no retrain)")
        ran = ", ".join(f"`{s}`" for s in report.stages) or (
            "none (not retrained this run)" if skipped else "none (everything was up to date)"
        )
        lines.append(f"- stages run: {ran}")
    if report.retrain is not None:
        lines.append(f"- retrain: {report.retrain}")
    if report.data_md5:
        lines.append(f"- data md5 `{report.data_md5}`, test windows `{report.test_id}`")
    lines += _data_line(report.data_facts)
    if report.parent_run_id:
        lines.append(f"- parent run [{report.parent_run_id}]({report.run_link})")
    margin = "" if report.margin is None else f", margin {report.margin:g}"
    lines.append(f"- promotion metric **{label}** (lower is better){margin}")
    if report.monitoring:
        lines += ["", "## Live forecasts (ledger)", "", *report.monitoring]
    lines += ["", "## Test metrics", ""]
    if report.models:
        best = _best(report)
        head = "| model | role | " + " | ".join(LABELS[m] for m in METRICS)
        lines += [head + f" | val {label} | notes |", "|" + "---|" * (len(METRICS) + 4)]
        for row in report.models:
            cells = " | ".join(
                _number(v, bold=m == metric and v is not None and v == best)
                for m, v in row.metrics.items()
            )
            notes = ", ".join(row.notes)
            lines.append(
                f"| {row.name} | {row.role} | {cells} | {_number(row.val_metric)} | {notes} |"
            )
        lines += ["", f"Sorted by test {label}; lower is better; the best in bold."]
    else:
        lines.append("_No model comparison (evaluation/runs.json) yet._")
    lines += _backtest_section(report.backtest, metric)
    lines += _intervals_section(report.intervals)
    lines += ["", "## Promotion decision", "", *promotion_lines(report)]
    if report.plots:
        lines += ["", "## Plots", ""]
        # A paragraph each: one under the other, not side by side.
        images = [
            f"![{Path(name).stem}]({report.plot_sources.get(name, f'plots/{name}')})"
            for name in report.plots
        ]
        lines.append("\n\n".join(images))
    return "\n".join(lines) + "\n"


def _data_line(facts: dict | None) -> list[str]:
    """The report's line on the data: rows per split and how many were interpolated."""
    if not facts:
        return []
    split = ", ".join(
        f"{name} {int(facts[f'rows_{name}'])}"
        for name in ("train", "val", "test")
        if f"rows_{name}" in facts
    )
    return [
        f"- rows: {split}; {int(facts.get('filled_rows', 0))} filled by interpolation "
        f"({facts.get('filled_fraction', 0.0):.2%})"
    ]


def _backtest_section(backtest: dict | None, metric: str) -> list[str]:
    """The rolling-origin backtest: folds, each model's mean, spread, wins and per-origin scores."""
    if not backtest:
        return []
    decision, folds = backtest["decision"], backtest["folds"]
    settings = backtest["settings"]
    lines = [
        "",
        f"## Backtest ({decision['mode']})",
        "",
        f"- {len(folds)} origin(s); blocks from {folds[0]['cutoff']} to {folds[-1]['block_end']}; "
        f"{settings['window']} window, refit every {settings['refit_every']} origin(s); each "
        "fold's scaler, reference, linear rival and networks fit on its own history only",
        "",
        f"| model | mean {LABELS.get(metric, metric)} | spread (sd) | wins vs "
        f"{decision['best_simple']} | "
        + " | ".join(f"origin {f['fold'] + 1}" for f in folds)
        + " |",
        "|" + "---|" * (4 + len(folds)),
    ]
    for model in decision["ranking"]:
        per = [f[metric] for f in backtest["per_origin"][model]]
        mark = " (candidate)" if model == decision["candidate"] else ""
        shown = _shown(model)
        wins = decision["wins_over_best_simple"][model]
        lines.append(
            f"| {shown}{mark} | {decision['means'][model]:.4g} | {decision['spread'][model]:.3g} "
            f"| {'-' if model == decision['best_simple'] else f'{wins}/{len(folds)}'} | "
            + " | ".join(f"{v:.4g}" for v in per)
            + " |"
        )
    lines += [""] + [f"- {reason}" for reason in decision["reasons"]]
    return lines + _statistical_lines(backtest.get("statistical"))


def _shown(model: str) -> str:
    """A model's name as the report shows it: the rivals say what they are."""
    if model == LINEAR:
        return LINEAR + " rival"
    return f"{model} ({STATISTICAL_ROLE})" if model in STATISTICAL_MODELS else model


def _statistical_lines(facts: dict | None) -> list[str]:
    """The statistical rivals: the model and season each fit, where one failed and why."""
    if not facts or not facts.get("models"):
        return []
    lines = ["", "### Statistical rivals (statsforecast)", ""]
    for name, fact in facts["models"].items():
        if fact["status"] == "failed":
            lines.append(f"- {name}: not applicable on the training split: {fact['reason']}")
            continue
        lines.append(f"- {name}: {', '.join(fact['models'])}; {fact['season_note']}")
        for fold in facts.get("folds", {}).get(name, []):
            if "failed" in fold:
                lines.append(f"  - origin {fold['fold'] + 1}: failed: {fold['failed']}")
    lines.append(f"- {facts['features']}")
    return lines


def _intervals_section(intervals: dict | None) -> list[str]:
    """Coverage, width and MSIS of every model's conformal bands on the test windows."""
    if not intervals:
        return []
    first = next(iter(intervals.values()))
    levels = [
        k.removeprefix("coverage_")
        for k in first
        if k.startswith("coverage_") and not k.endswith("_step")
    ]
    head = (
        "| model | " + " | ".join(f"cover {lv}% | width {lv}% | MSIS {lv}%" for lv in levels) + " |"
    )
    lines = [
        "",
        "## Intervals on the test windows",
        "",
        "Conformal per horizon step, each window calibrated only on out-of-sample errors known "
        f"at its origin (the latest {first.get('calibration_errors', '?')}); finite-sample "
        "corrected quantile.",
        "",
        head,
        "|" + "---|" * (1 + 3 * len(levels)),
    ]
    for model, s in sorted(intervals.items(), key=lambda kv: kv[1].get(f"msis_{levels[0]}", 1e300)):
        cells = " | ".join(
            f"{s[f'coverage_{lv}']:.1%} | {s[f'width_{lv}']:.4g} | {s[f'msis_{lv}']:.4g}"
            if f"coverage_{lv}" in s
            else "- | - | -"
            for lv in levels
        )
        shown = _shown(model)
        lines.append(f"| {shown} | {cells} |")
        if f"native_coverage_{levels[0]}" in s:
            native = " | ".join(
                f"{s[f'native_coverage_{lv}']:.1%} | {s[f'native_width_{lv}']:.4g} | "
                f"{s[f'native_msis_{lv}']:.4g}"
                for lv in levels
            )
            lines.append(f"| {shown}, its own intervals | {native} |")
    return lines
