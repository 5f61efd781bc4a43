"""Drift response of one model set: detect a regime change, race a challenger, promote it.

The champion keeps serving through a drift. Every slot first forgets what came before
it: the learner keeps only the samples ADWIN places after the change (sliding-window
learners rebuild on them at once), and calibration, pod corrections and scores start
over. What drift adds too is a challenger, a fresh learner of the champion's kind that
sees post-drift data only, so it is not dragged by the old regime the way an incremental
learner is. Champion and challenger are scored on the same post-drift samples; the
challenger replaces the champion once its recent headline pinball loss is lower by the
election margin.

Detection watches the champion's raw median log-residual with ADWIN: raw, because the
calibrated residual is pulled back within tens of samples by adaptive conformal and would
hide the change; log, because latency noise is multiplicative, so one threshold fits
every accelerator and target.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
from river import drift

from latency_oracle.models.config import ModelConfig
from latency_oracle.models.evaluation import PrequentialEvaluator
from latency_oracle.models.keys import ModelKey

if TYPE_CHECKING:
    from latency_oracle.models.model_set import LearnerSlot, ModelSet

# Events kept per model set: enough to review recent history, bounded for snapshots.
EVENT_HISTORY = 50


class EventKind(StrEnum):
    DRIFT = "drift"
    PROMOTION = "promotion"
    CHALLENGER_DROPPED = "challenger_dropped"
    RECALL = "recall"  # a past regime's champion serves again (``models.regime_memory``)


@dataclass(frozen=True, slots=True)
class ModelEvent:
    """Something that changed a model set's serving story, reported up for logging."""

    kind: EventKind
    key: ModelKey
    learner: str
    at: float  # unix time
    samples: int  # samples the model set had seen when it happened
    detail: str


class ResidualDriftDetector:
    """ADWIN over a stream of residuals; forgets everything after each detection."""

    def __init__(self, delta: float, grace: int) -> None:
        self.delta = delta
        self.grace = grace
        self.reset()

    def reset(self) -> None:
        self._adwin = drift.ADWIN(delta=self.delta, grace_period=self.grace)

    def update(self, residuals: np.ndarray) -> int:
        """Feed a batch; 0, or (with a fresh detector) the samples ADWIN kept when the
        mean changed within it: its estimate of how many came after the change."""
        for i, residual in enumerate(residuals.tolist()):
            self._adwin.update(residual)
            if self._adwin.drift_detected:
                kept = int(self._adwin.width) + len(residuals) - i - 1
                self.reset()
                return max(kept, 1)
        return 0


class ChallengerRace:
    """A challenger slot and the two same-sample windows it is judged on."""

    def __init__(self, slot: LearnerSlot, config: ModelConfig) -> None:
        self.slot = slot
        self.samples = 0
        self.champion_scores = PrequentialEvaluator(config.quantiles, config.challenger_window)
        self.challenger_scores = PrequentialEvaluator(config.quantiles, config.challenger_window)

    def step(
        self, features: np.ndarray, y_log: np.ndarray, champion: LearnerSlot, config: ModelConfig
    ) -> str | None:
        """Train the challenger on the batch and score both; the challenger's error if any."""
        error = self.slot.step(features, y_log, config)
        self.samples += len(y_log)
        if champion.last_served is not None and self.slot.last_served is not None:
            y_ms = np.exp(y_log)
            self.champion_scores.update(champion.last_served, y_ms)
            self.challenger_scores.update(self.slot.last_served, y_ms)
        return error

    def losses(self, config: ModelConfig) -> tuple[float, float]:
        """Recent headline pinball loss (ms) of the champion and of the challenger."""
        index = config.headline_index
        return (
            self.champion_scores.scores().pinball[index],
            self.challenger_scores.scores().pinball[index],
        )

    def challenger_wins(self, config: ModelConfig) -> bool:
        if not self.slot.eligible() or len(self.challenger_scores) < config.challenger_window:
            return False
        champion, challenger = self.losses(config)
        return challenger < champion * (1.0 - config.champion_margin)


class DriftWatch:
    """Watches one model set's champion and runs its challenger races."""

    def __init__(self, config: ModelConfig) -> None:
        self.detector = ResidualDriftDetector(config.drift_delta, config.min_eval_samples)
        self.race: ChallengerRace | None = None
        self.events: deque[ModelEvent] = deque(maxlen=EVENT_HISTORY)
        self.new_events: list[ModelEvent] = []
        self.drifts = 0
        self.promotions = 0
        self._watching: str | None = None

    def step(self, model_set: ModelSet, features: np.ndarray, y_log: np.ndarray) -> str | None:
        """Run after the model set's own slots learned the batch; a challenger error if any."""
        self.new_events = []
        champion = model_set.champion_slot()
        if champion is None or not champion.eligible():
            self._watching = None
            return None
        if self.race is not None:
            return self._run_race(model_set, champion, features, y_log)
        if champion.learner.name != self._watching:
            self._watching = champion.learner.name
            self.detector.reset()
        if champion.last_raw is None or model_set.n_samples < model_set.config.min_samples:
            return None
        median = int(np.argmin(np.abs(np.asarray(model_set.config.quantiles) - 0.5)))
        after = self.detector.update(y_log - champion.last_raw[:, median])
        if after:
            self.drifts += 1
            model_set.remember_champion()
            for slot in model_set.slots:
                slot.forget(after)
            self.record(model_set, EventKind.DRIFT, champion.learner.name, "ADWIN, p50 residual")
            self.race = ChallengerRace(model_set.spawn_challenger(), model_set.config)
        return None

    def _run_race(
        self, model_set: ModelSet, champion: LearnerSlot, features: np.ndarray, y_log: np.ndarray
    ) -> str | None:
        assert self.race is not None
        config = model_set.config
        error = self.race.step(features, y_log, champion, config)
        champion_loss, challenger_loss = self.race.losses(config)
        detail = (
            f"headline loss over {len(self.race.challenger_scores)} samples: challenger "
            f"{challenger_loss:.4g} ms, champion {champion_loss:.4g} ms"
        )
        if self.race.challenger_wins(config):
            model_set.promote(self.race.slot)
            self.promotions += 1
            self.record(model_set, EventKind.PROMOTION, self.race.slot.learner.name, detail)
            self._end_race()
        elif self.race.samples >= config.challenger_max_samples:
            self.record(
                model_set, EventKind.CHALLENGER_DROPPED, self.race.slot.learner.name, detail
            )
            self._end_race()
        return error

    def _end_race(self) -> None:
        self.race = None
        self._watching = None

    def record(self, model_set: ModelSet, kind: EventKind, learner: str, detail: str) -> None:
        event = ModelEvent(kind, model_set.key, learner, time.time(), model_set.n_samples, detail)
        self.events.append(event)
        self.new_events.append(event)
