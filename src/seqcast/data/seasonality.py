"""Seasons the series shows: autocorrelation peaks of the training split, kept if they help.

`baselines.seasons: auto` starts from the frequency's usual seasons (a day and a week for
half-hourly data, a year for monthly data), which miss cycles no calendar names: the 11-year
sunspot cycle (132 months), a fortnightly pay cycle. Candidates are the clear peaks of the
training split's autocorrelation (deterministic, no fitting); a candidate becomes a baseline
only if its seasonal-naive forecast beats every default baseline on the validation windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# A peak needs this autocorrelation, and to rise this much above the lowest point between half
# its lag and itself: a random walk's slowly decaying autocorrelation has no such peak, white
# noise stays near +-2 / sqrt(n).
MIN_ACF = 0.2
MIN_PROMINENCE = 0.1
# At least this many whole cycles in the training split.
MIN_CYCLES = 3
MAX_FOUND = 3  # candidates looked at, strongest first
MAX_ADDED = 2  # seasons added to the frequency's defaults at most


@dataclass
class Detection:
    """What was found in the training split and what of it was kept, with the reasons."""

    defaults: list[int]
    found: dict[int, float] = field(default_factory=dict)  # season -> autocorrelation
    kept: list[int] = field(default_factory=list)
    dropped: dict[int, str] = field(default_factory=dict)  # season -> why not kept

    def record(self) -> dict:
        """The JSON-able record for meta.json and the comparison."""
        return {
            "defaults": list(self.defaults),
            "found": {str(s): round(r, 4) for s, r in self.found.items()},
            "kept": list(self.kept),
            "dropped": {str(s): why for s, why in self.dropped.items()},
        }

    def line(self) -> str:
        """One line for the window stage: the defaults, what was found, what was added."""
        defaults = ", ".join(map(str, self.defaults)) or "none"
        text = f"seasons {defaults} from data.frequency"
        if not self.found:
            return text + "; no other season found in the training split"
        found = ", ".join(
            f"{s} ({r:.2f}{', from data.frequency' if s in self.defaults else ''})"
            for s, r in self.found.items()
        )
        text += f"; autocorrelation peaks of the training split: {found}"
        if any(s not in self.defaults for s in self.found):
            text += f"; added: {', '.join(map(str, self.kept)) or 'none'}"
        for season, why in self.dropped.items():
            text += f"; {season} not added: {why}"
        return text


def detect(train: np.ndarray, defaults: list[int]) -> Detection:
    """The candidate seasons of the training split's targets, beside the frequency's defaults."""
    return Detection(defaults=list(defaults), found=candidates(train))


def judge(detection: Detection, val_mae: dict[str, float], unusable: dict[int, str]) -> None:
    """Keep the new candidates whose seasonal-naive validation MAE beats every default baseline.

    val_mae holds naive, the defaults and the usable candidates (seasonal_naive_<m>).
    """
    best_default = min(
        v for k, v in val_mae.items() if k == "naive" or _season(k) in detection.defaults
    )
    new = [s for s in detection.found if s not in detection.defaults]
    for season in new:
        name = f"seasonal_naive_{season}"
        if season in unusable:
            detection.dropped[season] = unusable[season]
        elif len(detection.kept) >= MAX_ADDED:
            detection.dropped[season] = f"at most {MAX_ADDED} seasons are added"
        elif val_mae[name] < best_default:
            detection.kept.append(season)
        else:
            detection.dropped[season] = (
                f"validation MAE {val_mae[name]:.4g} (scaled), no better than the best of naive "
                f"and the frequency's seasons ({best_default:.4g})"
            )


def _season(name: str) -> int | None:
    return int(name.rsplit("_", 1)[1]) if name.startswith("seasonal_naive_") else None


def autocorrelation(values: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation at lags 0..max_lag of each column, linear trend removed, averaged."""
    values = np.asarray(values, dtype=np.float64)
    values = values.reshape(len(values), -1)
    n = len(values)
    t = np.arange(n, dtype=np.float64)
    design = np.column_stack([np.ones(n), t])
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    resid = values - design @ coef
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(resid, n=size, axis=0)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[: max_lag + 1]
    var = acov[0]
    acf = np.divide(acov, var, out=np.zeros_like(acov), where=var > 0)
    return acf.mean(axis=1)


def candidates(values: np.ndarray, limit: int = MAX_FOUND) -> dict[int, float]:
    """Clear autocorrelation peaks (lag -> value), strongest first, without their multiples."""
    n = len(values)
    max_lag = n // MIN_CYCLES
    if max_lag < 2:
        return {}
    acf = autocorrelation(values, max_lag)
    floor = max(MIN_ACF, 3.0 / np.sqrt(n))
    peaks = []
    for lag in range(2, max_lag + 1):
        width = max(1, lag // 4)
        around = acf[max(1, lag - width) : min(max_lag, lag + width) + 1]
        if acf[lag] < floor or acf[lag] < around.max():
            continue
        if acf[lag] - acf[lag // 2 : lag].min() < MIN_PROMINENCE:
            continue
        peaks.append(lag)
    # The shortest of a family of peaks is the season; its multiples only repeat it.
    seasons: list[int] = []
    for lag in peaks:
        if not any(_near_multiple(lag, s) for s in seasons):
            seasons.append(lag)
    strongest = sorted(seasons, key=lambda s: (-acf[s], s))[:limit]
    return {s: float(acf[s]) for s in strongest}


def _near_multiple(lag: int, season: int) -> bool:
    """Whether lag is within 5 % (or a step per cycle) of a whole multiple (2 or more) of season."""
    # An irregular cycle (sunspots: 9 to 14 years) puts its later peaks a few steps off.
    cycles = round(lag / season)
    return cycles >= 2 and abs(lag - cycles * season) <= max(cycles, 0.05 * lag)
