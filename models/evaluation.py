"""Prequential evaluation: every sample is scored by a model that has not yet learned it.

Scores are kept in milliseconds (what an SLO is written in) over a sliding window, so
"recent loss" means the last ``window`` samples and a drift shows within that many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latency_oracle.models.ring import RingBuffer


def pinball_loss(y: np.ndarray, predicted: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Per-sample, per-quantile pinball loss of (n, q) predictions for (n,) outcomes."""
    diff = y[:, None] - predicted
    return np.maximum(quantiles * diff, (quantiles - 1.0) * diff)


@dataclass(frozen=True, slots=True)
class WindowScores:
    """Means over the evaluation window."""

    samples: int
    pinball: tuple[float, ...]  # per quantile, ms
    coverage: tuple[float, ...]  # per quantile, fraction of outcomes at or below it
    mae: float  # of the median-most quantile, ms


class PrequentialEvaluator:
    """Sliding-window pinball loss, coverage and MAE of calibrated predictions."""

    def __init__(self, quantiles: tuple[float, ...], window: int) -> None:
        self.quantiles = np.asarray(quantiles, dtype=float)
        self._median = int(np.argmin(np.abs(self.quantiles - 0.5)))
        self.window = window
        self.reset()

    def reset(self) -> None:
        q = len(self.quantiles)
        self._rows = RingBuffer(self.window, 2 * q + 1)
        self.total_samples = 0

    def update(self, predicted_ms: np.ndarray, y_ms: np.ndarray) -> None:
        """Score (n, q) predictions, in ms, made before the model saw ``y_ms``."""
        loss = pinball_loss(y_ms, predicted_ms, self.quantiles)
        covered = y_ms[:, None] <= predicted_ms
        error = np.abs(y_ms - predicted_ms[:, self._median])
        self._rows.extend(np.column_stack([loss, covered, error]))
        self.total_samples += len(y_ms)

    def __len__(self) -> int:
        return len(self._rows)

    def scores(self, latest: int | None = None) -> WindowScores:
        """Means over the window, or over its ``latest`` samples only: learners compared
        on the same recent samples, not one on a calm past and the other on a drift."""
        q = len(self.quantiles)
        if len(self._rows) == 0:
            nan = (float("nan"),) * q
            return WindowScores(0, nan, nan, float("nan"))
        rows = self._rows.view() if latest is None else self._rows.latest(latest)
        means = rows.mean(axis=0)
        return WindowScores(
            samples=len(rows),
            pinball=tuple(means[:q].tolist()),
            coverage=tuple(means[q : 2 * q].tolist()),
            mae=float(means[-1]),
        )
