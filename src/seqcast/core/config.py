"""One validated model of params.yaml: the single source of truth for every stage."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from seqcast.core.errors import ConfigError

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
CalendarFeature = Literal["time_of_day", "day_of_week", "day_of_year"]
CALENDAR_FEATURES = ("time_of_day", "day_of_week", "day_of_year")
MODEL_KINDS = ("gru", "lstm")
# data.frequency for rows that are consecutive steps whatever their timestamps say.
ROWS = "rows"
# MLflow's rule for param names (mlflow.utils.validation): each bound is logged as the param
# `data.bounds.<column>`, so a column outside it would pass here and fail only at train.
_PARAM_NAME = re.compile(r"^[/\w.\- :]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    path: str
    timestamp: str = "timestamp"
    targets: list[str] = Field(min_length=1)
    features: list[str] = []
    frequency: str
    # With frequency `rows`: the pandas alias that dates forecast steps (B for trading days),
    # or an exchange calendar (XNYS, XLON, ...: its trading days, holidays skipped).
    step_frequency: str | None = None
    max_null_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    max_filled_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    bounds: dict[str, tuple[float, float]] = {}
    # A panel in long format: the column(s) naming each row's series ([]: one series, as before).
    series: list[str] = []
    # A series that fails validation is left out and listed (exclude), or stops the run (fail).
    bad_series: Literal["exclude", "fail"] = "exclude"
    # More than this share of the panel's series excluded fails the run.
    max_excluded_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1

    @field_validator("series", mode="before")
    @classmethod
    def _series_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("frequency")
    @classmethod
    def _known_frequency(cls, value: str) -> str:
        if value == ROWS:
            return value
        return _pandas_frequency(value, "or rows (each row the next step)")

    @field_validator("step_frequency")
    @classmethod
    def _known_step_frequency(cls, value: str | None) -> str | None:
        if value is None or is_exchange(value):
            return value
        return _pandas_frequency(value, "such as B, or an exchange calendar such as XNYS")

    @field_validator("bounds")
    @classmethod
    def _ordered_bounds(cls, value: dict[str, tuple[float, float]]) -> dict:
        for column, (low, high) in value.items():
            if not _PARAM_NAME.match(column) or ".." in column.split("/"):
                raise ValueError(
                    f"{column!r}: MLflow logs this bound as the param data.bounds.{column}, and "
                    "param names may only hold letters, digits, _ - . : / and spaces; rename "
                    "the column in the CSV and in params.yaml (e.g. demand_mw)"
                )
            if low > high:
                raise ValueError(f"{column}: min {low} is above max {high}")
        return value

    @model_validator(mode="after")
    def _distinct_columns(self) -> DataConfig:
        columns = [self.timestamp, *self.series, *self.targets, *self.features]
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise ValueError(
                f"a column is named twice among timestamp/series/targets/features: {duplicated}"
            )
        return self

    @model_validator(mode="after")
    def _rows_need_a_step_frequency(self) -> DataConfig:
        if self.frequency == ROWS and self.step_frequency is None:
            raise ValueError(
                "step_frequency is required when frequency is rows: the pandas alias that dates "
                "the forecast steps after the last row (B for trading days, 10min, ...)"
            )
        if self.frequency != ROWS and self.step_frequency is not None:
            raise ValueError("step_frequency only applies when frequency is rows")
        return self

    @property
    def value_columns(self) -> list[str]:
        """Targets first, then features: the column order of every array."""
        return [*self.targets, *self.features]

    @property
    def is_panel(self) -> bool:
        """True when the data is many series in long format (data.series names them)."""
        return bool(self.series)

    @property
    def regular(self) -> bool:
        """True when rows sit on a time grid (gaps are detected and filled)."""
        return self.frequency != ROWS

    @property
    def calendar_frequency(self) -> str:
        """The pandas alias that steps from one row, or forecast step, to the next."""
        if self.regular:
            return self.frequency
        # An exchange's trading days: business days with holidays, pandas' custom business day.
        return "C" if is_exchange(str(self.step_frequency)) else str(self.step_frequency)


# A split size: a fraction in (0, 1) of the rows (a panel: of its calendar steps) or an int
# number of rows (steps). Of train, val and test, the one not given is what is left.
SplitSize = int | float
SPLIT_DEFAULTS = {"train": 0.7, "val": 0.1}


class SplitConfig(_Section):
    train: SplitSize | None = None
    val: SplitSize | None = None
    test: SplitSize | None = None
    max_gap_steps: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, raw: object) -> object:
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        given = [key for key in ("train", "val", "test") if raw.get(key) is not None]
        # Today's default (train 0.7, val 0.1, test what is left) fills only what two sizes need.
        if "val" not in given and len(given) < 2:
            raw["val"] = SPLIT_DEFAULTS["val"]
        if "train" not in given and "test" not in given:
            raw["train"] = SPLIT_DEFAULTS["train"]
        train, val = raw.get("train"), raw.get("val")
        if raw.get("test") is None and _is_fraction(train) and _is_fraction(val):
            left = round(1.0 - train - val, 12)  # 1 - 0.7 - 0.1 is 0.20000000000000004
            raw["test"] = left if left > 0 else None
        return raw

    @field_validator("train", "val", "test", mode="before")
    @classmethod
    def _fraction_or_steps(cls, value: object) -> object:
        if value is None or _is_fraction(value):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        raise ValueError(
            f"expected a fraction between 0 and 1 (exclusive) or a whole number of steps >= 1, "
            f"got {value!r}"
        )

    @model_validator(mode="after")
    def _leaves_a_test_set(self) -> SplitConfig:
        sizes = {"train": self.train, "val": self.val, "test": self.test}
        given = {key: size for key, size in sizes.items() if size is not None}
        fractions = all(isinstance(size, float) for size in given.values())
        if len(given) == 3 and not fractions:
            raise ValueError(
                "train, val and test are all given with a number of steps among them: give two "
                "of them (the third is what is left)"
            )
        if fractions and len(given) == 3 and abs(sum(given.values()) - 1.0) > 1e-9:
            raise ValueError(
                f"train + val + test = {sum(given.values()):g} must be 1 (or give two of them: "
                "the third is what is left)"
            )
        if fractions and len(given) == 2 and sum(given.values()) >= 1.0:
            missing = next(key for key in sizes if key not in given)
            named = " + ".join(given)
            raise ValueError(
                f"{named} = {sum(given.values()):g} leaves no {missing} set (must be < 1)"
            )
        return self

    @property
    def left(self) -> str:
        """The split that takes the rows the others leave: test, unless another is not given."""
        if isinstance(self.train, float) and isinstance(self.val, float):
            return "test"  # today's rule, to the row, whether or not test was written down
        return next(key for key in ("train", "val", "test") if getattr(self, key) is None)


def _is_fraction(value: object) -> bool:
    """A float strictly between 0 and 1."""
    return isinstance(value, float) and 0.0 < value < 1.0


class ScalingConfig(_Section):
    scaler: Literal["standard", "minmax", "robust"] = "standard"


class WindowConfig(_Section):
    input_width: PositiveInt
    horizon: PositiveInt
    shift: PositiveInt = 1
    stride: PositiveInt = 1
    history_across_splits: bool = True
    # A panel: train on at most this many windows of each series per epoch (null: all), drawn
    # afresh each epoch, so a few long series do not drown many short ones.
    max_windows_per_series: PositiveInt | None = None


class FeaturesConfig(_Section):
    calendar: list[CalendarFeature] | Literal["auto"] = "auto"
    reference: Literal["none", "naive", "seasonal_naive", "auto"] = "auto"
    # With reference seasonal_naive: which season (default: the shortest of baselines.seasons).
    reference_season: PositiveInt | None = None
    # Panel network only: width of a learned per-series embedding (0: off; 8 measured worse on
    # M1, sMAPE 20.97 against 18.80 at the 2017-01 origin, and a series unseen at fit has none),
    # and static numeric columns (constant within a series; each series' first row is read) fed
    # beside the recurrent summary.
    series_embedding: Annotated[int, Field(ge=0, le=256)] = 0
    static: list[str] = []

    @field_validator("static")
    @classmethod
    def _distinct_static(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"features.static: {value} lists a column twice")
        return value


STATISTICAL_MODELS = ("autoets", "autotheta", "autoarima")


class BaselinesConfig(_Section):
    seasons: list[PositiveInt] | Literal["auto"] = "auto"
    linear_alpha: Annotated[float, Field(ge=0.0)] = 1.0
    # statsforecast rivals on the networks' windows; autoarima is opt-in (its order search on
    # long seasons takes minutes); [] turns them off.
    statistical: list[str] = ["autoets", "autotheta"]

    @field_validator("statistical")
    @classmethod
    def _known_rivals(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in STATISTICAL_MODELS]
        if unknown:
            raise ValueError(
                f"baselines.statistical: unknown model(s) {unknown}; expected some of "
                f"{list(STATISTICAL_MODELS)}"
            )
        if len(set(value)) != len(value):
            raise ValueError(f"baselines.statistical: {value} lists a model twice")
        return value


class EvaluationConfig(_Section):
    mase_season: PositiveInt | Literal["auto"] = "auto"


class BacktestConfig(_Section):
    # Rolling origins before the test split; 0 decides on the single validation split instead.
    origins: Annotated[int, Field(ge=0, le=100)] = 4
    # Rows of each block forecast after an origin (auto: the validation split's rows).
    step: PositiveInt | Literal["auto"] = "auto"
    window: Literal["expanding", "sliding"] = "expanding"
    # Refit the networks every r origins (1: at each), or once at the first origin.
    refit_every: PositiveInt | Literal["once"] = 1
    # How the candidate with the best mean must beat the best simple baseline to be served:
    # paired_test (a Diebold-Mariano test over every backtest window, HAC for overlapping
    # windows: one-sided p below `significance`), min_wins (more than `min_wins` of the origins)
    # or mean (the best mean alone).
    rule: Literal["paired_test", "min_wins", "mean"] = "paired_test"
    significance: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    # With rule min_wins: beat the best simple baseline on more than this share of origins.
    min_wins: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5


Level = Annotated[float, Field(gt=0.0, lt=100.0)]


class IntervalsConfig(_Section):
    levels: list[Level] = Field(default=[80.0, 95.0], min_length=1)
    # The most recent out-of-sample errors per horizon step that calibrate a band.
    calibration_window: Annotated[int, Field(ge=10)] = 500
    # The latest out-of-sample errors per step that calibrate the served model: every backtest
    # block and test window (a simple baseline: every window), so several periods count.
    served_window: Annotated[int, Field(ge=10)] = 2000
    # local: normalised conformal bands, each error divided by the local scale of the history
    # at its origin (the mean one-step change over its latest scale_window rows), the band the
    # scaled errors' quantile times the request's local scale; none: +/- the errors' quantile.
    scale: Literal["local", "none"] = "local"
    # Rows (up to the origin) whose one-step changes make the local scale: a short window follows
    # the noise of the moment (README: 10 against the model's whole context, on 5 futures).
    scale_window: Annotated[int, Field(ge=2)] = 10
    # Adaptive conformal inference (Gibbs and Candes 2021) on the ledger's scored pipeline
    # forecasts: each miss of a served band moves its quantile level up by this rate, each hit
    # down by rate x the nominal miss share. 0: nominal levels, never adapted.
    adapt_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05

    @field_validator("levels")
    @classmethod
    def _distinct_levels(cls, value: list[float]) -> list[float]:
        if len(set(value)) != len(value):
            raise ValueError(f"levels {value} repeat a level")
        return sorted(value)


class RefitConfig(_Section):
    # After the decision, fit the chosen recipe on every row up to the latest before serving.
    all_rows: bool = True


class TrainConfig(_Section):
    seed: int = 42
    backend: Literal["tensorflow", "jax"] = "tensorflow"
    jit_compile: Literal["auto"] | bool = "auto"
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.002
    patience: Annotated[int, Field(ge=0)] = 5
    # auto: MSE of scaled residuals for a single series (as ever), MAE of the window-scaled
    # targets for a panel network (M1, 2017-01 origin: sMAPE 18.80 / MASE 1.304 against MSE's
    # 19.15 / 1.354; benchmarks/panel_m1.py).
    loss: Literal["auto", "mse", "mae"] = "auto"
    # Panel network: fit this many networks with seeds seed, seed + 1, ... and serve the mean of
    # their forecasts (one model).
    members: Annotated[int, Field(gt=0, le=32)] = 1


class ModelConfig(_Section):
    units: PositiveInt = 50
    layers: PositiveInt = 1
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    recurrent_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class ModelsConfig(_Section):
    gru: ModelConfig = ModelConfig()
    lstm: ModelConfig = ModelConfig()

    def get(self, kind: str) -> ModelConfig:
        """The settings of one model kind."""
        if kind not in MODEL_KINDS:
            raise ConfigError(f"models: unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
        return getattr(self, kind)


# Safe in models:/<name>@alias URIs and registry filters: MLflow forbids / and :, quotes break.
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class TrackingConfig(_Section):
    experiment: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")] = (
        "seqcast"
    )
    registered_model: Annotated[str, Field(min_length=1, max_length=200, pattern=NAME)] = (
        "seqcast-forecaster"
    )


class PromotionConfig(_Section):
    metric: Literal["mae", "rmse", "mase", "smape"] = "mase"
    margin: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    # The most a run of a DVC experiment (not the checkout itself) may set.
    from_experiments: Literal["champion", "challenger", "none"] = "challenger"
    # A panel: each series is served by the chosen network unless a baseline beat it there.
    per_series_fallback: bool = True


class IngestConfig(_Section):
    source: str | None = None
    mode: Literal["replace", "extend"] = "extend"


class ScheduleConfig(_Section):
    cron: str = "0 3 * * *"
    timezone: str = "UTC"
    timeout_seconds: PositiveInt = 3600


class MonitoringConfig(_Section):
    # always: `dvc repro` every scheduled run (DVC retrains what the new data made stale);
    # on_alarm: only on a decay or drift alarm; every_n_rows: after that many new rows, or on alarm.
    retrain: Literal["always", "on_alarm", "every_n_rows"] = "always"
    every_n_rows: PositiveInt = 336
    # After a retrain, no alarm retrains again until this many rows have arrived: the seasonal
    # drift check keeps alarming for a season after a level shift the retrain already saw.
    cooldown_rows: Annotated[int, Field(ge=0)] = 336
    # The champion's latest scored ledger forecasts the decay test reads.
    decay_window: Annotated[int, Field(ge=1, le=1000)] = 7
    warn_p: Fraction = 0.05
    alarm_p: Fraction = 0.01
    # `seqcast serve` records every forecast it answers in the ledger (one per origin).
    ledger_on_serve: bool = False

    @model_validator(mode="after")
    def _alarm_below_warn(self) -> MonitoringConfig:
        if self.alarm_p > self.warn_p:
            raise ValueError(f"alarm_p {self.alarm_p:g} must not exceed warn_p {self.warn_p:g}")
        return self


class ParallelConfig(_Section):
    """Where a panel's per-series work (statistical rivals) runs: Ray tasks or this process."""

    # ray: tasks on a local Ray (or the cluster at RAY_ADDRESS); local: in this process.
    engine: Literal["ray", "local"] = "ray"
    # Local Ray's CPUs (null: the machine's); ignored with RAY_ADDRESS (the cluster's).
    cpus: PositiveInt | None = None
    # Series per task at most (fewer when that gives each Ray CPU 4 tasks): large enough that
    # Ray's per-task cost is small beside the fits.
    chunk_series: PositiveInt = 2000
    # Reruns of a task whose worker died or that raised a transient error (OSError, MemoryError).
    retries: Annotated[int, Field(ge=0)] = 3


