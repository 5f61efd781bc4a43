"""Online conformal calibration, so a served p90 really covers 90% of outcomes.

Each learner's raw quantile gets an additive offset (in log-ms) equal to an empirical
quantile of its recent residuals ``y - raw``: split conformal on a sliding window, which
forgets a regime in ``window`` samples. On top, adaptive conformal inference (Gibbs and
Candes, 2021) moves the level of that empirical quantile by ``step`` per miss or hit, so
coverage is pulled back to target even while the window still holds pre-shift residuals.
"""

from __future__ import annotations

import numpy as np

from models.ring import RingBuffer


class AdaptiveConformal:
    """Per-quantile offsets from windowed residuals, with ACI-adapted levels."""

    def __init__(self, quantiles: tuple[float, ...], window: int, step: float) -> None:
        self.targets = np.asarray(quantiles, dtype=float)
        self.window = window
        self.step = step
        self.reset()

    def reset(self) -> None:
        self.levels = self.targets.copy()
        self.offsets = np.zeros(len(self.targets))
        self._scores = RingBuffer(self.window, len(self.targets))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated log-quantiles for raw (n, q) learner output."""
        return raw + self.offsets

    def update(self, raw: np.ndarray, y: np.ndarray) -> None:
        """Feed outcomes of predictions made with the current offsets, then re-fit them."""
        scores = y[:, None] - raw
        misses = scores > self.offsets
        self.levels = np.clip(
            self.levels + self.step * (misses - (1.0 - self.targets)).sum(axis=0), 0.0, 1.0
        )
        self._scores.extend(scores)
        filled = len(self._scores)
        ordered = np.sort(self._scores.view(), axis=0)
        rank = np.ceil(self.levels * (filled + 1)).astype(np.int64) - 1
        rank = np.clip(rank, 0, filled - 1)
        self.offsets = ordered[rank, np.arange(len(self.targets))]
