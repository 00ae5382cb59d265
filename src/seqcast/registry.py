"""The model registry: tagged versions, and the gate that moves the `champion` alias.

Versions are only ever added; aliases move. The candidate (this run's best network) becomes the
champion only if it beats the best baseline and the champion, scored on the same test windows,
by the configured margin. A champion scored on other windows is re-scored on this run's first.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from seqcast import features, io, metrics, stages, tracking
from seqcast.config import Config
from seqcast.features import InputSpec
from seqcast.forecaster import Forecaster
from seqcast.scaling import to_units

CHAMPION = "champion"
CHALLENGER = "challenger"
METRICS = ("mae", "rmse", "mase", "smape")
RUNS = stages.EVALUATION / "runs.json"
PLOTS = Path("reports/plots")
LOCK = Path("mlruns/.promote.lock")
LOCK_TIMEOUT = 900.0  # seconds; a promotion holding it longer than this is stuck
TAG = "seqcast."

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


class NotComparable(Exception):
    """The champion cannot forecast this run's test windows; the message says why."""


@dataclass
class HeldOutWindows:
    """This run's test windows in series units, as the evaluate stage scored them."""

    units: np.ndarray
    times: pd.DatetimeIndex
    origins: np.ndarray
    spec: InputSpec
    columns: list[str]
    frequency: str
    n_train: int

    @property
    def targets(self) -> list[str]:
        """Target column names."""
        return self.columns[: self.spec.n_targets]


def load_windows(folder: Path) -> HeldOutWindows:
    """Read data/windows: the series back in units and the test origins."""
    meta = io.read_json(folder / "meta.json")
    series = np.load(folder / "series.npy")
    offset, scale = np.asarray(meta["offset"]), np.asarray(meta["scale"])
    with np.load(folder / "origins.npz") as origins:
        test = np.asarray(origins["test"], dtype=np.int64)
    return HeldOutWindows(
        units=to_units(series, offset, scale),
        times=pd.DatetimeIndex(np.load(folder / "times.npy")),
        origins=test,
        spec=InputSpec(**meta["spec"]),
        columns=list(meta["columns"]),
        frequency=meta["frequency"],
        n_train=int(meta["rows"]["train"]),
    )


def rescore(forecaster: Forecaster, windows: HeldOutWindows, mase_season: int) -> dict[str, float]:
    """Every metric of a forecaster on these test windows; NotComparable if it cannot."""
    spec = forecaster.spec
    if forecaster.targets != windows.targets:
        raise NotComparable(
            f"it forecasts targets {forecaster.targets}, this run's are {windows.targets}"
        )
    if (spec.horizon, spec.shift) != (windows.spec.horizon, windows.spec.shift):
        raise NotComparable(
            f"it forecasts horizon {spec.horizon} (shift {spec.shift}), this run's test windows "
            f"have horizon {windows.spec.horizon} (shift {windows.spec.shift})"
        )
    if forecaster.frequency != windows.frequency:
        raise NotComparable(
            f"it expects frequency {forecaster.frequency}, this run's series is {windows.frequency}"
        )
    absent = [c for c in forecaster.columns if c not in windows.columns]
    if absent:
        raise NotComparable(f"it reads column(s) {absent} that this run's series lacks")
    available = int(windows.origins.min()) + 1
    if forecaster.min_history > available:
        raise NotComparable(
            f"it needs {forecaster.min_history} rows of history, the first test window has "
            f"{available}"
        )
    values = windows.units[:, [windows.columns.index(c) for c in forecaster.columns]]
    forecast = forecaster.forecast_units(values, windows.times, windows.origins)
    actual = features.targets(windows.spec, windows.units, windows.origins)
    n = windows.spec.n_targets
    scale = metrics.seasonal_naive_scale(windows.units[: windows.n_train, :n], mase_season)
    scores = metrics.score(actual, forecast, scale)
    # One number per metric: the mean over targets, as for every model in runs.json.
    return {name: float(np.mean(scores[name])) for name in METRICS}


