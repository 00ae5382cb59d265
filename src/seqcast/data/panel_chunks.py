"""A panel's per-series work over chunks of contiguous series, on the engine `parallel` names.

Each chunk is `Panel.take` of a contiguous range of series (cheap: one gather of their rows),
so a function written for a whole panel runs unchanged on a chunk. The caller reassembles the
chunks' results in series order (`first`: the chunk's first series number in the whole panel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqcast.core.config import ParallelConfig
from seqcast.core.parallel import map_ranges
from seqcast.data.panel import Panel

SeriesWork = Callable[..., Any]  # (chunk panel, *args) -> the chunk's result


@dataclass
class SeriesChunks:
    """Each chunk's result with its first series, in series order; failed series by name."""

    results: list[tuple[int, Any]]  # (first series number, result)
    failed: dict[str, str] = field(default_factory=dict)  # series name -> reason
    where: str = "this process"


def map_series(
    work: SeriesWork, panel: Panel, parallel: ParallelConfig, args: tuple = ()
) -> SeriesChunks:
    """`work(chunk, *args)` on chunks of `parallel.chunk_series` series, on its engine."""
    out = map_ranges(
        run_chunk,
        panel,
        panel.n_series,
        parallel.chunk_series,
        (work, *args),
        engine=parallel.engine,
        cpus=parallel.cpus,
        retries=parallel.retries,
    )
    failed = {str(panel.ids[i]): reason for i, reason in sorted(out.failed.items())}
    return SeriesChunks([(start, result) for start, _, result in out.results], failed, out.where)


def run_chunk(panel: Panel, start: int, stop: int, work: SeriesWork, *args: Any) -> Any:
    """The work of series [start, stop) of the panel."""
    return work(panel.take(np.arange(start, stop)), *args)
