"""The one typed settings object of the service.

Every knob is an environment variable with the prefix ``LATENCY_ORACLE_`` (for example
``LATENCY_ORACLE_PORT=9000``); the README's settings table is generated from this class,
so a setting that is not here does not exist.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "LATENCY_ORACLE_"


class Settings(BaseSettings):
    """Service configuration, read once from the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    host: str = Field("127.0.0.1", description="Address the predictor listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port the predictor listens on.")
    log_level: str = Field("info", description="Python logging level.")

    quantiles: Annotated[tuple[float, ...], NoDecode] = Field(
        (0.5, 0.9, 0.99), description="Quantiles served, comma-separated, ascending."
    )
    headline_quantile: float = Field(
        0.9, description="Quantile whose pinball loss picks the champion learner."
    )
    min_samples: int = Field(
        300,
        ge=1,
        description="Own samples a model key needs before it serves; until then the "
        "global model (or the physics prior) answers and the answer says cold.",
    )
    max_batch_items: int = Field(
        10_000, ge=1, description="Most items in one bulk prediction or observation call."
    )

    learn_batch_size: int = Field(256, ge=1, description="Observations learned per cycle.")
    observation_buffer: int = Field(
        100_000,
        ge=1,
        description="Observations accepted but not yet learned; beyond it writes get 503.",
    )
    dedup_window: int = Field(
        1_000_000, ge=1, description="Recent observation ids remembered for idempotency."
    )
    eval_window: int = Field(
        2_000, ge=50, description="Samples in the sliding prequential evaluation window."
    )
    champion_margin: float = Field(
        0.02, ge=0, le=0.5, description="Relative loss gain a challenger needs to take over."
    )
    calibration_window: int = Field(
        1_000, ge=50, description="Recent residuals the conformal layer calibrates on."
    )
    calibration_step: float = Field(
        0.005, gt=0, le=0.1, description="Adaptive conformal step size (per sample)."
    )
    river_learning_rate: float = Field(
        0.02, gt=0, description="SGD learning rate of the River quantile regressors."
    )
    xgb_window: int = Field(
        1_024, ge=64, description="Recent samples each XGBoost boosting step fits on."
    )
    xgb_boost_every: int = Field(
        512, ge=16, description="New samples between XGBoost continued-boosting steps."
    )
    xgb_rounds_per_boost: int = Field(2, ge=1, description="Trees added per boosting step.")
    xgb_max_rounds: int = Field(
        80, ge=4, description="Rounds after which XGBoost refits from its window."
    )
    xgb_refit_rounds: int = Field(24, ge=1, description="Rounds of a refit from the window.")
    xgb_max_depth: int = Field(5, ge=1, le=10, description="XGBoost tree depth.")

    state_dir: Path = Field(
        Path("latency-oracle-state"),
        description="Where the embedded default keeps model snapshots.",
    )
    snapshot_interval_s: float = Field(
        30.0, gt=0, description="Seconds between model snapshots to disk."
    )

    @field_validator("quantiles", mode="before")
    @classmethod
    def _parse_quantiles(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("quantiles")
    @classmethod
    def _check_quantiles(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 < q < 1 for q in value) or list(value) != sorted(set(value)):
            raise ValueError("quantiles must be distinct, ascending and inside (0, 1)")
        return value

    @field_validator("headline_quantile")
    @classmethod
    def _check_headline(cls, value: float, info: object) -> float:
        quantiles = getattr(info, "data", {}).get("quantiles", ())
        if quantiles and value not in quantiles:
            raise ValueError("headline_quantile must be one of the served quantiles")
        return value

    @property
    def snapshot_path(self) -> Path:
        return self.state_dir / "models.snapshot"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process (tests build their own ``Settings`` instead)."""
    return Settings()
