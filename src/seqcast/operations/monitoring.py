"""How the served forecasts did: ledger forecasts scored as actuals arrive, decay and drift checks,
and the retrain policy's decision with its reason.

Scores are recomputed every run from the ledger and the raw data (nothing is accumulated), so
actuals that arrive late, twice or out of order, and a run killed mid-scoring, never count a
forecast twice; live metrics are logged once per (version, origin) whatever re-runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from seqcast.core import io
from seqcast.core.config import Config
from seqcast.data.series import read_raw
from seqcast.models import metrics, tracking
from seqcast.operations import ledger

LIVE = Path("reports/live")
OK, WARN, ALARM = "ok", "warn", "alarm"
REASONS = (
    "schedule", "new data", "decay alarm", "drift alarm", "nothing changed", "no champion",
    "cooldown",
)  # fmt: skip
CHECK = "seqcast.check."
LIVE_TAG = "seqcast.live.version"
LIVE_MODEL_TAG = "seqcast.live.registered_model"


@dataclass(frozen=True)
class Score:
    """One ledger forecast against the actuals: errors over its steps and targets."""

    version: str
    origin: pd.Timestamp
    run_id: str
    source: str  # ledger.SOURCES: only the pipeline's own are tested for decay
    end: pd.Timestamp  # the last step's time, naive UTC: where the next independent origin starts
    mae: float
    mase: float
    coverage: dict[str, float]  # level -> share of steps inside the band
    step_mae: list[float]  # per horizon step, mean over targets
    step_coverage: dict[str, list[float]]  # level -> per horizon step, share over targets
    first_miss: dict[str, int]  # level -> targets whose first step fell outside the band
    targets: int


@dataclass(frozen=True)
class Check:
    """A decay or drift check: ok / warn / alarm, its p-value and the numbers behind it."""

    name: str
    status: str
    p_value: float | None
    message: str
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    """What a scheduled run learns before deciding: scores, checks, rows and messages."""

    champion: str | None
    scores: list[Score]
    pending: int
    skipped: list[str]
    decay: Check
    drift: Check
    rows: int
    new_rows: int
    expected: dict[str, float] | None  # the champion's backtest window MAE: mean, p10, p90

    @property
    def alarm(self) -> bool:
        """True when a check raised an alarm."""
        return ALARM in (self.decay.status, self.drift.status)


@dataclass(frozen=True)
class Decision:
    """Whether this run retrains (`dvc repro`), and why."""

    retrain: bool
    reason: str
    detail: str


def status(p_value: float | None, cfg: Config) -> str:
    """ok, warn or alarm by the configured p-value thresholds."""
    if p_value is None or p_value >= cfg.monitoring.warn_p:
        return OK
    return ALARM if p_value < cfg.monitoring.alarm_p else WARN


def actuals(cfg: Config, root: Path) -> pd.DataFrame:
    """The raw targets by time, sorted, the last of repeated timestamps kept (as ingest does)."""
    frame = read_raw(Path(root) / cfg.data.path)
    index = pd.DatetimeIndex(pd.to_datetime(frame[cfg.data.timestamp]))
    values = frame[cfg.data.targets].astype(float).set_axis(index)
    values = values[~values.index.duplicated(keep="last")]
    return values.sort_index(kind="stable")


def score(entry: ledger.Entry, actual: pd.DataFrame, season: int) -> Score | None:
    """The forecast's errors once every step's actual is in, else None (not yet scorable)."""
    table = entry.table
    when = pd.DatetimeIndex(pd.to_datetime(table["timestamp"]))
    if actual.index.tz is not None and when.tz is None:
        when = when.tz_localize(actual.index.tz)
    columns = [actual.columns.get_loc(t) for t in table["target"]]
    rows = actual.index.get_indexer(when)
    if (rows < 0).any():
        return None
    truth = actual.to_numpy()[rows, columns]
    if not np.isfinite(truth).all():
        return None
    error = np.abs(truth - table["forecast"].to_numpy())
    before = actual[actual.index <= _aligned(entry.origin, actual.index)].to_numpy()
    if len(before) <= season:
        return None  # no MASE scale from so short a history
    scale = metrics.seasonal_naive_scale(before, season)[columns]
    levels = sorted(
        {c.split("_", 1)[1] for c in table.columns if c.startswith("lower_")}, key=float
    )
    inside = {
        lv: (table[f"lower_{lv}"].to_numpy() <= truth) & (truth <= table[f"upper_{lv}"].to_numpy())
        for lv in levels
    }
    first = table["step"].to_numpy() == 1
    steps = pd.Series(error).groupby(table["step"].to_numpy()).mean()
    return Score(
        version=entry.version,
        origin=entry.origin,
        run_id=entry.run_id,
        source=entry.source,
        end=_naive(pd.Timestamp(when.max())),
        mae=float(error.mean()),
        mase=float((error / scale).mean()),
        coverage={lv: float(ok.mean()) for lv, ok in inside.items()},
        step_mae=[float(v) for v in steps.to_numpy()],
        step_coverage={
            lv: [float(v) for v in pd.Series(ok).groupby(table["step"].to_numpy()).mean()]
            for lv, ok in inside.items()
        },
        first_miss={lv: int((~ok[first]).sum()) for lv, ok in inside.items()},
        targets=int(first.sum()),
    )


@dataclass(frozen=True)
class Live:
    """The pipeline's scored forecasts, oldest first: what served bands learn from."""

    errors: np.ndarray  # (forecasts, horizon, targets) absolute errors, in units
    misses: np.ndarray  # (forecasts, levels) share of steps outside the served band
    versions: list[str]
    origins: list[pd.Timestamp] = field(default_factory=list)  # each forecast's origin