def register(model_uri: str, name: str, tags: dict, description: str) -> ModelVersion:
    """A new version of `name` from a logged model, tagged and described."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    client.update_model_version(name, version.version, description=description)
    return client.get_model_version(name, version.version)


def promote(cfg: Config, root: Path) -> dict:
    """The promote stage: register both networks, gate the best, record the decision."""
    from filelock import FileLock, Timeout
    from mlflow import MlflowClient

    root = Path(root)
    tracking.setup(cfg.tracking.experiment, root)
    metric, name = cfg.promotion.metric, cfg.tracking.registered_model
    runs = io.read_json(root / RUNS)
    _check_runs(runs, metric)
    client = MlflowClient()
    # Registering only adds versions, so it needs no lock; aliases are the shared state.
    versions = {
        kind: _register_network(client, name, kind, net, runs, root)
        for kind, net in sorted(runs["networks"].items())
    }
    kind = min(versions, key=lambda k: runs["networks"][k]["metrics"][metric])
    lock_path = root / LOCK
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(lock_path), timeout=LOCK_TIMEOUT):
            # Read the champion only now: another promotion may have moved it while we waited.
            before = _aliases(client, name)
            champion = _champion(client, name, before.get(CHAMPION), runs, cfg, root)
            decision = _decide(cfg, runs, kind, versions, champion)
            try:
                _set_aliases(client, name, decision["aliases_set"])
                _record(cfg, root, runs, decision, versions)
            except BaseException:
                _restore_aliases(client, name, before)
                raise
    except Timeout:
        raise TimeoutError(
            f"promote: another promotion has held {lock_path} for over {LOCK_TIMEOUT:.0f} s; "
            "if none is running, delete the lock file"
        ) from None
    return decision


def _check_runs(runs: dict, metric: str) -> None:
    """Fail with the missing key, not a KeyError deep in the decision."""
    problems = [
        k
        for k in ("parent_run_id", "data_md5", "test_id", "networks", "baselines", "best_baseline")
        if k not in runs
    ]
    for kind, net in runs.get("networks", {}).items():
        problems += [f"networks.{kind}.{k}" for k in ("run_id", "model_uri") if k not in net]
        if metric not in net.get("metrics", {}):
            problems.append(f"networks.{kind}.metrics.{metric}")
    best = runs.get("best_baseline")
    best_metrics = runs.get("baselines", {}).get(best, {}).get("metrics", {})
    if best is not None and metric not in best_metrics:
        problems.append(f"baselines.{best}.metrics.{metric}")
    if not runs.get("networks"):
        problems.append("networks (none listed)")
    if problems:
        raise ValueError(f"{RUNS}: missing {', '.join(problems)}")


def _register_network(
    client: MlflowClient, name: str, kind: str, net: dict, runs: dict, root: Path
) -> ModelVersion:
    """The version holding this logged model: reused when registered before, else new."""
    for version in client.search_model_versions(f"name = '{name}'"):
        # A re-run of the stage on the same evaluation must not mint duplicate versions.
        if version.tags.get(f"{TAG}model_uri") == net["model_uri"]:
            return version
    commit = _commit(client, net["run_id"], root)
    scores = net["metrics"]
    tags = {
        f"{TAG}kind": kind,
        f"{TAG}model_uri": net["model_uri"],
        f"{TAG}run_id": net["run_id"],
        f"{TAG}parent_run_id": runs["parent_run_id"],
        f"{TAG}data_md5": runs["data_md5"],
        f"{TAG}test_id": runs["test_id"],
        f"{TAG}git_commit": commit,
    } | {f"{TAG}metric.{k}": repr(float(v)) for k, v in scores.items()}
    summary = ", ".join(f"{k} {float(v):.4g}" for k, v in sorted(scores.items()))
    description = (
        f"{kind.upper()} forecaster: test {summary}; data {runs['data_md5'][:8]}, "
        f"test windows {runs['test_id'][:8]}, commit {commit[:8]}"
    )
    return register(net["model_uri"], name, tags, description)


def _commit(client: MlflowClient, run_id: str, root: Path) -> str:
    """The commit the model was trained at (its run's tag), else the checkout's."""
    try:
        found = client.get_run(run_id).data.tags.get(f"{TAG}git_commit")
    except Exception:  # a missing run must not block registering the model itself
        found = None
    return found or tracking.git_state(root)["git_commit"]


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """Alias -> version of the registered model, as it stands now."""
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def _champion(
    client: MlflowClient, name: str, version: str | None, runs: dict, cfg: Config, root: Path
) -> dict | None:
    """The champion's score on this run's test windows: its tags, or a re-score."""
    if version is None:
        return None
    held = client.get_model_version(name, version)
    metric = cfg.promotion.metric
    out = {
        "version": str(version),
        "kind": held.tags.get(f"{TAG}kind"),
        "test_id": held.tags.get(f"{TAG}test_id"),
        "data_md5": held.tags.get(f"{TAG}data_md5"),
        "recorded_score": _float(held.tags.get(f"{TAG}metric.{metric}")),
        "rescored": False,
        "comparable": True,
        "score": None,
        "why_not_comparable": None,
    }
    same_windows = out["test_id"] == runs["test_id"] and out["data_md5"] == runs["data_md5"]
    if same_windows and out["recorded_score"] is not None:
        out["score"] = out["recorded_score"]
        return out
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    forecaster = model.unwrap_python_model().forecaster
    windows = load_windows(root / stages.WINDOWS)
    out["rescored"] = True
    try:
        out["rescored_metrics"] = rescore(forecaster, windows, cfg.evaluation.mase_season)
        out["score"] = out["rescored_metrics"][metric]
    except NotComparable as err:
        out["comparable"], out["why_not_comparable"] = False, str(err)
    return out


def _float(text: str | None) -> float | None:
    """A tag's number, or None when absent or not a number."""
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _decide(cfg: Config, runs: dict, kind: str, versions: dict, champion: dict | None) -> dict:
    """Whether the candidate takes the champion alias, with every reason written out."""
    metric, margin = cfg.promotion.metric, cfg.promotion.margin
    net = runs["networks"][kind]
    score = float(net["metrics"][metric])
    version = str(versions[kind].version)
    baseline = runs["best_baseline"]
    baseline_score = float(runs["baselines"][baseline]["metrics"][metric])
    beats_baseline = score < baseline_score
    reasons = [
        f"candidate {kind} v{version}: test {metric} {score:.6g} "
        f"(best network of {sorted(runs['networks'])})",
        f"best baseline {baseline}: {metric} {baseline_score:.6g}; the candidate "
        + ("beats it" if beats_baseline else "does not beat it, so it is not promoted"),
    ]
    threshold = None
    if champion is None:
        better = True
        reasons.append("no champion yet")
    elif champion["version"] == version:
        better = False
        reasons.append(f"v{version} is already the champion")
    elif not champion["comparable"]:
        better = True
        reasons.append(
            f"champion v{champion['version']} (test windows {champion['test_id']}) cannot be "
            f"scored on this run's test windows: {champion['why_not_comparable']}; not "
            "comparable, so the candidate replaces it"
        )
    else:
        threshold = champion["score"] * (1.0 - margin)
        better = score < threshold
        where = (
            f"re-scored on this run's test windows (it was scored on {champion['test_id']})"
            if champion["rescored"]
            else "on the same test windows"
        )
        reasons.append(
            f"champion v{champion['version']}: {metric} {champion['score']:.6g} {where}; the "
            f"candidate must be below {champion['score']:.6g} x (1 - {margin:g}) = "
            f"{threshold:.6g}; the candidate's {score:.6g} is "
            + ("" if better else "not ")
            + "below it"
        )
    already = champion is not None and champion["version"] == version
    promoted = beats_baseline and better and not already
    if promoted:
        outcome, aliases = "promoted", {CHAMPION: version}
    elif already:
        outcome, aliases = "unchanged", {}
    elif beats_baseline:
        outcome, aliases = "challenger", {CHALLENGER: version}
    else:
        outcome, aliases = "rejected", {}
    summary = {
        "promoted": f"v{version} ({kind}) promoted to {CHAMPION}",
        "unchanged": f"v{version} ({kind}) is already {CHAMPION}; nothing changed",
        "challenger": f"v{version} ({kind}) not promoted; it is now the {CHALLENGER}",
        "rejected": f"v{version} ({kind}) not promoted: it does not beat {baseline}",
    }[outcome]
    return {
        "promoted": promoted,
        "outcome": outcome,
        "summary": summary,
        "reasons": reasons,
        "metric": metric,
        "margin": margin,
        "threshold": threshold,
        "registered_model": cfg.tracking.registered_model,
        "candidate": {
            "kind": kind,
            "version": version,
            "score": score,
            "model_uri": net["model_uri"],
            "run_id": net["run_id"],
        },
        "champion": champion,
        "champion_rescored": bool(champion and champion["rescored"]),
        "best_baseline": {"name": baseline, "score": baseline_score},
        "beats_baseline": beats_baseline,
        "registered": {k: str(v.version) for k, v in versions.items()},
        "aliases_set": aliases,
        "parent_run_id": runs["parent_run_id"],
        "data_md5": runs["data_md5"],
        "test_id": runs["test_id"],
    }


def _set_aliases(client: MlflowClient, name: str, aliases: dict[str, str]) -> None:
    """Point each alias at its version."""
    for alias, version in aliases.items():
        client.set_registered_model_alias(name, alias, version)


def _restore_aliases(client: MlflowClient, name: str, before: dict[str, str]) -> None:
    """Put champion and challenger back where they were (we still hold the lock)."""
    now = _aliases(client, name)
    for alias in (CHAMPION, CHALLENGER):
        if before.get(alias) == now.get(alias):
            continue
        if before.get(alias) is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, before[alias])


