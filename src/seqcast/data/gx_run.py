"""Running Great Expectations, shared by the single-series and the panel validation.

A fresh in-memory context per run, the run's name, the data docs built into a folder, and the
few words both validations use to report what GX found.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pandas as pd
from pandas.tseries.frequencies import to_offset

from seqcast.core import paths

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

DOCS_SITE = "seqcast"
RUN_PREFIX = "seqcast validate"


def gx() -> ModuleType:
    """Import GX with analytics off; deferred so importing seqcast stays fast."""
    # Read by GX when it starts; the context config below also turns analytics off.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx
    import great_expectations.expectations  # noqa: F401  (so gx.expectations is loaded)

    return gx


def context() -> AbstractDataContext:
    """A fresh in-memory GX context: no analytics, no progress bars, no default docs site."""
    module = gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return module.get_context(mode="ephemeral", project_config=config)


def run_id(source: str) -> Any:
    """The run's GX identifier: `seqcast validate <file> [experiment] <UTC time>`, and the time."""
    from great_expectations.core.run_identifier import RunIdentifier

    now = dt.datetime.now(dt.UTC)
    experiment = paths.dvc_experiment().get("name")
    parts = [RUN_PREFIX, Path(source).name or source, experiment, f"{now:%Y%m%dT%H%M%S.%fZ}"]
    # The name is a folder of the result store: GX refuses path separators in it.
    name = re.sub(r"[/\\]", "_", " ".join(p for p in parts if p))
    return RunIdentifier(run_name=name, run_time=now)


def site(folder: Path) -> dict[str, Any]:
    """A data docs site config writing into folder."""
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(folder),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }


def build_docs(context: AbstractDataContext, folder: Path) -> None:
    """Build the context's data docs (suite and validation pages, index.html) into folder."""
    context.add_data_docs_site(DOCS_SITE, site(folder))
    try:
        context.build_data_docs(site_names=[DOCS_SITE])
    finally:
        # Sites are named uniquely per context: drop it so write_outputs can run again.
        context.delete_data_docs_site(DOCS_SITE)


def fixed_step(frequency: str) -> pd.Timedelta | None:
    """The fixed length of one step, or None for calendar frequencies (W-SUN, MS, B)."""
    try:
        return pd.Timedelta(to_offset(frequency))
    except ValueError:
        return None


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 value', '2 values'."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def number(value: float) -> str:
    """A number as a person writes it: 100000, not 100000.0 or 1e+05."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
