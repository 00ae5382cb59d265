"""Hyperparameter search: Optuna's TPE sampler and median pruner, trials fanned out on Ray.

The objective of a trial is the rolling-origin backtest mean of `promotion.metric` for its
settings, computed by the backtest stage's own code (seqcast.evaluation.backtest) on the window
stage's outputs. The Optuna study lives in memory in one Ray actor; each trial is a Ray task
(one CPU) that reports every epoch's validation loss to it, at step fit * epochs + epoch, and
stops when the pruner says so. The driver alone writes to MLflow (one parent run, a nested run
per trial) and to tune/, so the trials need no access to the store or the checkout: the same
trials run on a Ray cluster when RAY_ADDRESS is set.

Not a DVC stage: which settings a search tries depends on timing (parallel trials, pruning,
the time budget), so its result is not a reproducible function of params. Its output is the
overrides (`tune/best.yaml`) that `seqcast tune-apply` runs as a DVC experiment, which is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqcast.core import parallel
from seqcast.core.config import Config, FloatRange, IntRange, SearchConfig, parse_config
from seqcast.core.errors import ConfigError, SeqcastError

if TYPE_CHECKING:
    from seqcast.core.config import SearchSpace

OUT = Path("tune")
BEST = "best.yaml"
COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"
# Where each searched setting lives in params.yaml ({kind}: the trial's network kind).
KEYS = {
    "input_width": "window.input_width",
    "units": "models.{kind}.units",
    "layers": "models.{kind}.layers",
    "dropout": "models.{kind}.dropout",
    "recurrent_dropout": "models.{kind}.recurrent_dropout",
    "learning_rate": "train.learning_rate",
    "batch_size": "train.batch_size",
}
KIND = "model"  # the setting that picks the network kind when search.models lists several

Report = Callable[[int, float], bool]  # (step, validation loss) -> prune now?
Objective = Callable[[Config, dict, str, Report], float]


class SearchError(SeqcastError):
    """The search cannot start, or no trial completed."""


class TrialPruned(Exception):  # noqa: N818 (Optuna's name for the same thing)
    """Raised inside a trial's fit when the pruner stops it."""


def overrides(settings: dict[str, Any], kind: str) -> dict[str, Any]:
    """A trial's settings as dotted params.yaml keys (the `dvc exp run -S` form)."""
    return {KEYS[name].format(kind=kind): value for name, value in settings.items() if name in KEYS}


def apply(cfg: Config, changes: dict[str, Any]) -> Config:
    """The config with dotted keys replaced; a value the config refuses names its key."""
    raw = cfg.model_dump(mode="json")
    for key, value in changes.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return parse_config(raw, "search")


def with_input_width(loaded: dict, input_width: int) -> dict:
    """The window stage's outputs read with another input width (origins and series unchanged)."""
    import dataclasses

    meta = dict(loaded["meta"])
    spec = dataclasses.replace(loaded["spec"], input_width=input_width)
    meta["spec"] = dict(meta["spec"], input_width=input_width)
    # As the window stage computes it: the network's history, or the longest baseline season's.
    meta["context"] = max(spec.context, *meta["seasons"], 1)
    return dict(loaded, meta=meta, spec=spec)


def epoch_reports(epochs: int, report: Report):
    """A Keras callback reporting each epoch's val_loss at step fit * epochs + epoch."""
    import keras

    class EpochReports(keras.callbacks.Callback):
        """One instance serves every fold's fit: it counts the fits."""

        fits = -1

        def on_train_begin(self, logs=None) -> None:
            self.fits += 1

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            loss = float((logs or {}).get("val_loss", math.nan))
            if math.isfinite(loss) and report(self.fits * epochs + epoch, loss):
                raise TrialPruned(f"pruned after epoch {epoch + 1} of fit {self.fits + 1}")

    return EpochReports()


def backtest_objective(cfg: Config, loaded: dict, kind: str, report: Report | None = None) -> float:
    """The backtest mean of promotion.metric for these settings: the backtest stage's code."""
    from seqcast.models import training

    training.use_backend(cfg.train.backend)
    from seqcast.data.windowing import check_history, layout
    from seqcast.evaluation import backtest
    from seqcast.evaluation.scores import units_of

    loaded = with_input_width(loaded, cfg.window.input_width)
    folds = layout(loaded["meta"]["rows"], cfg)
    check_history(folds, cfg, loaded["meta"]["context"], loaded["meta"]["rows"])
    callbacks = [epoch_reports(cfg.train.epochs, report)] if report else None
    result = backtest.run(
        kind, folds, loaded, cfg, backtest.network_predictor(kind, cfg, callbacks)
    )
    scores = backtest.score(
        {kind: result}, folds, units_of(loaded), loaded["spec"], loaded["meta"]["mase_season"]
    )
    return scores.means(cfg.promotion.metric)[kind]