def live_record(
    cfg: Config, root: Path, targets: list[str], horizon: int, levels: list[float]
) -> Live | None:
    """Every scored pipeline forecast of the registered model shaped like this one's, or None.

    Only the pipeline's own forecasts count (one per night, not every `serve` request), and
    only those with every step's actual in and the same targets, horizon and levels.
    """
    from mlflow import MlflowClient

    tracking.setup(cfg.tracking.experiment, root)
    if MlflowClient().get_experiment_by_name(ledger.experiment_name(cfg)) is None:
        return None  # never served on a schedule: nothing to learn from
    actual = actuals(cfg, root)
    names = [f"{level:g}" for level in levels]
    errors, misses, versions, origins = [], [], [], []
    for entry in ledger.entries(cfg, root):
        table = entry.table
        wanted = {"lower_" + n for n in names} | {"upper_" + n for n in names}
        if entry.source != ledger.PIPELINE or not wanted <= set(table.columns):
            continue
        table = table[table["target"].isin(targets)]
        if sorted(set(table["target"])) != sorted(targets) or table["step"].max() != horizon:
            continue
        when = pd.DatetimeIndex(pd.to_datetime(table["timestamp"]))
        if actual.index.tz is not None and when.tz is None:
            when = when.tz_localize(actual.index.tz)
        rows = actual.index.get_indexer(when)
        if (rows < 0).any():
            continue
        truth = actual.to_numpy()[rows, [actual.columns.get_loc(t) for t in table["target"]]]
        if not np.isfinite(truth).all():
            continue
        frame = table.assign(error=np.abs(truth - table["forecast"].to_numpy()), truth=truth)
        grid = frame.pivot(index="step", columns="target", values="error")[targets]
        errors.append(grid.to_numpy())
        misses.append(
            [
                float(
                    ((truth < table[f"lower_{n}"].to_numpy())
                     | (truth > table[f"upper_{n}"].to_numpy())).mean()
                )
                for n in names
            ]
        )  # fmt: skip
        versions.append(entry.version)
        origins.append(entry.origin)
    if not errors:
        return None
    return Live(np.stack(errors), np.asarray(misses), versions, origins)


def _aligned(origin: pd.Timestamp, index: pd.DatetimeIndex) -> pd.Timestamp:
    """The origin in the index's time zone convention (naive or aware)."""
    if index.tz is not None and origin.tz is None:
        return origin.tz_localize(index.tz)
    if index.tz is None and origin.tz is not None:
        return origin.tz_convert(None)
    return origin


def _naive(when: pd.Timestamp) -> pd.Timestamp:
    """An instant as naive UTC (a naive one is taken as it is): origins and ends compare."""
    return when.tz_convert(None) if when.tz is not None else when


