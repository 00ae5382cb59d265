"""Statistical rivals from statsforecast (AutoETS, AutoTheta; AutoARIMA opt-in), one per target.

A rival is fit once on the same training rows as the networks; its parameters then stay fixed
and its states are filtered through the real history up to each origin, as statsforecast's
`forward` does, so every window is forecast from the same origin as the networks'. AutoETS's
states are filtered in one pass over the series and every origin's forecast read off its state
(the same numbers as `forward` on each prefix, thousands of times cheaper). AutoTheta's seasonal
indices are re-estimated from the history up to each origin, as `forward` does: they are its
seasonal state (seqcast.models.theta).
Features and calendar inputs are ignored: each target is forecast from its own history.

A served rival (seqcast.operations.refit) keeps the series it was evaluated on, from its first
fit row, so a request's few rows extend that series rather than restart the filter from the fit's
initial state (with a small AutoETS alpha, or AutoTheta's trend line and seasonal indices of the
whole series, the states a short history reaches are not the ones the evaluation scored); see
Forecaster.forecast_checked.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqcast.core.config import STATISTICAL_MODELS as NAMES
from seqcast.models import theta

# statsforecast's AutoETS refuses seasons longer than this (its state space grows with them).
ETS_MAX_SEASON = 24
ROLE = "statistical"
# Distinct requests a served rival remembers the answer of: each recomputes the season test,
# decomposition and states over the whole kept series (O(n), tens of ms for 40,000 rows), and
# repeated requests (clients polling the latest forecast) read the same rows.
SERVED_CACHE = 64
# Keyed weakly by the rival (identity, hence eq=False below): the answers go when it does.
_SERVED: weakref.WeakKeyDictionary[Any, OrderedDict] = weakref.WeakKeyDictionary()
_SERVED_LOCK = threading.Lock()


class RivalFailed(ValueError):
    """A rival that cannot be fit or forecast on these rows; the message says why."""


@dataclass(eq=False)
class StatisticalRival:
    """A fitted statsforecast model per target, forecasting in the series' units."""

    name: str
    season: int
    season_note: str
    fits: list[dict[str, Any]]  # per target: the fitted model (statsforecast's `model_`)
    fit_rows: int
    # Row of the series given to forecast_targets that the filter starts at (the first fit row).
    start: int = 0
    notes: list[str] = field(default_factory=list)
    # The served rival's series (keep_history): the targets in units from the first fit row to
    # the last row the refit saw, (rows, targets) float64, and their times as int64 nanoseconds
    # (UTC when tz-aware). None (evaluation's rivals, models saved before): a request's rows are
    # filtered from the fit's initial state.
    history: np.ndarray | None = None
    history_times: np.ndarray | None = None

    def forecast_targets(
        self, targets: np.ndarray, origins: np.ndarray, horizon: int, shift: int = 1
    ) -> np.ndarray:
        """Forecasts (origins, horizon, targets) in units; states filtered up to each origin."""
        origins = np.asarray(origins, dtype=np.int64) - self.start
        if len(origins) and origins.min() < 0:
            raise RivalFailed(f"{self.name}: an origin before the first fit row {self.start}")
        return self.forecast_from_fit_start(targets[self.start :], origins, horizon, shift)

    def forecast_from_fit_start(
        self, targets: np.ndarray, origins: np.ndarray, horizon: int, shift: int = 1
    ) -> np.ndarray:
        """forecast_targets for a series whose row 0 is the first fit row."""
        steps = shift + horizon - 1
        out = np.empty((len(origins), horizon, len(self.fits)), dtype=np.float64)
        for t, fit in enumerate(self.fits):
            y = np.asarray(targets[:, t], dtype=np.float64)
            paths = _FORECAST[self.name](fit, y, origins, steps, self.fit_rows)
            out[:, :, t] = paths[:, shift - 1 :]
        return out

    def forecast_served(
        self, series: np.ndarray, origin: int, horizon: int, shift: int, cut: int
    ) -> np.ndarray:
        """The forecast (horizon, targets) at origin of a series whose row 0 is the first fit row.

        The same code as the evaluation's at that origin, run once per distinct request: the
        first cut rows are the kept series' own, so the request's length and its rows after them
        decide the answer, which is remembered (SERVED_CACHE) and returned as computed.
        """
        after = np.ascontiguousarray(series[cut : origin + 1], dtype=np.float64)
        key = (origin, horizon, shift, cut, hashlib.md5(after.tobytes()).digest())
        with _SERVED_LOCK:
            answers = _SERVED.setdefault(self, OrderedDict())
            found = answers.get(key)
            if found is not None:
                answers.move_to_end(key)
        if found is None:
            found = self.forecast_from_fit_start(series, np.array([origin]), horizon, shift)[0]
            found.setflags(write=False)  # shared by every request with these rows
            with _SERVED_LOCK:
                answers[key] = found
                while len(answers) > SERVED_CACHE:
                    answers.popitem(last=False)
        return found.copy()

    def keep_history(self, targets: np.ndarray, times: Any) -> None:
        """Keep the series (rows, targets; units) and its DatetimeIndex, from the first fit row."""
        values = np.array(targets[self.start :], dtype=np.float64)
        stamps = np.asarray(times.asi8[self.start :], dtype=np.int64)
        if len(values) != len(stamps) or len(values) < self.fit_rows:
            raise ValueError(
                f"{self.name}: {len(values)} rows and {len(stamps)} times kept from row "
                f"{self.start}; expected as many of each and at least the {self.fit_rows} fit rows"
            )
        self.history, self.history_times = values, stamps
        with _SERVED_LOCK:
            _SERVED.pop(self, None)  # answers through the series kept before

    def weights(self) -> list[np.ndarray]:
        """Every number the fits hold, in a fixed order: the model's fingerprint reads them."""
        found = [np.array([self.season, self.start], dtype=np.float64)] + [
            array for fit in self.fits for array in _numbers(fit)
        ]
        if self.history is None:
            return found  # a rival without a kept series keeps its fingerprint
        # The kept series changes the forecasts, so it is part of the fingerprint: its exact
        # bytes as an MD5 (16 bytes, exact in the fingerprint's float32, where 40k float32
        # values and nanosecond times would not be).
        digest = hashlib.md5(np.ascontiguousarray(self.history).tobytes())
        digest.update(np.ascontiguousarray(self.history_times).tobytes())
        return [*found, np.frombuffer(digest.digest(), dtype=np.uint8).astype(np.float64)]

    def native_bands(
        self, targets: np.ndarray, origins: np.ndarray, horizon: int, shift: int, levels: list
    ) -> dict[float, np.ndarray] | None:
        """The model's own intervals (AutoETS only): level -> (origins, horizon, targets, 2)."""
        if self.name != "autoets":
            return None
        origins = np.asarray(origins, dtype=np.int64) - self.start
        steps = shift + horizon - 1
        out = {lv: np.empty((len(origins), horizon, len(self.fits), 2)) for lv in levels}
        for t, fit in enumerate(self.fits):
            y = np.asarray(targets[self.start :, t], dtype=np.float64)
            ahead = np.zeros((len(origins), steps))
            if "mstl" in fit:
                y = y - _mstl_seasonal(fit, np.arange(len(y)))
                ahead = _mstl_ahead(fit, origins, steps)
            for lv, (lo, hi) in _ets_bands(fit, y, origins, steps, levels).items():
                out[lv][:, :, t, 0] = (lo + ahead)[:, shift - 1 :]
                out[lv][:, :, t, 1] = (hi + ahead)[:, shift - 1 :]
        return out


