"""Rolling-origin backtest: folds before the test split, each refit on its own history only.

Fold k forecasts the block of rows [cutoff_k, cutoff_k + step); the last block ends where the
test split starts, so the test windows stay a holdout. A fold that refits fits its scaler, its
reference (on an inner validation tail of its history), the linear rival and the networks on rows
[start, cutoff) only; a fold that does not refit forecasts its block with the previous fold's
model, reading the newer history as a served model would. Every model forecasts the same block
windows, as origins over the one series (cf. Darts' historical_forecasts, sktime's evaluate).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqcast.data import baselines, features
from seqcast.data.scaling import affine, fit_scaler, to_scaled, to_units
from seqcast.data.windowing import (
    Fold,
    block_origins,
    check_history,
    fold_origins,
    layout,
    val_share,
)
from seqcast.models import metrics
from seqcast.models.metrics import diebold_mariano

if TYPE_CHECKING:
    from seqcast.core.config import Config
    from seqcast.data.features import InputSpec

FORECASTS = "forecasts.npz"
FOLDS = "folds.json"
SIMPLE = "simple"  # role of naive and seasonal-naive baselines
HEADLINE = ("mae", "rmse", "mase", "smape")


@dataclass
class FoldFit:
    """A fold's fitted preprocessing: scaler, reference, and the series scaled with it."""

    fold: Fold
    spec: InputSpec
    offset: np.ndarray
    scale: np.ndarray
    series: np.ndarray
    calendar: np.ndarray  # the one calendar array: nothing to fit, nothing copied
    fit: np.ndarray
    val: np.ndarray
    reference: dict


def prepare(fold: Fold, units: np.ndarray, cal: np.ndarray, meta: dict, cfg: Config) -> FoldFit:
    """Scaler and reference fit on the fold's history alone; fit and early-stopping origins."""
    base = features.InputSpec(**meta["spec"])
    w, n = cfg.window, base.n_targets
    offset, scale = affine(
        fit_scaler(units[fold.start : fold.cutoff], cfg.scaling.scaler), units.shape[1]
    )
    series = to_scaled(units, offset, scale)
    share = val_share(cfg, meta.get("rows"))
    inner = fold.start + int(round((fold.cutoff - fold.start) * (1.0 - share)))
    seasons = fold_seasons(fold, inner, units[:, :n], meta, cfg)
    reference, season = cfg.features.reference, cfg.reference_season
    choice: dict = {}
    if reference == "auto":
        provisional = fold_origins(
            fold, max(w.input_width, *seasons, 1), w.horizon, w.shift, w.stride, share
        )
        fits, _ = baselines.affordable_references(
            seasons, inner - fold.start, w.input_width, w.horizon, w.shift
        )
        reference, season, choice = baselines.choose_reference(
            series[:, :n], provisional["val"], fits, w.horizon, w.shift
        )
    seasonal = reference == "seasonal_naive"
    spec = dataclasses.replace(base, reference=reference, season=season if seasonal else None)
    found = fold_origins(fold, spec.context, w.horizon, w.shift, w.stride, share)
    return FoldFit(
        fold, spec, offset, scale, series, cal, found["fit"], found["val"],
        {
            "reference": reference, "season": season if seasonal else None,
            "seasons": seasons, "val_mae_scaled": choice,
        },
    )  # fmt: skip


def fold_seasons(fold: Fold, inner: int, targets: np.ndarray, meta: dict, cfg: Config) -> list[int]:
    """The seasons a fold may use: the frequency's, plus those its own history shows.

    The window stage detects seasons on the whole training split, which holds later folds'
    blocks; a fold detects them again on its inner training rows and judges them on its inner
    validation rows, as the window stage does on the splits, so no later row picks its reference.
    """
    from seqcast.data import seasonality

    detected = meta.get("season_detection")
    if detected is None:  # seasons listed in params: nothing was learnt from the data
        return list(meta["seasons"])
    w = cfg.window
    defaults = [s for s in meta["seasons"] if s in detected["defaults"]]
    history = inner - fold.start
    detection = seasonality.detect(targets[fold.start : inner], defaults)
    new = [s for s in detection.found if s not in defaults]
    usable, unusable = baselines.applicable_seasons(new, history, w.input_width, w.horizon, w.shift)
    context = max(w.input_width, *defaults, *usable, 1)
    share = val_share(cfg, meta.get("rows"))
    val = fold_origins(fold, context, w.horizon, w.shift, w.stride, share)["val"]
    if not new or len(val) == 0:
        return sorted(defaults)
    *_, val_mae = baselines.choose_reference(
        targets, val, sorted(defaults + usable), w.horizon, w.shift
    )
    seasonality.judge(
        detection, val_mae, {int(k.rsplit("_", 1)[1]): why for k, why in unusable.items()}
    )
    return sorted(defaults + detection.kept)


