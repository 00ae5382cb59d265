"""The promotion gate against a real MLflow registry in a temporary SQLite store."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from filelock import FileLock
from mlflow import MlflowClient

from seqcast.core.config import parse_config
from seqcast.data import windowing
from seqcast.data.features import InputSpec
from seqcast.models import serving, tracking
from seqcast.models.forecaster import Forecaster
from seqcast.registry import registry

HORIZON, WIDTH, SEASON = 3, 8, 24
SIZES = {"train": 200, "val": 40, "test": 60}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (its migrations are slow); each test its own model name."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    experiment = tracking.setup("seqcast", root)
    yield experiment
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


def naive(input_width: int = WIDTH, horizon: int = HORIZON) -> Forecaster:
    """The last value repeated: a Forecaster whose test metrics are easy to compute by hand."""
    spec = InputSpec(
        input_width=input_width,
        horizon=horizon,
        shift=1,
        n_targets=1,
        n_values=1,
        n_calendar=0,
        reference="naive",
    )
    return Forecaster(
        name="naive",
        spec=spec,
        timestamp="timestamp",
        columns=["y"],
        frequency="h",
        offset=np.array([100.0]),
        scale=np.array([10.0]),
    )


def make_cfg(
    name: str, margin: float = 0.0, metric: str = "mase", from_experiments: str = "challenger"
):
    """A valid config naming this test's registered model."""
    return parse_config(
        {
            "data": {"path": "data/raw/x.csv", "targets": ["y"], "frequency": "h"},
            "window": {"input_width": WIDTH, "horizon": HORIZON},
            "evaluation": {"mase_season": SEASON},
            "tracking": {"experiment": "seqcast", "registered_model": name},
            "promotion": {
                "metric": metric,
                "margin": margin,
                "from_experiments": from_experiments,
            },
        }
    )


class Lab:
    """A repository root with windows, logged models and runs.json, as evaluate leaves them."""

    def __init__(self, root: Path, experiment: str) -> None:
        self.root, self.experiment = root, experiment
        self.count = 0

    def windows(self, seed: int) -> np.ndarray:
        """Write data/windows for a seasonal hourly series; return the series in units."""
        rng = np.random.default_rng(seed)
        n = sum(SIZES.values())
        t = np.arange(n)
        units = 100 + 10 * np.sin(2 * np.pi * t / SEASON) + rng.normal(0, 2, n)
        units = units[:, None]
        offset, scale = np.array([100.0]), np.array([10.0])
        spec = naive().spec
        from seqcast.data.scaling import split_bounds

        found = windowing.origins(split_bounds(SIZES), spec.context, HORIZON)
        out = self.root / "data" / "windows"
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "series.npy", (units - offset) / scale)
        times = pd.date_range("2024-01-01", periods=n, freq="h")
        np.save(out / "times.npy", times.to_numpy(dtype="datetime64[ns]"))
        np.savez(out / "origins.npz", **found)
        meta = {
            "spec": spec.__dict__ | {"calendar_names": []},
            "context": spec.context,
            "columns": ["y"],
            "frequency": "h",
            "timestamp": "timestamp",
            "rows": SIZES,
            "mase_season": SEASON,
            "offset": offset.tolist(),
            "scale": scale.tolist(),
        }
        (out / "meta.json").write_text(json.dumps(meta))
        return units

    def log(self, forecaster: Forecaster) -> dict:
        """Log a Forecaster in its own (nested) run; return run_id and model_uri."""
        self.count += 1
        folder = self.root / "models" / f"m{self.count}"
        forecaster.save(folder)
        with mlflow.start_run(experiment_id=self.experiment, nested=True) as run:
            mlflow.set_tag("seqcast.git_commit", f"commit{self.count:04d}")
            history = pd.DataFrame(
                {
                    "timestamp": pd.date_range(
                        "2024-01-01", periods=forecaster.min_history, freq="h"
                    ),
                    "y": 100.0,
                }
            )
            info = serving.log_forecaster(folder, input_example=history)
        return {"run_id": run.info.run_id, "model_uri": info.model_uri}

    def evaluation(
        self,
        scores: dict[str, float],
        baseline: float = 1.0,
        data_md5: str = "md5-a",
        test_id: str = "test-a",
        models: dict[str, Forecaster] | None = None,
        val: dict[str, float] | None = None,
        fingerprints: dict[str, str] | None = None,
    ) -> dict:
        """runs.json with one network per entry of scores (every metric = that score).

        Validation scores default to the test ones; each logged model has a fingerprint of its
        own unless `fingerprints` says otherwise.
        """
        val = val or scores
        with mlflow.start_run(experiment_id=self.experiment) as parent:
            mlflow.set_tags({"seqcast.git_commit": "commit0001", "seqcast.origin": "checkout"})
            networks = {}
            for kind, score in scores.items():
                logged = self.log((models or {}).get(kind, naive()))
                networks[kind] = logged | {
                    "metrics": {m: score for m in registry.METRICS},
                    "val_metrics": {m: val[kind] for m in registry.METRICS},
                    "fingerprint": (fingerprints or {}).get(kind, f"fp-{logged['model_uri']}"),
                }
            fallback = self.log(naive()) | {"fingerprint": "fp-seasonal-naive"}
        runs = {
            "parent_run_id": parent.info.run_id,
            "experiment_id": self.experiment,
            "data_md5": data_md5,
            "test_id": test_id,
            "networks": networks,
            "baselines": {
                "naive": {
                    "metrics": {m: baseline * 1.5 for m in registry.METRICS},
                    "val_metrics": {m: baseline * 1.5 for m in registry.METRICS},
                },
                "seasonal_naive_24": fallback
                | {
                    "metrics": {m: baseline for m in registry.METRICS},
                    "val_metrics": {m: baseline for m in registry.METRICS},
                },
            },
            "best_baseline": "seasonal_naive_24",
            "fallback": "seasonal_naive_24",
            "backtest_id": f"bt-{test_id}",
        }
        # As evaluate decides on the backtest; here the validation scores stand in for its means.
        best = min(networks, key=lambda k: val[k])
        fallback = val[best] >= baseline
        runs["candidate"] = {
            "candidate": "seasonal_naive_24" if fallback else best,
            "role": "simple" if fallback else "network",
            "metric": "mase",
            "reasons": [
                "no network beats seasonal_naive_24: the candidate falls back to it"
                if fallback
                else f"{best} has the best backtest mean"
            ],
        }
        (self.root / "evaluation").mkdir(exist_ok=True)
        (self.root / "evaluation" / "runs.json").write_text(json.dumps(runs))
        return runs