def _numbers(value: Any) -> list[np.ndarray]:
    """The numeric arrays and scalars inside a fitted model's dict, keys sorted."""
    if isinstance(value, dict):
        return [a for key in sorted(value, key=str) for a in _numbers(value[key])]
    if isinstance(value, list | tuple):
        return [a for item in value for a in _numbers(item)]
    array = np.asarray(value) if isinstance(value, np.ndarray | float | int) else None
    if array is None or array.dtype.kind not in "biuf":
        return []
    return [np.atleast_1d(array.astype(np.float64))]


def choose_season(name: str, seasons: list[int], rows: int) -> tuple[int, str]:
    """The season a rival uses (the shortest the data has) and a sentence saying why."""
    found = sorted({int(s) for s in seasons if int(s) > 1})
    if not found:
        return 1, "no season (the series has none)"
    shortest = found[0]
    if name == "autoets":
        fits = [s for s in found if s <= ETS_MAX_SEASON]
        if not fits:
            return 1, (
                f"no season: the series' seasons {found} are all longer than AutoETS's limit of "
                f"{ETS_MAX_SEASON}"
            )
        shortest = fits[0]
    if rows < 2 * shortest:
        return 1, f"no season: {rows} fit rows hold fewer than two seasons of {shortest}"
    return shortest, f"season {shortest} (the shortest of {found})"


