"""The model registry: one version per distinct model, and the gate that moves its aliases.

The promote stage picks the candidate on validation: the best network, or, when no network beats
the best simple baseline (on validation, and on the test windows), that baseline itself, so a
random walk is served naive rather than something worse. The candidate takes `champion` only if
it beats the champion on the same test windows by the configured margin (a champion scored on
other windows is re-scored on this run's first), only from a run of the checkout itself (a DVC
experiment may set `challenger` at most, unless `promotion.from_experiments` says otherwise), and
only once the registered version has been loaded and has forecast. Versions are only ever added,
never for a model already registered (same fingerprint); aliases move.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from seqcast.core import console, interrupts, io, paths
from seqcast.core.config import Config
from seqcast.core.errors import SeqcastError
from seqcast.data import features
from seqcast.data.features import InputSpec
from seqcast.data.scaling import to_units
from seqcast.models import metrics, tracking
from seqcast.models.forecaster import Forecaster
from seqcast.registry import locks, report

CHAMPION = "champion"
CHALLENGER = "challenger"
METRICS = ("mae", "rmse", "mase", "smape")
RUNS = paths.EVALUATION / "runs.json"
LOCK = locks.FILE  # the local store's lock; a tracking server's lives in its registry
TAG = "seqcast."
NOTE = "mlflow.note.content"  # the run's description in the MLflow UI

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


class NotComparable(Exception):
    """The champion cannot forecast this run's test windows; the message says why."""


class NotServable(SeqcastError):
    """A registered version that cannot be loaded or cannot forecast: never made champion."""


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
    mase_season: int

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
        mase_season=int(meta["mase_season"]),
    )


def rescore(
    forecaster: Forecaster, windows: HeldOutWindows, origins: np.ndarray | None = None
) -> dict[str, float]:
    """Every metric of a forecaster on these windows (default: test); NotComparable if it cannot."""
    origins = windows.origins if origins is None else np.asarray(origins, dtype=np.int64)
    actual = features.targets(windows.spec, windows.units, origins)
    # One number per metric: the mean over targets, as for every model in runs.json.
    return _scores(windows, actual, forecast_windows(forecaster, windows, origins))


def forecast_windows(
    forecaster: Forecaster, windows: HeldOutWindows, origins: np.ndarray
) -> np.ndarray:
    """A forecaster's forecasts of these windows in units; NotComparable if it cannot."""
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
    available = int(origins.min()) + 1
    if forecaster.min_history > available:
        raise NotComparable(
            f"it needs {forecaster.min_history} rows of history, the first window has {available}"
        )
    values = windows.units[:, [windows.columns.index(c) for c in forecaster.columns]]
    return forecaster.forecast_units(values, windows.times, origins)