@pytest.fixture
def lab(store: str, tmp_path: Path) -> Lab:
    """A fresh repository root sharing the module's store."""
    made = Lab(tmp_path, store)
    made.windows(seed=1)
    return made


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A registered model name of this test's own."""
    return "fc-" + request.node.name.replace("[", "-").replace("]", "")


def aliases(name: str) -> dict[str, str]:
    """Alias -> version as the registry holds them."""
    return {k: str(v) for k, v in MlflowClient().get_registered_model(name).aliases.items()}


def test_first_promotion_registers_tags_and_records(lab: Lab, name: str) -> None:
    plots = lab.root / "evaluation" / "plots"
    plots.mkdir(parents=True)
    (plots / "forecast.png").write_bytes(b"\x89PNG\r\n")
    runs = lab.evaluation({"gru": 0.5, "lstm": 0.6})

    decision = registry.promote(make_cfg(name), lab.root)

    assert decision["promoted"] and decision["outcome"] == "promoted"
    assert decision["candidate"]["kind"] == "gru" and not decision["fallback"]
    assert aliases(name) == {"champion": decision["candidate"]["version"]}
    client = MlflowClient()
    (held,) = client.search_model_versions(f"name = '{name}'")  # the candidate only
    assert held.version == int(decision["candidate"]["version"])
    assert held.tags["seqcast.kind"] == "gru" and held.tags["seqcast.role"] == "network"
    assert held.tags["seqcast.data_md5"] == "md5-a"
    assert held.tags["seqcast.test_id"] == "test-a"
    assert held.tags["seqcast.git_commit"] == "commit0001"
    assert held.tags["seqcast.fingerprint"] == runs["networks"]["gru"]["fingerprint"]
    assert float(held.tags["seqcast.metric.mase"]) == 0.5
    assert "GRU" in held.description and "\n" not in held.description
    assert client.get_registered_model(name).description.startswith(
        "seqcast forecaster of y (one row every h): the next 3 steps and their conformal bands"
    )
    written = json.loads((lab.root / "metrics" / "promotion.json").read_text())
    assert written == {"promoted": 1.0, "fallback": 0.0}
    report = (lab.root / "reports" / "report" / "report.md").read_text()
    assert "| best baseline |" in report and "](plots/forecast.png)" in report
    assert (lab.root / "reports" / "report" / "plots" / "forecast.png").is_file()
    assert decision["summary"] in report
    recorded = json.loads((lab.root / "reports" / "report" / "decision.json").read_text())
    assert recorded["summary"] == decision["summary"]
    parent = client.get_run(runs["parent_run_id"])
    assert parent.data.tags["seqcast.promotion.outcome"] == "promoted"
    version = decision["candidate"]["version"]
    assert parent.data.tags["seqcast.promotion.registered_version"] == version
    assert parent.data.tags["seqcast.promotion.registered_kind"] == "gru"
    assert parent.data.tags["seqcast.promotion.champion_before"] == "none"
    assert parent.data.tags["seqcast.promotion.champion_after"] == version
    # The MLflow UI shows this note as the run's description: the decision in one paragraph.
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith(f"**v{version} (gru) promoted to champion.** Candidate: **gru**")
    assert f"Served model (`champion`): **v{version} (gru)**. Promoted: **yes**" in note
    assert "Best simple baseline: **" + runs["best_baseline"] + "**" in note
    assert parent.data.params["promotion.metric"] == "mase"
    assert parent.data.metrics["promotion.candidate_score"] == 0.5
    logged = {a.path for a in client.list_artifacts(runs["parent_run_id"], "report")}
    assert {"report/report.md", "report/decision.json", "report/plots"} <= logged