class Config(_Section):
    data: DataConfig
    split: SplitConfig = SplitConfig()
    scaling: ScalingConfig = ScalingConfig()
    window: WindowConfig
    features: FeaturesConfig = FeaturesConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    backtest: BacktestConfig = BacktestConfig()
    intervals: IntervalsConfig = IntervalsConfig()
    refit: RefitConfig = RefitConfig()
    train: TrainConfig = TrainConfig()
    models: ModelsConfig = ModelsConfig()
    tracking: TrackingConfig = TrackingConfig()
    promotion: PromotionConfig = PromotionConfig()
    ingest: IngestConfig = IngestConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    search: SearchConfig = Field(default_factory=lambda: SearchConfig())
    parallel: ParallelConfig = ParallelConfig()

    @property
    def target_indices(self) -> list[int]:
        """Positions of the targets among the value columns."""
        return list(range(len(self.data.targets)))

    @property
    def seasons(self) -> list[int]:
        """baselines.seasons, or the seasons of the data's frequency when `auto`."""
        if self.baselines.seasons != "auto":
            return sorted(set(self.baselines.seasons))
        return default_seasons(self.data.calendar_frequency)

    @property
    def calendar(self) -> list[str]:
        """features.calendar, or the cycles that vary at the data's frequency when `auto`."""
        if self.features.calendar != "auto":
            return list(self.features.calendar)
        return default_calendar(self.data.calendar_frequency)

    @property
    def reference_season(self) -> int | None:
        """The seasonal_naive reference's season: features.reference_season or the shortest."""
        if self.features.reference_season is not None:
            return self.features.reference_season
        return min(self.seasons, default=None)

    @property
    def mase_season(self) -> int:
        """evaluation.mase_season, or the shortest season (1, the naive step, when none)."""
        if self.evaluation.mase_season != "auto":
            return self.evaluation.mase_season
        return min(self.seasons, default=1)

    @model_validator(mode="after")
    def _seasonal_reference_has_a_season(self) -> Config:
        if self.features.reference == "seasonal_naive" and self.reference_season is None:
            raise ValueError(
                "features.reference_season: seasonal_naive needs a season; set it, or list "
                f"baselines.seasons (none for frequency {self.data.calendar_frequency})"
            )
        return self

    @model_validator(mode="after")
    def _static_columns_are_features(self) -> Config:
        unknown = [c for c in self.features.static if c not in self.data.features]
        if unknown:
            raise ValueError(
                f"features.static: {unknown} not among data.features {self.data.features}"
            )
        return self


