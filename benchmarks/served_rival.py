"""What a served statistical rival's kept series costs: its size on disk and a request's latency.

    python -m benchmarks.served_rival [--rows 40000]

The shipped series tiled (with noise) to --rows half-hourly rows; each rival is fit on the
first --fit-rows, keeps all but the last NEW_ROWS rows (as the refit keeps every row), and
forecasts one request of the last min_history rows (input width 96). The baseline is the same
rival without its kept series (filtering the rows sent only, as before issue 26). Figures only,
with the load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, median, timed

NEW_ROWS = 10


def long_series(rows: int) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """The shipped demand tiled to `rows` half-hours, with noise so no two tiles are equal."""
    shipped = pd.read_csv(ROOT / "data" / "raw" / "electricity_demand.csv")["demand_mw"]
    base = shipped.interpolate().to_numpy(dtype=np.float64)
    y = np.resize(base, rows) + np.random.default_rng(0).normal(0, 50.0, rows)
    return y, pd.date_range("2000-06-05", periods=rows, freq="30min")


def main() -> None:
    """Print the figures."""
    from seqcast.data.features import InputSpec
    from seqcast.models import statistical
    from seqcast.models.forecaster import Forecaster

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=30)
    # The fit's length does not change a request's cost (the kept series' does); AutoTheta's
    # fit on 40,000 rows takes minutes here.
    parser.add_argument("--fit-rows", type=int, default=4_000)
    args = parser.parse_args()
    y, times = long_series(args.rows)
    spec = InputSpec(input_width=96, horizon=48, shift=1, n_targets=1, n_values=1, n_calendar=0)
    sent = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "demand_mw": y}).tail(
        spec.context
    )
    print(f"load: {os.getloadavg()}; {args.rows} rows, request {len(sent)} rows")
    for name in ("autoets", "autotheta"):
        started = time.perf_counter()
        rival = statistical.fit(name, y[: args.fit_rows, None], [48, 336])
        fit_seconds = time.perf_counter() - started
        plain = Forecaster(
            name=name, spec=spec, timestamp="timestamp", columns=["demand_mw"], frequency="30min",
            offset=np.array([y.mean()]), scale=np.array([y.std()]), predictor=rival,
        )  # fmt: skip
        before = median(timed(lambda f=plain: f.forecast(sent), args.repeats))
        kept = statistical.StatisticalRival(**vars(rival))
        # The request's last NEW_ROWS rows came after the refit: filtered on top of the kept ones.
        kept.keep_history(y[:-NEW_ROWS, None], times[:-NEW_ROWS])
        forecaster = Forecaster(**{**vars(plain), "predictor": kept})
        started = time.perf_counter()
        forecaster.warm_up()  # the kept series' states, once per process (at model load)
        warm = time.perf_counter() - started
        forecaster.forecast(sent)  # first call outside the figures

        def uncached(f: Forecaster = forecaster) -> None:
            # Every request new (new rows since the last): the answer computed, not remembered.
            statistical._SERVED.pop(f.predictor, None)
            f.forecast(sent)

        fresh = median(timed(uncached, args.repeats))
        forecaster.forecast(sent)
        after = median(timed(lambda f=forecaster: f.forecast(sent), args.repeats))
        with tempfile.TemporaryDirectory() as folder:
            plain.save(Path(folder) / "plain")
            forecaster.save(Path(folder) / "kept")
            sizes = [
                (Path(folder) / k / "statistical.pkl").stat().st_size for k in ("plain", "kept")
            ]
        print(
            f"{name} ({statistical.describe(rival.fits[0], name)}, season {rival.season}, fit "
            f"{fit_seconds:.1f} s): statistical.pkl {sizes[0] / 1024:.0f} KB without the kept "
            f"series, {sizes[1] / 1024:.0f} KB with it; one forecast {before * 1e3:.2f} ms "
            f"filtering the rows sent; through the kept series {fresh * 1e3:.2f} ms for a new "
            f"request, {after * 1e3:.2f} ms repeated (remembered; x{after / before:.2f} the "
            f"rows-sent figure, median of {args.repeats}); warm-up at load {warm:.2f} s"
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