def test_worse_candidate_becomes_challenger_better_one_champion(lab: Lab, name: str) -> None:
    cfg = make_cfg(name)
    lab.evaluation({"gru": 0.5, "lstm": 0.6})
    first = registry.promote(cfg, lab.root)["candidate"]["version"]

    lab.evaluation({"gru": 0.7, "lstm": 0.55})
    worse = registry.promote(cfg, lab.root)
    assert not worse["promoted"] and worse["outcome"] == "challenger"
    assert worse["candidate"]["kind"] == "lstm"
    note = MlflowClient().get_run(worse["parent_run_id"]).data.tags["mlflow.note.content"]
    assert f"Served model (`champion`): **v{first} (gru)**. Promoted: **no**" in note
    assert worse["champion"]["score"] == 0.5 and not worse["champion"]["rescored"]
    assert aliases(name) == {"champion": first, "challenger": worse["candidate"]["version"]}

    lab.evaluation({"gru": 0.4, "lstm": 0.45})
    better = registry.promote(cfg, lab.root)
    assert better["promoted"]
    assert aliases(name)["champion"] == better["candidate"]["version"]
    # Aliases move; every earlier version stays: one per distinct candidate.
    versions = MlflowClient().search_model_versions(f"name = '{name}'")
    assert len(versions) == 3


def test_margin_is_honoured(lab: Lab, name: str) -> None:
    lab.evaluation({"gru": 1.0 / 1.5})  # best baseline 1.0 beaten
    registry.promote(make_cfg(name, margin=0.1), lab.root)
    champion = aliases(name)["champion"]

    lab.evaluation({"gru": 0.95 / 1.5})  # 5 % better: within the 10 % margin
    within = registry.promote(make_cfg(name, margin=0.1), lab.root)
    assert not within["promoted"] and within["threshold"] == pytest.approx(0.6)
    assert aliases(name)["champion"] == champion

    lab.evaluation({"gru": 0.85 / 1.5})  # 15 % better
    beyond = registry.promote(make_cfg(name, margin=0.1), lab.root)
    assert beyond["promoted"]
    assert aliases(name)["champion"] == beyond["candidate"]["version"]


def test_networks_that_lose_to_the_baseline_fall_back_to_it(lab: Lab, name: str) -> None:
    runs = lab.evaluation({"gru": 1.2, "lstm": 1.1}, baseline=1.0)

    decision = registry.promote(make_cfg(name), lab.root)

    assert decision["fallback"] and decision["candidate"]["kind"] == "seasonal_naive_24"
    assert decision["candidate"]["role"] == "baseline"
    assert decision["candidate"]["model_uri"] == runs["baselines"]["seasonal_naive_24"]["model_uri"]
    assert decision["promoted"] and aliases(name) == {"champion": decision["candidate"]["version"]}
    assert any("falls back to" in reason for reason in decision["reasons"])
    held = MlflowClient().get_model_version(name, decision["candidate"]["version"])
    assert held.tags["seqcast.role"] == "baseline"
    written = json.loads((lab.root / "metrics" / "promotion.json").read_text())
    assert written["fallback"] == 1.0