def current(cfg: Config) -> dict[str, Any] | None:
    """params.yaml's own settings as a first trial, when every one lies in the space."""
    kind = cfg.search.models[0]
    values = {
        "input_width": cfg.window.input_width,
        "learning_rate": cfg.train.learning_rate,
        "batch_size": cfg.train.batch_size,
        **cfg.models.get(kind).model_dump(),
    }
    start: dict[str, Any] = {KIND: kind} if len(cfg.search.models) > 1 else {}
    for name, dim in cfg.search.space.dimensions().items():
        value = values[name]
        inside = value in dim if isinstance(dim, list) else dim.low <= value <= dim.high
        if not inside:
            return None
        start[name] = value
    return start


def suggest(trial, name: str, dimension: list | IntRange | FloatRange) -> Any:
    """Ask Optuna's trial for one setting from its list or range."""
    if isinstance(dimension, list):
        return trial.suggest_categorical(name, dimension)
    if isinstance(dimension, IntRange):
        return trial.suggest_int(name, dimension.low, dimension.high, log=dimension.log)
    return trial.suggest_float(name, dimension.low, dimension.high, log=dimension.log)


class StudyHost:
    """The in-memory Optuna study, held by one Ray actor that the trials report to."""

    def __init__(
        self, search: SearchConfig, warmup_steps: int, start: dict[str, Any] | None = None
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = search.space.dimensions()
        self.models = list(search.models)
        # constant_liar: parallel trials asked before the earlier ones end are kept apart.
        sampler = optuna.samplers.TPESampler(seed=search.seed, constant_liar=True)
        pruner = (
            optuna.pruners.MedianPruner(
                n_startup_trials=search.startup_trials, n_warmup_steps=warmup_steps
            )
            if search.pruner == "median"
            else optuna.pruners.NopPruner()
        )
        self.study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
        if start:  # trial 0: the settings params.yaml holds, the yardstick of the search
            self.study.enqueue_trial(start)
        self.running: dict[int, Any] = {}

    def ask(self) -> tuple[int, str, dict[str, Any]]:
        """A new trial: its number, network kind and settings."""
        trial = self.study.ask()
        kind = trial.suggest_categorical(KIND, self.models) if len(self.models) > 1 else None
        settings = {name: suggest(trial, name, dim) for name, dim in self.space.items()}
        self.running[trial.number] = trial
        return trial.number, kind or self.models[0], settings

    def report(self, number: int, step: int, value: float) -> bool:
        """Record one epoch's validation loss; True when the trial should stop."""
        trial = self.running[number]
        trial.report(value, step)
        return trial.should_prune()

    def tell(self, number: int, state: str, value: float | None) -> dict[int, float]:
        """End a trial as complete, pruned or failed; its reported losses by step."""
        from optuna.trial import TrialState

        states = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, FAILED: TrialState.FAIL}
        self.running.pop(number, None)
        self.study.tell(number, value if state == COMPLETE else None, state=states[state])
        return dict(self.study.trials[number].intermediate_values)


def run_trial(objective: Objective, cfg: Config, loaded: dict, kind: str, number: int, host):
    """One trial in a Ray worker: the objective, each epoch reported to the study's actor."""
    import ray

    def report(step: int, value: float) -> bool:
        return ray.get(host.report.remote(number, step, value))

    one_thread(cfg)

    started = time.perf_counter()
    try:
        value = float(objective(cfg, loaded, kind, report))
    except TrialPruned as stop:
        return {"state": PRUNED, "seconds": time.perf_counter() - started, "error": str(stop)}
    if not math.isfinite(value):
        raise ValueError(f"the objective is {value}")
    return {"state": COMPLETE, "value": value, "seconds": time.perf_counter() - started}


def one_thread(cfg: Config) -> None:
    """TensorFlow on the one CPU Ray gave the trial, not one thread per core of the machine."""
    # Two trials on two cores each with a pool per core would oversubscribe them.
    if cfg.train.backend != "tensorflow":
        return
    from seqcast.models import training

    training.use_backend(cfg.train.backend)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # this worker's TensorFlow already runs: set by its first trial
        pass