def is_exchange(value: str) -> bool:
    """Whether a step frequency names an exchange calendar (XNYS, XLON, ...), not a pandas alias."""
    # Exchange codes are upper-case words; only those are looked up (the import costs 0.6 s).
    if not (value.isupper() and value.isalnum() and len(value) >= 4):
        return False
    import exchange_calendars as xcals

    return value in xcals.get_calendar_names(include_aliases=True)


def _pandas_frequency(value: str, also: str) -> str:
    """A pandas offset alias, or a readable error."""
    import pandas as pd

    try:
        pd.tseries.frequencies.to_offset(value)
    except ValueError as err:
        raise ValueError(
            f"not a pandas frequency such as 30min, h, D, W-SUN, MS, {also}: {err}"
        ) from None
    return value


def _steps_per(frequency: str, period: str) -> int | None:
    """Whole steps of a fixed-length frequency in a period (1D, 7D), else None."""
    import pandas as pd

    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(frequency))
    except ValueError:
        return None  # a calendar frequency (B, W-SUN, MS): no fixed length
    count = pd.Timedelta(period) / step
    return int(count) if count >= 2 and float(count).is_integer() else None


def default_seasons(frequency: str) -> list[int]:
    """The usual seasons of a frequency: a day and a week for sub-daily data, else a year."""
    import pandas as pd

    name = pd.tseries.frequencies.to_offset(frequency).name
    by_calendar = {"B": [5], "C": [5], "W": [52], "MS": [12], "ME": [12], "QS": [4], "QE": [4]}
    for prefix, seasons in by_calendar.items():
        if name == prefix or name.startswith(prefix + "-"):
            return seasons
    day, week = _steps_per(frequency, "1D"), _steps_per(frequency, "7D")
    if day:
        return [day, week] if week else [day]
    if week == 7:  # daily: the week, and the year (dropped when it costs most training windows)
        return [7, 365]
    return [week] if week else []