def test_promote_takes_the_candidate_evaluate_chose_scored_by_its_backtest(
    lab: Lab, name: str
) -> None:
    # The decision is evaluate's (on the backtest); promote gates it, never re-decides on test.
    lab.evaluation({"gru": 0.4, "lstm": 0.5}, val={"gru": 0.7, "lstm": 0.6})

    decision = registry.promote(make_cfg(name), lab.root)

    assert decision["candidate"]["kind"] == "lstm"
    assert decision["candidate"]["score"] == 0.6 and decision["candidate"]["test_score"] == 0.5


def test_the_served_refit_is_registered_with_its_rows(lab: Lab, name: str) -> None:
    runs = lab.evaluation({"gru": 0.5})
    served = lab.log(naive())
    refit = {
        "candidate": "gru", "role": "network", "all_rows": True, "rows": 300,
        "first_row": "2024-01-01 00:00:00", "last_row": "2024-01-13 11:00:00",
        "fingerprint": "fp-refit",
    } | served  # fmt: skip
    (lab.root / "models" / "served").mkdir(parents=True)
    (lab.root / "models" / "served" / "refit.json").write_text(json.dumps(refit))

    decision = registry.promote(make_cfg(name), lab.root)

    assert decision["candidate"]["model_uri"] == served["model_uri"]
    assert decision["candidate"]["model_uri"] != runs["networks"]["gru"]["model_uri"]
    held = MlflowClient().get_model_version(name, decision["candidate"]["version"])
    assert held.tags["seqcast.fit_last_row"] == "2024-01-13 11:00:00"
    assert held.tags["seqcast.backtest_id"] == "bt-test-a"
    assert float(held.tags["seqcast.backtest.mase"]) == 0.5
    assert "fit on rows 2024-01-01 00:00:00 .. 2024-01-13 11:00:00" in held.description
    assert any("served as refit on rows" in r for r in decision["reasons"])


def test_identical_model_is_not_registered_again(lab: Lab, name: str) -> None:
    cfg = make_cfg(name)
    lab.evaluation({"gru": 0.5}, fingerprints={"gru": "same-weights"})
    first = registry.promote(cfg, lab.root)["candidate"]["version"]

    # Evaluated again (a new logged model, a new run), but the same weights.
    lab.evaluation({"gru": 0.5}, fingerprints={"gru": "same-weights"})
    again = registry.promote(cfg, lab.root)

    assert again["candidate"]["version"] == first and again["outcome"] == "unchanged"
    assert len(MlflowClient().search_model_versions(f"name = '{name}'")) == 1


@pytest.mark.parametrize(
    ("policy", "outcome", "expected"),
    [("challenger", "challenger", {"challenger"}), ("none", "recorded", set())],
)
def test_an_experiment_never_moves_the_champion_by_default(
    lab: Lab, name: str, monkeypatch: pytest.MonkeyPatch, policy: str, outcome: str, expected: set
) -> None:
    lab.evaluation({"gru": 0.5})
    champion = registry.promote(make_cfg(name), lab.root)["candidate"]["version"]
    monkeypatch.setenv("DVC_EXP_NAME", "tight-bass")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0" * 40)
    lab.evaluation({"gru": 0.1})  # far better, but from an experiment

    decision = registry.promote(make_cfg(name, from_experiments=policy), lab.root)

    assert decision["outcome"] == outcome and not decision["promoted"]
    assert aliases(name)["champion"] == champion
    assert set(aliases(name)) - {"champion"} == expected
    assert decision["origin"]["promoted_by_exp"] == "tight-bass"
    assert any("DVC experiment tight-bass" in reason for reason in decision["reasons"])


def test_experiments_may_promote_when_the_setting_says_so(
    lab: Lab, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "tight-bass")
    lab.evaluation({"gru": 0.5})

    decision = registry.promote(make_cfg(name, from_experiments="champion"), lab.root)

    assert decision["promoted"]


def test_a_version_that_cannot_serve_is_never_champion(lab: Lab, name: str) -> None:
    import shutil

    cfg = make_cfg(name)
    lab.evaluation({"gru": 0.5})
    champion = registry.promote(cfg, lab.root)["candidate"]["version"]
    runs = lab.evaluation({"gru": 0.2})
    # The better model's files vanish from the artifact store (moved away, disk trouble).
    logged = MlflowClient().get_logged_model(
        runs["networks"]["gru"]["model_uri"].removeprefix("models:/")
    )
    shutil.rmtree(logged.artifact_location.removeprefix("file://"))

    with pytest.raises(registry.NotServable, match="cannot serve"):
        registry.promote(cfg, lab.root)

    assert aliases(name) == {"champion": champion}