@dataclass
class Trial:
    """What the driver knows of one trial once it ended."""

    number: int
    kind: str
    settings: dict[str, Any]
    state: str
    value: float | None = None
    seconds: float = 0.0
    error: str = ""
    losses: dict[int, float] = field(default_factory=dict)

    def row(self, names: list[str]) -> dict[str, Any]:
        """One line of trials.csv."""
        return {
            "trial": self.number,
            "state": self.state,
            "model": self.kind,
            **{n: self.settings.get(n) for n in names},
            "objective": self.value,
            "seconds": round(self.seconds, 3),
            "epochs_reported": len(self.losses),
            "error": self.error,
        }


def check_address(address: str, timeout: float = 5.0) -> None:
    """Refuse an unreachable RAY_ADDRESS in one line, before anything runs."""
    parallel.check_address(address, timeout, error=SearchError)


def connect(search: SearchConfig) -> str:
    """ray.init on RAY_ADDRESS's cluster, else a local Ray with search.cpus or every CPU."""
    return parallel.connect(search.cpus, error=SearchError)


def load_windows(cfg: Config, root: Path) -> dict:
    """The window stage's outputs, with a clear line when they are missing."""
    from seqcast.core import paths
    from seqcast.data.windowing import load_windows as load

    if not (root / paths.WINDOWS / "meta.json").is_file():
        raise SearchError(
            f"{root / paths.WINDOWS}: the window stage's outputs are missing; run "
            "`dvc repro window` first (`make tune` does)"
        )
    loaded = load(root)
    # Plain arrays: Ray's object store shares them with every trial on a node without copies.
    return dict(
        loaded, series=np.asarray(loaded["series"]), calendar=np.asarray(loaded["calendar"])
    )


def check(cfg: Config) -> None:
    """What the search needs beyond a valid config."""
    if cfg.backtest.origins < 1:
        raise ConfigError(
            "backtest.origins: the search's objective is the backtest mean; set it to 1 or more"
        )


def search(
    cfg: Config,
    root: Path,
    objective: Objective = backtest_objective,
    say: Callable[[str], None] = print,
) -> dict:
    """Run the search; log it to MLflow, write tune/, and return the best trial's summary."""
    import ray

    from seqcast.models import tracking

    check(cfg)
    s = cfg.search
    loaded = load_windows(cfg, root)
    say(f"search: {connect(s)}; {s.trials} trials, {s.parallel} at a time, models {s.models}")
    try:
        started = time.perf_counter()
        host = ray.remote(num_cpus=0)(StudyHost).remote(s, cfg.train.patience, current(cfg))
        task = ray.remote(num_cpus=1, max_retries=0)(run_trial)
        shared = ray.put(loaded)
        experiment_id = tracking.setup(f"{cfg.tracking.experiment}-search", root)
        trials, parent = _drive(cfg, objective, host, task, shared, experiment_id, root, say)
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    return _finish(cfg, trials, seconds, root, parent, say)


def _drive(cfg, objective, host, task, shared, experiment_id, root, say) -> tuple[list, str]:
    """Keep search.parallel trials running until the budget is spent; log each as it ends."""
    import mlflow
    import ray

    from seqcast.models import tracking

    s = cfg.search
    deadline = time.monotonic() + 60 * s.timeout_minutes if s.timeout_minutes else math.inf
    meta = shared_meta(cfg, root)
    metric = f"bt_{cfg.promotion.metric}"
    pending: dict[Any, tuple[int, str, dict]] = {}
    done: list[Trial] = []
    asked = 0
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=tracking.run_name("search"), tags=meta
    ) as parent:
        mlflow.log_params(_search_params(cfg))
        while pending or (asked < s.trials and time.monotonic() < deadline):
            while len(pending) < s.parallel and asked < s.trials and time.monotonic() < deadline:
                number, kind, settings = ray.get(host.ask.remote())
                asked += 1
                try:
                    trial_cfg = apply(cfg, overrides(settings, kind))
                except ConfigError as err:
                    done.append(_end(host, Trial(number, kind, settings, FAILED, error=str(err))))
                    _log_trial(done[-1], meta, experiment_id, metric, say)
                    continue
                ref = task.remote(objective, trial_cfg, shared, kind, number, host)
                pending[ref] = (number, kind, settings)
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                number, kind, settings = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as err:  # raised, or the worker died (kill -9)
                    out = {"state": FAILED, "error": _one_line(err)}
                trial = Trial(number, kind, settings, out["state"], out.get("value"))
                trial.seconds, trial.error = out.get("seconds", 0.0), out.get("error", "")
                done.append(_end(host, trial))
                _log_trial(trial, meta, experiment_id, metric, say)
        done.sort(key=lambda t: t.number)
        _log_parent(parent.info.run_id, cfg, done)
        if best_of(done) is None:
            mlflow.end_run("FAILED")
    return done, parent.info.run_id