def _record(cfg: Config, root: Path, runs: dict, decision: dict, versions: dict) -> None:
    """The decision and report to the parent run, then to metrics/ and reports/ (last)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = runs["parent_run_id"]
    plots = sorted((root / PLOTS).glob("*.png")) if (root / PLOTS).is_dir() else []
    report = render_report(
        cfg,
        runs,
        decision,
        versions,
        [p.name for p in plots],
        tracking.ui_link(runs.get("experiment_id", "0"), run_id),
    )
    staging = Path(tempfile.mkdtemp(prefix="seqcast-promote-"))
    try:
        io.write_json(staging / stages.PROMOTION.name, decision)
        (staging / "report").mkdir()
        (staging / "report" / stages.REPORT.name).write_text(report)
        if plots:
            (staging / "report" / "plots").mkdir()
            for plot in plots:
                shutil.copy2(plot, staging / "report" / "plots" / plot.name)
        _log_to_run(client, run_id, decision)
        client.log_artifact(run_id, str(staging / stages.PROMOTION.name), "promotion")
        client.log_artifacts(run_id, str(staging / "report"), "report")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    io.write_text(root / stages.REPORT, report)
    io.write_json(root / stages.PROMOTION, decision)


def _log_to_run(client: MlflowClient, run_id: str, decision: dict) -> None:
    """Params once, tags and metrics every time (a re-run may decide differently)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.time import get_current_time_millis

    existing = client.get_run(run_id).data.params
    wanted = {"promotion.metric": decision["metric"], "promotion.margin": str(decision["margin"])}
    # Params are immutable in MLflow; a re-run with other settings records them in tags.
    params = [Param(k, v) for k, v in wanted.items() if k not in existing]
    champion = decision["champion"] or {}
    tags = {
        "promoted": str(decision["promoted"]).lower(),
        "outcome": decision["outcome"],
        "summary": decision["summary"],
        "metric": decision["metric"],
        "margin": str(decision["margin"]),
        "candidate_version": decision["candidate"]["version"],
        "candidate_kind": decision["candidate"]["kind"],
        "champion_version": champion.get("version") or "none",
        "champion_rescored": str(decision["champion_rescored"]).lower(),
        "best_baseline": decision["best_baseline"]["name"],
    }
    now = get_current_time_millis()
    values = {
        "promotion.promoted": float(decision["promoted"]),
        "promotion.candidate_score": decision["candidate"]["score"],
        "promotion.baseline_score": decision["best_baseline"]["score"],
    }
    if champion.get("score") is not None:
        values["promotion.champion_score"] = champion["score"]
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in values.items()],
        params=params,
        tags=[RunTag(f"{TAG}promotion.{k}", str(v)) for k, v in tags.items()],
    )