def test_champion_from_other_data_is_rescored_on_new_test_windows(lab: Lab, name: str) -> None:
    cfg = make_cfg(name)
    # The champion looked excellent on its own (old) windows.
    lab.evaluation({"gru": 0.01}, data_md5="md5-old", test_id="test-old")
    champion = registry.promote(cfg, lab.root)["candidate"]["version"]

    units = lab.windows(seed=2)
    lab.evaluation({"gru": 0.3, "lstm": 0.35}, data_md5="md5-new", test_id="test-new")
    decision = registry.promote(cfg, lab.root)

    # By hand: naive forecast = value at the origin; MASE scale from the training rows.
    with np.load(lab.root / "data" / "windows" / "origins.npz") as found:
        test = found["test"]
    errors = [abs(units[o + k, 0] - units[o, 0]) for o in test for k in range(1, HORIZON + 1)]
    train = units[: SIZES["train"], 0]
    expected = np.mean(errors) / np.mean(np.abs(train[SEASON:] - train[:-SEASON]))
    held = decision["champion"]
    assert held["version"] == champion and held["rescored"] and decision["champion_rescored"]
    assert held["recorded_score"] == 0.01
    assert held["score"] == pytest.approx(expected, rel=1e-12)
    # Promoted only because the re-scored value, not the recorded 0.01, is compared.
    assert decision["promoted"] and expected > 0.3
    report = (lab.root / "reports" / "report" / "report.md").read_text()
    assert f"champion v{champion} | champion (re-scored)" in report
    assert any("re-scored" in reason for reason in decision["reasons"])


@pytest.mark.parametrize(
    ("champion_model", "why"),
    [
        (naive(horizon=HORIZON + 2), "horizon"),
        (naive(input_width=250), "rows of history"),
    ],
    ids=["horizon", "history"],
)
def test_incomparable_champion_is_replaced_and_said_so(
    lab: Lab, name: str, champion_model: Forecaster, why: str
) -> None:
    cfg = make_cfg(name)
    lab.evaluation({"gru": 0.01}, test_id="test-old", models={"gru": champion_model})
    registry.promote(cfg, lab.root)

    lab.evaluation({"gru": 0.5}, test_id="test-new")
    decision = registry.promote(cfg, lab.root)

    assert decision["promoted"]
    assert not decision["champion"]["comparable"]
    assert why in decision["champion"]["why_not_comparable"]
    assert any("not comparable" in reason for reason in decision["reasons"])


