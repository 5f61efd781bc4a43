"""Online conformal calibration, so a served p90 really covers 90% of outcomes.

Each learner's raw quantile gets an additive offset (in log-ms) equal to an empirical
quantile of its recent residuals ``y - raw``: split conformal on a sliding window, which
forgets a regime in ``window`` samples. On top, adaptive conformal inference (Gibbs and
Candes, 2021) moves the level of that empirical quantile by ``step`` per miss or hit, so
coverage is pulled back to target even while the window still holds pre-shift residuals.
"""

from __future__ import annotations

import numpy as np

from latency_oracle.models.ring import RingBuffer


class AdaptiveConformal:
    """Per-quantile offsets from windowed residuals, with ACI-adapted levels."""

    def __init__(self, quantiles: tuple[float, ...], window: int, step: float) -> None:
        self.targets = np.asarray(quantiles, dtype=float)
        self.window = window
        self.step = step
        self.reset()

    @property
    def _max_levels(self) -> np.ndarray:
        """The highest level each quantile may adapt to: a tenth of its miss rate short of
        1. At level 1 the offset is the largest residual in the window, one outlier (a
        request stuck behind a saturated queue) multiplying every prediction by itself."""
        return 1.0 - (1.0 - self.targets) / 10.0

    def reset(self) -> None:
        self.levels = self.targets.copy()
        self.offsets = np.zeros(len(self.targets))
        self._scores = RingBuffer(self.window, len(self.targets))

    def forget(self) -> None:
        """Start over after a drift, trusting the rebuilt learner's own quantiles: the
        residuals kept describe the model before the rebuild (they widened the new one
        to cover the old one's misses) and the misses that moved the levels are its too."""
        self.reset()

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated log-quantiles for raw (n, q) learner output."""
        return raw + self.offsets

    def update(
        self, raw: np.ndarray, y: np.ndarray, served_extra: np.ndarray | None = None
    ) -> None:
        """Feed outcomes of predictions made with the current offsets, then re-fit them.

        ``served_extra`` is what was added on top when serving (per-pod corrections): the
        levels adapt to the misses of what was actually served, so raising a slow pod's
        predictions does not leave the others over-covered.
        """
        scores = y[:, None] - raw
        served = self.offsets if served_extra is None else self.offsets + served_extra
        misses = scores > served
        self.levels = np.clip(
            self.levels + self.step * (misses - (1.0 - self.targets)).sum(axis=0),
            0.0,
            self._max_levels,
        )
        self._scores.extend(scores)
        self.offsets = conformal_quantiles(self._scores.view(), self.levels)


def conformal_quantiles(scores: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Split-conformal quantile of each column: its ceil(level * (n + 1))-th smallest."""
    n = len(scores)
    rank = np.clip(np.ceil(levels * (n + 1)).astype(np.int64) - 1, 0, n - 1)
    return np.sort(scores, axis=0)[rank, np.arange(scores.shape[1])]


def served_quantiles(calibrated_log: np.ndarray) -> np.ndarray:
    """Monotone quantiles in ms: a p99 below the p90 is never served."""
    return np.exp(np.maximum.accumulate(calibrated_log, axis=1))
