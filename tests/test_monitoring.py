"""The forecast ledger and monitoring against a real MLflow registry in a temporary SQLite store.

The champion is a seasonal-naive Forecaster (no training) whose calibration errors are its own
out-of-sample errors; nights of new rows are replayed the way the pipeline flow runs them:
check (score, decay, drift, decide), record the champion's forecast, record the check.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from seqcast.core.config import parse_config
from seqcast.data.features import InputSpec
from seqcast.models import serving, tracking
from seqcast.models.forecaster import Forecaster
from seqcast.operations import ledger, monitoring

SEASON, HORIZON, NIGHT, HISTORY = 24, 6, 24, 480


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module; each test its own registered model."""
    root = tmp_path_factory.mktemp("store")
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    yield tracking.setup("seqcast", root)
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


def series(rows: int, shift_at: int | None = None, seed: int = 3) -> pd.DataFrame:
    """An hourly daily-seasonal series; `shift_at`: a level shift of +12 from that row on."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    y = 100 + 10 * np.sin(2 * np.pi * t / SEASON) + rng.normal(0, 1, rows)
    if shift_at is not None:
        y[shift_at:] += 12.0
    times = pd.date_range("2024-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    return pd.DataFrame({"timestamp": times, "y": y})


def champion(tmp: Path, name: str, history: pd.DataFrame) -> str:
    """Register a seasonal-naive Forecaster calibrated on its own errors as `champion`."""
    spec = InputSpec(
        input_width=SEASON, horizon=HORIZON, shift=1, n_targets=1, n_values=1, n_calendar=0,
        reference="seasonal_naive", season=SEASON,
    )  # fmt: skip
    y = history["y"].to_numpy()
    origins = np.arange(2 * SEASON, len(y) - HORIZON)
    steps = origins[:, None] + np.arange(1, HORIZON + 1)
    errors = np.abs(y[steps] - y[steps - SEASON])[:, :, None]
    forecaster = Forecaster(
        name="seasonal_naive", spec=spec, timestamp="timestamp", columns=["y"], frequency="h",
        offset=np.array([100.0]), scale=np.array([10.0]), calibration=errors[-300:],
        levels=[80.0, 95.0],
    )  # fmt: skip
    forecaster.save(tmp / "model")
    with mlflow.start_run():
        info = serving.log_forecaster(tmp / "model")
    version = mlflow.register_model(info.model_uri, name).version
    MlflowClient().set_registered_model_alias(name, "champion", version)
    return str(version)


def setup(tmp_path: Path, name: str, retrain: str = "on_alarm"):
    """A workspace with its config; the raw data is written per night by `night`."""
    (tmp_path / "data/raw").mkdir(parents=True)
    params = {
        "data": {"path": "data/raw/series.csv", "targets": ["y"], "frequency": "h"},
        "window": {"input_width": SEASON, "horizon": HORIZON},
        "baselines": {"seasons": [SEASON]},
        "tracking": {"experiment": "seqcast", "registered_model": name},
        "monitoring": {"retrain": retrain, "decay_window": 3, "cooldown_rows": 0},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return parse_config(params)


def night(cfg, root: Path, data: pd.DataFrame) -> tuple:
    """One scheduled night without `dvc repro`: the data as ingested, check, record, decide."""
    data.to_csv(root / cfg.data.path, index=False)
    assessment, decision = monitoring.check(cfg, root, data_changed=True)
    recorded = ledger.record_champion(cfg, root)
    monitoring.record_check(cfg, root, assessment, decision, retrained=False)
    return assessment, decision, recorded


def replay(cfg, root: Path, full: pd.DataFrame, nights: int) -> list:
    """Nights of NIGHT rows after HISTORY rows of history."""
    return [night(cfg, root, full.iloc[: HISTORY + n * NIGHT]) for n in range(nights)]


def record(cfg, root: Path, data: pd.DataFrame, rows: int, source: str, bias: float = 0.0) -> bool:
    """The champion's forecast from the first `rows` rows as `source` records it; `bias` is
    added to the forecast and its bands (a degraded model, or a client's bad history)."""
    version = ledger.champion_version(cfg)
    forecaster = ledger.load_version(cfg.tracking.registered_model, version)
    history = data.iloc[:rows].tail(forecaster.min_history)
    frame = forecaster.forecast(history)
    columns = [c for c in frame.columns if c != forecaster.timestamp]
    frame[columns] += bias
    origin = history["timestamp"].iloc[-1]
    _, added = ledger.record(
        cfg, frame, version, origin, source, forecaster.timestamp, forecaster.targets, root
    )
    return added


def test_a_degraded_champion_raises_the_decay_alarm_while_drift_stays_quiet(
    store: str, tmp_path: Path
) -> None:
    """An unchanged series, the champion's forecasts off by +8 from night 2: drift never
    fires, decay does within the 3 forecasts of its window, and the retrain says why."""
    cfg = setup(tmp_path, "mon-decay")
    full = series(HISTORY + 6 * NIGHT)
    champion(tmp_path, "mon-decay", full.iloc[:HISTORY])
    nights = []
    for n in range(6):
        rows = HISTORY + n * NIGHT
        full.iloc[:rows].to_csv(tmp_path / cfg.data.path, index=False)
        assessment, decision = monitoring.check(cfg, tmp_path, data_changed=True)
        record(cfg, tmp_path, full, rows, "pipeline", bias=8.0 if n >= 2 else 0.0)
        monitoring.record_check(cfg, tmp_path, assessment, decision, retrained=False)
        nights.append((assessment, decision))
    checks = [(a.decay.status, a.drift.status) for a, _ in nights]
    assert all(a.drift.status == monitoring.OK for a, _ in nights), checks
    alarms = [n for n, (a, _) in enumerate(nights) if a.decay.status == monitoring.ALARM]
    # Night 2's degraded forecast is scored on night 3; all 3 in the window are bad on night 5.
    assert alarms and alarms[0] in (3, 4, 5) and alarms[-1] == 5, checks
    assessment, decision = nights[5]
    assert decision.retrain and decision.reason == "decay alarm"
    assert assessment.decay.numbers["forecasts"] == 3
    assert assessment.decay.numbers["live_mae"] > 4 * assessment.expected["mean"]


def test_hourly_serve_records_neither_silence_drift_nor_raise_alarms(
    store: str, tmp_path: Path
) -> None:
    """`seqcast serve` answering every hour, from a client's history 8 too high, up to the row
    the pipeline forecasts from: no alarm before the shift, the drift alarm on time after it."""
    cfg = setup(tmp_path, "mon-hourly")
    full = series(HISTORY + 4 * NIGHT, shift_at=HISTORY + 2 * NIGHT)
    champion(tmp_path, "mon-hourly", full.iloc[:HISTORY])
    nights = []
    for n in range(4):
        rows = HISTORY + n * NIGHT
        for hour in range(rows - NIGHT + 1, rows + 1) if n else ():  # the day's requests
            assert record(cfg, tmp_path, full, hour, "serve", bias=8.0)
        full.iloc[:rows].to_csv(tmp_path / cfg.data.path, index=False)
        assessment, decision = monitoring.check(cfg, tmp_path, data_changed=True)
        # The pipeline's own record, although `serve` already has one from the same origin.
        assert record(cfg, tmp_path, full, rows, "pipeline")
        monitoring.record_check(cfg, tmp_path, assessment, decision, retrained=False)
        nights.append(assessment)
    checks = [(a.decay, a.drift) for a in nights]
    served = [s for s in nights[2].scores if s.source == "serve"]
    assert len(served) > 20 and min(s.mae for s in served) > 4, checks  # scored, not tested
    assert not any(a.alarm for a in nights[:3]), checks
    assert [a.new_rows for a in nights[1:]] == [NIGHT] * 3  # from the last pipeline origin
    assert nights[3].drift.status == monitoring.ALARM, checks  # the shifted rows' first night
    assert nights[3].decay.numbers["forecasts"] == 3  # the pipeline forecasts of nights 0-2
    sources = [e.source for e in ledger.entries(cfg, tmp_path)]
    assert sources.count("pipeline") == 4 and sources.count("serve") == 3 * NIGHT


def test_decay_counts_overlapping_forecasts_once() -> None:
    """Pipeline forecasts from hourly origins (horizon 6): only origins 6 hours apart are tested,
    the newest kept."""
    hours = pd.date_range("2024-01-01", periods=20, freq="h")
    scores = [
        monitoring.Score(
            version="1",
            origin=hours[k],
            run_id=str(k),
            source="pipeline",
            end=hours[k] + pd.Timedelta(hours=HORIZON),
            mae=1.0,
            mase=1.0,
            coverage={},
            step_mae=[],
            step_coverage={},
            first_miss={},
            targets=1,
        )  # fmt: skip
        for k in range(20)
    ]
    assert [s.run_id for s in monitoring.independent(scores)] == ["1", "7", "13", "19"]


def test_few_drift_blocks_alarm_at_the_nominal_rate(tmp_path: Path) -> None:
    """No change, 4 earlier blocks: the t-test alarms at about alarm_p (the normal: ~10 times)."""
    cfg = setup(tmp_path, "mon-t")
    rng = np.random.default_rng(0)
    alarms, trials = 0, 2000
    for _ in range(trials):
        # A seasonal random walk: its seasonal-naive residuals are independent noise.
        values = np.cumsum(rng.normal(size=(6, SEASON)), axis=0).reshape(-1, 1)
        check = monitoring.drift(cfg, values, new_from=5 * SEASON)
        assert check.numbers["blocks"] == 4
        alarms += check.status == monitoring.ALARM
    assert alarms / trials < 2.5 * cfg.monitoring.alarm_p, alarms


def test_a_level_shift_raises_the_alarm_and_records_why(store: str, tmp_path: Path) -> None:
    """Shifted rows first arrive at night 4: alarm that night or the next; the reason recorded."""
    cfg = setup(tmp_path, "mon-shift")
    full = series(HISTORY + 6 * NIGHT, shift_at=HISTORY + 3 * NIGHT)
    champion(tmp_path, "mon-shift", full.iloc[:HISTORY])
    nights = replay(cfg, tmp_path, full, 6)
    alarms = [n for n, (a, _, _) in enumerate(nights) if a.alarm]
    assert alarms and alarms[0] in (4, 5), [(a.decay, a.drift) for a, _, _ in nights]
    assessment, decision, _ = nights[alarms[0]]
    assert decision.retrain and decision.reason in ("drift alarm", "decay alarm")
    assert [d.reason for _, d, _ in nights[:4]] == ["nothing changed"] * 4
    client = MlflowClient()
    runs = client.search_runs(
        [ledger.experiment_id(cfg, tmp_path)],
        filter_string="tags.`seqcast.check.reason` LIKE '%alarm'",
    )
    assert runs and runs[0].data.tags["seqcast.check.retrained"] == "false"
    # One notice per incident: an alarm the previous check already raised is not new.
    assert [c.name for c in monitoring.new_alarms(cfg, tmp_path, assessment)] == ["drift"]
    monitoring.record_check(cfg, tmp_path, assessment, decision, retrained=True)
    assert monitoring.new_alarms(cfg, tmp_path, assessment) == []
    live = pd.read_csv(tmp_path / "reports/live/live.csv")
    assert len(live) == 5 and (tmp_path / "reports/live/live.png").is_file()  # night 0's .. 4's
    assert live["mae"].iloc[3] > 3 * live["mae"].iloc[0]  # the forecast across the shift
    steps = pd.read_csv(tmp_path / "reports/live/live_steps.csv")
    assert list(steps["step"]) == list(range(1, HORIZON + 1)) and set(steps["forecasts"]) == {5}
    assert steps["mae"].mean() == pytest.approx(live["mae"].mean())


def test_an_unchanged_replay_never_alarms_and_a_night_rerun_adds_nothing(
    store: str, tmp_path: Path
) -> None:
    """No alarm on an unchanged series; the same night twice: no new ledger run, no new metric."""
    cfg = setup(tmp_path, "mon-same")
    full = series(HISTORY + 6 * NIGHT)
    version = champion(tmp_path, "mon-same", full.iloc[:HISTORY])
    nights = replay(cfg, tmp_path, full, 6)
    assert not any(a.alarm for a, _, _ in nights), [(a.decay, a.drift) for a, _, _ in nights]
    assert {d.reason for _, d, _ in nights} == {"nothing changed"}
    assert all(recorded["added"] for _, _, recorded in nights)
    before = len(ledger.entries(cfg, tmp_path))
    _, _, again = night(cfg, tmp_path, full.iloc[: HISTORY + 5 * NIGHT])
    assert not again["added"] and len(ledger.entries(cfg, tmp_path)) == before == 6
    client = MlflowClient()
    (live,) = client.search_runs(
        [ledger.experiment_id(cfg, tmp_path)],
        filter_string=f"tags.`seqcast.live.version` = '{version}' "
        "and tags.`seqcast.live.registered_model` = 'mon-same'",
    )
    history = client.get_metric_history(live.info.run_id, "live_mae")
    # Steps count the scored forecasts; timestamps are their origins (MLflow's time axis).
    origins = [e.origin for e in ledger.entries(cfg, tmp_path)][:5]  # the 6th awaits actuals
    by_step = sorted(history, key=lambda m: m.step)
    assert [m.step for m in by_step] == [1, 2, 3, 4, 5]
    assert [m.timestamp for m in by_step] == [
        int(o.tz_localize("UTC").timestamp()) * 1000 for o in origins
    ]
    assert origins[0] == pd.Timestamp(full["timestamp"].iloc[HISTORY - 1])


def test_each_champion_version_gets_its_live_run_once_its_first_forecast_is_scored(
    store: str, tmp_path: Path
) -> None:
    """v1 then v2 as champion: `live v2` appears the night v2's first forecast is scored, its
    steps start at 1, and the report says which versions have live scores."""
    cfg = setup(tmp_path, "mon-versions")
    full = series(HISTORY + 4 * NIGHT)
    first = champion(tmp_path, "mon-versions", full.iloc[:HISTORY])
    replay(cfg, tmp_path, full, 2)
    (tmp_path / "second").mkdir()
    second = champion(tmp_path / "second", "mon-versions", full.iloc[: HISTORY + NIGHT])
    assert (first, second) == ("1", "2")
    assessment, decision, recorded = night(cfg, tmp_path, full.iloc[: HISTORY + 2 * NIGHT])
    assert recorded["version"] == second and {s.version for s in assessment.scores} == {first}
    lines = monitoring.summary_lines(assessment, decision, retrained=False)
    assert (
        "- live scores (MLflow runs in the ledger experiment): `live v1`; champion v2 has none "
        "yet (its first forecast awaits actuals)"
    ) in lines
    assessment, decision, _ = night(cfg, tmp_path, full.iloc[: HISTORY + 3 * NIGHT])
    lines = monitoring.summary_lines(assessment, decision, retrained=False)
    assert "- live scores (MLflow runs in the ledger experiment): `live v1`, `live v2`" in lines
    client = MlflowClient()
    live = client.search_runs(
        [ledger.experiment_id(cfg, tmp_path)],
        filter_string="tags.`seqcast.live.registered_model` = 'mon-versions'",
    )
    steps = {
        run.info.run_name: [m.step for m in client.get_metric_history(run.info.run_id, "live_mae")]
        for run in live
    }
    assert {name: sorted(s) for name, s in steps.items()} == {"live v1": [1, 2], "live v2": [1]}


def test_late_duplicate_and_shuffled_actuals_count_once(store: str, tmp_path: Path) -> None:
    """Rows sent twice and out of order score like clean ones; a missing row keeps it pending."""
    cfg = setup(tmp_path, "mon-late")
    full = series(HISTORY + 2 * NIGHT)
    champion(tmp_path, "mon-late", full.iloc[:HISTORY])
    night(cfg, tmp_path, full.iloc[:HISTORY])  # the forecast from the last history row
    late = full.iloc[: HISTORY + NIGHT].drop(index=HISTORY + 2)  # one actual not yet in
    assert monitoring.check(cfg, tmp_path, True)[0].pending == 1
    clean = full.iloc[: HISTORY + NIGHT]
    messy = pd.concat([clean.iloc[::-1], clean.iloc[-30:]]).sample(frac=1.0, random_state=1)
    for data in (late, clean, messy):
        data.to_csv(tmp_path / cfg.data.path, index=False)
        assessment = monitoring.assess(cfg, tmp_path)
        if data is late:
            assert (len(assessment.scores), assessment.pending) == (0, 1)
        else:
            assert (len(assessment.scores), assessment.pending) == (1, 0)
            scores = assessment.scores
    assert monitoring.assess(cfg, tmp_path).scores == scores
    expected = np.abs(
        full["y"].iloc[HISTORY : HISTORY + HORIZON].to_numpy()
        - full["y"].iloc[HISTORY - SEASON : HISTORY - SEASON + HORIZON].to_numpy()
    ).mean()
    assert scores[0].mae == pytest.approx(expected)


def test_a_deleted_version_is_named_and_skipped(store: str, tmp_path: Path) -> None:
    """A ledger forecast whose version was deleted stays in the ledger, unscored, and is named."""
    cfg = setup(tmp_path, "mon-gone")
    full = series(HISTORY + NIGHT)
    version = champion(tmp_path, "mon-gone", full.iloc[:HISTORY])
    night(cfg, tmp_path, full.iloc[:HISTORY])
    MlflowClient().delete_model_version("mon-gone", version)
    full.to_csv(tmp_path / cfg.data.path, index=False)
    assessment = monitoring.assess(cfg, tmp_path)
    assert assessment.scores == [] and assessment.champion is None
    assert assessment.skipped == [
        f"v{version} was deleted from the registry: its 1 ledger forecast(s) are kept but not "
        "scored"
    ]


def test_seqcast_forecast_records_the_champion_once(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`seqcast forecast` of the champion lands in the ledger; the same history again does not."""
    from seqcast.cli import main

    cfg = setup(tmp_path, "mon-cli")
    full = series(HISTORY)
    version = champion(tmp_path, "mon-cli", full)
    full.to_csv(tmp_path / "history.csv", index=False)
    argv = ["forecast", "--input", str(tmp_path / "history.csv")]
    argv += ["--params", str(tmp_path / "params.yaml")]
    assert main(argv) == 0 and main(argv) == 0
    err = capsys.readouterr().err
    assert f"v{version} from {full['timestamp'].iloc[-1]} recorded in the forecast ledger" in err
    assert "already in the forecast ledger" in err
    (entry,) = ledger.entries(cfg, tmp_path)
    assert entry.source == "forecast" and list(entry.table["step"]) == list(range(1, 7))
    assert {"lower_80", "upper_80", "lower_95", "upper_95"} <= set(entry.table.columns)
    assert main([*argv, "--no-ledger"]) == 0 and "ledger" not in capsys.readouterr().err


def test_serve_records_each_origin_once_when_the_setting_says_so(
    store: str, tmp_path: Path
) -> None:
    """monitoring.ledger_on_serve: two requests with the same history, one ledger forecast."""
    import json

    from seqcast.cli import _ledger_on_serve
    from seqcast.operations import server

    cfg = setup(tmp_path, "mon-serve")
    full = series(HISTORY)
    champion(tmp_path, "mon-serve", full)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["monitoring"]["ledger_on_serve"] = True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    uri = "models:/mon-serve@champion"
    checked = server.CheckedModel(
        mlflow.pyfunc.load_model(uri), _ledger_on_serve(tmp_path / "params.yaml", uri)
    )
    recent = full.tail(2 * SEASON)
    body = json.dumps({"dataframe_split": recent.to_dict(orient="split", index=False)})
    for _ in range(2):
        assert server.score(body.encode(), "application/json", checked).status_code == 200
    checked.on_forecast.wait()  # recorded off the request path
    (entry,) = ledger.entries(cfg, tmp_path)
    assert entry.source == "serve" and entry.origin == pd.Timestamp(full["timestamp"].iloc[-1])


def test_the_pipeline_flow_ends_in_alarm_retrains_and_says_why(
    store: str, tmp_path: Path, prefect_api: str
) -> None:
    """The shifted night through the real flow: state Alarm, an alarm artifact, dvc repro run."""
    from dvc.repo import Repo
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from test_pipeline_flow import drain_prefect

    from pipelines.pipeline import ALARM_KEY, ALARM_STATE, seqcast_pipeline

    cfg = setup(tmp_path, "mon-flow")
    full = series(HISTORY + 5 * NIGHT, shift_at=HISTORY + 4 * NIGHT)
    champion(tmp_path, "mon-flow", full.iloc[:HISTORY])
    replay(cfg, tmp_path, full, 5)  # quiet nights through the library: no alarm yet
    full.to_csv(tmp_path / cfg.data.path, index=False)  # night 5: the shifted rows
    stage = {"cmd": "echo retrained > retrained.txt", "deps": [cfg.data.path]}
    stage["outs"] = [{"retrained.txt": {"cache": False}}]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"retrain": stage}}))
    Repo.init(str(tmp_path), no_scm=True).close()
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        state = seqcast_pipeline(root=str(tmp_path), return_state=True)
        drain_prefect()
        with get_client(sync_client=True) as client:
            run = state.state_details.flow_run_id
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run]))
            )
            tags = client.read_flow_run(run).tags
    assert state.is_completed() and state.name == ALARM_STATE, state
    assert "drift alarm" in state.message and (tmp_path / "retrained.txt").is_file()
    keys = {a.key: a for a in artifacts}
    assert {"seqcast-report", ALARM_KEY} <= set(keys)
    assert "retrain: drift alarm (dvc repro)" in keys["seqcast-report"].data
    assert "- stages run: `retrain`" in keys["seqcast-report"].data
    assert set(tags) == {"retrain:drift-alarm", "alarm:drift", "champion:v1"}


def test_served_bands_learn_from_the_live_errors_and_misses(store: str, tmp_path: Path) -> None:
    """After a shift the pipeline's forecasts miss: the next refit's bands read higher levels.

    Only the pipeline's own scored forecasts count; a `serve` record is not one of them.
    """
    from seqcast.evaluation import intervals
    from seqcast.operations import refit

    cfg = setup(tmp_path, "mon-live")
    full = series(HISTORY + 6 * NIGHT, shift_at=HISTORY + 2 * NIGHT)
    champion(tmp_path, "mon-live", full.iloc[:HISTORY])
    replay(cfg, tmp_path, full, 6)
    assert record(cfg, tmp_path, full, HISTORY + 5 * NIGHT - 3, "serve", bias=50.0)
    live = monitoring.live_record(cfg, tmp_path, ["y"], HORIZON, [80.0, 95.0])
    # Nights 0..4 are scored (night 5's actuals are not in yet); the serve record is not read.
    assert live is not None and live.errors.shape == (5, HORIZON, 1)
    assert live.versions == ["1"] * 5
    assert live.misses[0].tolist() == [0.0, 0.0] and live.misses[2].min() == 1.0
    levels = intervals.adaptive_levels(live.misses, [80.0, 95.0], 0.05)
    assert levels[0] > 80.0 and levels[1] > 95.0
    served = ledger.load_version("mon-live", "1")
    backtest = np.zeros((600, HORIZON, 1))
    calibration, found = refit.with_live_errors(cfg, tmp_path, served, backtest)
    # All 600 backtest errors and the 5 live ones fit in the served window (2000).
    assert found is not None and len(calibration) == 605 <= cfg.intervals.served_window
    np.testing.assert_array_equal(calibration[-5:], live.errors)
    assert (calibration[:-5] == 0.0).all()


def test_no_ledger_leaves_the_backtest_calibration_as_it_is(store: str, tmp_path: Path) -> None:
    from seqcast.operations import refit

    cfg = setup(tmp_path, "mon-no-ledger")
    cfg = cfg.model_copy(
        update={"tracking": cfg.tracking.model_copy(update={"experiment": "never-served"})}
    )
    served = Forecaster(
        name="naive", spec=InputSpec(2, HORIZON, 1, 1, 1, 0), timestamp="timestamp",
        columns=["y"], frequency="h", offset=np.zeros(1), scale=np.ones(1), levels=[80.0],
    )  # fmt: skip
    errors = np.ones((20, HORIZON, 1))
    assert refit.with_live_errors(cfg, tmp_path, served, errors) == (errors, None)