def fit(name: str, targets: np.ndarray, seasons: list[int], start: int = 0) -> StatisticalRival:
    """Fit a rival on rows targets[start:] (rows, targets), one model per target column."""
    if name not in NAMES:
        raise ValueError(f"baselines.statistical: unknown model {name!r}; expected {NAMES}")
    y = np.asarray(targets[start:], dtype=np.float64)
    season, note = choose_season(name, seasons, len(y))
    removed = mstl_seasons(name, seasons, len(y))
    if removed:
        season = removed[0]
        note = (
            f"seasons {removed} removed first (MSTL on the fit rows: AutoETS takes seasons up "
            f"to {ETS_MAX_SEASON}), then a non-seasonal AutoETS on the rest"
        )
    fits = []
    for t in range(y.shape[1]):
        column = y[:, t]
        if len(column) < 2 * max(season, 4):
            raise RivalFailed(f"{name}: {len(column)} fit rows are too few to fit a model")
        if not np.all(np.isfinite(column)):
            raise RivalFailed(f"{name}: target {t} has non-finite values in its fit rows")
        if np.ptp(column) == 0.0:
            raise RivalFailed(f"{name}: target {t} is constant on its fit rows (nothing to model)")
        try:
            fits.append(
                _deseasonalised_ets(column, removed)
                if removed
                else _model(name, season).fit(column).model_
            )
        except (
            Exception
        ) as err:  # statsforecast raises bare Exceptions ("no model able to be fitted")
            raise RivalFailed(f"{name}: the fit failed: {err}") from None
    return StatisticalRival(name, season, note, fits, len(y), start)


