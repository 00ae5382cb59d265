"""The flat panel: rows in any order in, series sorted out, subsets and masks without loops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqcast.core.errors import DataError
from seqcast.data.panel import from_frame, load, save


def _long() -> pd.DataFrame:
    rows = [("b", "2020-03", 3.0), ("a", "2020-02", 2.0), ("b", "2020-01", 1.0)]
    rows += [("a", "2020-01", 1.5), ("b", "2020-02", 2.5)]
    return pd.DataFrame(rows, columns=["id", "month", "y"])


def test_a_shuffled_long_frame_becomes_sorted_series_with_offsets() -> None:
    panel = from_frame(_long(), "id", "month", ["y"], 1)
    assert list(panel.ids) == ["a", "b"]
    assert panel.offsets.tolist() == [0, 2, 5]
    assert panel.values[:, 0].tolist() == [1.5, 2.0, 1.0, 2.5, 3.0]
    assert panel.series_of_rows().tolist() == [0, 0, 1, 1, 1]


def test_take_and_mask_keep_each_series_rows_together(tmp_path: Path) -> None:
    panel = from_frame(_long(), "id", "month", ["y"], 1)
    assert panel.take([1, 0]).values[:, 0].tolist() == [1.0, 2.5, 3.0, 1.5, 2.0]
    late = panel.mask_rows(panel.times >= np.datetime64("2020-03-01"))
    assert list(late.ids) == ["b"] and late.offsets.tolist() == [0, 1]
    save(panel, tmp_path / "p.parquet", "month")
    again = load(tmp_path / "p.parquet", ["y"], 1, "month")
    assert list(again.ids) == ["a", "b"] and np.array_equal(again.values, panel.values)


def test_several_id_columns_join_and_a_duplicate_step_names_the_series() -> None:
    frame = _long().assign(store=["s1", "s1", "s1", "s2", "s2"])
    panel = from_frame(frame, ["store", "id"], "month", ["y"], 1)
    assert list(panel.ids) == ["s1/a", "s1/b", "s2/a", "s2/b"]
    with pytest.raises(DataError, match="series 'b': timestamp 2020-01-01.* appears twice"):
        from_frame(pd.concat([_long(), _long().iloc[[2]]]), "id", "month", ["y"], 1)
