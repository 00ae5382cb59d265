"""params.yaml validation: the shipped file loads; every bad key is named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import ROOT, make_config, raw_params

from seqcast.core.config import Config, ConfigError, flatten, load_config, parse_config


def config_error(**sections: dict) -> str:
    """The ConfigError message for raw_params(**sections)."""
    with pytest.raises(ConfigError) as caught:
        parse_config(raw_params(**sections))
    return str(caught.value)


def test_shipped_params_load() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = load_config(ROOT / "params.yaml")
    assert isinstance(cfg, Config)
    assert cfg.data.targets == raw["data"]["targets"]
    assert cfg.data.value_columns == [*raw["data"]["targets"], *raw["data"]["features"]]
    assert cfg.window.input_width == raw["window"]["input_width"]
    assert cfg.window.horizon == raw["window"]["horizon"]
    assert cfg.split.test == pytest.approx(1.0 - raw["split"]["train"] - raw["split"]["val"])
    for kind in raw["models"]:
        assert cfg.models.get(kind).units == raw["models"][kind]["units"]


def test_defaults_fill_optional_sections() -> None:
    cfg = make_config()
    assert cfg.window.shift == 1
    assert cfg.window.stride == 1
    assert cfg.window.history_across_splits is True
    assert cfg.features.reference == "auto"
    assert cfg.scaling.scaler == "standard"
    assert cfg.target_indices == [0]
    # Seasons, calendar and MASE's season follow data.frequency (30min here).
    assert cfg.seasons == [48, 336]
    assert cfg.calendar == ["time_of_day", "day_of_week"]
    assert cfg.mase_season == 48
    assert cfg.promotion.from_experiments == "challenger"


def test_unknown_key_is_named() -> None:
    message = config_error(window={"input_widht": 8})
    assert "params.yaml: window.input_widht: unknown key" in message


def test_unknown_section_is_named() -> None:
    raw = raw_params()
    raw["trian"] = {"epochs": 3}
    with pytest.raises(ConfigError, match=r"params.yaml: trian: unknown key"):
        parse_config(raw)


@pytest.mark.parametrize(
    ("sections", "key", "got"),
    [
        ({"window": {"horizon": "two"}}, "window.horizon", "'two'"),
        ({"train": {"epochs": 2.5}}, "train.epochs", "2.5"),
        ({"window": {"history_across_splits": "maybe"}}, "window.history_across_splits", "'maybe'"),
        ({"data": {"targets": "demand_mw"}}, "data.targets", "'demand_mw'"),
        ({"scaling": {"scaler": "zscore"}}, "scaling.scaler", "'zscore'"),
    ],
)
def test_wrong_type_names_the_key_and_value(sections: dict, key: str, got: str) -> None:
    message = config_error(**sections)
    assert f"params.yaml: {key}: " in message
    assert f"(got {got})" in message


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"window": {"input_width": 0}}, "window.input_width"),
        ({"window": {"horizon": -1}}, "window.horizon"),
        ({"window": {"shift": 0}}, "window.shift"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"train": {"learning_rate": 0.0}}, "train.learning_rate"),
        ({"split": {"train": 1.2}}, "split.train"),
        ({"data": {"max_null_fraction": 1.5}}, "data.max_null_fraction"),
        ({"features": {"reference_season": 0}}, "features.reference_season"),
        ({"models": {"gru": {"dropout": 1.0}}}, "models.gru.dropout"),
    ],
)
def test_impossible_value_names_the_key(sections: dict, key: str) -> None:
    assert f"params.yaml: {key}: " in config_error(**sections)


def test_split_that_leaves_no_test_set() -> None:
    message = config_error(split={"train": 0.8, "val": 0.2})
    assert "params.yaml: split: train + val = 1 leaves no test set (must be < 1)" in message


def test_bounds_min_above_max() -> None:
    message = config_error(data={"bounds": {"demand_mw": [10.0, 5.0]}})
    assert "params.yaml: data.bounds: demand_mw: min 10.0 is above max 5.0" in message


def test_bounds_for_another_series_columns_do_not_block_this_one() -> None:
    # A params file kept from another series: its bounds name columns this one lacks.
    assert make_config(data={"bounds": {"price": [0.0, 1.0]}}).data.bounds == {"price": (0.0, 1.0)}


@pytest.mark.parametrize(
    ("frequency", "seasons", "calendar"),
    [
        ("30min", [48, 336], ["time_of_day", "day_of_week"]),
        ("h", [24, 168], ["time_of_day", "day_of_week"]),
        ("D", [7, 365], ["day_of_week", "day_of_year"]),
        ("B", [5], ["day_of_week", "day_of_year"]),
        ("W-SAT", [52], ["day_of_year"]),
        ("MS", [12], ["day_of_year"]),
        ("QS", [4], ["day_of_year"]),
    ],
)
def test_seasons_and_calendar_follow_the_frequency(
    frequency: str, seasons: list[int], calendar: list[str]
) -> None:
    cfg = make_config(data={"frequency": frequency})
    assert (cfg.seasons, cfg.calendar, cfg.mase_season) == (seasons, calendar, seasons[0])


def test_listed_seasons_win_over_the_frequency() -> None:
    cfg = make_config(baselines={"seasons": [12, 4]}, evaluation={"mase_season": 4})
    assert (cfg.seasons, cfg.mase_season, cfg.reference_season) == ([4, 12], 4, 4)


def test_rows_mode_needs_a_step_frequency() -> None:
    message = config_error(data={"frequency": "rows"})
    assert "params.yaml: data: step_frequency is required when frequency is rows" in message
    cfg = make_config(data={"frequency": "rows", "step_frequency": "B"})
    assert (cfg.data.regular, cfg.data.calendar_frequency, cfg.seasons) == (False, "B", [5])
    message = config_error(data={"step_frequency": "B"})
    assert "step_frequency only applies when frequency is rows" in message


def test_an_exchange_calendar_dates_trading_days() -> None:
    cfg = make_config(data={"frequency": "rows", "step_frequency": "XNYS"})
    assert (cfg.data.step_frequency, cfg.data.calendar_frequency, cfg.seasons) == (
        "XNYS",
        "C",
        [5],
    )
    assert cfg.calendar == ["day_of_week", "day_of_year"]
    message = config_error(data={"frequency": "rows", "step_frequency": "XNYZ"})
    assert "data.step_frequency" in message and "exchange calendar such as XNYS" in message


@pytest.mark.parametrize(
    "data",
    [
        {"targets": ["demand_mw", "demand_mw"]},
        {"features": ["demand_mw"]},
        {"timestamp": "demand_mw"},
    ],
)
def test_column_named_twice(data: dict) -> None:
    message = config_error(data=data)
    named_twice = "a column is named twice among timestamp/series/targets/features"
    assert f"params.yaml: data: {named_twice}" in message
    assert "['demand_mw']" in message


@pytest.mark.parametrize("frequency", ["fortnightly", "30minutes", ""])
def test_bad_frequency(frequency: str) -> None:
    message = config_error(data={"frequency": frequency})
    assert "params.yaml: data.frequency: not a pandas frequency such as 30min, h, D" in message


def test_seasonal_reference_needs_a_season() -> None:
    message = config_error(data={"frequency": "YS"}, features={"reference": "seasonal_naive"})
    assert "params.yaml: (top level): features.reference_season: seasonal_naive needs a season" in (
        message
    )
    assert make_config(features={"reference": "seasonal_naive", "reference_season": 4})
    assert make_config(features={"reference": "seasonal_naive"}).reference_season == 48


def test_unknown_model_kind() -> None:
    cfg = make_config()
    assert cfg.models.get("lstm").units == 50
    with pytest.raises(ConfigError, match=r"^models: unknown model kind 'transformer'"):
        cfg.models.get("transformer")


def test_every_bad_key_is_reported_at_once() -> None:
    message = config_error(window={"input_width": 0, "horizon": 0}, train={"batch_size": 0})
    lines = message.splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "window.input_width",
        "window.horizon",
        "train.batch_size",
    ]


def test_missing_required_key() -> None:
    raw = raw_params()
    del raw["window"]["horizon"]
    with pytest.raises(ConfigError, match=r"params.yaml: window.horizon: Field required$"):
        parse_config(raw)


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"params.yaml: expected a mapping of sections, got list"):
        parse_config([1, 2])


def test_load_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml: params file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("window: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        load_config(broken)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw_params(window={"input_width": 0})))
    with pytest.raises(ConfigError, match=r"bad.yaml: window.input_width: "):
        load_config(bad)


def test_flatten_gives_dotted_string_keys() -> None:
    flat = flatten(make_config(models={"gru": {"units": 7}}))
    assert flat["window.input_width"] == "8"
    assert flat["window.history_across_splits"] == "True"
    assert flat["split.train"] == "0.5"
    assert flat["data.targets"] == "['demand_mw']"
    assert flat["data.bounds.demand_mw"] == "[0.0, 100000.0]"
    assert flat["models.gru.units"] == "7"
    assert flat["models.lstm.units"] == "50"
    assert flat["features.reference_season"] == "None"
    assert all(isinstance(v, str) for v in flat.values())
    assert not any(isinstance(v, dict) for v in flat.values())
    # search: shapes no model (`make tune` logs what each trial tried instead); parallel: where
    # the per-series work runs, with the same results on every engine.
    assert {key.split(".")[0] for key in flat} == set(Config.model_fields) - {"search", "parallel"}


def test_statistical_rivals_default_and_unknown_name_is_named() -> None:
    assert make_config().baselines.statistical == ["autoets", "autotheta"]
    message = config_error(baselines={"statistical": ["autoets", "prophet"]})
    assert "baselines.statistical" in message and "'prophet'" in message
    assert parse_config(raw_params(baselines={"statistical": []})).baselines.statistical == []


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"test": 0}, "params.yaml: split.test: expected a fraction between 0 and 1"),
        ({"test": 18.0}, "params.yaml: split.test: expected a fraction between 0 and 1"),
        ({"val": True}, "params.yaml: split.val: expected a fraction between 0 and 1"),
        ({"test": 18}, "params.yaml: split: train, val and test are all given"),
        ({"test": 0.3}, "params.yaml: split: train + val + test = 1.05 must be 1"),
    ],
)
def test_split_sizes_are_fractions_or_steps(split: dict, message: str) -> None:
    # raw_params' split holds train 0.5 and val 0.25 already.
    assert message in config_error(split=split)


def test_split_test_in_steps_leaves_train_what_is_left() -> None:
    cfg = parse_config({**raw_params(), "split": {"val": 18, "test": 18}})
    assert (cfg.split.train, cfg.split.val, cfg.split.test, cfg.split.left) == (
        None,
        18,
        18,
        "train",
    )
    assert make_config().split.test == 0.25 and make_config().split.left == "test"