def mstl_seasons(name: str, seasons: list[int], rows: int) -> list[int]:
    """The seasons MSTL removes before AutoETS: all the fit rows hold twice, if one is too long.

    AutoETS models one season of at most ETS_MAX_SEASON; where the series has a longer one
    (a week of hours beside the day), MSTL takes every season so that none is left out.
    """
    held = sorted({int(s) for s in seasons if 1 < int(s) <= rows // 2})
    if name != "autoets" or not any(s > ETS_MAX_SEASON for s in held):
        return []
    return held


def _deseasonalised_ets(y: np.ndarray, seasons: list[int]) -> dict[str, Any]:
    """A non-seasonal AutoETS on y less its MSTL seasonal components (fit rows only).

    The components' last cycles then repeat after the fit, as statsforecast's MSTL forecasts
    them, so a later origin's history is deseasonalised with parameters of the fit alone.
    """
    from statsforecast.models import AutoETS
    from statsforecast.mstl import mstl

    parts = mstl(y, seasons)
    components = [parts[c].to_numpy() for c in parts.columns if c.startswith("seasonal")]
    seasonal = np.sum(components, axis=0)
    model = AutoETS(model="ZZN", season_length=1).fit(y - seasonal).model_
    model["mstl"] = {
        "seasons": [int(s) for s in seasons],
        "fit": seasonal,
        "cycles": [c[-s:] for c, s in zip(components, seasons, strict=True)],
    }
    return model


def _mstl_seasonal(fit: dict, rows: np.ndarray) -> np.ndarray:
    """The removed seasonal part at rows (0: the first fit row): in-sample, then repeated."""
    part = fit["mstl"]
    seen = len(part["fit"])
    out = np.zeros(len(rows))
    inside = rows < seen
    out[inside] = part["fit"][rows[inside]]
    ahead = rows[~inside] - seen
    for cycle in part["cycles"]:
        out[~inside] += cycle[ahead % len(cycle)]
    return out


def _model(name: str, season: int) -> Any:
    """A fresh statsforecast model."""
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    kinds = {"autoets": AutoETS, "autotheta": AutoTheta, "autoarima": AutoARIMA}
    return kinds[name](season_length=season)


def _ets_mean(
    fit: dict, y: np.ndarray, origins: np.ndarray, steps: int, fit_rows: int
) -> np.ndarray:
    """AutoETS's means from each origin; with MSTL, filtered on y less its seasonal part."""
    if "mstl" not in fit:
        return _ets_forecast(fit, y, origins, steps, fit_rows)
    adjusted = y - _mstl_seasonal(fit, np.arange(len(y)))
    means = _ets_forecast(fit, adjusted, origins, steps, fit_rows)
    return means + _mstl_ahead(fit, origins, steps)


def _mstl_ahead(fit: dict, origins: np.ndarray, steps: int) -> np.ndarray:
    """The seasonal part (origins, steps) added back to the steps after each origin."""
    rows = np.asarray(origins, dtype=np.int64)[:, None] + 1 + np.arange(steps)[None, :]
    return _mstl_seasonal(fit, rows.ravel()).reshape(rows.shape)


def _ets_states(fit: dict, y: np.ndarray, last: int) -> np.ndarray:
    """AutoETS's states after each row of y[:last], one pass with the fitted parameters."""
    from statsforecast.ets import pegelsresid_C

    errortype, trendtype, seasontype = fit["components"][:3]
    alpha, beta, gamma, phi = fit["par"][:4]
    _, _, states, _ = pegelsresid_C(
        y=y[:last], m=fit["m"], init_state=fit["par"][4:], errortype=errortype,
        trendtype=trendtype, seasontype=seasontype, damped=fit["components"][3] != "N",
        alpha=alpha, beta=beta, gamma=gamma, phi=phi, nmse=3,
    )  # fmt: skip
    return states


def _ets_forecast(
    fit: dict, y: np.ndarray, origins: np.ndarray, steps: int, fit_rows: int
) -> np.ndarray:
    """AutoETS's means from each origin: `forward(y[: origin + 1])` for every origin at once."""
    from statsforecast.ets import etsforecast, switch

    out = np.empty((len(origins), steps))
    if not len(origins):
        return out
    states = _ets_states(fit, y, int(origins.max()) + 1)
    trend, season = switch(fit["components"][1]), switch(fit["components"][2])
    phi = 1.0 if fit["components"][3] == "N" else fit["par"][3]
    for i, origin in enumerate(origins):
        # Row 0 holds the initial state: the state after row `origin` is row origin + 1.
        etsforecast(x=states[origin + 1], m=fit["m"], trend=trend, season=season, phi=phi,
                    h=steps, f=out[i])  # fmt: skip
    return out


def _ets_bands(
    fit: dict, y: np.ndarray, origins: np.ndarray, steps: int, levels: list
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """AutoETS's own prediction intervals at each origin (its fitted sigma, the origin's state)."""
    from statsforecast.ets import _compute_pred_intervals

    means = _ets_forecast(fit, y, origins, steps, 0)
    states = _ets_states(fit, y, int(origins.max()) + 1) if len(origins) else None
    out = {lv: (np.empty_like(means), np.empty_like(means)) for lv in levels}
    for i, origin in enumerate(origins):
        model = {**fit, "states": states[origin + 1 : origin + 2]}
        found = _compute_pred_intervals(model, {"mean": means[i]}, steps, list(levels))
        for lv in levels:
            out[lv][0][i] = found[f"lo-{lv}"]
            out[lv][1][i] = found[f"hi-{lv}"]
    return out


def _theta_forecast(
    fit: dict, y: np.ndarray, origins: np.ndarray, steps: int, fit_rows: int
) -> np.ndarray:
    """AutoTheta's means from each origin: `forward(y[: origin + 1])` (seqcast.models.theta)."""
    return theta.forecast(fit, y, origins, steps)


def _arima_forecast(
    fit: dict, y: np.ndarray, origins: np.ndarray, steps: int, fit_rows: int
) -> np.ndarray:
    """AutoARIMA's means from each origin: statsforecast's forward on each prefix (slow)."""
    from statsforecast.arima import forecast_arima, forward_arima

    out = np.empty((len(origins), steps))
    for i, origin in enumerate(origins):
        with np.errstate(invalid="ignore"):
            model = forward_arima(fit, y=y[: origin + 1], method=None)
        out[i] = forecast_arima(model, steps)["mean"]
    return out


_FORECAST = {"autoets": _ets_mean, "autotheta": _theta_forecast, "autoarima": _arima_forecast}


@dataclass
class FailedRival:
    """A rival that could not be fit on a fold: NaN forecasts, so it is scored nowhere there."""

    name: str
    reason: str

    def forecast_targets(
        self, targets: np.ndarray, origins: np.ndarray, horizon: int, shift: int = 1
    ) -> np.ndarray:
        """NaN for every window: the fold's scores say it failed rather than drop it silently."""
        return np.full((len(origins), horizon, targets.shape[1]), np.nan)


def fit_rivals(
    names: list[str], targets: np.ndarray, seasons: list[int]
) -> tuple[dict[str, StatisticalRival], dict[str, dict]]:
    """Every listed rival fit on the rows given; what each fit (season) or why it failed."""
    rivals, facts = {}, {}
    for name in names:
        try:
            rival = fit(name, targets, seasons)
        except RivalFailed as err:
            facts[name] = {"status": "failed", "reason": str(err)}
            continue
        rivals[name] = rival
        facts[name] = {
            "status": "fit",
            "season": rival.season,
            "season_note": rival.season_note,
            "fit_rows": rival.fit_rows,
            "models": [describe(f, name) for f in rival.fits],
        }
    return rivals, facts


def describe(fit: dict, name: str) -> str:
    """The model statsforecast chose, in its own words: ETS(A,Ad,N), Theta OTM, ARIMA(p,d,q)."""
    if name == "autoets":
        e, t, s, d = fit["components"][:4]
        removed = f"MSTL{fit['mstl']['seasons']} + " if "mstl" in fit else ""
        return f"{removed}ETS({e},{t}{'d' if d != 'N' else ''},{s})"
    if name == "autotheta":
        return f"Theta {fit['modeltype']}" + (
            " (seasonally adjusted)" if fit.get("decompose") else ""
        )
    arma = fit.get("arma", [])
    return f"ARIMA{tuple(arma)}" if len(arma) else "ARIMA"
