"""A memory of regimes: champions a drift displaced, kept frozen and scored on new samples.

Load patterns recur (day and night, a tenant's batch job, an engine restarted with its old
settings). After a drift every learner forgets the old regime and relearns the new one;
when the old one comes back, relearning it costs the same loss again. So the champion a
drift displaces is kept, as it was: frozen (it neither learns nor recalibrates, so it
stays the model of its regime), scored on every new sample like the live learners. When
its recent loss beats the champion's by the election margin, it is re-elected and learns
on from there. At most ``regime_memory`` are kept per key, the oldest dropped first.
"""

from __future__ import annotations

from copy import deepcopy
from typing import TYPE_CHECKING

import numpy as np

from latency_oracle.models.calibration import served_quantiles
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.evaluation import PrequentialEvaluator

# How much better on the latest samples a past regime's model must be to serve again.
RECALL_MARGIN = 0.25
RECALL_SAMPLES = 50  # ... over this many latest samples, scored by both

if TYPE_CHECKING:
    from latency_oracle.models.model_set import LearnerSlot


def frozen_copy(slot: LearnerSlot) -> LearnerSlot:
    """An independent copy of ``slot`` (a refit in flight and recent serving versions are
    not copied), its scores started over.

    Its calibration starts over too, trusting the learner's own quantiles: the drift was
    detected after the batch that showed it was calibrated on, and adaptive conformal
    had already raised the offsets to cover the new regime (4.5x too high on the old
    one's return, in the test)."""
    copy = deepcopy(slot)
    copy.evaluator.reset()
    copy.calibrator.forget()
    copy.pod_offsets.reset()
    copy.versions.clear()
    return copy


class RegimeMemory:
    """Dormant champions of past regimes, newest last."""

    def __init__(self, quantiles: tuple[float, ...], size: int) -> None:
        self.size = size
        self.dormant: list[LearnerSlot] = []
        # The champion's served predictions, scored on the same samples as the dormant
        # models and never reset by a drift: the first batch of a returning regime
        # already tells which model knows it.
        self.champion_scores = PrequentialEvaluator(quantiles, RECALL_SAMPLES)

    def __len__(self) -> int:
        return len(self.dormant)

    def remember(self, slot: LearnerSlot) -> None:
        """Keep a frozen copy of ``slot`` (a champion about to forget its regime)."""
        if self.size <= 0 or not slot.learner.is_fitted:
            return
        self.dormant = [*self.dormant, frozen_copy(slot)][-self.size :]

    def score(
        self, features: np.ndarray, y_log: np.ndarray, champion_served: np.ndarray | None
    ) -> None:
        """Score every dormant model on the batch, as it would have served it, and the
        champion's ``champion_served`` predictions of it (None: it served none)."""
        if not self.dormant:
            return
        y_ms = np.exp(y_log)
        if champion_served is None:
            self.champion_scores.reset()
        else:
            self.champion_scores.update(champion_served, y_ms)
        for slot in self.dormant:
            raw = slot.learner.predict_many(features)
            slot.evaluator.update(served_quantiles(slot.calibrator.calibrate(raw)), y_ms)

    def recall(self, config: ModelConfig) -> LearnerSlot | None:
        """The dormant model that beat the champion's served predictions on the latest
        ``RECALL_SAMPLES`` samples by ``RECALL_MARGIN``; None if none did.

        Only the latest samples count: a regime returns at once, and every sample served
        by the wrong regime's model costs several times its due, so the memory must not
        wait for the drift detector or a long window. The wide margin keeps two models of
        one regime from trading places on noise.
        """
        recent = RECALL_SAMPLES
        if len(self.champion_scores) < recent:
            return None
        champion_loss = self.champion_scores.scores().pinball[config.headline_index]
        best, best_loss = None, np.inf
        for slot in self.dormant:
            if len(slot.evaluator) < recent:
                continue
            loss = slot.headline_loss(config, recent)
            if loss < champion_loss * (1 - RECALL_MARGIN) and loss < best_loss:
                best, best_loss = slot, loss
        return best

    def swap(self, revived: LearnerSlot, displaced: LearnerSlot) -> None:
        """``revived`` serves again; the live slot it replaces is remembered in its place."""
        self.dormant = [s for s in self.dormant if s is not revived]
        self.remember(displaced)
        self.champion_scores.reset()
