"""`seqcast ...`: forecasts from a CSV or a server, and config checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _champion(params: Path) -> str:
    """The registry URI of the champion of the registered model named in params."""
    from seqcast.core.config import load_config

    return f"models:/{load_config(params).tracking.registered_model}@champion"


def _import_keras() -> None:
    """Import Keras now, without TensorFlow's oneDNN notice (seqcast.core.console)."""
    from seqcast.core.console import native_notices_hidden

    with native_notices_hidden():
        import keras  # noqa: F401


def _forecast(args: argparse.Namespace) -> int:
    """Print (or write) the forecast for raw recent history in a CSV."""
    from mlflow.exceptions import MlflowException

    from seqcast.models import serving

    _import_keras()

    model = args.model or _champion(args.params)
    try:
        folder = Path(model).is_dir()
        identity = None if folder else serving.identify(model)
        notes: list[str] = []  # e.g. which rows read were interpolated: said after the model
        frame = serving.forecast_csv(model, args.input, identity, say=notes.append)
    except MlflowException as err:
        raise ValueError(_cannot_load(model, err)) from None
    # On stderr: stdout stays the forecast CSV a script can read.
    source = f"forecaster folder {model}" if identity is None else identity.describe()
    print(f"seqcast forecast: {model}: {source}", file=sys.stderr)
    for note in notes:
        print(f"seqcast forecast: {note}", file=sys.stderr)
    if args.output:
        frame.to_csv(args.output, index=False)
    else:
        print(frame.to_csv(index=False), end="")
    if not args.no_ledger:
        note = _to_ledger(args.params, model, args.input, frame)
        if note:
            print(f"seqcast forecast: {note}", file=sys.stderr)
    return 0


def _to_ledger(params: Path, model: str, history: Path, frame) -> str | None:
    """Record a registered version's forecast in the ledger; a line saying so, or why not."""
    import pandas as pd

    from seqcast.core.config import load_config
    from seqcast.operations import ledger

    if not params.is_file():
        return None  # no project here: nothing says which registered model the ledger follows
    cfg = load_config(params)
    try:
        version = ledger.registered_version(cfg, model)
        if version is None:
            return None
        origin = pd.read_csv(history)[cfg.data.timestamp].iloc[-1]
        timestamp, targets = frame.columns[0], list(cfg.data.targets)
        run_id, added = ledger.record(
            cfg, frame, version, origin, "forecast", timestamp, targets, params.resolve().parent
        )
    except Exception as err:  # the forecast is out; the ledger is a record of it, not a gate
        return f"not recorded in the forecast ledger: {type(err).__name__}: {err}"
    said = "recorded in" if added else "already in"
    return f"v{version} from {origin} {said} the forecast ledger (run {run_id})"


def _serve(args: argparse.Namespace) -> int:
    """Serve a model (the champion by default) over HTTP until stopped."""
    from mlflow.exceptions import MlflowException

    from seqcast.operations import server

    _import_keras()
    model = args.model or _champion(args.params)
    try:
        workers = server.default_workers() if args.workers is None else args.workers
        server.serve(model, args.host, args.port, args.params, workers)
    except MlflowException as err:
        # e.g. no such model or alias in the registry: a message, not a traceback.
        raise ValueError(_cannot_load(model, err)) from None
    return 0


def _ledger_on_serve(params: Path, model: str):
    """With monitoring.ledger_on_serve: a callback recording each served forecast, else None."""
    from seqcast.operations import ledger

    return ledger.on_serve(params, model, say=lambda m: print(f"seqcast serve: {m}", flush=True))


def _cannot_load(model: str, err: Exception) -> str:
    """What went wrong loading a model from MLflow, and what to do, in one line."""
    message = str(getattr(err, "message", err)).strip().splitlines()[0]
    if "No such artifact" in message or "No such file" in message:
        # MLflow names the missing file relative to the model's folder: '' is the folder itself.
        return (
            f"cannot load {model}: its files are gone from the MLflow store's artifacts "
            f"({message}); put them back from a backup, or log and promote the served model "
            "again: dvc repro --force --downstream refit"
        )
    return f"cannot load {model}: {message}"


