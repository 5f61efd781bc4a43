"""Incremental XGBoost: continued boosting on a sliding window, multi-quantile objective.

Every ``boost_every`` new samples a few trees are added, fitted on the most recent
``window`` samples with ``reg:quantileerror``; the new trees correct what the older trees
get wrong about recent traffic, which is how the model follows drift. When the forest
reaches ``max_rounds`` it is refitted from scratch on the window, which bounds its size
(and so prediction cost) and forgets stale structure.

Trees predict flat beyond the feature range of their window. Given an ``offset`` (a
physics baseline, see ``models.prior``), they fit the residual over it instead, its scale
and floor fitted on the window whenever the forest is built anew (``models.baseline_fit``),
so their predictions keep growing with the baseline past the deepest queue they have
seen, as steeply as the data says, and a baseline the data does not follow costs nothing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import xgboost as xgb

from latency_oracle.models.forest import CompiledForest
from latency_oracle.models.learner import BaseLearner
from latency_oracle.models.residual import Offset
from latency_oracle.models.ring import RingBuffer

MIN_REBUILD = 64  # fewest samples a forest is rebuilt on while its window fills


def quantile_params(
    quantiles: tuple[float, ...],
    max_depth: int,
    learning_rate: float,
    monotone: tuple[int, ...] | None,
    **regularisation: float,
) -> dict[str, object]:
    """XGBoost parameters of a multi-quantile forest on one thread, as the learners fit
    them, with ``monotone`` sign constraints per feature where any is set."""
    params: dict[str, object] = {
        "objective": "reg:quantileerror",
        "quantile_alpha": list(quantiles),
        "tree_method": "hist",
        "max_bin": 64,
        "max_depth": max_depth,
        "eta": learning_rate,
        **regularisation,
        "nthread": 1,
        "verbosity": 0,
    }
    if monotone and any(monotone):
        params["monotone_constraints"] = "(" + ",".join(map(str, monotone)) + ")"
    return params


class IncrementalXGBoost(BaseLearner):
    """Sliding-window continued boosting with one output per served quantile."""

    name = "xgboost"

    def __init__(
        self,
        quantiles: tuple[float, ...],
        n_features: int,
        *,
        window: int = 1024,
        boost_every: int = 256,
        first_fit: int | None = None,
        rounds_per_boost: int = 2,
        max_rounds: int = 40,
        refit_rounds: int = 16,
        max_depth: int = 5,
        learning_rate: float = 0.3,
        monotone: tuple[int, ...] | None = None,
        offset: Offset | None = None,
    ) -> None:
        super().__init__(quantiles, n_features, offset)
        self.window = window
        self.boost_every = boost_every
        # Samples before the first fit (default: boost_every): a model that must serve
        # early, like the global one every cold type falls back to, fits sooner.
        self.first_fit = boost_every if first_fit is None else first_fit
        self.rounds_per_boost = rounds_per_boost
        self.max_rounds = max_rounds
        self.refit_rounds = refit_rounds
        self.params = quantile_params(
            self.quantiles, max_depth, learning_rate, monotone, min_child_weight=4.0
        )
        self.reset()

    def reset(self) -> None:
        self._n_samples = 0
        self._function = None
        self._forest: CompiledForest | None = None
        self._booster: xgb.Booster | None = None
        self._recent = RingBuffer(self.window, self.n_features + 1)
        self._since_boost = 0
        self._rebuild_at = self.window + 1  # none from cold: boosting builds the first forest
        self._forget_offset()

    def forget(self, keep: int) -> None:
        """Keep the last ``keep`` samples (at least ``MIN_REBUILD``) and rebuild the forest
        on them alone now, then again each time they double, till the window is full."""
        recent = self._recent.latest(max(keep, MIN_REBUILD))
        self._recent = RingBuffer(self.window, self.n_features + 1)
        self._recent.extend(recent)
        self._rebuild_at = MIN_REBUILD
        self._rebuild_if_due()

    @property
    def booster(self) -> xgb.Booster | None:
        """The fitted trees, for review: they predict the log-latency residual over the
        offset from the features in ``FEATURE_NAMES`` order, one output per quantile."""
        return self._booster

    def learn_many(self, features: np.ndarray, y: np.ndarray) -> None:
        self._recent.extend(np.column_stack([features, y]))
        self._n_samples += len(y)
        self._since_boost += len(y)
        if self._rebuild_if_due():
            return
        due = self.boost_every if self._booster is not None else self.first_fit
        if self._since_boost >= due and len(self._recent) >= min(64, self.window):
            self._boost()
            self._since_boost = 0

    def _rebuild_if_due(self) -> bool:
        """While the window fills again after a forget, rebuild the forest on all it holds
        each time that doubles: a few rebuilds, each on twice the data."""
        if self._rebuild_at > self.window or len(self._recent) < self._rebuild_at:
            return False
        self._booster = None
        self._boost()
        self._since_boost = 0
        while self._rebuild_at <= len(self._recent) and self._rebuild_at <= self.window:
            self._rebuild_at *= 2
        return True

    def _boost(self) -> None:
        recent = self._recent.view()
        features, y = recent[:, :-1], recent[:, -1]
        booster = self._booster
        full = booster is not None and (
            booster.num_boosted_rounds() + self.rounds_per_boost > self.max_rounds
        )
        refit = booster is None or full or self._forest is None
        if refit and self.offset is not None:  # new trees, so a new baseline may be fitted
            self._fit_offset(self.offset(features), y)
        data = xgb.DMatrix(features, self._residual(features, y), nthread=1)
        n_outputs, depth = len(self.quantiles), self.params["max_depth"]
        if refit:
            booster = xgb.train(self.params, data, num_boost_round=self.refit_rounds)
            forest = CompiledForest.from_booster(booster, n_outputs, depth)
        else:
            done = booster.num_boosted_rounds()
            booster = xgb.train(
                self.params, data, num_boost_round=self.rounds_per_boost, xgb_model=booster
            )
            added = CompiledForest.from_booster(booster[done:], n_outputs, depth)
            forest = self._forest.extend(replace(added, booster=booster))
        self._booster, self._forest = booster, forest
        self._publish(forest)
