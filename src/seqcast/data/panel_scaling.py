"""Per-series scalers of a panel, fit on each series' training rows only, as two arrays.

``offset`` and ``scale`` are (n_series, n_columns): scaled = (x - offset) / scale, the same
affine map as a scikit-learn scaler per series (standard: mean and population std; minmax:
min and max - min; robust: median and the 25-75 % interquartile range, numpy's linear
percentiles as RobustScaler's). They are computed for all series at once by segment
reductions over the flat rows (the robust quantiles: a sort within each series, done as
matrix sorts by ``seqcast.data.segments``).

Degenerate training rows keep every later step defined:
- a column constant over a series' training rows (all zeros among them): offset = that value,
  scale = 1, so its training rows scale to exactly 0 and later moves stay in its units;
- a robust scale of 0 on a column that does vary (over half the rows equal): scale = 1 too;
- a series with no training rows (it starts at or after val_start): offset 0, scale 1 (it has
  no train window either, and is served by a baseline);
- negative values need nothing (the maps are affine) and are only counted, for the metrics
  and inputs downstream that take logs or ratios.
Each case is counted per column in ``PanelScaler.summary``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqcast.core.errors import DataError
from seqcast.data import segments
from seqcast.data.panel import Panel

KINDS = ("standard", "minmax", "robust")
EXAMPLES = 10  # series named per case in the summary; the counts cover them all


@dataclass(frozen=True)
class PanelScaler:
    """Series ``i`` scales column ``j`` as (x - offset[i, j]) / scale[i, j]."""

    kind: str
    ids: np.ndarray  # (n_series,) str, the panel's series names in its order
    columns: tuple[str, ...]
    offset: np.ndarray  # (n_series, n_columns) float64
    scale: np.ndarray  # (n_series, n_columns) float64, never 0
    summary: dict = field(default_factory=dict, compare=False)

    def scaled(self, x: np.ndarray, series: np.ndarray) -> np.ndarray:
        """Units to scaled units; ``series`` numbers x's leading axes (rows, or windows)."""
        offset, scale = self._pick(x, series)
        return (x - offset) / scale

    def units(self, x: np.ndarray, series: np.ndarray) -> np.ndarray:
        """Scaled units back to each series' units (forecasts: the first, target, columns)."""
        offset, scale = self._pick(x, series)
        return x * scale + offset

    def scale_panel(self, panel: Panel) -> Panel:
        """The panel in scaled units (one flat copy of its values)."""
        from dataclasses import replace

        lengths = panel.lengths
        values = (panel.values - np.repeat(self.offset, lengths, axis=0)) / np.repeat(
            self.scale, lengths, axis=0
        )
        return replace(panel, values=values)

    def _pick(self, x: np.ndarray, series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offset and scale broadcast to x: series over its leading axes, columns last."""
        series = np.asarray(series, dtype=np.int64)
        n_columns = x.shape[-1]
        if n_columns > self.offset.shape[1]:
            raise ValueError(f"{n_columns} columns, the scaler holds {self.offset.shape[1]}")
        # Targets come first, so fewer columns (a forecast) take the first ones.
        shape = series.shape + (1,) * (x.ndim - series.ndim - 1) + (n_columns,)
        offset = self.offset[series, :n_columns].reshape(shape)
        scale = self.scale[series, :n_columns].reshape(shape)
        return offset, scale

    def save(self, path: Path) -> None:
        """Write offset, scale, ids and columns to one .npz (readable without pickle)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(
            partial,
            kind=np.array(self.kind),
            ids=np.asarray(self.ids, dtype=str),
            columns=np.asarray(self.columns, dtype=str),
            offset=self.offset,
            scale=self.scale,
        )
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> PanelScaler:
        """Read a scaler that ``save`` wrote."""
        with np.load(path, allow_pickle=False) as saved:
            return cls(
                kind=str(saved["kind"]),
                ids=saved["ids"].astype(object),
                columns=tuple(str(c) for c in saved["columns"]),
                offset=saved["offset"],
                scale=saved["scale"],
            )


def fit_panel_scaler(panel: Panel, before: np.datetime64, kind: str) -> PanelScaler:
    """Per-series scalers fit on each series' rows with time < before (its training rows)."""
    if kind not in KINDS:
        raise ValueError(f"scaling.scaler: {kind!r} is not one of {list(KINDS)}")
    keep = panel.times < before
    counts = _count(panel, keep)
    train = panel.values[keep]  # the training rows alone, in series order
    _refuse_missing(panel, train, counts)
    fitted = counts > 0
    if not fitted.any():
        raise DataError(f"no series has a row before {before}: there is nothing to fit on")
    starts = (np.cumsum(counts) - counts)[fitted]
    n = counts[fitted][:, None].astype(np.float64)
    low = np.minimum.reduceat(train, starts, axis=0)
    high = np.maximum.reduceat(train, starts, axis=0)
    if kind == "standard":
        mean = np.add.reduceat(train, starts, axis=0) / n
        centred = train - np.repeat(mean, counts[fitted], axis=0)
        fit_offset, fit_scale = mean, np.sqrt(np.add.reduceat(centred**2, starts, axis=0) / n)
    elif kind == "minmax":
        fit_offset, fit_scale = low, high - low
    else:
        fit_offset, spread = _quantiles(train, starts, counts[fitted], (0.5, 0.25, 0.75))
        fit_scale = spread[1] - spread[0]
    constant = low == high
    # A constant column: offset exactly its value, so its training rows scale to exactly 0.
    fit_offset = np.where(constant, low, fit_offset)
    zero_spread = ~constant & (fit_scale == 0.0)
    fit_scale = np.where(constant | zero_spread, 1.0, fit_scale)
    n_columns = panel.values.shape[1]
    offset = np.zeros((panel.n_series, n_columns))
    scale = np.ones((panel.n_series, n_columns))
    offset[fitted], scale[fitted] = fit_offset, fit_scale
    flags = {
        "constant": _expand(constant, fitted),
        "all_zero": _expand(constant & (low == 0.0), fitted),
        "zero_spread": _expand(zero_spread, fitted),
        "negative": _expand(low < 0.0, fitted),
    }
    summary = _summary(panel, kind, ~fitted, flags)
    return PanelScaler(kind, np.asarray(panel.ids), panel.columns, offset, scale, summary)


def _quantiles(
    train: np.ndarray, starts: np.ndarray, counts: np.ndarray, qs: tuple[float, float, float]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Median and other quantiles of every series' rows (numpy's linear rule), per column."""
    found = np.empty((len(qs), len(starts), train.shape[1]))
    for j in range(train.shape[1]):  # a loop over columns (a few), never over series
        ordered = segments.sorted_within(train[:, j], starts, counts)
        for k, q in enumerate(qs):
            position = q * (counts - 1)
            below = np.floor(position).astype(np.int64)
            above = np.minimum(below + 1, counts - 1)
            weight = position - below
            low, high = ordered[starts + below], ordered[starts + above]
            # numpy's lerp: from the nearer end, so an exact quantile is not off by rounding.
            found[k, :, j] = np.where(
                weight >= 0.5, high - (high - low) * (1 - weight), low + (high - low) * weight
            )
    return found[0], [found[k] for k in range(1, len(qs))]


def _refuse_missing(panel: Panel, train: np.ndarray, counts: np.ndarray) -> None:
    """Name the first series, column and row of a missing training value."""
    missing = np.isnan(train)
    if not missing.any():
        return
    row, column = np.argwhere(missing)[0]
    series = int(np.searchsorted(np.cumsum(counts), row, side="right"))
    within = int(row - (np.cumsum(counts) - counts)[series])
    flat = int(panel.offsets[series]) + within
    raise DataError(
        f"series {panel.ids[series]!r}: column {panel.columns[column]} is empty at "
        f"{panel.times[flat]} (training row {within}); a scaler needs every training value: "
        "fill or exclude the series before scaling"
    )


def _count(panel: Panel, keep: np.ndarray) -> np.ndarray:
    """Rows of each series where keep is true (0 for an empty series)."""
    counts = np.zeros(panel.n_series, dtype=np.int64)
    nonempty = panel.lengths > 0
    if panel.n_rows:
        counts[nonempty] = np.add.reduceat(keep, panel.offsets[:-1][nonempty], dtype=np.int64)
    return counts


def _expand(flags: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Per-fitted-series flags as (n_series, n_columns), False for series not fitted."""
    out = np.zeros((len(fitted), flags.shape[1]), dtype=bool)
    out[fitted] = flags
    return out


def _summary(panel: Panel, kind: str, unfitted: np.ndarray, flags: dict) -> dict:
    """Counts of each degenerate case per column, with a few series named."""
    out: dict = {
        "scaler": kind,
        "series": panel.n_series,
        "no_train_rows": int(unfitted.sum()),
        "no_train_rows_series": [str(s) for s in panel.ids[unfitted][:EXAMPLES]],
    }
    for case, flag in flags.items():
        out[case] = {col: int(flag[:, j].sum()) for j, col in enumerate(panel.columns)}
        hit = flag.any(axis=1)
        out[f"{case}_series"] = [str(s) for s in panel.ids[hit][:EXAMPLES]]
    return out
