"""Learners that fail on demand, for the tests of the learner guard (predictor and trainer)."""

from __future__ import annotations

import numpy as np

from latency_oracle.features.engineering import N_FEATURES
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.keys import ModelKey
from latency_oracle.models.learner import Learner
from latency_oracle.models.persistence.allowed_types import SNAPSHOT_TYPES
from latency_oracle.models.river_linear import RiverQuantileLinear


class ExplodingLearner(RiverQuantileLinear):
    """Learns normally until ``explode`` is set, then raises while learning."""

    name = "exploding"
    explode = False

    def learn_many(self, features: np.ndarray, y: np.ndarray) -> None:
        if ExplodingLearner.explode:
            raise RuntimeError("boom")
        super().learn_many(features, y)


class DivergingLearner(RiverQuantileLinear):
    """Its predictions blow up to 1e29 ms once ``diverge`` is set, as River's HATR did."""

    name = "diverging"
    diverge = False

    def predict_many(self, features: np.ndarray) -> np.ndarray:
        out = super().predict_many(features)
        return out + 67.0 if DivergingLearner.diverge else out


class GuardedConfig(ModelConfig):
    """Every model key learns with the two learners above, which fail when told to."""

    def make_learners(self, key: ModelKey) -> list[Learner]:
        return [
            ExplodingLearner(self.quantiles, N_FEATURES),
            DivergingLearner(self.quantiles, N_FEATURES),
        ]


SNAPSHOT_TYPES.register(ExplodingLearner, DivergingLearner, GuardedConfig)


def guarded_config(fast: ModelConfig) -> GuardedConfig:
    """``fast`` with the guarded learners in place of the real ones."""
    return GuardedConfig(**{name: getattr(fast, name) for name in ModelConfig.__slots__})
