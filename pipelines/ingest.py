"""Ingestion for the pipeline flow: newest CSV from cfg.ingest.source into cfg.data.path.

Nothing reaches cfg.data.path unless the series it would hold passes the validation suite, and
the write is atomic, so a failed or interrupted ingestion leaves the raw data as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from seqcast.core.config import Config
from seqcast.core.io import atomic_path
from seqcast.data.series import DataError, read_raw


def newest_csv(source: Path) -> Path:
    """The source file itself, or the most recently modified *.csv in the source folder."""
    if source.is_file():
        return source
    if source.is_dir():
        candidates = [p for p in source.glob("*.csv") if p.is_file()]
        if not candidates:
            raise DataError(f"{source}: ingest.source folder holds no *.csv file")
        return max(candidates, key=lambda p: (p.stat().st_mtime, p.name))
    raise DataError(f"{source}: ingest.source does not exist")


def _merge(existing: pd.DataFrame, incoming: pd.DataFrame, cfg: Config, label: str) -> pd.DataFrame:
    """Existing rows plus incoming ones, incoming winning on equal timestamps, sorted by time."""
    if set(existing.columns) != set(incoming.columns):
        raise DataError(
            f"{label}: columns {sorted(incoming.columns)} differ from {cfg.data.path}'s "
            f"{sorted(existing.columns)}; ingest.mode extend needs the same columns"
        )
    combined = pd.concat([existing, incoming[list(existing.columns)]], ignore_index=True)
    try:
        when = pd.to_datetime(combined[cfg.data.timestamp])
    except (ValueError, TypeError) as err:
        raise DataError(f"{label}: unreadable {cfg.data.timestamp}: {err}") from None
    # Keep the timestamp text as written; order and de-duplicate on the parsed time.
    keep = ~when.duplicated(keep="last")
    order = when[keep].sort_values(kind="stable").index
    return combined.loc[order].reset_index(drop=True)


def ingest(cfg: Config, root: Path) -> dict[str, Any]:
    """Validate the newest source CSV (merged when mode is extend), then write it atomically."""
    from seqcast.data.validation import validate_frame  # imports Great Expectations: only when used

    assert cfg.ingest.source, "ingest() needs cfg.ingest.source"
    source = newest_csv(root / cfg.ingest.source)
    target = root / cfg.data.path
    incoming = read_raw(source)
    existing = read_raw(target) if target.exists() and cfg.ingest.mode == "extend" else None
    label = str(source.relative_to(root) if source.is_relative_to(root) else source)
    candidate = incoming if existing is None else _merge(existing, incoming, cfg, label)
    validate_frame(candidate, cfg, source=label).raise_if_failed()

    # replace: the validated file byte for byte; extend: the merged frame.
    content = source.read_bytes() if existing is None else candidate.to_csv(index=False).encode()
    changed = not target.exists() or target.read_bytes() != content
    if changed:  # identical bytes: leave the file and its mtime alone
        with atomic_path(target) as tmp:
            tmp.write_bytes(content)
    return {
        "source": label,
        "mode": cfg.ingest.mode,
        "rows_before": 0 if existing is None else len(existing),
        "rows_incoming": len(incoming),
        "rows_after": len(candidate),
        "changed": changed,
    }