Predictor = Callable[[FoldFit], tuple[Any, dict]]


@dataclass
class Backtest:
    """One model's forecasts of every block window, in units, and what each fold fit."""

    name: str
    origins: np.ndarray  # (windows,) sorted
    fold: np.ndarray  # (windows,) the fold index of each window
    forecast: np.ndarray  # (windows, horizon, targets)
    folds: list[dict]

    def save(self, folder: Path) -> None:
        """forecasts.npz and folds.json in a folder (which the caller makes atomic)."""
        from seqcast.core.io import write_json

        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / FORECASTS, origins=self.origins, fold=self.fold, forecast=self.forecast)
        write_json(folder / FOLDS, {"name": self.name, "folds": self.folds})

    @classmethod
    def load(cls, folder: Path) -> Backtest:
        """Read what save() wrote."""
        from seqcast.core.io import read_json

        info = read_json(folder / FOLDS)
        with np.load(folder / FORECASTS) as data:
            return cls(info["name"], data["origins"], data["fold"], data["forecast"], info["folds"])


def run(
    name: str,
    folds: list[Fold],
    loaded: dict,
    cfg: Config,
    fit_predictor: Predictor,
    on_fold: Callable[[str], None] | None = None,
) -> Backtest:
    """Forecast every fold's block, refitting preprocessing and predictor where the fold says."""
    from seqcast.evaluation.scores import units_of
    from seqcast.models.forecaster import forecaster_for

    units, cal = units_of(loaded), np.asarray(loaded["calendar"])
    w, n = cfg.window, loaded["spec"].n_targets
    parts, info, current, forecaster = [], [], None, None
    for fold in folds:
        started = time.perf_counter()
        if fold.refit or current is None:
            current = prepare(fold, units, cal, loaded["meta"], cfg)
            predictor, fitted = fit_predictor(current)
            forecaster = dataclasses.replace(
                forecaster_for(name, loaded, predictor=predictor, spec=current.spec),
                offset=current.offset,
                scale=current.scale,
            )
        else:
            fitted = {"refit": False}
        block = block_origins(fold, w.horizon, w.shift, w.stride)
        scaled = forecaster.predict_scaled(current.series, cal, block)
        parts.append((block, to_units(scaled, current.offset[:n], current.scale[:n])))
        entry = {
            "fold": fold.index,
            "start": fold.start,
            "cutoff": fold.cutoff,
            "end": fold.end,
            "refit": fold.refit,
            "fit_from": current.fold.start,
            "fit_to": current.fold.cutoff,
            "windows": int(len(block)),
            "reference": current.reference["reference"],
            "season": current.reference["season"],
            "seasons": current.reference["seasons"],
            "seconds": round(time.perf_counter() - started, 3),
        } | fitted
        info.append(entry)
        if on_fold:
            on_fold(
                f"fold {fold.index + 1}/{len(folds)}: history rows {current.fold.start}-"
                f"{current.fold.cutoff - 1}{'' if fold.refit else ' (not refit)'}, "
                f"{len(block)} windows forecast ({entry['seconds']:.1f} s)"
            )
    origins = np.concatenate([b for b, _ in parts]) if parts else np.empty(0, np.int64)
    fold_of = (
        np.concatenate([np.full(len(b), k) for k, (b, _) in enumerate(parts)]) if parts else origins
    )
    forecast = np.concatenate([f for _, f in parts]) if parts else np.empty((0, w.horizon, n))
    return Backtest(name, origins, fold_of.astype(np.int64), forecast, info)


