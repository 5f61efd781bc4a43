"""River's linear regression on the pinball (quantile) loss: the fast online learner.

One ``river.linear_model.LinearRegression`` per served quantile learns sample by sample.
Standardisation is done here, vectorised over the batch, instead of by River's
``StandardScaler``: it is the same running mean/variance, at a fraction of the per-sample
cost, and it makes the fitted model exportable to one matrix product for serving.
Given an ``offset`` (see ``models.residual``) it fits the residual over that baseline,
whose scale and floor follow its last ``BASELINE_WINDOW`` samples (``models.baseline_fit``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from river import linear_model, optim

from latency_oracle.models.learner import BaseLearner
from latency_oracle.models.residual import Offset
from latency_oracle.models.ring import RingBuffer

BASELINE_WINDOW = 1_024


class RunningStandardizer:
    """Running mean and variance per column (Chan's parallel update), batch at a time."""

    def __init__(self, n_columns: int) -> None:
        self.count = 0
        self.mean = np.zeros(n_columns)
        self.m2 = np.zeros(n_columns)

    def update(self, batch: np.ndarray) -> None:
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(axis=0)
        batch_m2 = ((batch - batch_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + batch_m2 + delta**2 * (self.count * n / total)
        self.count = total

    def inverse_scale(self) -> np.ndarray:
        """1/std per column; constant columns get 0 so they contribute nothing."""
        var = self.m2 / max(self.count, 1)
        with np.errstate(divide="ignore"):
            return np.where(var > 1e-12, 1.0 / np.sqrt(var), 0.0)


@dataclass(frozen=True, slots=True)
class LinearQuantileFunction:
    """Serving form of the linear learners: ((x - mean) * inv_scale) @ weights + intercept,
    each feature first clipped into the range it was learned on (``low``..``high``).

    A linear model of log-latency extrapolates exponentially: a weight learned on queues
    of 0-2 requests, applied to a queue of 200, served p90s of minutes for requests of a
    quarter second. Beyond the states it has seen it predicts as at their edge; growth
    past them is the physics baseline's to give (``models.residual``), not the slope's.
    """

    mean: np.ndarray
    inv_scale: np.ndarray
    weights: np.ndarray  # (d, q)
    intercept: np.ndarray  # (q,)
    low: np.ndarray | None = None  # (d,) per-feature range learned on (None: unclipped)
    high: np.ndarray | None = None

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if self.low is not None:
            features = np.clip(features, self.low, self.high)
        return ((features - self.mean) * self.inv_scale) @ self.weights + self.intercept

    def leading(self, k: int) -> LinearQuantileFunction:
        return replace(self, weights=self.weights[:, :k], intercept=self.intercept[:k])


class RiverQuantileLinear(BaseLearner):
    """Per-quantile River linear regressions on standardised features and a centred target."""

    name = "river_linear"

    def __init__(
        self,
        quantiles: tuple[float, ...],
        n_features: int,
        learning_rate: float = 0.02,
        monotone: tuple[int, ...] | None = None,
        offset: Offset | None = None,
    ) -> None:
        super().__init__(quantiles, n_features, offset)
        self.learning_rate = learning_rate
        self.monotone = monotone or (0,) * n_features
        self.reset()

    def reset(self) -> None:
        self._n_samples = 0
        self._function = None
        self._keys = [f"x{i}" for i in range(self.n_features)]
        self._scaler = RunningStandardizer(self.n_features)
        self._low = np.full(self.n_features, np.inf)
        self._high = np.full(self.n_features, -np.inf)
        self._target = RunningStandardizer(1)
        # Recent (baseline, outcome) pairs in log-ms: the baseline's fit follows them.
        self._baseline_recent = RingBuffer(BASELINE_WINDOW, 2)
        self._forget_offset()
        self._regressors = [
            linear_model.LinearRegression(
                optimizer=optim.SGD(self.learning_rate),
                loss=optim.losses.Quantile(alpha=q),
                intercept_lr=self.learning_rate,
                l2=0.0,
            )
            for q in self.quantiles
        ]

    def learn_many(self, features: np.ndarray, y: np.ndarray) -> None:
        if self.offset is not None:
            self._baseline_recent.extend(np.column_stack([self.offset(features), y]))
            recent = self._baseline_recent.view()
            self._fit_offset(recent[:, 0], recent[:, 1])
        y = self._residual(features, y)
        self._scaler.update(features)
        if len(features):
            self._low = np.minimum(self._low, features.min(axis=0))
            self._high = np.maximum(self._high, features.max(axis=0))
        self._target.update(y.reshape(-1, 1))
        inv_scale = self._scaler.inverse_scale()
        centred = (y - self._target.mean[0]).tolist()
        rows = [
            dict(zip(self._keys, row, strict=True))
            for row in ((features - self._scaler.mean) * inv_scale).tolist()
        ]
        for regressor in self._regressors:
            learn = regressor.learn_one
            for row, target in zip(rows, centred, strict=True):
                learn(row, target)
        self._project_onto_monotone()
        self._n_samples += len(rows)
        self._publish(self._export(inv_scale))

    def _project_onto_monotone(self) -> None:
        """Projected SGD: clip each constrained weight to its sign after every batch.

        Features are standardised with a positive scale, so a weight's sign is the sign
        of the feature's effect on the prediction.
        """
        constrained = [(k, s) for k, s in zip(self._keys, self.monotone, strict=True) if s]
        for regressor in self._regressors:
            weights = regressor._weights  # River keeps them in a mutable VectorDict
            for key, sign in constrained:
                if weights.get(key, 0.0) * sign < 0:
                    weights[key] = 0.0

    def _export(self, inv_scale: np.ndarray) -> LinearQuantileFunction:
        weights = np.array(
            [[reg.weights.get(key, 0.0) for reg in self._regressors] for key in self._keys]
        )
        intercept = np.array([reg.intercept for reg in self._regressors]) + self._target.mean[0]
        return LinearQuantileFunction(
            self._scaler.mean.copy(),
            inv_scale,
            weights,
            intercept,
            self._low.copy(),
            self._high.copy(),
        )
