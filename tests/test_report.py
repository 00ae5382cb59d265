"""The run report: one model rendered to report.md and the Prefect table, with the same words."""

from __future__ import annotations

import json
from pathlib import Path

from seqcast.registry import report


def _runs() -> dict:
    scores = {"gru": 0.5, "lstm": 0.9}
    return {
        "parent_run_id": "r1",
        "experiment_id": "3",
        "data_md5": "md5-a",
        "test_id": "test-a",
        "best_network": "gru",
        "best_baseline": "seasonal_naive_48",
        "networks": {
            k: {"metrics": {"mae": 2 * v, "mase": v}, "val_metrics": {"mase": v}}
            for k, v in scores.items()
        },
        "baselines": {
            "seasonal_naive_48": {"metrics": {"mae": 2.2, "mase": 1.1}},
            "linear": {"metrics": {"mae": 1.6, "mase": 0.8}},
        },
    }


def _decision(kind: str = "gru", fallback: bool = False) -> dict:
    return {
        "summary": f"v3 ({kind}) promoted to champion",
        "outcome": "promoted",
        "reasons": [f"{kind} beats the best simple baseline", "no champion yet"],
        "candidate": {"kind": kind, "version": "3", "score": 0.5},
        "champion": None,
        "aliases_set": {"champion": "3"},
        "fallback": fallback,
        "metric": "mase",
        "margin": 0.01,
    }


def _workspace(root: Path, decision: dict) -> Path:
    (root / "reports/report").mkdir(parents=True)
    (root / "evaluation").mkdir()
    (root / "evaluation/runs.json").write_text(json.dumps(_runs()))
    (root / "reports/report/decision.json").write_text(json.dumps(decision))
    return root


def test_markdown_and_table_say_the_same_thing(tmp_path: Path) -> None:
    """Sorted by the metric, only the best value bold, linear rival, no fallback when none."""
    run = report.from_workspace(_workspace(tmp_path, _decision()), "mase", ["evaluate", "promote"])
    text = report.markdown(run)
    assert text.count("**0.5**") == 1 and text.count("**") == 2 + 2 + 2  # value, metric, summary
    assert text.index("| gru |") < text.index("| linear |") < text.index("| lstm |")
    assert "| linear | linear rival |" in text and "fallback" not in text
    assert "**v3 (gru) promoted to champion** (outcome: `promoted`)" in text
    assert "- gru beats the best simple baseline\n- no champion yet" in text
    assert "- aliases set: `champion` → v3" in text and "{" not in text
    assert "http://127.0.0.1:5000/#/experiments/3/runs/r1?workflowType=machine_learning" in text
    rows = report.table_rows(run)
    assert [(r["model"], r["role"], r["MASE"], r["notes"]) for r in rows] == [
        ("gru", "network", 0.5, "best network, candidate v3"),
        ("linear", "linear rival", 0.8, ""),
        ("lstm", "network", 0.9, ""),
        ("seasonal_naive_48", "baseline", 1.1, "best baseline"),
    ]


def test_fallback_is_noted_only_when_it_happened(tmp_path: Path) -> None:
    """A baseline served because no network beat it is the candidate and the fallback."""
    run = report.build(_runs(), _decision("seasonal_naive_48", fallback=True), "mase")
    notes = {r.name: r.notes for r in run.models}
    assert notes["seasonal_naive_48"] == ["best baseline", "candidate v3", "fallback"]
    assert report.table_rows(run)[-1]["notes"] == "best baseline, candidate v3, fallback"


def test_a_run_that_did_not_promote_does_not_restate_the_decision(tmp_path: Path) -> None:
    """Stages up to date: 'No promotion this run', the standing decision named as earlier."""
    run = report.from_workspace(_workspace(tmp_path, _decision()), "mase", [])
    text = report.markdown(run, "# seqcast pipeline")
    assert "**No promotion this run:**" in text and "made earlier: v3 (gru) promoted" in text
    assert "(outcome: `promoted`)" not in text and "aliases set" not in text
    assert "stages run: none (everything was up to date)" in text
    empty = report.markdown(report.from_workspace(tmp_path / "empty", "mase", []))
    assert "_No model comparison" in empty and "_No promotion decision" in empty


PLOTS = ("backtest", "bands", "coverage", "forecast", "horizon_mae", "learning_curves")


def _png(path: Path, width: int) -> None:
    """A real PNG of `width` x 300 pixels."""
    from PIL import Image

    Image.new("RGB", (width, 300), (200, 30, 30)).save(path)


def test_plots_are_embedded_for_prefect_and_relative_on_disk(tmp_path: Path) -> None:
    """The Prefect copy carries each plot as a data: URI (scaled to EMBED_WIDTH); report.md
    keeps `plots/<name>` beside it."""
    import base64
    import re
    from io import BytesIO

    from PIL import Image

    root = _workspace(tmp_path, _decision())
    (root / "reports/report/plots").mkdir()
    for stem in PLOTS:
        _png(root / f"reports/report/plots/{stem}.png", 1800 if stem == "bands" else 600)
    on_disk = report.markdown(report.from_workspace(root, "mase", ["promote"]))
    assert [f"![{s}](plots/{s}.png)" in on_disk for s in PLOTS] == [True] * 6
    embedded = report.markdown(report.from_workspace(root, "mase", ["promote"], embed=True))
    found = re.findall(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", embedded)
    assert [stem for stem, _ in found] == list(PLOTS)
    sizes = {stem: Image.open(BytesIO(base64.b64decode(data))).size for stem, data in found}
    assert sizes["bands"] == (report.EMBED_WIDTH, 150) and sizes["forecast"] == (600, 300)
    assert "](plots/" not in embedded
    # Each image is a paragraph of its own (one under the other in the UI).
    assert "\n\n![bands](data:" in embedded


def test_the_description_says_candidate_baseline_served_and_promoted() -> None:
    """One paragraph: the candidate, the best simple baseline, the served model, promoted or not."""
    decision = _decision() | {
        "promoted": True,
        "best_baseline": {"name": "seasonal_naive_48", "score": 1.1},
    }
    runs = _runs() | {"best_on_test": "linear"}
    text = report.description(decision, runs)
    assert text == (
        "**v3 (gru) promoted to champion.** Candidate: **gru** (the backtest's choice), "
        "registered as v3, backtest mean MASE 0.5. Best simple baseline: **seasonal_naive_48**, "
        "test MASE 1.1. Served model (`champion`): **v3 (gru)**. Promoted: **yes** (outcome "
        "`promoted`). Lowest test MASE: linear (reported only, not decided on). The reasons "
        "and plots are in the report/ artifacts."
    )
    held = decision | {
        "outcome": "challenger",
        "promoted": False,
        "aliases_set": {"challenger": "3"},
        "champion": {"version": "2", "kind": "lstm"},
    }
    assert "Served model (`champion`): **v2 (lstm)**. Promoted: **no**" in report.description(
        held, runs
    )
    assert report.served_after(held | {"champion": None}) == (None, None)
