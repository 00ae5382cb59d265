"""Statistical rivals from statsforecast (AutoETS, AutoTheta; AutoARIMA opt-in), one per target.

A rival is fit once on the same training rows as the networks; its parameters then stay fixed
and its states are filtered through the real history up to each origin, as statsforecast's
`forward` does, so every window is forecast from the same origin as the networks'. AutoETS's
states are filtered in one pass over the series and every origin's forecast read off its state
(the same numbers as `forward` on each prefix, thousands of times cheaper). AutoTheta's seasonal
indices are fixed at the fit too (`forward` would re-estimate the decomposition on each prefix,
a peek at no future row but a second fit per origin); without a season the two agree exactly.
Features and calendar inputs are ignored: each target is forecast from its own history.

A served rival (seqcast.operations.refit) keeps the series it was evaluated on, from its first
fit row, so a request's few rows extend that series rather than restart the filter from the fit's
initial state (with a small AutoETS alpha, or AutoTheta's trend line of the whole series, the
states a short history reaches are not the ones the evaluation scored); see
Forecaster.forecast_checked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqcast.core.config import STATISTICAL_MODELS as NAMES

# statsforecast's AutoETS refuses seasons longer than this (its state space grows with them).
ETS_MAX_SEASON = 24
ROLE = "statistical"


class RivalFailed(ValueError):
    """A rival that cannot be fit or forecast on these rows; the message says why."""


@dataclass
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
        """The forecast (horizon, targets) at origin of a series whose first cut rows are kept.

        series' row 0 is the first fit row and its first cut rows are the kept series' own,
        so AutoTheta reuses the kept series' states (see _theta_continue).
        """
        if self.name != "autotheta":
            return self.forecast_from_fit_start(series, np.array([origin]), horizon, shift)[0]
        steps = shift + horizon - 1
        out = np.empty((horizon, len(self.fits)))
        for t, fit in enumerate(self.fits):
            kept = self.kept_theta_states(t)[:cut]
            y = np.asarray(series[:, t], dtype=np.float64)
            path = _theta_forecast(fit, y, np.array([origin]), steps, self.fit_rows, kept)
            out[:, t] = path[0, shift - 1 :]
        return out

    def kept_theta_states(self, target: int) -> np.ndarray:
        """AutoTheta's states through the kept series of a target, computed once per process."""
        cache = self.__dict__.setdefault("_kept_states", {})
        if target not in cache:
            fit, y = self.fits[target], self.history[:, target]
            last = np.array([len(y) - 1])
            cache[target] = _theta_forecast(fit, y, last, 1, self.fit_rows, states_only=True)
        return cache[target]

    def __getstate__(self) -> dict[str, Any]:
        """The pickled fields, without the per-process cache of states."""
        return {k: v for k, v in self.__dict__.items() if k != "_kept_states"}

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
            for lv, (lo, hi) in _ets_bands(fit, y, origins, steps, levels).items():
                out[lv][:, :, t, 0] = lo[:, shift - 1 :]
                out[lv][:, :, t, 1] = hi[:, shift - 1 :]
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
            fits.append(_model(name, season).fit(column).model_)
        except (
            Exception
        ) as err:  # statsforecast raises bare Exceptions ("no model able to be fitted")
            raise RivalFailed(f"{name}: the fit failed: {err}") from None
    return StatisticalRival(name, season, note, fits, len(y), start)