def independent(scores: list[Score]) -> list[Score]:
    """The newest forecasts whose steps do not overlap, oldest first: each one's origin at or
    after the previous one's last step (origins at least a horizon apart)."""
    # Forecasts from consecutive origins share most of their steps: tested as if independent,
    # one bad stretch of actuals would count once per forecast that covers it.
    kept: list[Score] = []
    for s in sorted(scores, key=lambda s: s.end, reverse=True):
        if not kept or s.end <= _naive(kept[-1].origin):
            kept.append(s)
    return kept[::-1]


def backtest_errors(cfg: Config, version: str) -> np.ndarray | None:
    """The version's out-of-sample window MAEs (its calibration errors), None when it has none."""
    forecaster = ledger.load_version(cfg.tracking.registered_model, version)
    if forecaster.calibration is None:
        return None
    return np.asarray(forecaster.calibration, dtype=np.float64).mean(axis=(1, 2))


def decay(cfg: Config, scores: list[Score], windows: np.ndarray | None, version: str) -> Check:
    """Live errors against the backtest's: Fisher-combined ranks of each forecast's MAE, and
    first-step band misses against their nominal rate (binomial); Bonferroni over the tests.

    `scores`: the pipeline's forecasts of the version; the latest non-overlapping ones count."""
    from scipy import stats

    latest = independent(scores)[-cfg.monitoring.decay_window :]
    if not latest:
        return Check("decay", OK, None, f"no scored pipeline forecast of v{version} yet")
    if windows is None or len(windows) == 0:
        return Check("decay", OK, None, f"v{version} carries no backtest errors to compare with")
    # Each forecast's MAE ranked among the backtest windows': uniform while nothing changed.
    ranks = [(1 + np.sum(windows >= s.mae)) / (len(windows) + 1) for s in latest]
    fisher = float(stats.chi2.sf(-2.0 * np.sum(np.log(ranks)), 2 * len(ranks)))
    numbers = {
        "forecasts": float(len(latest)),
        "live_mae": float(np.mean([s.mae for s in latest])),
        "backtest_mae": float(windows.mean()),
        "p_error": fisher,
    }
    tests = [fisher]
    # Only each forecast's first step: a horizon apart, they are independent; steps are not.
    for level in latest[0].coverage:
        n = sum(s.targets for s in latest)
        misses = sum(s.first_miss[level] for s in latest)
        p = float(stats.binomtest(misses, n, 1.0 - float(level) / 100.0, "greater").pvalue)
        numbers[f"misses_{level}"], numbers[f"p_coverage_{level}"] = float(misses), p
        tests.append(p)
    p_value = min(1.0, min(tests) * len(tests))
    message = (
        f"v{version}, latest {len(latest)} non-overlapping pipeline forecast(s): live MAE "
        f"{numbers['live_mae']:.4g} vs backtest {numbers['backtest_mae']:.4g} (p {fisher:.3g}); "
        + ", ".join(
            f"{int(numbers[f'misses_{lv}'])}/{sum(s.targets for s in latest)} first steps "
            f"outside the {lv}% band (p {numbers[f'p_coverage_{lv}']:.3g})"
            for lv in latest[0].coverage
        )
        + f"; p {p_value:.3g} after Bonferroni"
    )
    return Check("decay", status(p_value, cfg), p_value, message, numbers)


def drift_season(cfg: Config, history: int, block: int) -> int:
    """The longest season with at least 4 blocks of history per season, else the shortest."""
    seasons = sorted(cfg.seasons) or [cfg.mase_season]
    fitting = [s for s in seasons if history >= 4 * s + 8 * block]
    return fitting[-1] if fitting else seasons[0]


