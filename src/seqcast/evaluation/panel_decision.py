"""Which model serves each series of a panel: the panel's network, unless beaten on that series.

The network is chosen for the whole panel on the aggregate backtest (the lowest mean MASE over
series, as the single-series rule picks the lowest error). Then, with
`promotion.per_series_fallback`, THE RULE: a series is served by the alternative (a simple
baseline or a statistical rival) with the lowest mean MASE over that series' backtest origins
when it is strictly lower than the network's there (times 1 - margin: with a margin of 0.1 an
alternative must be 10 % better, so a few noisy origins do not switch a series); ties keep the
network. Every model must be
scored on the same windows (origins and series). A series the network has no backtest window for
(too short for its input) is served by its best alternative; one nobody scored, by the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BEATEN = "beaten"  # an alternative has a lower mean MASE on the series' backtest origins
HELD = "held"  # the network is at least as good on the series' backtest origins
UNSCORED_NETWORK = "no network backtest window"
UNSCORED = "no backtest window"
OFF = "per_series_fallback off"


@dataclass(frozen=True)
class SeriesDecision:
    """The panel's network and, per series, the model that serves it and why."""

    network: str
    served: np.ndarray  # (n_series,) object: a model name
    reason: np.ndarray  # (n_series,) object: one of the reasons above
    network_mase: np.ndarray  # (n_series,) the network's backtest mean MASE
    served_mase: np.ndarray  # (n_series,) the serving model's backtest mean MASE

    @property
    def counts(self) -> dict[str, int]:
        """Series served by each model, and per reason."""
        names, n = np.unique(self.served.astype(str), return_counts=True)
        reasons, m = np.unique(self.reason.astype(str), return_counts=True)
        return {f"served_{k}": int(v) for k, v in zip(names, n, strict=True)} | {
            f"reason_{k}": int(v) for k, v in zip(reasons, m, strict=True)
        }

    def frame(self, ids: np.ndarray) -> pd.DataFrame:
        """One row per series: who serves it, why, and the two backtest MASEs compared."""
        return pd.DataFrame(
            {
                "series": ids,
                "served_by": self.served,
                "reason": self.reason,
                "network_bt_mase": self.network_mase,
                "served_bt_mase": self.served_mase,
            }
        )


def common_windows(forecasts: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Windows every named model forecast (all finite): the ones a fair comparison scores."""
    return np.logical_and.reduce([np.isfinite(forecasts[n]).all(axis=(1, 2)) for n in names])


def choose_network(panel_mase: dict[str, float], networks: list[str]) -> str:
    """The network with the lowest mean MASE over the panel's backtest."""
    return min(networks, key=lambda name: panel_mase[name])


def decide(
    network: str,
    backtest_mase: dict[str, np.ndarray],
    alternatives: list[str],
    per_series_fallback: bool = True,
    margin: float = 0.0,
) -> SeriesDecision:
    """Apply the rule to backtest MASE per series, name -> (n_series,) (NaN: not scored)."""
    own = np.asarray(backtest_mase[network], dtype=np.float64)
    n = len(own)
    served = np.full(n, network, dtype=object)
    if not per_series_fallback or not alternatives:
        reason = np.where(np.isfinite(own), OFF, UNSCORED).astype(object)
        return SeriesDecision(network, served, reason, own, own.copy())
    others = np.stack([np.asarray(backtest_mase[a], dtype=np.float64) for a in alternatives])
    scored = np.isfinite(others).any(axis=0)
    best = np.argmin(np.where(np.isfinite(others), others, np.inf), axis=0)
    best_mase = np.where(scored, others[best, np.arange(n)], np.nan)
    network_scored = np.isfinite(own)
    beaten = scored & (
        ~network_scored | (best_mase < (1.0 - margin) * np.where(network_scored, own, np.inf))
    )
    served[beaten] = np.asarray(alternatives, dtype=object)[best[beaten]]
    reason = np.full(n, HELD, dtype=object)
    reason[beaten] = BEATEN
    reason[beaten & ~network_scored] = UNSCORED_NETWORK
    reason[~scored & ~network_scored] = UNSCORED
    served_mase = np.where(beaten, best_mase, own)
    return SeriesDecision(network, served, reason, own, served_mase)


def served_forecast(
    decision: SeriesDecision, forecasts: dict[str, np.ndarray], window_series: np.ndarray
) -> np.ndarray:
    """The forecasts (n_windows, horizon, n_targets) of the model serving each window's series."""
    choice = decision.served[window_series]
    out = np.array(forecasts[decision.network], dtype=np.float64, copy=True)
    for name in np.unique(choice.astype(str)):  # a few model names, never a loop over series
        rows = choice == name
        out[rows] = forecasts[name][rows]
    return out
