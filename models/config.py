"""Model settings, decoupled from the environment so tests and the evaluator build their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from latency_oracle.features.engineering import N_FEATURES, monotone_signs
from latency_oracle.features.plausibility import ObservationBounds
from latency_oracle.models.batch_forest import BatchQuantileForest
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey, Target
from latency_oracle.models.learner import Learner
from latency_oracle.models.prior import prefill_backlog_log_ms
from latency_oracle.models.river_linear import RiverQuantileLinear
from latency_oracle.models.rolling_quantile import RollingQuantile
from latency_oracle.models.xgboost_learner import IncrementalXGBoost
from latency_oracle.settings import Settings


def _default(name: str) -> Any:
    """A setting's default: a ModelConfig built without the environment matches Settings."""
    return Settings.model_fields[name].default


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Everything a model set needs to build, calibrate, evaluate and elect its learners."""

    quantiles: tuple[float, ...] = _default("quantiles")
    headline_quantile: float = _default("headline_quantile")
    min_samples: int = _default("min_samples")
    global_min_samples: int = _default("global_min_samples")
    eval_window: int = _default("eval_window")
    champion_margin: float = _default("champion_margin")
    calibration_window: int = _default("calibration_window")
    calibration_step: float = _default("calibration_step")
    calibration_history: int = _default("calibration_history")
    pod_calibration_window: int = _default("pod_calibration_window")
    pod_calibration_min_samples: int = _default("pod_calibration_min_samples")
    pod_calibration_max_pods: int = _default("pod_calibration_max_pods")
    river_learning_rate: float = _default("river_learning_rate")
    xgb_window: int = _default("xgb_window")
    xgb_boost_every: int = _default("xgb_boost_every")
    xgb_rounds_per_boost: int = _default("xgb_rounds_per_boost")
    xgb_max_rounds: int = _default("xgb_max_rounds")
    xgb_refit_rounds: int = _default("xgb_refit_rounds")
    xgb_max_depth: int = _default("xgb_max_depth")
    batch_per_bucket: int = _default("batch_per_bucket")
    batch_refit_every: int = _default("batch_refit_every")
    regime_memory: int = _default("regime_memory")
    drift_delta: float = _default("drift_delta")
    challenger_window: int = _default("challenger_window")
    challenger_max_samples: int = _default("challenger_max_samples")
    max_ttft_ms: float = _default("max_ttft_ms")
    min_tpot_ms: float = _default("min_tpot_ms")
    max_tpot_ms: float = _default("max_tpot_ms")
    max_context_tokens: int = _default("max_context_tokens")
    max_accelerators: int = _default("max_accelerators")
    # Not a setting: the service always refits in the background. A simulation in
    # simulated time refits in line, at the sample the refit is due, so a seed
    # reproduces its run exactly (a background thread finishes whenever the OS says).
    background_refits: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ModelConfig:
        fields = Settings.model_fields
        return cls(
            **{name: getattr(settings, name) for name in cls.__slots__ if name in fields},
            **overrides,
        )

    @property
    def bounds(self) -> ObservationBounds:
        return ObservationBounds(
            self.max_ttft_ms, self.min_tpot_ms, self.max_tpot_ms, self.max_context_tokens
        )

    @property
    def headline_index(self) -> int:
        return self.quantiles.index(self.headline_quantile)

    @property
    def min_eval_samples(self) -> int:
        """Window samples a learner needs before its loss can elect it champion."""
        return min(100, self.eval_window)

    def make_learners(self, key: ModelKey) -> list[Learner]:
        """Fresh learners for a key: the state-blind rolling quantile, the fast online
        one, the incremental trees and the batch-refit trees (``models.batch_forest``).

        The global model gets trees only: transferring across hardware needs interactions
        (compute-bound prefill scales with TFLOP/s, decode with bandwidth) that a linear
        model cannot express, and it learns from every observation, so it must be cheap.
        TTFT learners fit the residual over the drain time of the queued prefill work
        (``models.prior``), its scale and floor fitted to their data (``models.baseline_fit``):
        the trees then keep rising past the deepest queue in their window instead of
        predicting flat, as steeply as the data says, and in-flight counts that are not
        the work ahead of the request get a scale near zero instead of a cost.
        """
        monotone = monotone_signs(key.target.value)
        offset = prefill_backlog_log_ms if key.target == Target.TTFT else None
        is_global = key.accelerator == GLOBAL_ACCELERATOR
        trees = IncrementalXGBoost(
            self.quantiles,
            N_FEATURES,
            window=self.xgb_window,
            boost_every=self.xgb_boost_every,
            first_fit=min(self.global_min_samples, self.xgb_boost_every) if is_global else None,
            rounds_per_boost=self.xgb_rounds_per_boost,
            max_rounds=self.xgb_max_rounds,
            refit_rounds=self.xgb_refit_rounds,
            max_depth=self.xgb_max_depth,
            monotone=monotone,
            offset=offset,
        )
        if is_global:
            return [trees]
        linear = RiverQuantileLinear(
            self.quantiles, N_FEATURES, self.river_learning_rate, monotone=monotone, offset=offset
        )
        batch = BatchQuantileForest(
            self.quantiles,
            N_FEATURES,
            per_bucket=self.batch_per_bucket,
            refit_every=self.batch_refit_every,
            background=self.background_refits,
            monotone=monotone,
            offset=offset,
        )
        # Before any learner has been scored, the first fitted one serves: the linear
        # model, which knows the pod's state from its first batch. The state-blind
        # rolling quantile serves where it wins the election (it would rank every pod alike).
        return [linear, trees, batch, RollingQuantile(self.quantiles, N_FEATURES)]
