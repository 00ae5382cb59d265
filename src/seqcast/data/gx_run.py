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
from urllib.parse import unquote

import pandas as pd
from pandas.tseries.frequencies import to_offset

from seqcast.core import paths

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

DOCS_SITE = "seqcast"
RUN_PREFIX = "seqcast validate"
# The persistent GX store, under the main checkout: results of every run and their data docs.
GX_HOME = Path("gx")
GX_RESULTS = GX_HOME / "results"
GX_DOCS = GX_HOME / "docs"
GX_LOCK = GX_HOME / ".lock"
LOCK_TIMEOUT = 300  # seconds: a concurrent run holds the lock for a docs build, a few seconds
HISTORY_STORE = "seqcast_history"
HISTORY_SITE = "seqcast_history"


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


def record_run(context: AbstractDataContext, key: Any, store: Path) -> Path | None:
    """Keep a run's GX result under store/gx and rebuild its docs; the run's page, or None."""
    from filelock import FileLock, Timeout

    try:
        (store / GX_HOME).mkdir(parents=True, exist_ok=True)
        # Experiments queued with -j 2 validate at the same time: one writer at a time, so the
        # index never reads a half-written result.
        with FileLock(str(store / GX_LOCK), timeout=LOCK_TIMEOUT):
            return _record(context, key, store)
    except (Timeout, OSError) as err:
        # The history is a record, not the verdict: the stage still passes or fails on the data.
        print(f"validate: this run is not in {store / GX_HOME}: {err}", flush=True)
        return None


def _record(context: AbstractDataContext, key: Any, store: Path) -> Path:
    """Store the result in the history store and build its page and the index; the page."""
    backend = {
        "class_name": "TupleFilesystemStoreBackend",
        "base_directory": str(store / GX_RESULTS),
    }
    if HISTORY_STORE not in context.stores:
        context.add_store(
            HISTORY_STORE, {"class_name": "ValidationResultsStore", "store_backend": backend}
        )
    context.stores[HISTORY_STORE].set(key, context.validation_results_store.get(key))
    history = site(store / GX_DOCS) | {
        "site_section_builders": {
            # The suite page is the latest run's suite (it changes with params); each result
            # page lists the expectations that run checked.
            "profiling": "0",
            "validations": {
                "source_store_name": HISTORY_STORE,
                "run_name_filter": {"includes": RUN_PREFIX},
            },
        },
    }
    context.add_data_docs_site(HISTORY_SITE, history)
    try:
        # Renders this run's page only; the index lists every result in the store.
        suite = key.expectation_suite_identifier
        context.build_data_docs(site_names=[HISTORY_SITE], resource_identifiers=[key, suite])
        url = context.get_docs_sites_urls(resource_identifier=key, site_name=HISTORY_SITE)
    finally:
        context.delete_data_docs_site(HISTORY_SITE)
    page = url[0].get("site_url") if url else None
    if not page or not page.startswith("file://"):
        return store / GX_DOCS / "index.html"
    return Path(unquote(page.removeprefix("file://")))
