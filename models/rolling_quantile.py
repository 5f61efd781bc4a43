"""The state-blind rolling quantile: the simple method, made a contender.

It predicts, for every request alike, the empirical quantiles of the last ``window``
outcomes of its key. It ignores the pod's state, so it can never extrapolate, and it
answers from the first outcome: a new (accelerator, served model) pair is right about its
speed after a few dozen outcomes whatever its hardware label says. Where load barely
moves latency it is as sharp as anything; the election keeps it serving only there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latency_oracle.models.learner import BaseLearner
from latency_oracle.models.ring import RingBuffer

DEFAULT_WINDOW = 200  # issue 27's state-blind baseline: the p90 of the last 200 requests


@dataclass(frozen=True, slots=True)
class ConstantQuantileFunction:
    """The same (q,) log-ms quantiles for every row."""

    values: np.ndarray

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.repeat(self.values[None, :], len(features), axis=0)

    def leading(self, k: int) -> ConstantQuantileFunction:
        return ConstantQuantileFunction(self.values[:k])


class RollingQuantile(BaseLearner):
    """Empirical quantiles of the last ``window`` log-ms outcomes, whatever the features."""

    name = "rolling_quantile"

    def __init__(
        self, quantiles: tuple[float, ...], n_features: int, window: int = DEFAULT_WINDOW
    ) -> None:
        super().__init__(quantiles, n_features)
        self.window = window
        self.reset()

    def reset(self) -> None:
        self._n_samples = 0
        self._function = None
        self._recent = RingBuffer(self.window, 1)

    def forget(self, keep: int) -> None:
        """After a drift: only the last ``keep`` outcomes describe the new regime."""
        recent = self._recent.latest(max(keep, 1))
        self._recent = RingBuffer(self.window, 1)
        self._recent.extend(recent)
        self._publish_window()

    def learn_many(self, features: np.ndarray, y: np.ndarray) -> None:
        del features  # state-blind by design
        self._recent.extend(np.asarray(y, dtype=np.float64).reshape(-1, 1))
        self._n_samples += len(y)
        self._publish_window()

    def _publish_window(self) -> None:
        if len(self._recent):
            values = np.quantile(self._recent.view()[:, 0], self.quantiles)
            self._publish(ConstantQuantileFunction(values))
