"""Chronological split and scaling: training statistics only, exact affine round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_config, mark_validated

from seqcast.core import paths
from seqcast.core.config import SplitConfig
from seqcast.data import scaling
from seqcast.data.scaling import affine, fit_scaler, split_bounds, split_sizes, to_scaled, to_units

# Rows 0..19: train rows hold 1..10 (and 10..100 in a second column); val and test hold
# values so large that any leak into the statistics would move them by orders of magnitude.
TRAIN = np.column_stack([np.arange(1.0, 11.0), 10.0 * np.arange(1.0, 11.0)])
LATER = np.full((10, 2), 1e6) + np.arange(10.0)[:, None]
VALUES = np.vstack([TRAIN, LATER])

# Hand-computed statistics of 1..10 (column 2 is ten times column 1).
MEAN, STD = 5.5, math.sqrt(8.25)  # population std: mean of squared deviations is 82.5 / 10
MEDIAN, IQR = 5.5, 7.75 - 3.25  # linear-interpolated quartiles of 1..10
TRAIN_STATS = {
    "standard": (MEAN, STD),
    "minmax": (1.0, 9.0),
    "robust": (MEDIAN, IQR),
}


@pytest.mark.parametrize(
    ("rows", "train", "val", "sizes"),
    [
        (20, 0.5, 0.25, {"train": 10, "val": 5, "test": 5}),
        (10, 0.7, 0.1, {"train": 7, "val": 1, "test": 2}),
        (101, 0.5, 0.2, {"train": 50, "val": 20, "test": 31}),
        (4032, 0.7, 0.1, {"train": 2822, "val": 403, "test": 807}),
    ],
)
def test_split_sizes(rows: int, train: float, val: float, sizes: dict) -> None:
    assert split_sizes(rows, SplitConfig(train=train, val=val)) == sizes


def test_split_sizes_exact_for_decimal_fractions() -> None:
    # 70 % of 90 rows is 63 rows; int(90 * 0.7) gives 62 (also for 170, 180, 330, ... rows).
    assert split_sizes(90, SplitConfig(train=0.7, val=0.1)) == {"train": 63, "val": 9, "test": 18}
    assert split_sizes(100, SplitConfig(train=0.29, val=0.1))["train"] == 29


@pytest.mark.parametrize(("rows", "empty"), [(3, "val"), (1, "train")])
def test_split_sizes_refuse_an_empty_split(rows: int, empty: str) -> None:
    with pytest.raises(ValueError, match=rf"split.{empty}: leaves no rows of {rows} for the"):
        split_sizes(rows, SplitConfig(train=0.7, val=0.1))


def test_split_bounds() -> None:
    assert split_bounds({"train": 10, "val": 5, "test": 5}) == {
        "train": (0, 10),
        "val": (10, 15),
        "test": (15, 20),
    }


@pytest.mark.parametrize("kind", ["standard", "minmax", "robust"])
def test_scaler_sees_training_rows_only(kind: str) -> None:
    bounds = split_bounds(split_sizes(len(VALUES), SplitConfig(train=0.5, val=0.25)))
    start, stop = bounds["train"]
    offset, scale = affine(fit_scaler(VALUES[start:stop], kind), 2)
    expected_offset, expected_scale = TRAIN_STATS[kind]
    np.testing.assert_allclose(offset, [expected_offset, 10 * expected_offset], rtol=1e-12)
    np.testing.assert_allclose(scale, [expected_scale, 10 * expected_scale], rtol=1e-12)
    scaled_train = to_scaled(TRAIN, offset, scale)
    assert np.abs(scaled_train).max() < 2.0  # the training rows are O(1) after scaling
    assert to_scaled(LATER, offset, scale).min() > 1e4  # later rows are not squeezed into range


@pytest.mark.parametrize("kind", ["standard", "minmax", "robust"])
def test_normalise_stage_fits_on_training_rows_only(tmp_path: Path, kind: str) -> None:
    times = pd.date_range("2024-01-01", periods=len(VALUES), freq="30min")
    frame = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "a": VALUES[:, 0]})
    (tmp_path / "data" / "raw").mkdir(parents=True)
    frame.to_csv(tmp_path / "data" / "raw" / "test.csv", index=False)
    cfg = make_config(
        data={"targets": ["a"], "bounds": {}},
        split={"train": 0.5, "val": 0.25},
        scaling={"scaler": kind},
    )
    mark_validated(tmp_path, cfg)
    summary = scaling.normalise(cfg, tmp_path)
    expected_offset, expected_scale = TRAIN_STATS[kind]
    assert summary["rows"] == {"train": 10, "val": 5, "test": 5}
    np.testing.assert_allclose(summary["offset"], [expected_offset], rtol=1e-12)
    np.testing.assert_allclose(summary["scale"], [expected_scale], rtol=1e-12)
    written = json.loads((tmp_path / paths.PREPARED / "prepared.json").read_text())
    assert written["offset"] == summary["offset"]
    train = pd.read_parquet(tmp_path / paths.PREPARED / "train.parquet")
    np.testing.assert_allclose(
        train["a"].to_numpy(), (TRAIN[:, 0] - expected_offset) / expected_scale, rtol=1e-12
    )


@pytest.mark.parametrize("kind", ["standard", "minmax", "robust"])
def test_affine_matches_the_scaler_and_round_trips(kind: str) -> None:
    rng = np.random.default_rng(0)
    values = 30000.0 + 5000.0 * rng.standard_normal((200, 3))
    scaler = fit_scaler(values, kind)
    offset, scale = affine(scaler, 3)
    scaled = to_scaled(values, offset, scale)
    np.testing.assert_allclose(scaled, scaler.transform(values), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(to_units(scaled, offset, scale), values, rtol=1e-12, atol=0)
    np.testing.assert_allclose(
        to_scaled(to_units(scaled, offset, scale), offset, scale), scaled, rtol=1e-12, atol=1e-12
    )


def test_constant_column_keeps_a_unit_scale() -> None:
    values = np.column_stack([np.full(5, 7.0), np.arange(5.0)])
    offset, scale = affine(fit_scaler(values, "standard"), 2)
    np.testing.assert_allclose(offset, [7.0, 2.0], rtol=1e-12)
    np.testing.assert_allclose(scale, [1.0, math.sqrt(2.0)], rtol=1e-12)
    assert np.isfinite(to_scaled(values, offset, scale)).all()


def test_affine_is_precise_for_a_large_offset_and_small_spread() -> None:
    # E.g. a meter reading near 1e8 that varies by about 0.1: scaled values must stay exact.
    values = 1e8 + 0.1 * np.random.default_rng(1).standard_normal((500, 1))
    scaler = fit_scaler(values, "standard")
    offset, scale = affine(scaler, 1)
    np.testing.assert_allclose(offset, scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose(scale, scaler.scale_, rtol=1e-9)
    scaled = to_scaled(values, offset, scale)
    np.testing.assert_allclose(scaled, scaler.transform(values), atol=1e-6)


@pytest.mark.parametrize(
    ("rows", "split", "sizes"),
    [
        (100, {"val": 10, "test": 18}, {"train": 72, "val": 10, "test": 18}),
        (100, {"test": 18}, {"train": 72, "val": 10, "test": 18}),  # val: the default 0.1
        (100, {"train": 60, "val": 0.1}, {"train": 60, "val": 10, "test": 30}),
        (90, {"train": 0.7, "test": 9}, {"train": 63, "val": 18, "test": 9}),
        (90, {"train": 0.7, "val": 0.1, "test": 0.2}, {"train": 63, "val": 9, "test": 18}),
    ],
)
def test_split_sizes_take_ints_as_rows(rows: int, split: dict, sizes: dict) -> None:
    assert split_sizes(rows, SplitConfig(**split)) == sizes


def test_split_sizes_in_rows_that_leave_no_training_rows_name_a_key() -> None:
    with pytest.raises(ValueError, match=r"split.test: leaves no rows of 30 for the train split"):
        split_sizes(30, SplitConfig(val=12, test=18))