def default_calendar(frequency: str) -> list[str]:
    """Calendar cycles that change from one step to the next at this frequency."""
    import pandas as pd

    offset = pd.tseries.frequencies.to_offset(frequency)
    try:
        step = pd.Timedelta(offset)
    except ValueError:  # calendar frequencies: business days, weeks, months, quarters
        return ["day_of_week", "day_of_year"] if offset.name in ("B", "C") else ["day_of_year"]
    if step < pd.Timedelta("1D"):
        return ["time_of_day", "day_of_week"]
    if step < pd.Timedelta("7D"):
        return ["day_of_week", "day_of_year"]
    return ["day_of_year"]


def _key(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_config(raw: object, source: str = "params.yaml") -> Config:
    """Validate a parsed params mapping; errors name every bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            message = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                message = "unknown key (a typo? see params.yaml for the known keys)"
            got = "" if e["type"] in ("missing", "extra_forbidden") else f" (got {e['input']!r})"
            lines.append(f"{source}: {_key(e['loc'])}: {message}{got}")
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_config(raw, str(path))


def missing_dvc_params(params: str | Path, dvc_yaml: str | Path) -> list[tuple[str, str]]:
    """(key, stage) of every params key dvc.yaml tracks that the params file lacks.

    DVC refuses to run a stage whose tracked params are missing from the file, even where
    seqcast has a default: this names them before DVC does.
    """
    raw = yaml.safe_load(Path(params).read_text()) or {}
    stages = (yaml.safe_load(Path(dvc_yaml).read_text()) or {}).get("stages", {})
    missing = []
    for name, stage in stages.items():
        kinds = stage.get("matrix", {}).get("model", [None])
        for entry in stage.get("params", []):
            if not isinstance(entry, str):
                continue
            for kind in kinds:
                key = entry.replace("${item.model}", str(kind))
                node: object = raw
                for part in key.split("."):
                    node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
                if node is _MISSING and (key, name) not in missing:
                    missing.append((key, name))
    return missing


_MISSING = object()


def flatten(config: Config) -> dict[str, str]:
    """Params as dotted keys, for MLflow."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = str(value)

    # The search's own knobs shape no model: a trial's run logs the settings it tried instead.
    # Nor does where the per-series work runs: every engine gives the same results.
    walk("", config.model_dump(mode="json", exclude={"search", "parallel"}))
    return out


class IntRange(_Section):
    """An integer range searched from low to high (log: on a log scale)."""

    low: PositiveInt
    high: PositiveInt
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low >= self.high:
            raise ValueError(
                f"empty or inverted range: low {self.low} must be below high {self.high} "
                "(a list of one value fixes a setting)"
            )
        return self


class FloatRange(_Section):
    """A real range searched from low to high (log: on a log scale, low > 0)."""

    low: Annotated[float, Field(ge=0.0)]
    high: Annotated[float, Field(gt=0.0)]
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low >= self.high:
            raise ValueError(
                f"empty or inverted range: low {self.low:g} must be below high {self.high:g} "
                "(a list of one value fixes a setting)"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low:g})")
        return self


