"""A quantile function fitted to the residual over a baseline, served with it added back.

A learner given an ``Offset`` fits ``y - offset(features)`` and publishes a
``ResidualFunction``: training and serving call the same offset function on the same
feature matrix, so the baseline cannot differ between them (train/serve skew).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the learner module builds these: no import cycle at run time
    from latency_oracle.models.learner import QuantileFunction

Offset = Callable[[np.ndarray], np.ndarray]  # (n, d) features -> (n,) log-ms baseline


@dataclass(frozen=True, slots=True)
class ResidualFunction:
    """``model`` (fitted to residuals) plus the per-row ``offset`` it was fitted against."""

    model: QuantileFunction
    offset: Offset

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.model(features) + self.offset(features)[:, None]

    def leading(self, k: int) -> ResidualFunction:
        return ResidualFunction(self.model.leading(k), self.offset)