def linear_predictor(alpha: float) -> Predictor:
    """The linear rival refit on a fold: Ridge on the fold's own training windows."""

    def fit(data: FoldFit) -> tuple[Any, dict]:
        from seqcast.models import networks

        rival = networks.fit_linear_rival(_as_loaded(data), alpha)
        return rival, {"fit_windows": int(len(data.fit[-networks.LINEAR_MAX_WINDOWS :]))}

    return fit


def statistical_predictor(name: str) -> Predictor:
    """A statistical rival refit on a fold's whole history; a failed fit forecasts NaN there."""

    def fit(data: FoldFit) -> tuple[Any, dict]:
        from seqcast.models import statistical

        n = data.spec.n_targets
        units = to_units(data.series[:, :n], data.offset[:n], data.scale[:n])
        started = time.perf_counter()
        try:
            rival = statistical.fit(
                name, units[: data.fold.cutoff], data.reference["seasons"], start=data.fold.start
            )
        except statistical.RivalFailed as err:
            return statistical.FailedRival(name, str(err)), {"failed": str(err)}
        return rival, {
            "fit_rows": rival.fit_rows,
            "rival_season": rival.season,
            "season_note": rival.season_note,
            "models": [statistical.describe(f, name) for f in rival.fits],
            "fit_seconds": round(time.perf_counter() - started, 3),
        }

    return fit


def network_predictor(kind: str, cfg: Config, callbacks: list | None = None) -> Predictor:
    """A network refit on a fold as the train stage fits it, early-stopped on the fold's tail.

    Every fold starts from a new model's weights, but folds whose inputs have the same shapes
    share one compiled model: its traced train, test and predict steps (XLA-compiled by default)
    are reused instead of being traced again at each origin, which cost seconds per fold. A fold
    whose reference, seasons or calendar inputs differ gets (and keeps) a compiled model of its own.
    """
    compiled: dict[tuple, Any] = {}

    def fit(data: FoldFit) -> tuple[Any, dict]:
        import keras

        from seqcast.models import networks, training

        keras.utils.set_random_seed(cfg.train.seed)
        model = networks.build(kind, data.spec, cfg.models.get(kind))
        shapes = input_shapes(data.spec)
        reuse = shapes in compiled
        if reuse:
            training.copy_state(model, compiled[shapes])
            model = compiled[shapes]
        networks.start_from_linear(
            model, networks.fit_linear_rival(_as_loaded(data), cfg.baselines.linear_alpha)
        )
        result = training.fit(
            model, data.spec, data.series, data.calendar, data.fit, data.val, cfg.train,
            callbacks=callbacks, recompile=not reuse,
        )  # fmt: skip
        compiled[shapes] = model
        return model, {
            "fit_windows": int(len(data.fit)),
            "val_windows": int(len(data.val)),
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "best_val_loss": float(min(result.history["val_loss"])),
            "fit_seconds": round(result.seconds, 3),
            "compiled_reused": reuse,
        }

    return fit


def input_shapes(spec: InputSpec) -> tuple[int, ...]:
    """What fixes a network's variable and input shapes: the same tuple, the same network."""
    return (spec.input_width, spec.past_width, spec.horizon, spec.future_width, spec.n_targets)


def _as_loaded(data: FoldFit) -> dict:
    """The fold as the dict fit_linear_rival reads (spec, series, calendar, train origins)."""
    return {
        "spec": data.spec,
        "series": data.series,
        "calendar": data.calendar,
        "origins": {"train": data.fit},
    }


def simple_kind(name: str) -> tuple[str, int | None]:
    """'naive' -> ('naive', None); 'seasonal_naive_48' -> ('seasonal_naive', 48)."""
    return ("naive", None) if name == "naive" else ("seasonal_naive", int(name.rsplit("_", 1)[1]))


def simple_forecast(
    name: str, targets: np.ndarray, origins: np.ndarray, horizon: int, shift: int
) -> np.ndarray:
    """A naive or seasonal_naive_<season> baseline's forecasts (origins, horizon, targets)."""
    kind, season = simple_kind(name)
    return baselines.reference(targets, origins, kind, season, horizon, shift)


def simple_origins(name: str, rows: int, horizon: int, shift: int) -> np.ndarray:
    """Every origin a simple baseline can forecast: enough history read, a whole horizon after."""
    first = baselines.history_needed(*simple_kind(name)) - 1
    return np.arange(first, rows - shift - horizon + 1)


