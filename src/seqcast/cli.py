"""`seqcast ...`: forecasts from a CSV without a server, and config checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _forecast(args: argparse.Namespace) -> int:
    """Print (or write) the forecast for raw recent history in a CSV."""
    from seqcast import serving
    from seqcast.config import load_config

    model = args.model or f"models:/{load_config(args.params).tracking.registered_model}@champion"
    frame = serving.forecast_csv(model, args.input)
    if args.output:
        frame.to_csv(args.output, index=False)
    else:
        print(frame.to_csv(index=False), end="")
    return 0


def _check(args: argparse.Namespace) -> int:
    """Validate params.yaml and say so."""
    from seqcast.config import load_config

    cfg = load_config(args.params)
    print(f"{args.params}: ok ({len(cfg.data.targets)} target(s), frequency {cfg.data.frequency})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `seqcast` command."""
    parser = argparse.ArgumentParser(prog="seqcast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    forecast = sub.add_parser("forecast", help="forecast the horizon after the history in a CSV")
    forecast.add_argument("--input", required=True, type=Path, help="CSV of raw recent history")
    forecast.add_argument("--model", help="model URI or forecaster folder (default: champion)")
    forecast.add_argument("--output", type=Path, help="write the forecast CSV here")
    forecast.add_argument("--params", default="params.yaml", type=Path)
    forecast.set_defaults(run=_forecast)
    check = sub.add_parser("check", help="validate params.yaml")
    check.add_argument("--params", default="params.yaml", type=Path)
    check.set_defaults(run=_check)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        # Config, data and forecast-input errors carry a message meant for the user.
        print(f"seqcast {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