def test_failure_leaves_aliases_untouched(
    lab: Lab, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_cfg(name)
    lab.evaluation({"gru": 0.5})
    registry.promote(cfg, lab.root)
    lab.evaluation({"gru": 0.6})
    registry.promote(cfg, lab.root)  # a challenger too
    before = aliases(name)
    written = (lab.root / "metrics" / "promotion.json").read_text()
    report = (lab.root / "reports" / "report" / "report.md").read_text()

    def broken(*args: object) -> None:
        raise RuntimeError("tracking server went away")

    monkeypatch.setattr(registry, "_log_to_run", broken)
    lab.evaluation({"gru": 0.1})
    with pytest.raises(RuntimeError, match="went away"):
        registry.promote(cfg, lab.root)

    assert aliases(name) == before
    assert (lab.root / "metrics" / "promotion.json").read_text() == written
    assert (lab.root / "reports" / "report" / "report.md").read_text() == report


def test_rerun_reuses_versions(lab: Lab, name: str) -> None:
    cfg = make_cfg(name)
    lab.evaluation({"gru": 0.5, "lstm": 0.6})
    first = registry.promote(cfg, lab.root)

    again = registry.promote(cfg, lab.root)

    assert again["candidate"]["version"] == first["candidate"]["version"]
    assert again["outcome"] == "unchanged" and not again["promoted"]
    assert aliases(name) == {"champion": first["candidate"]["version"]}


def test_champion_is_read_after_the_lock(lab: Lab, name: str) -> None:
    cfg = make_cfg(name)
    lab.evaluation({"gru": 0.5})
    registry.promote(cfg, lab.root)
    # A rival promotion that finishes while ours waits for the lock, with a better model.
    rival = lab.evaluation({"gru": 0.2})["networks"]["gru"]
    rival_version = registry.register(
        rival["model_uri"],
        name,
        {"seqcast.test_id": "test-a", "seqcast.data_md5": "md5-a", "seqcast.metric.mase": 0.2},
        "rival",
    ).version
    lab.evaluation({"gru": 0.4})
    result: dict = {}

    def ours() -> None:
        try:
            result["decision"] = registry.promote(cfg, lab.root)
        except Exception as err:  # surfaced by the asserts below
            result["error"] = err

    with FileLock(str(lab.root / registry.LOCK)):
        worker = threading.Thread(target=ours)
        worker.start()
        deadline = time.monotonic() + 60
        while len(MlflowClient().search_model_versions(f"name = '{name}'")) < 3:
            assert worker.is_alive() and time.monotonic() < deadline, result
            time.sleep(0.05)
        time.sleep(0.5)
        assert worker.is_alive(), result  # registered, now waiting on the lock
        MlflowClient().set_registered_model_alias(name, "champion", rival_version)
    worker.join(timeout=60)

    assert "error" not in result, result
    decision = result["decision"]
    assert decision["champion"]["version"] == str(rival_version)
    assert not decision["promoted"] and decision["outcome"] == "challenger"
    assert aliases(name)["champion"] == str(rival_version)


def promote_refit_champion(lab: Lab, cfg, last_seen: int, score: float) -> str:
    """A champion served as a refit on rows 0..last_seen (refit.json), promoted; its version."""
    times = pd.date_range("2024-01-01", periods=sum(SIZES.values()), freq="h")
    lab.evaluation({"gru": score})
    served = lab.log(naive())
    refit = {
        "candidate": "gru", "role": "network", "rows": last_seen + 1,
        "first_row": str(times[0]), "last_row": str(times[last_seen]), "fingerprint": "fp-old",
    } | served  # fmt: skip
    (lab.root / "models" / "served").mkdir(parents=True)
    (lab.root / "models" / "served" / "refit.json").write_text(json.dumps(refit))
    champion = registry.promote(cfg, lab.root)["candidate"]["version"]
    (lab.root / "models" / "served" / "refit.json").unlink()
    return champion


def test_a_refit_champion_is_compared_on_rows_it_never_saw(lab: Lab, name: str) -> None:
    """New rows since the champion's fit: both models on the windows after its last row."""
    cfg = make_cfg(name)
    last_seen = SIZES["train"] + SIZES["val"] - 1
    champion = promote_refit_champion(lab, cfg, last_seen, 0.5)

    # New data: other folds; the candidate's out-of-sample forecasts are perfect.
    lab.evaluation({"gru": 0.9}, test_id="test-b")
    units = np.load(lab.root / "data" / "windows" / "series.npy") * 10.0 + 100.0
    with np.load(lab.root / "data" / "windows" / "origins.npz") as found:
        origins = np.concatenate([found["val"], found["test"]])
    actual = np.stack([units[origins + k] for k in range(1, HORIZON + 1)], axis=1)
    np.savez(lab.root / "evaluation" / "oos.npz", origins=origins, gru=actual)
    decision = registry.promote(cfg, lab.root)

    held = decision["champion"]
    assert held["version"] == champion and held["rescored"]
    assert "windows after the champion's last training row" in held["basis"]
    # Only windows whose forecast rows all come after row 239: the test windows.
    assert held["basis"].startswith(f"{len(origins[origins + 1 > last_seen])} windows")
    assert held["candidate_score"] == 0.0 and held["score"] > 0.0
    assert decision["promoted"]


def test_means_of_other_folds_never_replace_the_champion(lab: Lab, name: str) -> None:
    """Fit on every row, the champion leaves no window unseen: no paired test, so it stays."""
    cfg = make_cfg(name)
    champion = promote_refit_champion(lab, cfg, sum(SIZES.values()) - 1, 0.9)

    # Other folds; the candidate's recorded backtest mean is far lower, yet on other windows.
    lab.evaluation({"gru": 0.5}, test_id="test-b")
    with np.load(lab.root / "data" / "windows" / "origins.npz") as found:
        origins = np.concatenate([found["val"], found["test"]])
    np.savez(lab.root / "evaluation" / "oos.npz", origins=origins, gru=np.zeros((len(origins), 1)))
    decision = registry.promote(cfg, lab.root)
    held = decision["champion"]
    assert held["version"] == champion and held["other_windows"]
    assert "recorded backtest means of other folds" in held["basis"]
    assert not decision["promoted"] and aliases(name)["champion"] == champion
    assert any("the champion stays" in r for r in decision["reasons"])