def _model(name: str, season: int) -> Any:
    """A fresh statsforecast model."""
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    kinds = {"autoets": AutoETS, "autotheta": AutoTheta, "autoarima": AutoARIMA}
    return kinds[name](season_length=season)


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
    fit: dict,
    y: np.ndarray,
    origins: np.ndarray,
    steps: int,
    fit_rows: int,
    kept: np.ndarray | None = None,
    states_only: bool = False,
) -> np.ndarray:
    """AutoTheta's means from each origin: one pass of the states, seasonal indices of the fit.

    kept: the states of the first len(kept) rows of y, known already (a served rival's kept
    series): only the rows after them are filtered. states_only: the filter's states (rows up
    to the last origin, 5) instead, for a served rival to keep.
    """
    from statsforecast._lib import theta as _theta
    from statsforecast.theta import switch_theta

    out = np.empty((len(origins), steps))
    if not len(origins):
        return out
    last = int(origins.max()) + 1
    rows = np.arange(last + steps)
    seasonal = np.ones(len(rows)) if fit.get("decomposition_type") != "additive" else None
    if fit.get("decompose", False):
        # The fit's seasonal indices continue its last season: row fit_rows + k has index k % m.
        pattern = np.asarray(fit["seas_forecast"]["mean"], dtype=np.float64)
        seasonal = pattern[(rows - fit_rows) % len(pattern)]
        additive = fit["decomposition_type"] == "additive"
        adjusted = y[:last] - seasonal[:last] if additive else y[:last] / seasonal[:last]
    else:
        additive, adjusted = False, y[:last]
    par, kind = fit["par"], switch_theta(fit["modeltype"])
    if kept is None:
        states = _theta_states(fit, adjusted)
    else:
        states = _theta_continue(fit, kept[:last], adjusted)
    if states_only:
        return states
    if fit["modeltype"] in ("STM", "OTM"):
        # The static models' trend (A_n, B_n: columns 2 and 3) is the least-squares line of the
        # whole series passed, written into every row: each origin gets its own prefix's line.
        states[:, 2], states[:, 3] = _prefix_trend(adjusted)
    for i, origin in enumerate(origins):
        _theta.forecast(
            np.ascontiguousarray(states[: origin + 1]), int(origin) + 1, kind, out[i],
            par["alpha"], par["theta"],
        )  # fmt: skip
        if fit.get("decompose", False):
            ahead = seasonal[origin + 1 : origin + 1 + steps]
            out[i] = out[i] + ahead if additive else out[i] * ahead
    return out


def _theta_states(fit: dict, adjusted: np.ndarray) -> np.ndarray:
    """AutoTheta's states (rows, 5) after each row of adjusted, from the fit's initial state."""
    from statsforecast._lib import theta as _theta
    from statsforecast.theta import switch_theta

    par = fit["par"]
    _, _, states, _ = _theta.pegels_resid(
        np.ascontiguousarray(adjusted), switch_theta(fit["modeltype"]),
        par["initial_smoothed"], par["alpha"], par["theta"], 3,
    )  # fmt: skip
    return states


def _theta_continue(fit: dict, known: np.ndarray, adjusted: np.ndarray) -> np.ndarray:
    """The states of `known` continued through the rows of adjusted after them.

    statsforecast 2.1's pegels_resid copies the history at every row (quadratic: 1.4 s on
    40,000 rows), which a served request cannot pay; a state depends only on the rows up to it,
    so the kept series' states are reused and the few rows sent after them follow its update
    (theta.cpp's update_step, the same arithmetic in the same order). The level (column 0),
    the mean (1) and, for the dynamic models, the trend (2, 3) are what a forecast reads;
    the static models' trend is rewritten from the prefix and mu (4) is read by no forecast.
    """
    states = np.empty((len(adjusted), 5))
    states[: len(known)] = known
    alpha = float(fit["par"]["alpha"])
    dynamic = fit["modeltype"] in ("DSTM", "DOTM")
    for i in range(len(known), len(adjusted)):
        level, meany, a_n, b_n, _ = states[i - 1]
        y = float(adjusted[i])
        states[i, 4] = np.nan
        states[i, 0] = alpha * y + (1 - alpha) * level
        states[i, 1] = (i * meany + y) / (i + 1)
        if dynamic:
            states[i, 3] = ((i - 1) * b_n + 6 * (y - meany) / (i + 1)) / (i + 2)
            states[i, 2] = states[i, 1] - states[i, 3] * (i + 2) / 2
        else:
            states[i, 2], states[i, 3] = a_n, b_n
    return states


def _prefix_trend(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Theta's trend line A_n + B_n t fit on y[:n] for every n (Fiorucci et al. 2016, eq. 7)."""
    n = np.arange(1, len(y) + 1, dtype=np.float64)
    mean = np.cumsum(y) / n
    weighted = np.cumsum(n * y)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = 6.0 / (n**2 - 1.0) * (2.0 / n * weighted - (1.0 + n) * mean)
    slope[0] = 0.0  # one row has no slope
    return mean - (n + 1.0) / 2.0 * slope, slope


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


_FORECAST = {"autoets": _ets_forecast, "autotheta": _theta_forecast, "autoarima": _arima_forecast}


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
        return f"ETS({e},{t}{'d' if d != 'N' else ''},{s})"
    if name == "autotheta":
        return f"Theta {fit['modeltype']}" + (
            " (seasonally adjusted)" if fit.get("decompose") else ""
        )
    arma = fit.get("arma", [])
    return f"ARIMA{tuple(arma)}" if len(arma) else "ARIMA"