def simple_errors(name: str, targets: np.ndarray, horizon: int, shift: int) -> np.ndarray:
    """A simple baseline's absolute errors at every origin of the series it can forecast.

    It fits nothing, so each is out-of-sample: from the first origin with the history it reads
    to the last with a whole horizon, (origins, horizon, targets).
    """
    every = simple_origins(name, len(targets), horizon, shift)
    point = simple_forecast(name, targets, every, horizon, shift)
    actual = targets[every[:, None] + shift + np.arange(horizon)[None, :]]
    return np.abs(actual - point)


def simple(name: str, folds: list[Fold], loaded: dict, cfg: Config) -> Backtest:
    """A naive or seasonal-naive baseline over the blocks: nothing to fit, read off the series."""
    from seqcast.evaluation.scores import units_of

    spec, w = loaded["spec"], cfg.window
    targets = units_of(loaded)[:, : spec.n_targets]
    blocks = [block_origins(fold, w.horizon, w.shift, w.stride) for fold in folds]
    forecast = [simple_forecast(name, targets, b, w.horizon, w.shift) for b in blocks]
    return Backtest(
        name,
        np.concatenate(blocks) if blocks else np.empty(0, np.int64),
        np.concatenate([np.full(len(b), f.index) for b, f in zip(blocks, folds, strict=True)])
        if blocks
        else np.empty(0, np.int64),
        np.concatenate(forecast) if forecast else np.empty((0, w.horizon, spec.n_targets)),
        [
            {"fold": f.index, "cutoff": f.cutoff, "end": f.end, "windows": int(len(b))}
            for f, b in zip(folds, blocks, strict=True)
        ],
    )


@dataclass
class FoldScores:
    """Every model's scores per fold and its per-window losses, on the same block windows."""

    folds: list[Fold]
    per_fold: dict[str, list[dict]]  # model -> one dict of metrics per fold
    losses: dict[str, np.ndarray]  # model -> MASE-scaled absolute error per window

    def series(self, metric: str) -> dict[str, np.ndarray]:
        """model -> the metric at each origin."""
        return {m: np.array([f[metric] for f in fs]) for m, fs in self.per_fold.items()}

    def means(self, metric: str) -> dict[str, float]:
        """model -> the metric's mean over the origins it was scored on (a failed fold is NaN)."""
        return {
            m: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
            for m, v in self.series(metric).items()
        }

    def scored_origins(self, metric: str) -> dict[str, int]:
        """model -> on how many origins it was scored (a rival that failed a fold is not)."""
        return {m: int(np.isfinite(v).sum()) for m, v in self.series(metric).items()}


def score(
    results: dict[str, Backtest],
    folds: list[Fold],
    units: np.ndarray,
    spec: InputSpec,
    mase_season: int,
) -> FoldScores:
    """Score each model's blocks against the actuals; MASE scaled by each fold's own history."""
    n = spec.n_targets
    first = next(iter(results.values()))
    for name, bt in results.items():
        if not np.array_equal(bt.origins, first.origins):
            raise ValueError(f"backtest of {name} forecast other windows than {first.name}'s")
    actual = features.targets(spec, units, first.origins)
    per_fold: dict[str, list[dict]] = {name: [] for name in results}
    losses = {name: np.empty(len(first.origins)) for name in results}
    for fold in folds:
        mask = first.fold == fold.index
        scale = metrics.seasonal_naive_scale(units[fold.start : fold.cutoff, :n], mase_season)
        for name, bt in results.items():
            scores = metrics.score(actual[mask], bt.forecast[mask], scale)
            entry = {k: float(np.mean(scores[k])) for k in HEADLINE}
            entry["mae_step"] = np.mean(scores["mae_per_step"], axis=1).tolist()
            per_fold[name].append(entry)
            losses[name][mask] = np.mean(
                np.abs(actual[mask] - bt.forecast[mask]) / scale, axis=(1, 2)
            )
    return FoldScores(folds, per_fold, losses)