def _check(args: argparse.Namespace) -> int:
    """Validate params.yaml and that it holds every key dvc.yaml tracks; say what it resolves."""
    from seqcast.core.config import load_config, missing_dvc_params

    cfg = load_config(args.params)
    dvc_yaml = Path(args.params).resolve().parent / "dvc.yaml"
    missing = missing_dvc_params(args.params, dvc_yaml) if dvc_yaml.is_file() else []
    if missing:
        for key, stage in missing:
            print(
                f"{args.params}: {key}: missing; dvc.yaml's {stage} stage tracks it "
                "(copy the key from the shipped params.yaml; null or auto where unused)",
                file=sys.stderr,
            )
        return 2
    print(
        f"{args.params}: ok ({len(cfg.data.targets)} target(s), frequency {cfg.data.frequency}; "
        f"seasons {cfg.seasons}, calendar {cfg.calendar}, MASE season {cfg.mase_season})"
    )
    return 0


def _tune(args: argparse.Namespace) -> int:
    """Run the hyperparameter search on the window stage's outputs (no Prefect)."""
    from seqcast.core.config import load_config
    from seqcast.operations import tune

    cfg = load_config(args.params)
    tune.search(cfg, Path(args.params).resolve().parent)
    return 0


def _tune_apply(args: argparse.Namespace) -> int:
    """Run the best trial's settings as a DVC experiment: dvc exp run -S key=value ..."""
    import shlex
    import subprocess

    from seqcast.operations import tune

    command = tune.apply_command(Path(args.params).resolve().parent, args.dvc_args)
    print("seqcast tune-apply: " + shlex.join(["dvc", *command[3:]]), flush=True)
    return 0 if args.dry_run else subprocess.call(command)


def _exps(args: argparse.Namespace) -> int:
    """Print the DVC experiments: changed params and short metric names, within --width."""
    from seqcast.operations import experiments

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    table = experiments.rows(experiments.show_json(Path.cwd()))
    print(experiments.render(table, args.width, metrics))
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
    forecast.add_argument(
        "--no-ledger", action="store_true", help="do not record the forecast in the ledger"
    )
    forecast.set_defaults(run=_forecast)
    serve = sub.add_parser(
        "serve", help="serve a model's forecasts over HTTP (MLflow's scoring protocol)"
    )
    serve.add_argument("--model", help="model URI (default: the champion in the registry)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", default=5001, type=int)
    serve.add_argument("--params", default="params.yaml", type=Path)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes, each with its own copy of the model "
        "(default: one per CPU, at most 4)",
    )
    serve.set_defaults(run=_serve)
    check = sub.add_parser("check", help="validate params.yaml")
    check.add_argument("--params", default="params.yaml", type=Path)
    check.set_defaults(run=_check)
    tune = sub.add_parser("tune", help="hyperparameter search (search: in params.yaml)")
    tune.add_argument("--params", default="params.yaml", type=Path)
    tune.set_defaults(run=_tune)
    apply = sub.add_parser("tune-apply", help="dvc exp run with tune/best.yaml's overrides")
    apply.add_argument("--params", default="params.yaml", type=Path)
    apply.add_argument("--dry-run", action="store_true", help="print the command only")
    apply.add_argument("dvc_args", nargs="*", help="more `dvc exp run` options (after --)")
    apply.set_defaults(run=_tune_apply)
    exps = sub.add_parser(
        "exps", help="compare DVC experiments: changed params, short metric names, fits --width"
    )
    exps.add_argument("--width", default=120, type=int, help="characters per line (120)")
    exps.add_argument(
        "--metrics",
        default="bt_mase,mase,bt_mae,mae,promoted",
        help="metric keys in priority order; columns that do not fit are left out",
    )
    exps.set_defaults(run=_exps)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        # Config, data and forecast-input errors carry a message meant for the user.
        print(f"seqcast {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