def render_report(
    cfg: Config,
    runs: dict,
    decision: dict,
    versions: dict,
    plots: list[str],
    run_link: str,
) -> str:
    """reports/report.md: every model's test metrics, the best baseline, the decision, plots."""
    metric = cfg.promotion.metric
    head = "| model | role | " + " | ".join(m.upper() for m in METRICS) + " |"
    lines = [
        "# seqcast: model comparison",
        "",
        f"- data md5 `{runs['data_md5']}`, test windows `{runs['test_id']}`",
        f"- parent run [{runs['parent_run_id']}]({run_link})",
        f"- promotion metric **{metric}** (lower is better), margin {cfg.promotion.margin:g}",
        "",
        "## Test metrics",
        "",
        head,
        "|" + "---|" * (len(METRICS) + 2),
    ]
    rows = []
    for kind, net in runs["networks"].items():
        role = f"network, registered v{versions[kind].version}"
        if kind == decision["candidate"]["kind"]:
            role += ", **candidate**"
        rows.append((kind, role, net["metrics"]))
    for base, entry in runs["baselines"].items():
        role = "**best baseline**" if base == runs["best_baseline"] else "baseline"
        rows.append((base, role, entry.get("metrics", {})))
    champion = decision["champion"]
    if champion and champion.get("rescored_metrics"):
        role = f"current champion, re-scored (was scored on `{champion['test_id']}`)"
        rows.append((f"champion v{champion['version']}", role, champion["rescored_metrics"]))
    rows.sort(key=lambda r: float(r[2].get(metric, np.inf)))
    for model, role, scores in rows:
        cells = " | ".join(_cell(scores.get(m), bold=m == metric) for m in METRICS)
        lines.append(f"| {model} | {role} | {cells} |")
    lines += ["", "## Promotion decision", "", f"**{decision['summary']}**", ""]
    lines += [f"- {reason}" for reason in decision["reasons"]]
    aliases = decision["aliases_set"]
    lines.append(
        "- aliases set: " + (", ".join(f"`{a}` -> v{v}" for a, v in aliases.items()) or "none")
    )
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(p).stem}](plots/{p})" for p in plots]
    return "\n".join(lines) + "\n"


def _cell(value: Any, bold: bool) -> str:
    """A metric for the report table; the promotion metric in bold."""
    if value is None:
        return "-"
    text = f"{float(value):.4g}"
    return f"**{text}**" if bold else text
