"""What the statistical rivals cost and score on the shipped series, against seasonal-naive.

    python -m benchmarks.statistical

Fit on the training split (params.yaml's split), forecast every validation and test origin and
every backtest block (each fold refit on its history) the way the evaluate stage does; print
seconds, test MAE, and the import cost of statsforecast (in a fresh process: its C++ extension
loads, there is no numba left to compile in statsforecast 2.x). Figures only, with the load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from benchmarks.common import ROOT


def import_seconds() -> float:
    """Wall seconds of a fresh interpreter importing statsforecast's models and fitting once."""
    code = (
        "import time; t = time.perf_counter(); import numpy as np; "
        "from statsforecast.models import AutoETS; "
        "AutoETS(season_length=1).fit(np.arange(50.0) + np.sin(np.arange(50.0))); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    """Print the figures."""
    from seqcast.core.config import load_config
    from seqcast.models import statistical

    cfg = load_config(ROOT / "params.yaml")
    frame = pd.read_csv(ROOT / cfg.data.path)
    y = frame[cfg.data.targets].to_numpy(dtype=np.float64)
    n = len(y)
    n_train, n_val = int(n * cfg.split.train), int(n * cfg.split.val)
    h = cfg.window.horizon
    origins = np.arange(n_train - 1, n - h)
    test = origins[origins >= n_train + n_val - 1]
    seasons = [48, 336]
    print(f"load: {os.getloadavg()}; rows {n}, train {n_train}, origins {len(origins)}")
    print(f"cold import + first fit of statsforecast: {import_seconds():.2f} s")
    actual = np.stack([y[o + 1 : o + 1 + h, 0] for o in test])
    naive = np.stack([y[o + 1 - 48 : o + 1 - 48 + h, 0] for o in test])
    print(f"seasonal_naive_48 test MAE {np.mean(np.abs(actual - naive)):.2f}")
    from statsforecast.models import AutoETS  # imported here: not in the fits' times

    AutoETS(season_length=1).fit(np.arange(50.0) + np.sin(np.arange(50.0)))
    for name in ("autoets", "autotheta"):
        cpu = time.process_time()
        started = time.perf_counter()
        rival = statistical.fit(name, y[:n_train], seasons)
        fitted = time.perf_counter() - started
        forecast = rival.forecast_targets(y, origins, h)
        took = time.perf_counter() - started
        mae = np.mean(np.abs(actual - forecast[np.isin(origins, test), :, 0]))
        print(
            f"{name}: {rival.season_note}; {statistical.describe(rival.fits[0], name)}; fit "
            f"{fitted:.2f} s, fit + {len(origins)} origins {took:.2f} s "
            f"(CPU {time.process_time() - cpu:.2f} s); test MAE {mae:.2f}"
        )
        cpu = time.process_time()
        started = time.perf_counter()
        step = n_val
        for k in range(cfg.backtest.origins):
            cutoff = n_train - (cfg.backtest.origins - k) * step
            refit = statistical.fit(name, y[:cutoff], seasons)
            refit.forecast_targets(y, np.arange(cutoff - 1, cutoff - 1 + step - h), h)
        print(
            f"  backtest, {cfg.backtest.origins} refits: {time.perf_counter() - started:.2f} s "
            f"(CPU {time.process_time() - cpu:.2f} s)"
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
