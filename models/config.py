"""Model settings, decoupled from the environment so tests and the evaluator build their own."""

from __future__ import annotations

from dataclasses import dataclass

from features.engineering import N_FEATURES, monotone_signs
from features.plausibility import ObservationBounds
from latency_oracle.settings import Settings
from models.keys import GLOBAL_ACCELERATOR, ModelKey
from models.learner import Learner
from models.river_linear import RiverQuantileLinear
from models.xgboost_learner import IncrementalXGBoost


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Everything a model set needs to build, calibrate, evaluate and elect its learners."""

    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)
    headline_quantile: float = 0.9
    min_samples: int = 300
    eval_window: int = 2_000
    champion_margin: float = 0.02
    calibration_window: int = 1_000
    calibration_step: float = 0.005
    calibration_history: int = 16
    river_learning_rate: float = 0.02
    xgb_window: int = 1_024
    xgb_boost_every: int = 512
    xgb_rounds_per_boost: int = 2
    xgb_max_rounds: int = 40
    xgb_refit_rounds: int = 16
    xgb_max_depth: int = 5
    drift_delta: float = 0.002
    challenger_window: int = 500
    challenger_max_samples: int = 10_000
    max_ttft_ms: float = 600_000.0
    min_tpot_ms: float = 0.05
    max_tpot_ms: float = 10_000.0
    max_context_tokens: int = 2_097_152
    max_accelerators: int = 256

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelConfig:
        return cls(**{name: getattr(settings, name) for name in cls.__slots__})

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
        """Fresh learners for a key: the fast online one and the trees.

        The global model gets trees only: transferring across hardware needs interactions
        (compute-bound prefill scales with TFLOP/s, decode with bandwidth) that a linear
        model cannot express, and it learns from every observation, so it must be cheap.
        """
        monotone = monotone_signs(key.target.value)
        trees = IncrementalXGBoost(
            self.quantiles,
            N_FEATURES,
            window=self.xgb_window,
            boost_every=self.xgb_boost_every,
            rounds_per_boost=self.xgb_rounds_per_boost,
            max_rounds=self.xgb_max_rounds,
            refit_rounds=self.xgb_refit_rounds,
            max_depth=self.xgb_max_depth,
            monotone=monotone,
        )
        if key.accelerator == GLOBAL_ACCELERATOR:
            return [trees]
        linear = RiverQuantileLinear(
            self.quantiles, N_FEATURES, self.river_learning_rate, monotone=monotone
        )
        return [linear, trees]
