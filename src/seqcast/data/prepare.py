"""The normalise and window stages' entry points: one series, or a panel (data.series).

Not in seqcast.data.scaling and seqcast.data.windowing themselves: the panel modules import
those two, and a dispatch from them back into the panel would close an import circle.
"""

from __future__ import annotations

from pathlib import Path

from seqcast.core import paths
from seqcast.core.config import Config


def normalise(cfg: Config, root: Path) -> dict:
    """The normalise stage: a panel's per-series scalers, or the single series' scaler."""
    if cfg.data.is_panel:
        from seqcast.data.panel_prepare import normalise_panel

        return normalise_panel(cfg, root)
    from seqcast.data.scaling import normalise as normalise_series

    return normalise_series(cfg, root)


def window(cfg: Config, root: Path) -> dict:
    """The window stage: a panel's window starts, or the single series' windows."""
    # The prepared data says which: data.series is not a param of this stage (the single-series
    # params.yaml does not hold it, and DVC refuses a declared key a params file lacks).
    if (root / paths.PANEL_SPLIT).is_file():
        from seqcast.data.panel_prepare import window_panel

        return window_panel(cfg, root)
    from seqcast.data.windowing import window as window_series

    return window_series(cfg, root)