def decide(
    scores: FoldScores,
    roles: dict[str, str],
    metric: str,
    min_wins: float,
    horizon: int,
    rule: str = "paired_test",
    significance: float = 0.05,
) -> dict:
    """The candidate: best mean over origins, served only if it is shown to beat the baseline.

    roles maps each model to network, linear or simple. A network or the linear rival with the
    best mean is the candidate only if, by `rule`, it beats the best simple baseline: a paired
    Diebold-Mariano test over every backtest window (one-sided p below `significance`), more
    than `min_wins` of the origins, or its mean alone; otherwise that baseline is.
    """
    per_origin = scores.series(metric)
    means = scores.means(metric)
    spread = {
        m: float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0
        for m, v in per_origin.items()
    }
    k = len(scores.folds)
    scored = scores.scored_origins(metric)
    # A model not scored on every origin (a rival that failed a fold) is reported, never chosen:
    # its mean is over other windows than the rest's.
    partial = [m for m in means if scored[m] < k]
    simple_models = [m for m, r in roles.items() if r == SIMPLE]
    best_simple = min(simple_models, key=means.get)
    ranked = sorted((m for m in means if m not in partial), key=means.get) + partial
    best = ranked[0]
    wins = {m: int(np.sum(per_origin[m] < per_origin[best_simple])) for m in means}
    needed = math.floor(min_wins * k) + 1
    paired = (
        diebold_mariano(scores.losses[best], scores.losses[best_simple], horizon)
        if best != best_simple
        else {}
    )
    reasons = [
        f"best mean {metric} over {k} origin(s): {best} ({means[best]:.6g}, spread "
        f"{spread[best]:.3g}); best simple baseline: {best_simple} ({means[best_simple]:.6g})"
    ] + [
        f"{m} was scored on {scored[m]} of {k} origins (it failed on the others): reported, "
        "not eligible"
        for m in partial
    ]
    if not partial:
        reasons.append(f"every one of the {len(means)} models was scored on all {k} origin(s)")
    if roles[best] == SIMPLE:
        candidate = best
        reasons.append(f"a simple baseline has the best mean: {best} is the candidate")
    elif rule == "mean":
        candidate = best
        reasons.append(f"{best} has the best mean (backtest.rule: mean)")
    elif rule == "min_wins":
        ok = wins[best] >= needed
        candidate = best if ok else best_simple
        reasons.append(
            f"{best} beats {best_simple} on {wins[best]} of {k} origins ({needed} needed, "
            f"backtest.min_wins {min_wins:g})"
            + ("" if ok else f": the candidate falls back to {best_simple}")
        )
    else:
        p = paired["p_a_better"]
        ok = bool(p < significance)
        candidate = best if ok else best_simple
        reasons.append(
            f"paired test over all {paired['windows']} backtest windows (Diebold-Mariano, HAC "
            f"to lag {horizon - 1}): {best} beats {best_simple} with one-sided p = {p:.3g}, "
            + (
                f"below backtest.significance {significance:g}: {best} is the candidate"
                if ok
                else f"not below backtest.significance {significance:g}: {best_simple} is not "
                f"shown to be worse, so the candidate falls back to it"
            )
        )
    return {
        "candidate": candidate,
        "role": roles[candidate],
        "metric": metric,
        "rule": rule,
        "significance": significance,
        "origins": k,
        "scored_origins": scored,
        "means": means,
        "spread": spread,
        "wins_over_best_simple": wins,
        "wins_needed": needed,
        "best": best,
        "best_simple": best_simple,
        "ranking": ranked,
        "paired_test": {"models": [best, best_simple], **paired},
        "reasons": reasons,
    }


def backtest(cfg: Config, root: Path, kind: str) -> dict:
    """The backtest stage of one network: a refit per fold, every block forecast, one write."""
    from seqcast.core import paths
    from seqcast.core.io import atomic_dir
    from seqcast.data.windowing import load_windows
    from seqcast.models import training

    paths.refuse_panel(root)
    training.use_backend(cfg.train.backend)
    loaded = load_windows(root)
    folds = layout(loaded["meta"]["rows"], cfg)
    check_history(folds, cfg, loaded["meta"]["context"], loaded["meta"]["rows"])

    def say(message: str) -> None:
        print(f"backtest-{kind}: {message}", flush=True)

    say(
        f"{len(folds)} origins, {sum(f.refit for f in folds)} refits"
        if folds
        else "off (backtest.origins: 0)"
    )
    result = run(kind, folds, loaded, cfg, network_predictor(kind, cfg), on_fold=say)
    with atomic_dir(root / paths.BACKTEST / kind) as out:
        result.save(out)
    return {"folds": result.folds}