def register(model_uri: str, name: str, tags: dict, description: str) -> ModelVersion:
    """A new version of `name` from a logged model, tagged and described."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    client.update_model_version(name, version.version, description=description)
    return client.get_model_version(name, version.version)


def promote(cfg: Config, root: Path) -> dict:
    """The promote stage: pick the candidate, register it once, gate it, record the decision."""
    from mlflow import MlflowClient

    root = Path(root)
    paths.refuse_panel(root)
    tracking.setup(cfg.tracking.experiment, root)
    metric, name = cfg.promotion.metric, cfg.tracking.registered_model
    if not (root / RUNS).is_file():
        raise FileNotFoundError(
            f"{RUNS} is missing: the evaluate stage has not run here; run `dvc repro` (or "
            "`make repro`) first"
        )
    runs = io.read_json(root / RUNS)
    _check_runs(runs, metric)
    client = MlflowClient()
    candidate = choose_candidate(runs, metric, served(root))
    origin = _origin(client, runs["parent_run_id"])
    # Registering only adds versions, so it needs no lock; aliases are the shared state.
    version = _register(client, name, candidate, runs, origin)
    _describe(client, name, io.read_json(root / paths.WINDOWS / "meta.json"))
    with locks.promotion_lock(name, root):
        # Read the champion only now: another promotion may have moved it while we waited.
        before = _aliases(client, name)
        champion = _champion(client, name, before.get(CHAMPION), runs, cfg, root, candidate)
        decision = _decide(cfg, runs, candidate, version, champion, origin)
        if CHAMPION in decision["aliases_set"]:
            _check_servable(name, decision["aliases_set"][CHAMPION], root)
        try:
            # A Ctrl-C Python dropped (inside a weakref callback, say) must not move them.
            interrupts.raise_if_interrupted("move the registry's aliases")
            _set_aliases(client, name, decision["aliases_set"])
            interrupts.raise_if_interrupted("keep the moved aliases")
            _record(cfg, root, runs, decision)
            interrupts.raise_if_interrupted("keep the recorded promotion")
        except BaseException:
            _restore_aliases(client, name, before)
            raise
    return decision


def served(root: Path) -> dict | None:
    """models/served/refit.json: the chosen recipe refit for serving (None before a refit)."""
    path = Path(root) / paths.SERVED / "refit.json"
    return io.read_json(path) if path.is_file() else None


def choose_candidate(runs: dict, metric: str, refit: dict | None = None) -> dict[str, Any]:
    """The candidate evaluate chose on the backtest, as served: the refit model where there is one.

    Its score is the backtest mean of its recipe (the decision's basis); the test metrics of the
    train stage's model stay beside it for the report.
    """
    chosen = runs["candidate"]
    name, role = chosen["candidate"], chosen["role"]
    group = "networks" if role == "network" else "baselines"
    entry = dict(runs[group][name])
    entry["backtest_metrics"] = entry.get("backtest_metrics") or entry["val_metrics"]
    reasons = list(chosen.get("reasons", []))
    if refit is not None:
        if refit.get("candidate") != name:
            raise ValueError(
                f"{paths.SERVED / 'refit.json'} serves {refit.get('candidate')}, evaluation "
                f"chose {name}: run the refit stage again (dvc repro)"
            )
        entry |= {
            "model_uri": refit["model_uri"],
            "run_id": refit["run_id"],
            "fingerprint": refit["fingerprint"],
            "fit_rows": [refit["first_row"], refit["last_row"]],
        }
        reasons.append(
            f"served as refit on rows {refit['first_row']} .. {refit['last_row']} "
            f"({refit['rows']} rows)"
            + ("" if refit.get("all_rows", True) else " (refit.all_rows off: the train split)")
        )
    shown = {
        "network": "network",
        "linear": "linear rival",
        "statistical": "statistical rival",
    }.get(role, "baseline")
    return {"name": name, "role": shown, "entry": entry, "reasons": reasons}


def _check_runs(runs: dict, metric: str) -> None:
    """Fail with the missing key, not a KeyError deep in the decision."""
    required = (
        "parent_run_id", "data_md5", "test_id", "networks", "baselines", "best_baseline",
        "candidate",
    )  # fmt: skip
    problems = [k for k in required if k not in runs]
    for kind, net in runs.get("networks", {}).items():
        problems += [f"networks.{kind}.{k}" for k in ("run_id", "model_uri") if k not in net]
        for key in ("metrics", "val_metrics"):
            if metric not in net.get(key, {}):
                problems.append(f"networks.{kind}.{key}.{metric}")
    best = runs.get("best_baseline")
    if best is not None and metric not in runs.get("baselines", {}).get(best, {}).get(
        "metrics", {}
    ):
        problems.append(f"baselines.{best}.metrics.{metric}")
    chosen = runs.get("candidate") or {}
    group = "networks" if chosen.get("role") == "network" else "baselines"
    if chosen and "model_uri" not in runs.get(group, {}).get(chosen.get("candidate"), {}):
        problems.append(f"{group}.{chosen.get('candidate')}.model_uri")
    if not runs.get("networks"):
        problems.append("networks (none listed)")
    if problems:
        raise ValueError(f"{RUNS}: missing {', '.join(problems)}")


def _origin(client: MlflowClient, run_id: str) -> dict[str, str]:
    """Where the models were evaluated (commit, dirty flag, experiment), and who promotes now."""
    try:
        tags = client.get_run(run_id).data.tags
    except Exception:  # a missing run must not block the decision itself
        tags = {}
    # The policy follows this promote run, not the (possibly run-cache restored) evaluation.
    promoting = paths.dvc_experiment()
    return {
        "git_commit": tags.get(f"{TAG}git_commit", "unknown"),
        "git_dirty": tags.get(f"{TAG}git_dirty", "unknown"),
        "origin": tags.get(f"{TAG}origin", "unknown"),
        "dvc_exp_name": tags.get(f"{TAG}dvc_exp_name", ""),
        "promoted_from": "experiment" if promoting else "checkout",
        "promoted_by_exp": promoting.get("name", ""),
    }


def _register(
    client: MlflowClient, name: str, candidate: dict, runs: dict, origin: dict
) -> ModelVersion:
    """The version holding the candidate: an identical model's (same fingerprint), else new."""
    entry = candidate["entry"]
    fingerprint = entry.get("fingerprint")
    for version in client.search_model_versions(f"name = '{name}'"):
        if fingerprint and version.tags.get(f"{TAG}fingerprint") == fingerprint:
            return version
        # A re-run of the stage on the same evaluation must not mint duplicate versions.
        if version.tags.get(f"{TAG}model_uri") == entry["model_uri"]:
            return version
    scores = entry["metrics"]
    tags = {
        f"{TAG}kind": candidate["name"],
        f"{TAG}role": candidate["role"],
        f"{TAG}fingerprint": fingerprint or "",
        f"{TAG}model_uri": entry["model_uri"],
        f"{TAG}run_id": entry["run_id"],
        f"{TAG}parent_run_id": runs["parent_run_id"],
        f"{TAG}data_md5": runs["data_md5"],
        f"{TAG}test_id": runs["test_id"],
    } | {f"{TAG}{k}": v for k, v in origin.items() if v}
    tags |= {f"{TAG}metric.{k}": repr(float(v)) for k, v in scores.items()}
    tags |= {f"{TAG}backtest.{k}": repr(float(v)) for k, v in entry["backtest_metrics"].items()}
    if runs.get("backtest_id"):
        tags[f"{TAG}backtest_id"] = runs["backtest_id"]
    if entry.get("fit_rows"):
        tags[f"{TAG}fit_first_row"], tags[f"{TAG}fit_last_row"] = entry["fit_rows"]
    summary = ", ".join(f"{k} {float(v):.4g}" for k, v in sorted(scores.items()))
    dirty = " (uncommitted changes)" if origin["git_dirty"] == "true" else ""
    made = f"DVC experiment {origin['dvc_exp_name']}" if origin["dvc_exp_name"] else "checkout"
    backtest = ", ".join(
        f"{k} {float(v):.4g}" for k, v in sorted(entry["backtest_metrics"].items())
    )
    fit = (
        f"; fit on rows {entry['fit_rows'][0]} .. {entry['fit_rows'][1]}"
        if entry.get("fit_rows")
        else ""
    )
    description = (
        f"{candidate['name'].upper()} {candidate['role']}: backtest mean {backtest}; test "
        f"{summary}{fit}; data "
        f"{runs['data_md5'][:8]}, test windows {runs['test_id'][:8]}, commit "
        f"{origin['git_commit'][:8]}{dirty}, from the {made}"
    )
    return register(entry["model_uri"], name, tags, description)


def model_description(meta: dict) -> str:
    """What the registered model forecasts and how its versions and aliases are made."""
    spec = meta["spec"]
    targets = ", ".join(meta["columns"][: spec["n_targets"]])
    return (
        f"seqcast forecaster of {targets} (one row every {meta['frequency']}): the next "
        f"{spec['horizon']} steps and their conformal bands, from raw recent history (each "
        "version's input example shows what it reads). Versions are registered by the promote "
        f"stage (`dvc repro`); `{CHAMPION}` is the version `seqcast serve` answers with, "
        f"`{CHALLENGER}` a candidate that did not beat it. Each version's description says what "
        "it is, its backtest and test scores, and the data and commit it came from."
    )


def _describe(client: MlflowClient, name: str, meta: dict) -> None:
    """Give the registered model its description (only when it says something else)."""
    description = model_description(meta)
    if client.get_registered_model(name).description != description:
        client.update_registered_model(name, description=description)


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """Alias -> version of the registered model, as it stands now."""
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def _champion(
    client: MlflowClient,
    name: str,
    version: str | None,
    runs: dict,
    cfg: Config,
    root: Path,
    candidate: dict,
) -> dict | None:
    """The champion and the candidate scored on the same windows neither was fit on.

    Same backtest folds: both recipes' backtest means. New rows since the champion's last
    training row: both on the windows after it (the candidate's out-of-sample forecasts). A
    champion without a recorded fit (registered before refits): re-scored on this run's test
    windows against the candidate's test score. Otherwise the recorded backtest means, said so.
    """
    if version is None:
        return None
    held = client.get_model_version(name, version)
    metric = cfg.promotion.metric
    entry = candidate["entry"]
    out = {
        "version": str(version),
        "kind": held.tags.get(f"{TAG}kind"),
        "test_id": held.tags.get(f"{TAG}test_id"),
        "data_md5": held.tags.get(f"{TAG}data_md5"),
        "backtest_id": held.tags.get(f"{TAG}backtest_id"),
        "fit_last_row": held.tags.get(f"{TAG}fit_last_row"),
        "recorded_score": _float(held.tags.get(f"{TAG}backtest.{metric}")),
        "rescored": False,
        "comparable": True,
        "score": None,
        "candidate_score": None,
        "basis": None,
        "why_not_comparable": None,
    }
    candidate_bt = float(entry["backtest_metrics"][metric])
    if (
        out["backtest_id"]
        and out["backtest_id"] == runs.get("backtest_id")
        and out["recorded_score"] is not None
    ):
        out |= {"score": out["recorded_score"], "candidate_score": candidate_bt}
        out["basis"] = "both recipes' backtest means on identical folds"
        return out
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except Exception as err:  # a champion that no longer loads can be replaced
        out["comparable"], out["why_not_comparable"] = False, f"it does not load: {err}"
        return out
    forecaster = model.unwrap_python_model().forecaster
    windows = load_windows(root / paths.WINDOWS)
    try:
        if out["fit_last_row"]:
            unseen = _unseen_origins(windows, out["fit_last_row"], root)
            if len(unseen):
                held_forecast = forecast_windows(forecaster, windows, unseen)
                theirs = _oos_forecast(root, candidate["name"], unseen)
                actual = features.targets(windows.spec, windows.units, unseen)
                out["rescored_metrics"] = _scores(windows, actual, held_forecast)
                out["candidate_metrics"] = _scores(windows, actual, theirs)
                out["paired_test"] = _paired(windows, unseen, theirs, held_forecast)
                out["basis"] = (
                    f"{len(unseen)} windows after the champion's last training row "
                    f"{out['fit_last_row']}, which neither model was fit on"
                )
        elif (
            out["test_id"] != runs["test_id"]
            or out["data_md5"] != runs["data_md5"]
            or _float(held.tags.get(f"{TAG}metric.{metric}")) is None
        ):
            out["rescored_metrics"] = rescore(forecaster, windows)
            out["candidate_metrics"] = dict(entry["metrics"])
            out["basis"] = "this run's test windows (re-scored: the champion records no fit rows)"
        else:
            out["basis"] = "the same test windows (the champion records no fit rows)"
            out |= {"score": _float(held.tags.get(f"{TAG}metric.{metric}"))}
            out["candidate_score"] = float(entry["metrics"][metric])
            return out
    except NotComparable as err:
        out["comparable"], out["why_not_comparable"] = False, str(err)
        return out
    if "rescored_metrics" in out:
        out["rescored"] = True
        out["score"] = out["rescored_metrics"][metric]
        out["candidate_score"] = out["candidate_metrics"][metric]
    elif out["recorded_score"] is not None:
        # Means of other folds differ by noise (0.1853 against 0.1878 once replaced a champion):
        # with no window both forecast out of sample, nothing shows the candidate is better.
        out |= {"score": out["recorded_score"], "candidate_score": candidate_bt}
        out["other_windows"] = True
        out["basis"] = (
            "the recorded backtest means of other folds (the champion was fit on every row of "
            "this data, so no window is unseen by it), which a paired test cannot compare"
        )
    else:
        out["comparable"] = False
        out["why_not_comparable"] = "it records no backtest score and no window is unseen by it"
    return out


def _unseen_origins(windows: HeldOutWindows, last_row: str, root: Path) -> np.ndarray:
    """Out-of-sample origins of this run whose forecast rows all come after `last_row`."""
    with np.load(Path(root) / paths.EVALUATION / "oos.npz") as found:
        origins = np.asarray(found["origins"], dtype=np.int64)
    stamp = pd.Timestamp(last_row)
    times = windows.times
    if times.tz is not None and stamp.tz is None:
        stamp = stamp.tz_localize(times.tz)
    after = int(np.searchsorted(times, stamp, side="right"))  # first row after the fit
    return origins[origins + windows.spec.shift >= after]


def _paired(
    windows: HeldOutWindows, origins: np.ndarray, candidate: np.ndarray, champion: np.ndarray
) -> dict:
    """Diebold-Mariano test of the candidate against the champion on the same windows."""
    n = windows.spec.n_targets
    scale = metrics.seasonal_naive_scale(windows.units[: windows.n_train, :n], windows.mase_season)
    actual = features.targets(windows.spec, windows.units, origins)

    def losses(forecast: np.ndarray) -> np.ndarray:
        return np.mean(np.abs(actual - forecast) / scale, axis=(1, 2))

    return metrics.diebold_mariano(losses(candidate), losses(champion), windows.spec.horizon)


def _oos_forecast(root: Path, name: str, origins: np.ndarray) -> np.ndarray:
    """The candidate recipe's out-of-sample forecasts (evaluation/oos.npz) of these origins."""
    with np.load(Path(root) / paths.EVALUATION / "oos.npz") as found:
        return found[name][np.isin(found["origins"], origins)]


def _scores(windows: HeldOutWindows, actual: np.ndarray, forecast: np.ndarray) -> dict:
    """Every metric, averaged over targets, MASE scaled by this run's training rows."""
    n = windows.spec.n_targets
    scale = metrics.seasonal_naive_scale(windows.units[: windows.n_train, :n], windows.mase_season)
    scores = metrics.score(actual, forecast, scale)
    return {name: float(np.mean(scores[name])) for name in METRICS}


def _check_servable(name: str, version: str, root: Path) -> None:
    """Load the version as `make serve` will and forecast this run's latest history."""
    import mlflow

    uri = f"models:/{name}/{version}"
    try:
        # Loading imports TensorFlow here, not in the stage's warm-up: hide its oneDNN notice too.
        with console.native_notices_hidden():
            model = mlflow.pyfunc.load_model(uri)
        forecaster = model.unwrap_python_model().forecaster
        windows = load_windows(root / paths.WINDOWS)
        rows = slice(len(windows.times) - forecaster.min_history, None)
        history = pd.DataFrame(
            windows.units[rows][:, [windows.columns.index(c) for c in forecaster.columns]],
            columns=forecaster.columns,
        )
        history.insert(0, forecaster.timestamp, windows.times[rows].strftime("%Y-%m-%d %H:%M:%S"))
        answer = model.predict(history)
        values = answer[forecaster.targets].to_numpy(dtype=np.float64)
    except Exception as err:
        # MLflow's messages can quote the whole input frame: its last line says what failed.
        reason = (str(err).strip().splitlines() or [""])[-1][:300]
        raise NotServable(
            f"{uri} cannot serve, so it is not made {CHAMPION}: {type(err).__name__}: {reason}"
        ) from None
    if not np.isfinite(values).all():
        raise NotServable(f"{uri} forecasts non-finite values, so it is not made {CHAMPION}")


def _shown_better(champion: dict, significance: float, reasons: list[str]) -> bool:
    """Whether the same windows' paired test shows the candidate beats the champion."""
    if champion.get("other_windows"):
        reasons.append(
            "no window was forecast out of sample by both, so no paired test can show the "
            "candidate is better: the champion stays"
        )
        return False
    test = champion.get("paired_test")
    if not test:
        return True  # identical folds: the recorded means are of the same windows
    p = test["p_a_better"]
    shown = bool(p < significance)
    reasons.append(
        f"paired test on those {test['windows']} windows (Diebold-Mariano, HAC): the candidate "
        f"beats the champion with one-sided p = {p:.3g}, "
        + ("below" if shown else "not below")
        + f" backtest.significance {significance:g}"
        + ("" if shown else ": the champion stays")
    )
    return shown


def _float(text: str | None) -> float | None:
    """A tag's number, or None when absent or not a number."""
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _decide(
    cfg: Config,
    runs: dict,
    candidate: dict,
    version: ModelVersion,
    champion: dict | None,
    origin: dict,
) -> dict:
    """Which alias the candidate takes, with every reason written out."""
    metric, margin = cfg.promotion.metric, cfg.promotion.margin
    kind, entry = candidate["name"], candidate["entry"]
    score = float(entry["backtest_metrics"][metric])
    number = str(version.version)
    baseline = runs["best_baseline"]
    baseline_score = float(runs["baselines"][baseline]["metrics"][metric])
    reasons = [
        *candidate["reasons"],
        f"candidate {kind} v{number}: backtest mean {metric} {score:.6g}, test {metric} "
        f"{float(entry['metrics'][metric]):.6g}",
    ]
    threshold = None
    already = champion is not None and champion["version"] == number
    if champion is None:
        better = True
        reasons.append("no champion yet")
    elif already:
        better = False
        reasons.append(f"v{number} is already the champion")
    elif not champion["comparable"]:
        better = True
        reasons.append(
            f"champion v{champion['version']} (test windows {champion['test_id']}) cannot be "
            f"scored on this run's test windows: {champion['why_not_comparable']}; not "
            "comparable, so the candidate replaces it"
        )
    else:
        threshold = champion["score"] * (1.0 - margin)
        against = champion["candidate_score"]
        better = against < threshold
        reasons.append(
            f"champion v{champion['version']} against the candidate on {champion['basis']}: "
            f"{metric} {champion['score']:.6g} against {against:.6g}; the candidate must be "
            f"below {champion['score']:.6g} x (1 - {margin:g}) = {threshold:.6g}, and is "
            + ("" if better else "not ")
            + "below it"
        )
        better = better and _shown_better(champion, cfg.backtest.significance, reasons)
    experiment = origin["promoted_from"] == "experiment"
    allowed = cfg.promotion.from_experiments if experiment else CHAMPION
    if experiment:
        reasons.append(
            f"this is DVC experiment {origin['promoted_by_exp']}, not the checkout: "
            f"promotion.from_experiments allows {allowed}"
            + ("" if allowed == CHAMPION else " (`dvc exp apply` it, commit, then `make promote`)")
        )
    if already:
        outcome, aliases = "unchanged", {}
    elif better and allowed == CHAMPION:
        outcome, aliases = "promoted", {CHAMPION: number}
    elif allowed in (CHAMPION, CHALLENGER):
        outcome, aliases = CHALLENGER, {CHALLENGER: number}
    else:
        outcome, aliases = "recorded", {}
    label = f"v{number} ({kind}{', fallback baseline' if candidate['role'] == 'baseline' else ''})"
    summary = {
        "promoted": f"{label} promoted to {CHAMPION}",
        "unchanged": f"{label} is already {CHAMPION}; nothing changed",
        CHALLENGER: f"{label} not promoted; it is now the {CHALLENGER}",
        "recorded": f"{label} registered; no alias set (promotion.from_experiments: none)",
    }[outcome]
    return {
        "promoted": outcome == "promoted",
        "outcome": outcome,
        "summary": summary,
        "reasons": reasons,
        "metric": metric,
        "margin": margin,
        "threshold": threshold,
        "registered_model": cfg.tracking.registered_model,
        "candidate": {
            "kind": kind,
            "role": candidate["role"],
            "version": number,
            "score": score,
            "test_score": float(entry["metrics"][metric]),
            "val_score": float(entry["val_metrics"][metric]),
            "model_uri": entry["model_uri"],
            "run_id": entry["run_id"],
            "fingerprint": entry.get("fingerprint"),
        },
        "fallback": candidate["role"] == "baseline",
        "champion": champion,
        "champion_rescored": bool(champion and champion["rescored"]),
        "best_baseline": {"name": baseline, "score": baseline_score},
        "origin": origin,
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


def promotion_metrics(decision: dict) -> dict[str, float]:
    """metrics/promotion.json: the decision in numbers only (scores and words are elsewhere)."""
    return {"promoted": float(decision["promoted"]), "fallback": float(decision["fallback"])}


def _record(cfg: Config, root: Path, runs: dict, decision: dict) -> None:
    """The decision and report to the parent run, then to reports/report and metrics/ (last)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = runs["parent_run_id"]
    pngs = root / paths.EVALUATION / "plots"
    plots = sorted(pngs.glob("*.png")) if pngs.is_dir() else []
    extra = {}
    for key in ("backtest", "intervals"):
        path = root / paths.EVALUATION / f"{key}.json"
        extra[key] = io.read_json(path) if path.is_file() else None
    text = report.markdown(
        report.build(runs, decision, cfg.promotion.metric, [p.name for p in plots], **extra)
    )
    staging = Path(tempfile.mkdtemp(prefix="seqcast-promote-"))
    try:
        folder = staging / "report"
        (folder / "plots").mkdir(parents=True)
        (folder / "report.md").write_text(text)
        io.write_json(folder / "decision.json", decision)
        for plot in plots:
            shutil.copyfile(plot, folder / "plots" / plot.name)
        _log_to_run(client, run_id, decision, runs)
        client.log_artifacts(run_id, str(folder), "report")
        with io.atomic_dir(root / paths.REPORT) as out:
            shutil.copytree(folder, out, dirs_exist_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    io.write_json(root / paths.PROMOTION_METRICS, promotion_metrics(decision))


def _log_to_run(client: MlflowClient, run_id: str, decision: dict, runs: dict) -> None:
    """Params once, tags and metrics every time (a re-run may decide differently)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.time import get_current_time_millis

    existing = client.get_run(run_id).data.params
    wanted = {"promotion.metric": decision["metric"], "promotion.margin": str(decision["margin"])}
    # Params are immutable in MLflow; a re-run with other settings records them in tags.
    params = [Param(k, v) for k, v in wanted.items() if k not in existing]
    champion = decision["champion"] or {}
    served, _ = report.served_after(decision)
    # Names say what they hold: the version this run registered, the champion it was compared
    # with, and the one serving once the decision is made.
    tags = {
        "promoted": str(decision["promoted"]).lower(),
        "outcome": decision["outcome"],
        "summary": decision["summary"],
        "metric": decision["metric"],
        "margin": str(decision["margin"]),
        "registered_version": decision["candidate"]["version"],
        "registered_kind": decision["candidate"]["kind"],
        "fallback": str(decision["fallback"]).lower(),
        "champion_before": champion.get("version") or "none",
        "champion_after": served or "none",
        "champion_rescored": str(decision["champion_rescored"]).lower(),
    }
    now = get_current_time_millis()
    values = {f"promotion.{k}": v for k, v in promotion_metrics(decision).items()}
    values["promotion.candidate_score"] = decision["candidate"]["score"]
    values["promotion.baseline_score"] = decision["best_baseline"]["score"]
    if champion.get("score") is not None:
        values["promotion.champion_score"] = champion["score"]
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in values.items()],
        params=params,
        tags=[RunTag(f"{TAG}promotion.{k}", str(v)) for k, v in tags.items()]
        # MLflow shows this note as the run's description, uncut (the tags table cuts values).
        + [RunTag(NOTE, report.description(decision, runs))],
    )