def _list_or_range(value: object) -> str:
    """Which branch of a dimension to validate: one error, not one per branch."""
    return "list" if isinstance(value, list | tuple) else "range"


def _dimension(choices: object, bounds: type) -> object:
    """A searched setting: a list of choices or a range, validated as the one it looks like."""
    return Annotated[
        Annotated[list[choices], Field(min_length=1), Tag("list")]  # type: ignore[valid-type]
        | Annotated[bounds, Tag("range")],
        Discriminator(_list_or_range),
    ]


IntDimension = _dimension(PositiveInt, IntRange)
UnitDimension = _dimension(Annotated[float, Field(ge=0.0, lt=1.0)], FloatRange)
RateDimension = _dimension(Annotated[float, Field(gt=0.0, le=1.0)], FloatRange)


class SearchSpace(_Section):
    """Each setting the search may vary: a list of choices or a {low, high, log} range."""

    input_width: IntDimension | None = None
    units: IntDimension | None = None
    layers: IntDimension | None = None
    dropout: UnitDimension | None = None
    recurrent_dropout: UnitDimension | None = None
    learning_rate: RateDimension | None = None
    batch_size: IntDimension | None = None

    @model_validator(mode="after")
    def _fractions_below_one(self) -> SearchSpace:
        for name in ("dropout", "recurrent_dropout", "learning_rate"):
            value = getattr(self, name)
            if not isinstance(value, FloatRange):
                continue
            if name == "learning_rate" and value.high > 1.0:
                raise ValueError(f"learning_rate: high {value.high:g} is above 1")
            if name != "learning_rate" and value.high >= 1.0:
                raise ValueError(f"{name}: high {value.high:g} must be below 1")
        return self

    def dimensions(self) -> dict[str, list | IntRange | FloatRange]:
        """The settings searched, by name, in a fixed order."""
        return {k: v for k, v in self if v is not None}