def drift(cfg: Config, values: np.ndarray, new_from: int) -> Check:
    """New rows against the history, seasonally: the mean seasonal-naive residual of the new
    block against equally long, equally phased blocks of the history (a t-test per target)."""
    from scipy import stats

    block = len(values) - new_from
    if block <= 0:
        return Check("drift", OK, None, "no new rows since the last pipeline forecast")
    season = drift_season(cfg, new_from, block)
    residual = values[season:] - values[:-season]
    new, past = residual[new_from - season :], residual[: new_from - season]
    count = len(past) // block
    if count < 4:
        return Check("drift", OK, None, f"too little history for {block}-row blocks")
    blocks = past[len(past) - count * block :].reshape(count, block, -1).mean(axis=1)
    spread = blocks.std(axis=0, ddof=1)
    # The spread comes from a few block means: the new block against their mean is Student's t
    # with count - 1 degrees of freedom (the normal would alarm ~10x too often at 4 blocks), and
    # that mean's own error widens it by sqrt(1 + 1/count).
    scale = spread * np.sqrt(1.0 + 1.0 / count)
    t = (new.mean(axis=0) - blocks.mean(axis=0)) / np.where(scale > 0, scale, np.inf)
    worst = int(np.argmax(np.abs(t)))
    p_value = min(1.0, float(2.0 * stats.t.sf(abs(t[worst]), count - 1)) * len(t))
    target = cfg.data.targets[worst]
    message = (
        f"{block} new row(s) of {target}: mean seasonal-naive residual (season {season}) "
        f"{new.mean(axis=0)[worst]:.4g} vs {blocks.mean(axis=0)[worst]:.4g} ± "
        f"{spread[worst]:.3g} over {count} earlier blocks (t {t[worst]:.2f}, {count - 1} df, "
        f"p {p_value:.3g})"
    )
    numbers = {"rows": float(block), "season": float(season), "t": float(t[worst])}
    numbers["blocks"] = float(count)
    return Check("drift", status(p_value, cfg), p_value, message, numbers)


def assess(cfg: Config, root: Path) -> Assessment:
    """Score every ledger forecast whose actuals are in, and check decay and drift."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    tracking.setup(cfg.tracking.experiment, root)
    champion = ledger.champion_version(cfg)
    entries = ledger.entries(cfg, root)
    actual = actuals(cfg, root)
    client, skipped, scores, pending = MlflowClient(), [], [], 0
    deleted: dict[str, int] = {}
    for version in sorted({e.version for e in entries}, key=int):
        try:
            client.get_model_version(cfg.tracking.registered_model, version)
        except MlflowException:
            deleted[version] = sum(e.version == version for e in entries)
    for version, count in deleted.items():
        skipped.append(
            f"v{version} was deleted from the registry: its {count} ledger forecast(s) are "
            "kept but not scored"
        )
    for entry in entries:
        if entry.version in deleted:
            continue
        scored = score(entry, actual, cfg.mase_season)
        if scored is None:
            pending += 1
        else:
            scores.append(scored)
    windows = backtest_errors(cfg, champion) if champion else None
    # Only the pipeline's own forecasts: `serve` and `forecast` records come at any rate (hourly,
    # from any history) and would outweigh or silence the scheduled ones.
    mine = [s for s in scores if s.version == champion and s.source == ledger.PIPELINE]
    decay_check = (
        decay(cfg, mine, windows, champion)
        if champion
        else Check("decay", OK, None, "no champion yet")
    )
    # From the last pipeline origin: a `serve` record from the latest row would leave no new rows.
    last = max((e.origin for e in entries if e.source == ledger.PIPELINE), default=None)
    if last is None:
        new_from = len(actual)
        drift_check = Check(
            "drift", OK, None, "no earlier pipeline forecast in the ledger to start from"
        )
    else:
        new_from = int(np.searchsorted(actual.index, _aligned(last, actual.index), side="right"))
        drift_check = drift(cfg, actual.to_numpy(), new_from)
    expected = None
    if windows is not None and len(windows):
        p10, p90 = np.quantile(windows, [0.1, 0.9])
        expected = {"mean": float(windows.mean()), "p10": float(p10), "p90": float(p90)}
    return Assessment(
        champion=champion,
        scores=scores,
        pending=pending,
        skipped=skipped,
        decay=decay_check,
        drift=drift_check,
        rows=len(actual),
        new_rows=len(actual) - new_from,
        expected=expected,
    )


def store_exists(root: Path) -> bool:
    """False for a local store not created yet: nothing trained, nothing to score."""
    from seqcast.core import paths

    database = paths.sqlite_file(paths.tracking_uri(root))
    return database is None or database.is_file()


def nothing_yet(rows: int, why: str = "no tracking store yet") -> Assessment:
    """The assessment of a run that could not check anything, and why."""
    empty = Check("decay", OK, None, why)
    return Assessment(None, [], 0, [], empty, replace(empty, name="drift"), rows, 0, None)


def check(cfg: Config, root: Path, data_changed: bool) -> tuple[Assessment, Decision]:
    """A scheduled run's checks: score and check, log live metrics and plots, then decide."""
    if not store_exists(root):
        assessment = nothing_yet(0)
        return assessment, decide(cfg, assessment, data_changed, None)
    assessment = assess(cfg, root)
    log_live(cfg, root, assessment.scores)
    write_live(root, assessment)
    return assessment, decide(cfg, assessment, data_changed, rows_at_last_retrain(cfg, root))