def _end(host, trial: Trial) -> Trial:
    """Tell the study how the trial ended; keep its reported losses."""
    import ray

    trial.losses = ray.get(host.tell.remote(trial.number, trial.state, trial.value))
    return trial


def _one_line(err: BaseException) -> str:
    """A Ray error's cause in one line: the exception a trial raised, or how its worker died."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def shared_meta(cfg: Config, root: Path) -> dict[str, str]:
    """Tags of the parent and every trial run: code, data, where it ran."""
    from seqcast.core.io import read_json
    from seqcast.models import tracking

    meta = read_json(root / "data" / "windows" / "meta.json")
    return tracking.run_tags(meta["raw_md5"], meta["windows_md5"], root)


def _search_params(cfg: Config) -> dict[str, str]:
    """The search's own settings and the base values the trials start from, for MLflow."""
    from seqcast.core.config import flatten

    out = {f"search.{k}": str(v) for k, v in cfg.search.model_dump(mode="json").items()}
    out["search.space"] = str(cfg.search.space.model_dump(mode="json", exclude_none=True))
    return out | {f"base.{k}": v for k, v in flatten(cfg).items()}


def _log_trial(trial: Trial, tags: dict[str, str], experiment_id: str, metric: str, say) -> None:
    """A nested MLflow run for the trial, and one progress line."""
    import mlflow

    status = {COMPLETE: "FINISHED", PRUNED: "KILLED", FAILED: "FAILED"}[trial.state]
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"trial {trial.number}", nested=True, tags=tags
    ) as run:
        mlflow.set_tags(
            {
                "seqcast.trial_state": trial.state,
                "seqcast.trial_number": str(trial.number),
                "seqcast.kind": trial.kind,
            }
            | ({"seqcast.trial_error": trial.error[:5000]} if trial.error else {})
        )
        mlflow.log_params(overrides(trial.settings, trial.kind) | {KIND: trial.kind})
        if trial.value is not None:
            mlflow.log_metric(metric, trial.value)
        mlflow.log_metric("trial_seconds", trial.seconds)
        for step, loss in sorted(trial.losses.items()):
            mlflow.log_metric("val_loss", loss, step=int(step))
        mlflow.end_run(status)
    value = f"{metric} {trial.value:.4f}" if trial.value is not None else trial.state
    detail = f" ({trial.error})" if trial.error and trial.state == FAILED else ""
    say(
        f"trial {trial.number} {trial.kind} {_settings_text(trial.settings)}: {value}, "
        f"{trial.seconds:.0f} s{detail} [{run.info.run_id}]"
    )


def _settings_text(settings: dict[str, Any]) -> str:
    """Settings as name=value, floats to 4 significant digits."""
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()
    )


def best_of(trials: list[Trial]) -> Trial | None:
    """The complete trial with the lowest objective (the earliest on a tie)."""
    complete = [t for t in trials if t.state == COMPLETE]
    return min(complete, key=lambda t: (t.value, t.number)) if complete else None


def _log_parent(run_id: str, cfg: Config, trials: list[Trial]) -> None:
    """The parent run's counts, best objective and settings."""
    import mlflow

    counts = {state: sum(t.state == state for t in trials) for state in (COMPLETE, PRUNED, FAILED)}
    mlflow.log_metrics({f"trials_{k}": v for k, v in counts.items()}, run_id=run_id)
    best = best_of(trials)
    if best is not None:
        mlflow.log_metric(f"best_bt_{cfg.promotion.metric}", float(best.value), run_id=run_id)
        mlflow.set_tag("seqcast.best_trial", str(best.number))