class SearchConfig(_Section):
    # Network kinds searched (more than one: the kind is itself a setting).
    models: Annotated[list[Literal["gru", "lstm"]], Field(min_length=1)] = ["gru"]
    trials: PositiveInt = 30
    # No new trial starts after this; running trials finish (null: the trials budget alone).
    timeout_minutes: Annotated[float, Field(gt=0.0)] | None = None
    parallel: PositiveInt = 2
    # Ray CPUs on this machine (null: all of them); ignored with RAY_ADDRESS (the cluster's).
    cpus: PositiveInt | None = None
    seed: int = 0
    # Stop a trial whose per-epoch validation loss is worse than the median of earlier trials.
    pruner: Literal["median", "none"] = "median"
    startup_trials: Annotated[int, Field(ge=0)] = 5
    space: SearchSpace = SearchSpace(
        input_width=[48, 96, 192],
        units=IntRange(low=16, high=128, log=True),
        layers=[1, 2],
        dropout=FloatRange(low=0.0, high=0.3),
        learning_rate=FloatRange(low=0.0003, high=0.01, log=True),
        batch_size=[32, 64, 128],
    )

    @model_validator(mode="after")
    def _something_to_search(self) -> SearchConfig:
        if not self.space.dimensions() and len(self.models) < 2:
            raise ValueError("space: nothing to search (name at least one setting)")
        return self
