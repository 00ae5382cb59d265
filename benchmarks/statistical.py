"""What the statistical rivals cost and score on the shipped series, against seasonal-naive.

    python -m benchmarks.statistical [--plain]

Fit on the training split (params.yaml's split), forecast every validation and test origin and
every backtest block (each fold refit on its history) the way the evaluate stage does; print
seconds, test MAE, and the import cost of statsforecast (in a fresh process: its C++ extension
loads, there is no numba left to compile in statsforecast 2.x). Figures only, with the load.
With --plain, also the test forecasts a statsforecast user would write (fit on the training
rows, `forward` at each test origin; for AutoETS on the half-hourly seasons, MSTL's seasonal
part of the training rows removed first and its last cycles repeated), and how far seqcast's are.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, emit


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


def plain_test_forecasts(name: str, y: np.ndarray, n_train: int, test: np.ndarray, h: int):
    """A plain statsforecast script's forecasts of the test windows (one target)."""
    from statsforecast.models import AutoETS, AutoTheta
    from statsforecast.mstl import mstl

    if name == "autotheta":
        fitted = AutoTheta(season_length=48).fit(y[:n_train])
        return np.stack([fitted.forward(y[: o + 1], h)["mean"] for o in test])
    parts = mstl(y[:n_train], [48, 336])
    columns = [parts[c].to_numpy() for c in ("seasonal48", "seasonal336")]
    seasonal = np.concatenate(
        [np.sum(columns, axis=0), np.zeros(len(y) - n_train)]
    )  # the fit rows' seasonal part, then each component's last cycle repeated
    ahead = np.arange(len(y) - n_train)
    for column, season in zip(columns, (48, 336), strict=True):
        seasonal[n_train:] += column[-season:][ahead % season]
    fitted = AutoETS(model="ZZN").fit(y[:n_train] - seasonal[:n_train])
    adjusted = y - seasonal
    return np.stack(
        [fitted.forward(adjusted[: o + 1], h)["mean"] + seasonal[o + 1 : o + 1 + h] for o in test]
    )


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", action="store_true", help="compare with a plain script")
    parser.add_argument("--json", action="store_true", help="end with the figures as JSON")
    args = parser.parse_args()
    result: dict = {"load_before": os.getloadavg()[0], "models": {}}
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
    result["import_seconds"] = import_seconds()
    print(f"cold import + first fit of statsforecast: {result['import_seconds']:.2f} s")
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
        figures = result["models"][name] = {"fit_and_origins_cpu": time.process_time() - cpu}
        mae = np.mean(np.abs(actual - forecast[np.isin(origins, test), :, 0]))
        print(
            f"{name}: {rival.season_note}; {statistical.describe(rival.fits[0], name)}; fit "
            f"{fitted:.2f} s, fit + {len(origins)} origins {took:.2f} s "
            f"(CPU {time.process_time() - cpu:.2f} s); test MAE {mae:.2f}"
        )
        if args.plain:
            plain = plain_test_forecasts(name, y[:, 0], n_train, test, h)
            gap = np.max(np.abs(plain - forecast[np.isin(origins, test), :, 0]))
            figures["plain_test_mae"] = float(np.mean(np.abs(actual - plain)))
            figures["plain_max_difference"] = float(gap)
            print(
                f"  plain statsforecast script: test MAE {np.mean(np.abs(actual - plain)):.6f} "
                f"against seqcast's {mae:.6f}; largest forecast difference {gap:.2e}"
            )
        cpu = time.process_time()
        started = time.perf_counter()
        step = n_val
        for k in range(cfg.backtest.origins):
            cutoff = n_train - (cfg.backtest.origins - k) * step
            refit = statistical.fit(name, y[:cutoff], seasons)
            refit.forecast_targets(y, np.arange(cutoff - 1, cutoff - 1 + step - h), h)
        figures["test_mae"] = float(mae)
        figures["backtest_cpu"] = time.process_time() - cpu
        print(
            f"  backtest, {cfg.backtest.origins} refits: {time.perf_counter() - started:.2f} s "
            f"(CPU {time.process_time() - cpu:.2f} s)"
        )
    print(f"load after: {os.getloadavg()}")
    result["load_after"] = os.getloadavg()[0]
    if args.json:
        emit(result)


def report(result: dict) -> tuple[list[str], list[list[object]]]:
    """The section's table: per rival, CPU seconds, test MAE and the plain script's agreement."""
    headers = ["rival", "fit + origins CPU s", "backtest refits CPU s", "test MAE", "plain MAE",
               "largest difference"]  # fmt: skip
    rows = [
        [
            name,
            f["fit_and_origins_cpu"],
            f["backtest_cpu"],
            f["test_mae"],
            f.get("plain_test_mae", "-"),
            f.get("plain_max_difference", "-"),
        ]  # fmt: skip
        for name, f in result["models"].items()
    ]
    total = sum(f["fit_and_origins_cpu"] + f["backtest_cpu"] for f in result["models"].values())
    rows.append(["both (the evaluate and backtest stages' share)", total, "", "", "", ""])
    return headers, rows


if __name__ == "__main__":
    main()