def _finish(cfg: Config, trials: list[Trial], seconds: float, root: Path, parent: str, say) -> dict:
    """Write tune/ (best.yaml, trials.csv, the two plots) and attach them to the parent run."""
    import mlflow

    from seqcast.core.io import atomic_dir

    best = best_of(trials)
    counts = {state: sum(t.state == state for t in trials) for state in (COMPLETE, PRUNED, FAILED)}
    if best is None:
        raise SearchError(
            f"search: no trial completed ({counts[PRUNED]} pruned, {counts[FAILED]} failed); "
            "tune/ is left as it was. The failed trials' errors are in MLflow (tag "
            "seqcast.trial_error) and above"
        )
    start = current(cfg)
    first = trials[0] if trials and start is not None and trials[0].number == 0 else None
    baseline = first.value if first is not None and first.state == COMPLETE else None
    summary = {
        "metric": cfg.promotion.metric,
        "objective": float(best.value),
        "trial": best.number,
        "model": best.kind,
        "overrides": overrides(best.settings, best.kind),
        # Trial 0 ran params.yaml's own settings (when they lie in the space): the yardstick.
        "params_yaml_objective": baseline,
        "improvement": None if not baseline else round(1.0 - float(best.value) / baseline, 4),
        "trials": counts,
        "seconds": round(seconds, 1),
        "mlflow_run_id": parent,
        "trials_per_minute": round(len(trials) / (seconds / 60.0), 3) if seconds else None,
    }
    names = list(cfg.search.space.dimensions())
    with atomic_dir(root / OUT) as out:
        write_best(out / BEST, summary)
        write_trials(out / "trials.csv", trials, names)
        plot_objective(out / "objective.png", trials, cfg.promotion.metric)
        plot_effects(out / "effects.png", trials, cfg.search.space, cfg.promotion.metric)
    mlflow.log_artifacts(str(root / OUT), "search", run_id=parent)
    than = f" (params.yaml's settings, trial 0: {baseline:.4f})" if baseline else ""
    say(
        f"search: best trial {best.number} ({best.kind}) {cfg.promotion.metric} "
        f"{best.value:.4f}{than}; {counts[COMPLETE]} complete, {counts[PRUNED]} pruned, "
        f"{counts[FAILED]} failed in {seconds:.0f} s; apply with `make tune-apply`"
    )
    return summary


def write_best(path: Path, summary: dict) -> None:
    """best.yaml: the best trial's overrides and what it scored."""
    import yaml

    head = (
        "# The best trial of `make tune`: apply with `make tune-apply` (dvc exp run -S key=value "
        "for each override).\n"
    )
    path.write_text(head + yaml.safe_dump(summary, sort_keys=False))


def write_trials(path: Path, trials: list[Trial], names: list[str]) -> None:
    """trials.csv: one row per trial, in trial order."""
    import pandas as pd

    pd.DataFrame([t.row(names) for t in trials]).to_csv(path, index=False)


def plot_objective(path: Path, trials: list[Trial], metric: str) -> None:
    """The objective by trial, the best so far as a step line, pruned and failed trials marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    complete = [t for t in trials if t.state == COMPLETE]
    ax.plot([t.number for t in complete], [t.value for t in complete], "o", label="complete")
    best, running = [], math.inf
    for t in complete:
        running = min(running, float(t.value))
        best.append(running)
    ax.step([t.number for t in complete], best, where="post", label="best so far")
    top = max((t.value for t in complete), default=1.0)
    for state, marker in ((PRUNED, "x"), (FAILED, "v")):
        shown = [t.number for t in trials if t.state == state]
        if shown:
            ax.plot(shown, [top] * len(shown), marker, linestyle="", label=state)
    ax.set(xlabel="trial", ylabel=f"backtest mean {metric}", title="Search: objective by trial")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_effects(path: Path, trials: list[Trial], space: SearchSpace, metric: str) -> None:
    """One panel per searched setting: each complete trial's objective against its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = space.dimensions()
    complete = [t for t in trials if t.state == COMPLETE]
    names = list(dims) + ([KIND] if len({t.kind for t in trials}) > 1 else [])
    columns = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / columns) or 1
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        values = [t.kind if name == KIND else t.settings[name] for t in complete]
        dim = dims.get(name)
        if isinstance(dim, list) or name == KIND:
            labels = [str(v) for v in (dim if isinstance(dim, list) else sorted(set(values)))]
            x = [labels.index(str(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels)
        else:
            x = values
            if dim is not None and dim.log:
                ax.set_xscale("log")
                # Minor ticks' labels overlap over a narrow log range: keep the major ones.
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.plot(x, [t.value for t in complete], "o", alpha=0.7)
        ax.set(xlabel=name, ylabel=metric)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(f"Search: each setting's effect on the backtest mean {metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_best(root: Path) -> dict:
    """tune/best.yaml, with a clear line when no search has written it."""
    import yaml

    path = root / OUT / BEST
    if not path.is_file():
        raise SearchError(f"{path}: not found; run `make tune` first")
    return yaml.safe_load(path.read_text())


def apply_command(root: Path, extra: list[str] | None = None) -> list[str]:
    """`dvc exp run -S key=value ...` for the best trial's overrides."""
    import sys

    best = read_best(root)
    command = [sys.executable, "-m", "dvc", "exp", "run", *(extra or [])]
    for key, value in best["overrides"].items():
        command += ["-S", f"{key}={value}"]
    return command
