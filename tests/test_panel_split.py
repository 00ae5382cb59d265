"""The panel's calendar split, per-series scalers and windows: exact values on small panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_config

from seqcast.core.config import SplitConfig, WindowConfig
from seqcast.core.errors import ConfigError, DataError
from seqcast.data import panel_split
from seqcast.data.panel import Panel, from_frame
from seqcast.data.panel_scaling import PanelScaler, fit_panel_scaler
from seqcast.data.panel_split import (
    calendar_cuts,
    calendar_folds,
    gather,
    rows_per_series,
    sample_windows,
    short_series,
    window_starts,
    window_summary,
)
from seqcast.data.scaling import affine, fit_scaler

M1 = Path("/work/shared/data/m1_monthly.csv")
DAY = np.timedelta64(1, "D")
# Series name -> (first day, last day) of January 2024: a spans the calendar, b ends before the
# test start, c starts after val_start, d ends before val_start's split ends (no val, no test).
SPANS = {"a": (1, 20), "b": (5, 14), "c": (15, 20), "d": (1, 12)}


def panel_of(spans: dict[str, tuple[int, int]], columns: int = 1) -> Panel:
    """A daily panel whose column 0 holds 1000 * series number + day, column k that + 100 k."""
    frames = []
    for number, (name, (first, last)) in enumerate(spans.items()):
        days = np.arange(first, last + 1)
        frame = pd.DataFrame({"id": name, "day": pd.Timestamp("2023-12-31") + days * DAY})
        for k in range(columns):
            frame[f"v{k}"] = 1000.0 * number + days + 100.0 * k
        frames.append(frame)
    # Rows in any order: from_frame sorts them.
    frame = pd.concat(frames).sample(frac=1.0, random_state=0)
    names = [f"v{k}" for k in range(columns)]
    return from_frame(frame, "id", "day", names, 1)


def day(n: int) -> np.datetime64:
    """January n, 2024."""
    return np.datetime64("2024-01-01") + (n - 1) * DAY


PANEL = panel_of(SPANS)
CUTS = calendar_cuts(PANEL, SplitConfig(val=4, test=4), "D")
WINDOW = WindowConfig(input_width=3, horizon=2)


# --- the calendar cuts ----------------------------------------------------------------------


def test_cuts_from_steps_count_back_from_the_latest_time() -> None:
    assert CUTS.grid[0] == day(1) and CUTS.grid[-1] == day(20)
    assert (CUTS.val_start, CUTS.test_start) == (day(13), day(17))
    assert CUTS.steps == {"train": 12, "val": 4, "test": 4}


def test_cuts_from_fractions_round_as_a_single_series() -> None:
    cuts = calendar_cuts(PANEL, SplitConfig(train=0.5, val=0.25), "D")
    # 20 calendar steps: 10 train, 5 val, 5 test, as split_sizes gives 20 rows of one series.
    assert (cuts.val_start, cuts.test_start) == (day(11), day(16))
    assert cuts.steps == {"train": 10, "val": 5, "test": 5}


def test_rows_each_series_contributes() -> None:
    rows = rows_per_series(PANEL, CUTS)
    assert list(PANEL.ids) == ["a", "b", "c", "d"]
    assert rows["train"].tolist() == [12, 8, 0, 12]  # c starts after val_start: no train rows
    assert rows["val"].tolist() == [4, 2, 2, 0]
    assert rows["test"].tolist() == [4, 0, 4, 0]  # b and d end before the test start


def test_split_rows_follow_the_calendar_for_every_row() -> None:
    found = panel_split.split_rows(PANEL, CUTS)
    for name, (first, stop) in found.items():
        low, high = CUTS.bounds(name)
        for i in range(PANEL.n_series):
            times = PANEL.times[first[i] : stop[i]]
            assert low is None or (times >= low).all()
            assert high is None or (times < high).all()
    covered = sum(int((stop - first).sum()) for first, stop in found.values())
    assert covered == PANEL.n_rows


def test_a_split_too_small_for_the_calendar_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"split.test: leaves no rows of 20 .* calendar: 20"):
        calendar_cuts(PANEL, SplitConfig(val=10, test=10), "D")


def test_off_grid_earliest_time_is_refused() -> None:
    with pytest.raises(ConfigError, match="data.frequency: the panel's earliest timestamp"):
        calendar_cuts(PANEL, SplitConfig(val=4, test=4), "W-SUN")  # Jan 1 2024 is a Monday


def test_backtest_origins_are_calendar_times_before_the_test_start() -> None:
    cfg = make_config(backtest={"origins": 2, "step": "auto"}, window={"horizon": 2})
    folds = calendar_folds(CUTS, cfg)
    # Blocks of the val split's 4 steps, ending at the test start (Jan 17).
    assert [(f.start, f.cutoff, f.end) for f in folds] == [
        (day(1), day(9), day(13)),
        (day(1), day(13), day(17)),
    ]
    cfg = make_config(backtest={"origins": 3, "step": 3, "window": "sliding"})
    starts = [(f.start, f.cutoff) for f in calendar_folds(CUTS, cfg)]
    assert starts == [(day(1), day(8)), (day(4), day(11)), (day(7), day(14))]


# --- windows --------------------------------------------------------------------------------


def test_window_starts_exact() -> None:
    # Offsets: a rows 0-19, b 20-29, c 30-35, d 36-47; inputs 3 rows, targets the 2 after.
    assert window_starts(PANEL, CUTS, WINDOW, "train").tolist() == [
        *range(0, 8), *range(20, 24), *range(36, 44),
    ]  # fmt: skip
    assert window_starts(PANEL, CUTS, WINDOW, "val").tolist() == [9, 10, 11, 25]
    assert window_starts(PANEL, CUTS, WINDOW, "test").tolist() == [13, 14, 15, 30, 31]
    inside = WindowConfig(input_width=3, horizon=2, history_across_splits=False)
    assert window_starts(PANEL, CUTS, inside, "val").tolist() == []
    assert window_starts(PANEL, CUTS, inside, "test").tolist() == []
    strided = WindowConfig(input_width=3, horizon=2, stride=3)
    assert window_starts(PANEL, CUTS, strided, "train").tolist() == [0, 3, 6, 20, 23, 36, 39, 42]


def test_series_too_short_to_train_are_listed_and_counted() -> None:
    assert short_series(PANEL, CUTS, WINDOW).tolist() == [2]
    summary = window_summary(PANEL, CUTS, WINDOW)
    assert summary["too_short_to_train"] == 1 and summary["too_short_series"] == ["c"]
    assert summary["windows"] == {"train": 20, "val": 4, "test": 5}
    assert summary["series_with_windows"] == {"train": 3, "val": 2, "test": 2}


def brute_force(panel: Panel, cuts, w: WindowConfig, split: str) -> list[int]:
    """Every start whose rows stay in one series and whose targets lie in the split, one by one."""
    low, high = cuts.bounds(split)
    lead = w.input_width + w.shift - 1
    found = []
    for i in range(panel.n_series):
        rows = panel.rows(i)
        kept = []
        for s in range(rows.start, rows.stop):
            targets = range(s + lead, s + lead + w.horizon)
            if targets[-1] >= rows.stop:
                continue
            in_split = [
                (low is None or panel.times[r] >= low) and (high is None or panel.times[r] < high)
                for r in range(s, s + lead + w.horizon)
            ]
            inputs_ok = all(in_split[: w.input_width]) or (
                w.history_across_splits and split != "train"
            )
            if all(in_split[lead:]) and inputs_ok:
                kept.append(s)
        found += kept[:: w.stride]
    return found


@pytest.mark.parametrize(
    ("input_width", "horizon", "shift", "stride", "across"),
    [(3, 2, 1, 1, True), (1, 1, 1, 1, True), (4, 3, 2, 1, True), (2, 2, 3, 2, False),
     (5, 1, 1, 3, True), (6, 4, 1, 1, False)],
)  # fmt: skip
def test_every_window_stays_in_one_series_and_its_split(
    input_width: int, horizon: int, shift: int, stride: int, across: bool
) -> None:
    spans = {**SPANS, "e": (2, 3), "f": (10, 20), "g": (12, 18)}
    panel = panel_of(spans)
    w = WindowConfig(
        input_width=input_width, horizon=horizon, shift=shift, stride=stride,
        history_across_splits=across,
    )  # fmt: skip
    for cfg in (SplitConfig(val=4, test=4), SplitConfig(train=0.45, val=0.3)):
        cuts = calendar_cuts(panel, cfg, "D")
        for split in ("train", "val", "test"):
            starts = window_starts(panel, cuts, w, split)
            assert starts.dtype == np.int64
            assert starts.tolist() == brute_force(panel, cuts, w, split)
            last = starts + input_width + shift - 1 + horizon - 1
            series = panel_split.window_series(panel, starts)
            assert (panel_split.window_series(panel, last) == series).all()


def test_no_train_target_at_or_after_val_start() -> None:
    # The leak test: every train window's last target row is before val_start, and the
    # latest train window of a spanning series ends on the very last training row.
    starts = window_starts(PANEL, CUTS, WINDOW, "train")
    last_target = starts + WINDOW.input_width + WINDOW.horizon - 1
    assert (PANEL.times[last_target] < CUTS.val_start).all()
    assert PANEL.times[last_target].max() == CUTS.val_start - DAY


def test_gather_returns_the_windows_rows() -> None:
    panel = panel_of(SPANS, columns=2)
    starts = window_starts(panel, CUTS, WindowConfig(input_width=3, horizon=2, shift=2), "test")
    x, y = gather(panel.values, starts, 3, 2, 2, n_targets=1)
    assert x.shape == (len(starts), 3, 2) and y.shape == (len(starts), 2, 1)
    for k, s in enumerate(starts):
        assert (x[k] == panel.values[s : s + 3]).all()
        assert (y[k, :, 0] == panel.values[s + 4 : s + 6, 0]).all()


def test_sampling_is_capped_and_deterministic_per_seed_and_epoch() -> None:
    panel = panel_of({"long": (1, 200), "short": (1, 9), "mid": (1, 40)})
    cuts = calendar_cuts(panel, SplitConfig(val=10, test=10), "D")
    starts = window_starts(panel, cuts, WINDOW, "train")
    # Series in name order: long (180 train rows), mid (40), short (9).
    assert np.bincount(panel_split.window_series(panel, starts)).tolist() == [176, 36, 5]
    first = sample_windows(starts, panel, 8, seed=7, epoch=0)
    assert (first == sample_windows(starts, panel, 8, seed=7, epoch=0)).all()
    assert not np.array_equal(first, sample_windows(starts, panel, 8, seed=7, epoch=1))
    assert not np.array_equal(first, sample_windows(starts, panel, 8, seed=8, epoch=0))
    assert np.isin(first, starts).all() and (np.diff(first) > 0).all()
    # At most 8 of each series; a series with fewer keeps them all.
    assert np.bincount(panel_split.window_series(panel, first)).tolist() == [8, 8, 5]
    assert sample_windows(starts, panel, None, seed=7, epoch=0) is starts
    epochs = [sample_windows(starts, panel, 8, 7, epoch) for epoch in range(30)]
    assert len(np.unique(np.concatenate(epochs))) > 100  # each epoch draws afresh


# --- per-series scaling ---------------------------------------------------------------------


def scaling_panel() -> Panel:
    """Series with their training rows planted: ordinary, constant, zeros, negative, late."""
    frames = []
    rng = np.random.default_rng(3)
    shapes = {
        "ordinary": rng.normal(50.0, 5.0, 20),
        "constant": np.full(20, 7.0),
        "zeros": np.zeros(20),
        "negative": rng.normal(-3.0, 2.0, 20),
        "mostly_equal": np.r_[np.full(15, 4.0), [1.0, 9.0, 2.0, 8.0, 3.0]],
    }
    for name, values in shapes.items():
        frames.append(
            pd.DataFrame({"id": name, "day": pd.date_range("2024-01-01", periods=20), "y": values})
        )
    late = pd.DataFrame(
        {"id": "late", "day": pd.date_range("2024-01-15", periods=6), "y": np.arange(6.0)}
    )
    return from_frame(pd.concat([*frames, late]), "id", "day", ["y"], 1)


@pytest.mark.parametrize("kind", ["standard", "minmax", "robust"])
def test_scaler_per_series_matches_scikit_learn_on_training_rows(kind: str) -> None:
    panel = panel_of(SPANS, columns=2)
    panel.values[:, 1] = np.random.default_rng(0).normal(size=panel.n_rows) * panel.values[:, 0]
    scaler = fit_panel_scaler(panel, CUTS.val_start, kind)
    for i in [0, 1, 3]:  # c has no training rows
        rows = panel.rows(i)
        train = panel.values[rows][panel.times[rows] < CUTS.val_start]
        offset, scale = affine(fit_scaler(train, kind), 2)
        np.testing.assert_allclose(scaler.offset[i], offset, rtol=1e-10)
        np.testing.assert_allclose(scaler.scale[i], scale, rtol=1e-10)
    assert scaler.offset[2].tolist() == [0.0, 0.0] and scaler.scale[2].tolist() == [1.0, 1.0]
    assert scaler.summary["no_train_rows"] == 1
    assert scaler.summary["no_train_rows_series"] == ["c"]


@pytest.mark.parametrize("kind", ["standard", "minmax", "robust"])
def test_a_future_spike_does_not_move_the_scaler(kind: str) -> None:
    panel = panel_of(SPANS)
    before = fit_panel_scaler(panel, CUTS.val_start, kind)
    spiked = panel.values.copy()
    spiked[PANEL.times >= CUTS.val_start] = 1e9  # every val and test row of every series
    after = fit_panel_scaler(Panel(**{**panel.__dict__, "values": spiked}), CUTS.val_start, kind)
    assert (after.offset == before.offset).all() and (after.scale == before.scale).all()
    # The cut moved one day later lets the spike in: the test would see a leak.
    leaked = fit_panel_scaler(
        Panel(**{**panel.__dict__, "values": spiked}), CUTS.val_start + DAY, kind
    )
    assert (leaked.scale[0] != before.scale[0]).any()


@pytest.mark.parametrize("kind", ["standard", "minmax", "robust"])
def test_degenerate_series_stay_defined_and_are_counted(kind: str) -> None:
    panel = scaling_panel()
    scaler = fit_panel_scaler(panel, np.datetime64("2024-01-13"), kind)
    index = {name: i for i, name in enumerate(panel.ids)}
    assert np.isfinite(scaler.offset).all() and (scaler.scale > 0).all()
    assert scaler.offset[index["constant"]].tolist() == [7.0]
    assert scaler.scale[index["constant"]].tolist() == [1.0]
    assert scaler.offset[index["zeros"]].tolist() == [0.0]
    assert scaler.scale[index["zeros"]].tolist() == [1.0]
    # Constant training rows scale to exactly 0.
    rows = panel.rows(index["constant"])
    series = np.full(rows.stop - rows.start, index["constant"])
    assert (scaler.scaled(panel.values[rows], series)[:12] == 0.0).all()
    summary = scaler.summary
    # mostly_equal's 12 training rows are all 4.0: constant over train as well.
    assert summary["constant"] == {"y": 3} and summary["all_zero"] == {"y": 1}
    assert summary["constant_series"] == ["constant", "mostly_equal", "zeros"]
    assert summary["negative"] == {"y": 1} and summary["negative_series"] == ["negative"]
    assert summary["no_train_rows_series"] == ["late"]
    # Over all 20 rows mostly_equal varies, yet its interquartile range is 0 (15 rows of 4.0):
    # the robust scale of a varying column can be 0 and is then replaced by 1.
    wider = fit_panel_scaler(panel, np.datetime64("2024-01-30"), kind)
    expected = 1 if kind == "robust" else 0
    assert wider.summary["zero_spread"] == {"y": expected}
    assert (wider.scale > 0).all()


def test_missing_training_value_names_the_series_and_time() -> None:
    panel = panel_of(SPANS)
    panel.values[22, 0] = np.nan  # b's third row, Jan 7
    with pytest.raises(DataError, match=r"series 'b': column v0 is empty at 2024-01-07"):
        fit_panel_scaler(panel, CUTS.val_start, "standard")


def test_scale_and_invert_flat_rows_and_batches(tmp_path: Path) -> None:
    panel = panel_of(SPANS, columns=2)
    scaler = fit_panel_scaler(panel, CUTS.val_start, "robust")
    series = panel.series_of_rows()
    scaled = scaler.scaled(panel.values, series)
    np.testing.assert_allclose(scaler.units(scaled, series), panel.values, rtol=1e-12)
    assert (scaler.scale_panel(panel).values == scaled).all()
    # A batch of windows: (n, steps, columns) with one series number per window.
    starts = window_starts(panel, CUTS, WINDOW, "train")
    x, y = gather(panel.values, starts, 3, 1, 2, n_targets=1)
    owner = panel_split.window_series(panel, starts)
    x_scaled = scaler.scaled(x, owner)
    assert (x_scaled == gather(scaled, starts, 3, 1, 2)[0]).all()
    np.testing.assert_allclose(scaler.units(scaler.scaled(y, owner), owner), y, rtol=1e-12)
    scaler.save(tmp_path / "scaler.npz")
    loaded = PanelScaler.load(tmp_path / "scaler.npz")
    assert loaded.kind == "robust"
    assert (loaded.offset == scaler.offset).all() and (loaded.scale == scaler.scale).all()
    assert loaded.ids.tolist() == ["a", "b", "c", "d"] and loaded.columns == ("v0", "v1")


# --- the M1 panel, split by steps -----------------------------------------------------------


@pytest.mark.skipif(not M1.exists(), reason="the M1 panel is not on this machine")
def test_m1_test_is_the_last_18_months_of_every_series() -> None:
    frame = pd.read_csv(M1)
    panel = from_frame(frame, "series_id", "month", ["value"], 1)
    cuts = calendar_cuts(panel, SplitConfig(val=18, test=18), "MS")
    assert panel.n_series == 617
    assert cuts.test_start == np.datetime64("2018-07-01")
    assert cuts.val_start == np.datetime64("2017-01-01")
    rows = rows_per_series(panel, cuts)
    assert (rows["test"] == 18).all() and (rows["val"] == 18).all()
    first, stop = panel_split.split_rows(panel, cuts)["test"]
    assert (stop == panel.offsets[1:]).all()  # each series' last 18 rows
    w = WindowConfig(input_width=12, horizon=18)
    starts = window_starts(panel, cuts, w, "test")
    assert len(starts) == 617
    assert (starts + 12 == first).all()  # targets: exactly the 18 test months
    x, y = gather(panel.values, starts, 12, 1, 18)
    assert y.shape == (617, 18, 1)
    assert (y[:, :, 0] == panel.values[first[:, None] + np.arange(18), 0]).all()


@pytest.mark.skipif(not M1.exists(), reason="the M1 panel is not on this machine")
def test_m1_robust_scaler_matches_numpy_percentiles_on_every_series() -> None:
    # 617 series of 48-150 months: many lengths, sorted together in bands of similar length.
    panel = from_frame(pd.read_csv(M1), "series_id", "month", ["value"], 1)
    cuts = calendar_cuts(panel, SplitConfig(val=18, test=18), "MS")
    scaler = fit_panel_scaler(panel, cuts.val_start, "robust")
    first, stop = panel_split.split_rows(panel, cuts)["train"]
    for i in range(panel.n_series):
        train = panel.values[first[i] : stop[i], 0]
        low, median, high = np.percentile(train, [25, 50, 75])
        assert scaler.offset[i, 0] == pytest.approx(median, rel=1e-12)
        assert scaler.scale[i, 0] == pytest.approx(high - low, rel=1e-12)


def test_segments_sort_and_pick_within_each_segment_only() -> None:
    from seqcast.data import segments

    rng = np.random.default_rng(5)
    counts = np.array([1, 0, 2, 3, 1000, 5, 1, 17, 0, 300])
    starts = np.cumsum(counts) - counts
    values = rng.random(int(counts.sum()))
    owner = np.repeat(np.arange(len(counts)), counts)
    assert (
        segments.sorted_within(values, starts, counts) == values[np.lexsort((values, owner))]
    ).all()
    keep = segments.smallest_within(values, starts, counts, 4)
    assert np.bincount(owner[keep], minlength=len(counts)).tolist() == [
        1,
        0,
        2,
        3,
        4,
        4,
        1,
        4,
        0,
        4,
    ]
    for i in np.flatnonzero(counts > 4):  # the kept ones are the 4 smallest of their segment
        mine = values[starts[i] : starts[i] + counts[i]]
        assert sorted(values[keep & (owner == i)]) == sorted(np.sort(mine)[:4])
