"""What the learners serve, and how they learn, evaluate, calibrate and follow drift."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode


class LearningSettings(BaseModel):
    """What the learners serve, and how they learn, evaluate, calibrate and follow drift."""

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
    global_min_samples: int = Field(
        100,
        ge=1,
        description="Samples the global model (all accelerator types, with hardware "
        "descriptors) needs before it answers cold types; until then the physics prior "
        "does and routing falls back to its heuristic. Lower than min_samples: it learns "
        "from every pod, so at a trace's rate it takes over within a minute or two.",
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
        0.002, gt=0, le=0.1, description="Adaptive conformal step size (per sample)."
    )
    pod_calibration_window: int = Field(
        32,
        ge=8,
        le=4_096,
        description="Recent outcomes per pod its own conformal correction is taken from "
        "(a slowed or hot pod gets covered again within a few dozen of them).",
    )
    pod_calibration_min_samples: int = Field(
        16, ge=1, description="Outcomes a pod needs before its own correction applies."
    )
    pod_calibration_max_pods: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Pods with their own correction per model key (least recently seen "
        "evicted); each costs ~0.7 KB per learner.",
    )
    calibration_history: int = Field(
        16,
        ge=0,
        le=4_096,
        description="Recent model versions kept per learner so calibration scores each "
        "outcome against the version that served its request (0: against the newest); "
        "each costs ~0.1-0.4 MB per model key.",
    )
    river_learning_rate: float = Field(
        0.02, gt=0, description="SGD learning rate of the River quantile regressors."
    )
    xgb_window: int = Field(
        2_048, ge=64, description="Recent samples each XGBoost boosting step fits on."
    )
    xgb_boost_every: int = Field(
        512, ge=16, description="New samples between XGBoost continued-boosting steps."
    )
    xgb_rounds_per_boost: int = Field(2, ge=1, description="Trees added per boosting step.")
    xgb_max_rounds: int = Field(
        40, ge=4, description="Rounds after which XGBoost refits from its window."
    )
    xgb_refit_rounds: int = Field(16, ge=1, description="Rounds of a refit from the window.")
    xgb_max_depth: int = Field(5, ge=1, le=10, description="XGBoost tree depth.")
    batch_per_bucket: int = Field(
        200,
        ge=8,
        le=4_096,
        description="Recent samples the batch-refit trees keep per (queue, KV-cache) bucket "
        "(100 buckets: at most 100x this many rows of 23 floats per key and target).",
    )
    batch_refit_every: int = Field(
        2_048,
        ge=16,
        description="New samples between background refits of the batch trees (while "
        "fewer are held, each time they double). A refit of 20k samples costs ~1 s of one "
        "core; every 512 samples it cost 60% more CPU per sample learned than the rest.",
    )
    regime_memory: int = Field(
        3,
        ge=0,
        le=16,
        description="Champions displaced by a drift kept per model key, frozen and scored on "
        "new samples, so a regime that returns is served by the model that knew it.",
    )
    drift_delta: float = Field(
        0.002,
        gt=0,
        lt=1,
        description="ADWIN confidence on the champion's residuals: lower, fewer false drifts.",
    )
    challenger_window: int = Field(
        500,
        ge=50,
        description="Post-drift samples on which a challenger must beat the champion.",
    )
    challenger_max_samples: int = Field(
        10_000, ge=50, description="Samples after which a challenger that never won is dropped."
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