def rows_at_last_retrain(cfg: Config, root: Path) -> int | None:
    """Data rows when a scheduled run last retrained (None: never recorded)."""
    from mlflow import MlflowClient

    found = MlflowClient().search_runs(
        [ledger.experiment_id(cfg, root)],
        filter_string=f"tags.`{CHECK}retrained` = 'true'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return int(found[0].data.tags[f"{CHECK}rows"]) if found else None


def decide(
    cfg: Config, assessment: Assessment, data_changed: bool, last_retrain: int | None
) -> Decision:
    """The retrain policy: monitoring.retrain, its row counts and cooldown, applied."""
    policy = cfg.monitoring
    since = assessment.rows - last_retrain if last_retrain is not None else None
    alarm = next((c for c in (assessment.decay, assessment.drift) if c.status == ALARM), None)
    if assessment.champion is None:
        return Decision(True, "no champion", "no champion in the registry yet: train one")
    if alarm is not None:
        reason = f"{alarm.name} alarm"
        if since is not None and since < policy.cooldown_rows:
            return Decision(
                policy.retrain == "always",
                "cooldown" if policy.retrain != "always" else reason,
                f"{alarm.message}; only {since} row(s) since the last retrain "
                f"(cooldown_rows {policy.cooldown_rows})",
            )
        return Decision(True, reason, alarm.message)
    if policy.retrain == "always":
        if data_changed:
            return Decision(True, "new data", f"{assessment.new_rows} new row(s)")
        return Decision(True, "schedule", "monitoring.retrain always: dvc repro on every run")
    if policy.retrain == "every_n_rows":
        count = assessment.rows if since is None else since
        if count >= policy.every_n_rows:
            return Decision(True, "new data", f"{count} row(s) since the last retrain")
        return Decision(
            False,
            "nothing changed",
            f"{count} row(s) since the last retrain, below every_n_rows {policy.every_n_rows}; "
            "no alarm",
        )
    return Decision(False, "nothing changed", "no alarm (monitoring.retrain on_alarm)")


def log_live(cfg: Config, root: Path, scores: list[Score]) -> int:
    """live_mae, live_mase and live_coverage_<L> per scored forecast in one `live v<N>` run per
    version: step the count of its scored forecasts, timestamp the origin's time; an origin
    already logged is never logged again."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client, experiment, logged = MlflowClient(), ledger.experiment_id(cfg, root), 0
    model = cfg.tracking.registered_model
    for version in sorted({s.version for s in scores}, key=int):
        run_id = live_run(client, experiment, model, version)
        # The origin is the metric's timestamp: MLflow's time axis shows when each forecast was
        # made, and a small step (1, 2, ...) keeps the step axis readable.
        seen = {m.timestamp for m in client.get_metric_history(run_id, "live_mae")}
        count = len(seen)
        mine = [s for s in scores if s.version == version]
        # Oldest origin first; the pipeline's own first: its forecast is the one logged for an
        # origin served twice.
        for s in sorted(mine, key=lambda s: (s.origin, s.source != ledger.PIPELINE)):
            when = origin_millis(s.origin)
            if when in seen:  # logged, or another source's forecast from the same origin
                continue
            seen.add(when)
            count += 1
            values = {"live_mae": s.mae, "live_mase": s.mase}
            values |= {f"live_coverage_{lv}": c for lv, c in s.coverage.items()}
            # One batch per forecast: a kill between batches leaves whole forecasts only.
            client.log_batch(run_id, [Metric(k, v, when, count) for k, v in values.items()])
            logged += 1
        client.set_terminated(run_id, "FINISHED")
    return logged


def origin_millis(origin: pd.Timestamp) -> int:
    """The origin as MLflow's metric timestamp: milliseconds since the epoch (naive: UTC)."""
    return int(origin.timestamp()) * 1000


def live_run(client, experiment: str, model: str, version: str) -> str:
    """The `live v<N>` run of a registered model's version, created on its first scored forecast."""
    # By model too: two registered models in one experiment each have a v1.
    found = client.search_runs(
        [experiment],
        filter_string=f"tags.`{LIVE_TAG}` = '{version}' and tags.`{LIVE_MODEL_TAG}` = '{model}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    tags = {LIVE_TAG: version, LIVE_MODEL_TAG: model}
    return client.create_run(experiment, run_name=f"live v{version}", tags=tags).info.run_id


def live_frame(assessment: Assessment) -> pd.DataFrame:
    """reports/live/live.csv: one row per scored forecast, with the champion's expected error."""
    rows = []
    for s in assessment.scores:
        row = {"version": s.version, "source": s.source, "origin": s.origin.isoformat()}
        row |= {"mae": s.mae, "mase": s.mase}
        row |= {f"coverage_{lv}": c for lv, c in s.coverage.items()}
        if assessment.expected and s.version == assessment.champion:
            row |= {f"expected_mae_{k}": v for k, v in assessment.expected.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def step_frame(scores: list[Score]) -> pd.DataFrame:
    """reports/live/live_steps.csv: per version and horizon step, MAE and band coverage."""
    rows = []
    for version in sorted({s.version for s in scores}, key=int):
        mine = [s for s in scores if s.version == version]
        for step in range(len(mine[0].step_mae)):
            row = {"version": version, "step": step + 1, "forecasts": len(mine)}
            row["mae"] = float(np.mean([s.step_mae[step] for s in mine]))
            for level in mine[0].step_coverage:
                row[f"coverage_{level}"] = float(
                    np.mean([s.step_coverage[level][step] for s in mine])
                )
            rows.append(row)
    return pd.DataFrame(rows)


def write_live(root: Path, assessment: Assessment) -> list[Path]:
    """reports/live/: live.csv and live_steps.csv, and live.png (error and coverage)."""
    frame = live_frame(assessment)
    folder = Path(root) / LIVE
    with io.atomic_dir(folder) as out:
        frame.to_csv(out / "live.csv", index=False)
        step_frame(assessment.scores).to_csv(out / "live_steps.csv", index=False)
        if not frame.empty:
            _plot(frame, assessment).savefig(out / "live.png", dpi=100, bbox_inches="tight")
    return sorted(folder.iterdir())


def _plot(frame: pd.DataFrame, assessment: Assessment):
    """Two panels: live MAE per origin vs the backtest's, and band coverage vs nominal."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 6))
    error, cover = figure.subplots(2, 1, sharex=True)
    when = pd.to_datetime(frame["origin"])
    for version, part in frame.groupby("version"):
        error.plot(when[part.index], part["mae"], marker="o", label=f"live MAE v{version}")
    if assessment.expected:
        e = assessment.expected
        error.axhline(e["mean"], color="grey", linestyle="--", label="backtest MAE (champion)")
        error.axhspan(e["p10"], e["p90"], color="grey", alpha=0.15, label="backtest 10-90%")
    error.set_ylabel("MAE")
    error.legend(fontsize=8)
    for column in (c for c in frame.columns if c.startswith("coverage_")):
        level = column.removeprefix("coverage_")
        line = cover.plot(when, 100 * frame[column], marker="o", label=f"{level}% band")[0]
        cover.axhline(float(level), color=line.get_color(), linestyle="--", linewidth=0.8)
    cover.set_ylabel("coverage (%)")
    cover.legend(fontsize=8)
    figure.suptitle(f"seqcast live forecasts (champion v{assessment.champion})")
    return figure


def new_alarms(cfg: Config, root: Path, assessment: Assessment) -> list[Check]:
    """This run's alarms that the previous check did not already raise: one notice per incident."""
    from mlflow import MlflowClient

    alarms = [c for c in (assessment.decay, assessment.drift) if c.status == ALARM]
    if not alarms:
        return []
    found = MlflowClient().search_runs(
        [ledger.experiment_id(cfg, root)],
        filter_string=f"tags.`{CHECK}reason` != ''",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    before = found[0].data.tags if found else {}
    return [c for c in alarms if before.get(f"{CHECK}{c.name}") != ALARM]


def record_check(
    cfg: Config, root: Path, assessment: Assessment, decision: Decision, retrained: bool
) -> str:
    """The run's checks and decision as a `check` run of the ledger experiment."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()
    tags = {
        f"{CHECK}reason": decision.reason,
        f"{CHECK}detail": decision.detail[:5000],
        f"{CHECK}retrained": str(retrained).lower(),
        f"{CHECK}rows": str(assessment.rows),
        f"{CHECK}champion": assessment.champion or "none",
        f"{CHECK}decay": assessment.decay.status,
        f"{CHECK}drift": assessment.drift.status,
        f"{CHECK}decay_message": assessment.decay.message[:5000],
        f"{CHECK}drift_message": assessment.drift.message[:5000],
    }
    name = f"check: {decision.reason}" + (" (retrained)" if retrained else "")
    run = client.create_run(ledger.experiment_id(cfg, root), run_name=name, tags=tags)
    values = {"rows": assessment.rows, "new_rows": assessment.new_rows}
    values |= {"scored": len(assessment.scores), "pending": assessment.pending}
    for check in (assessment.decay, assessment.drift):
        if check.p_value is not None and math.isfinite(check.p_value):
            values[f"{check.name}_p"] = check.p_value
    now = run.info.start_time
    client.log_batch(run.info.run_id, [Metric(k, float(v), now, 0) for k, v in values.items()])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def live_versions_line(assessment: Assessment, versions: list[str]) -> str:
    """Which versions have live scores (a `live v<N>` MLflow run each), and the champion's."""
    ordered = sorted(versions, key=int)
    have = ", ".join(f"`live v{v}`" for v in ordered) or "none yet"
    line = f"- live scores (MLflow runs in the ledger experiment): {have}"
    if assessment.champion and assessment.champion not in versions:
        line += (
            f"; champion v{assessment.champion} has none yet (its first forecast awaits actuals)"
        )
    return line


def summary_lines(assessment: Assessment, decision: Decision, retrained: bool) -> list[str]:
    """The report's monitoring section: scores, checks, the decision and its reason."""
    by_version: dict[str, list[Score]] = {}
    for s in assessment.scores:
        by_version.setdefault(s.version, []).append(s)
    lines = [
        f"- decision: **{decision.reason}**: "
        + ("retrained (`dvc repro`)" if retrained else "no retrain")
        + f"; {decision.detail}",
        f"- decay: **{assessment.decay.status}**: {assessment.decay.message}",
        f"- drift: **{assessment.drift.status}**: {assessment.drift.message}",
        f"- ledger: {len(assessment.scores)} forecast(s) scored, {assessment.pending} awaiting "
        "actuals",
    ]
    lines += [f"- {message}" for message in assessment.skipped]
    lines.append(live_versions_line(assessment, list(by_version)))
    if by_version:
        levels = list(assessment.scores[0].coverage)
        lines += [
            "",
            "| version | forecasts | live MAE | live MASE | "
            + " | ".join(f"coverage {lv}%" for lv in levels)
            + " |",
            "|" + "---|" * (4 + len(levels)),
        ]
        for version, scored in by_version.items():
            cover = " | ".join(f"{np.mean([s.coverage[lv] for s in scored]):.1%}" for lv in levels)
            lines.append(
                f"| v{version} | {len(scored)} | {np.mean([s.mae for s in scored]):.4g} | "
                f"{np.mean([s.mase for s in scored]):.4g} | {cover} |"
            )
    if assessment.expected:
        e = assessment.expected
        lines.append(
            f"\nThe champion's backtest window MAE: mean {e['mean']:.4g}, 10-90% "
            f"{e['p10']:.4g} .. {e['p90']:.4g} (reports/live/live.png)."
        )
    return lines
