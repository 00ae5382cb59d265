"""Row-wise work on many variable-length segments of a flat array, as a few padded matrices.

numpy sorts and partitions the rows of a matrix fast, but has no segmented sort: a lexsort by
(value, segment) is exact yet an order of magnitude slower. Segments of similar length are
stacked as the rows of one matrix, widths rounded up to a power of two (at most twice the
cells), a block of about a million cells at a time, so the temporaries stay small however
many segments there are, and the Python loop runs over blocks, never over segments.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK_CELLS = 1 << 20  # cells of one padded matrix


def blocks(
    starts: np.ndarray, counts: np.ndarray, members: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, valid) per block: flat indices (k, width) of k segments, and which are theirs.

    Cells past a segment's end hold its last index (read them, then mask with ``valid``).
    """
    chosen = np.flatnonzero(counts > 0) if members is None else members
    if len(chosen) == 0:
        return
    width = 1 << np.ceil(np.log2(counts[chosen])).astype(np.int64)
    for size in np.unique(width):
        band = chosen[width == size]
        for part in np.array_split(band, -(-len(band) * int(size) // BLOCK_CELLS)):
            steps = np.arange(size)
            valid = steps < counts[part][:, None]
            rows = starts[part][:, None] + np.minimum(steps, counts[part][:, None] - 1)
            yield rows, valid


def sorted_within(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The values sorted within each segment [start, start + count), segments left in place."""
    out = np.empty_like(values)
    for rows, valid in blocks(starts, counts):
        block = np.where(valid, values[rows], np.inf)
        block.sort(axis=1)  # the +inf padding sorts last, after each segment's own values
        out[rows[valid]] = block[valid]
    return out


def smallest_within(
    values: np.ndarray, starts: np.ndarray, counts: np.ndarray, k: int
) -> np.ndarray:
    """A mask of the k smallest values of each segment (all of a segment with k or fewer)."""
    keep = np.repeat(counts <= k, counts)
    for rows, valid in blocks(starts, counts, np.flatnonzero(counts > k)):
        block = np.where(valid, values[rows], np.inf)
        # Every segment here holds more than k values, so its k smallest are never padding.
        chosen = np.argpartition(block, k - 1, axis=1)[:, :k]
        keep[np.take_along_axis(rows, chosen, axis=1)] = True
    return keep
