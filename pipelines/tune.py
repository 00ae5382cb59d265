"""`make tune`: the hyperparameter search as a Prefect flow, each trial's line in its logs.

The search itself is seqcast.operations.tune.search (Optuna on Ray, each trial an MLflow run); this
flow only runs it and logs every trial's progress to the flow run. `make tune` brings the window
stage up to date (`dvc repro window`) first.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from prefect import flow, get_run_logger  # noqa: E402

from pipelines.common import resolve_root  # noqa: E402


@flow(name="seqcast-search", log_prints=False)
def search_flow(root: str | None = None) -> dict:
    """Run the search on the window stage's outputs; a log line per trial."""
    from seqcast.core.config import load_config
    from seqcast.operations import tune

    where = resolve_root(root)
    logger = get_run_logger()
    return tune.search(load_config(where / "params.yaml"), where, say=logger.info)


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.tune [--root PATH]`: exit 2 with one line on bad input."""
    from seqcast.core.errors import SeqcastError

    parser = argparse.ArgumentParser(prog="python -m pipelines.tune", description=__doc__)
    parser.add_argument("--root", help="repository root (default: the checkout here)")
    args = parser.parse_args(argv)
    try:
        search_flow(args.root)
    except SeqcastError as err:
        print(f"tune: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
