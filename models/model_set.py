"""One model set per (accelerator type, target, served model): learners, their calibration
and the champion.

Every learner is guarded. A learner whose output is non-finite or absurd, or that raises
while learning, is dropped from serving and reset on the spot, and its failure stays
visible (state ``failed`` with the error) until it has re-learned enough to be trusted.
Serving never falls back silently: the published ``ServingModel`` names the learner.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from latency_oracle.models.calibration import AdaptiveConformal, served_quantiles
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.drift import DriftWatch, EventKind
from latency_oracle.models.evaluation import PrequentialEvaluator, WindowScores
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey
from latency_oracle.models.learner import Learner, QuantileFunction
from latency_oracle.models.pod_calibration import PodOffsets, offsets_of
from latency_oracle.models.regime_memory import RegimeMemory
from latency_oracle.models.served_history import ServedHistory
from latency_oracle.models.served_model_scale import ServedModelScale
from latency_oracle.models.status import KeyStatus, status_of

# Outputs outside [1 us, ~28 h] are not latencies: the learner has diverged.
LOG_MS_MIN = math.log(1e-3)
LOG_MS_MAX = math.log(1e8)
# A served quantile never exceeds this multiple of the largest outcome its key has seen:
# room for a queue deeper than any seen so far, none for an extrapolation gone wild.
CEILING_FACTOR = 10.0


class LearnerDiverged(ArithmeticError):
    """A learner produced non-finite or absurd output."""


def check_output(raw: np.ndarray) -> None:
    """Raise ``LearnerDiverged`` unless every log-ms prediction is finite and plausible."""
    if not np.all(np.isfinite(raw)):
        raise LearnerDiverged("non-finite prediction")
    low, high = float(raw.min()), float(raw.max())
    if low < LOG_MS_MIN or high > LOG_MS_MAX:
        raise LearnerDiverged(f"prediction out of range: log-ms {low:.3g}..{high:.3g}")


@dataclass(slots=True)
class LearnerHealth:
    """Whether a learner may serve, and the last thing that went wrong with it."""

    state: str = "warming"  # warming -> ok; failed until it has re-learned min_samples
    failures: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None


@dataclass(frozen=True, slots=True)
class LearnerFailure:
    """A learner failure, reported up so it shows on /readyz and /metrics."""

    key: ModelKey
    learner: str
    error: str


@dataclass(frozen=True, slots=True)
class ServingModel:
    """What predictions use for one key: immutable, swapped in by reference."""

    key: ModelKey
    learner: str
    label: str  # what a prediction says answered it: learner@accelerator
    key_label: str  # and which key: key.label(), made once here rather than per prediction
    function: QuantileFunction
    leading: QuantileFunction  # the first n_leading quantiles, up to the headline one
    n_leading: int
    offsets: np.ndarray
    pod_offsets: dict[str, np.ndarray]  # each known pod's own correction on top of offsets
    n_samples: int
    version: int
    updated_at: float
    # The global model's log-scale per served model (``models.served_model_scale``).
    model_scales: dict[str, float] = field(default_factory=dict)
    # log-ms no served quantile exceeds (``CEILING_FACTOR`` x the largest outcome seen).
    ceiling: float = math.inf

    def predict_log(
        self,
        features: np.ndarray,
        pods: np.ndarray | None = None,
        through_headline: bool = False,
        model_scale: float = 0.0,
    ) -> np.ndarray:
        """Every quantile, or (for routing) only those up to the headline one.

        With the requests' ``pods``, each pod's own correction is added where it has one;
        ``model_scale`` is the served model's, when the global model answers for it.
        """
        if through_headline:
            out = self.leading(features) + (self.offsets[: self.n_leading] + model_scale)
        else:
            out = self.function(features) + (self.offsets + model_scale)
        own = None if pods is None else offsets_of(self.pod_offsets, pods, len(self.offsets))
        if own is not None:
            out += own[:, : out.shape[1]]
        return np.minimum(out, self.ceiling + model_scale, out=out)


@dataclass(frozen=True, slots=True)
class BatchClock:
    """When a batch's requests arrived, and the latest finish time in it (data clock, s)."""

    arrived: np.ndarray
    learned_until: float


@dataclass
class LearnerSlot:
    """A learner with its own calibrator, evaluator and health."""

    learner: Learner
    calibrator: AdaptiveConformal
    pod_offsets: PodOffsets
    evaluator: PrequentialEvaluator
    versions: ServedHistory
    health: LearnerHealth = field(default_factory=LearnerHealth)
    # The last batch's predictions made before learning it (None if it could not predict):
    # drift detection and challenger races read them instead of predicting twice.
    last_raw: np.ndarray | None = None
    last_served: np.ndarray | None = None

    def step(
        self,
        features: np.ndarray,
        y_log: np.ndarray,
        config: ModelConfig,
        clock: BatchClock | None = None,
        pods: np.ndarray | None = None,
    ) -> str | None:
        """Predict, score, calibrate, then learn the batch; the error text if it failed.

        With the batch's ``clock``, calibration scores each outcome against the version
        that served its request (see ``models.served_history``); with its ``pods``, each
        pod's own correction learns from its outcomes (``models.pod_calibration``).
        """
        self.last_raw = self.last_served = None
        try:
            if self.learner.is_fitted:
                raw = self.learner.predict_many(features)
                check_output(raw)
                served = served_quantiles(self.calibrator.calibrate(raw))
                self.last_raw, self.last_served = raw, served
                self.evaluator.update(served, np.exp(y_log))
                if clock is not None:
                    raw = self.versions.raw_as_served(features, clock.arrived, raw)
                served_extra = None
                if pods is not None:
                    served_extra = self.pod_offsets.rows(pods)
                    self.pod_offsets.update(pods, y_log[:, None] - self.calibrator.calibrate(raw))
                self.calibrator.update(raw, y_log, served_extra)
            self.learner.learn_many(features, y_log)
            if self.learner.is_fitted:
                check_output(self.learner.predict_many(features))
                if clock is not None:
                    self.versions.record(clock.learned_until, self.learner.serving_function())
        except Exception as exc:  # any learner bug must fail loudly, never crash the trainer
            return self._fail(f"{type(exc).__name__}: {exc}")
        trusted = self.health.state == "warming" or self.learner.n_samples >= config.min_samples
        if trusted and len(self.evaluator) >= config.min_eval_samples:
            self.health.state = "ok"
        return None

    def forget(self, keep: int) -> None:
        """After a drift: the learner keeps only the last ``keep`` samples; calibration,
        pod corrections and scores start over, so learners are compared after the drift."""
        self.learner.forget(keep)
        self.calibrator.forget()
        self.pod_offsets.reset()
        self.evaluator.reset()
        self.versions.clear()  # versions before the rebuild served another model

    def _fail(self, error: str) -> str:
        self.health.state = "failed"
        self.health.failures += 1
        self.health.last_error = error[:500]
        self.health.last_failure_at = time.time()
        self.learner.reset()
        self.calibrator.reset()
        self.pod_offsets.reset()
        self.evaluator.reset()
        self.versions.clear()
        return self.health.last_error

    def eligible(self) -> bool:
        return self.health.state == "ok" and self.learner.is_fitted

    def headline_loss(self, config: ModelConfig, latest: int | None = None) -> float:
        return self.evaluator.scores(latest).pinball[config.headline_index]


class ModelSet:
    """All learners of one key, evaluated prequentially; the best recent one serves."""

    # The largest log-ms outcome learned (normalised, on the global key): the ceiling of
    # what it serves. A class default, so snapshots from before it restore.
    max_log_seen: float = -math.inf
    # Champions of past regimes (``models.regime_memory``); None in older snapshots.
    memory: RegimeMemory | None = None

    def __init__(self, key: ModelKey, config: ModelConfig) -> None:
        self.key = key
        self.config = config
        self.slots = [self._new_slot(learner) for learner in config.make_learners(key)]
        self.champion: str | None = None
        self.n_samples = 0
        self.last_update: float | None = None
        self.version = 0
        self.drift = DriftWatch(config)
        self.memory = RegimeMemory(config.quantiles, config.regime_memory)
        self.served_scales = self._new_served_scales()

    def _new_served_scales(self) -> ServedModelScale | None:
        """The global model's scale per served model; keys of one served model need none."""
        if self.key.accelerator != GLOBAL_ACCELERATOR or self.key.model:
            return None
        return ServedModelScale(
            self.config.max_accelerators, self.config.pod_calibration_min_samples
        )

    def _new_slot(self, learner: Learner) -> LearnerSlot:
        return LearnerSlot(
            learner,
            AdaptiveConformal(
                self.config.quantiles, self.config.calibration_window, self.config.calibration_step
            ),
            PodOffsets(
                self.config.quantiles,
                self.config.pod_calibration_window,
                self.config.pod_calibration_min_samples,
                self.config.pod_calibration_max_pods,
            ),
            PrequentialEvaluator(self.config.quantiles, self.config.eval_window),
            ServedHistory(self.config.calibration_history),
        )

    def learn(
        self,
        features: np.ndarray,
        y_log: np.ndarray,
        clock: BatchClock | None = None,
        pods: np.ndarray | None = None,
        served_models: np.ndarray | None = None,
    ) -> list[LearnerFailure]:
        """Learn a batch of (n,) log-ms outcomes.

        The global set learns them normalised by each row's ``served_models`` scale (see
        ``models.served_model_scale``), then moves the scales by what its champion
        predicted before learning the batch.
        """
        scales = None if served_models is None else self.served_scales
        if scales is not None:
            y_log = y_log - scales.rows(served_models)
        if len(y_log):
            self.max_log_seen = max(self.max_log_seen, float(y_log.max()))
        failures = [
            LearnerFailure(self.key, slot.learner.name, error)
            for slot in self.slots
            if (error := slot.step(features, y_log, self.config, clock, pods)) is not None
        ]
        champion = self.champion_slot()
        raw = None if champion is None else champion.last_raw
        if scales is not None and raw is not None:
            median = int(np.argmin(np.abs(np.asarray(self.config.quantiles) - 0.5)))
            scales.update(served_models, y_log - raw[:, median])
        self.n_samples += len(y_log)
        if self.memory is not None:
            self.memory.score(features, y_log, None if champion is None else champion.last_served)
        if (error := self.drift.step(self, features, y_log)) is not None:
            failures.append(LearnerFailure(self.key, f"{self.champion} challenger", error))
        self.last_update = time.time()
        self.version += 1
        self._elect()
        return failures

    def champion_slot(self) -> LearnerSlot | None:
        return None if self.champion is None else self.slot(self.champion)

    def spawn_challenger(self) -> LearnerSlot:
        """A fresh slot of the champion's kind, outside ``slots`` so it never serves."""
        fresh = self.config.make_learners(self.key)
        return self._new_slot(next(x for x in fresh if x.name == self.champion))

    def remember_champion(self) -> None:
        """Before a drift makes every learner forget: keep the champion as it is."""
        champion = self.champion_slot()
        if self.memory is not None and champion is not None:
            self.memory.remember(champion)

    def promote(self, challenger: LearnerSlot) -> None:
        """The challenger replaces the stale slot of its kind and becomes champion."""
        name = challenger.learner.name
        self.slots = [challenger if s.learner.name == name else s for s in self.slots]
        self.champion = name

    def _elect(self) -> None:
        """Champion: lowest recent headline pinball loss, with a margin against flapping.

        Losses are compared over the samples every eligible learner has been scored on:
        a challenger promoted after a drift has scored only post-drift samples, whose
        losses are larger, and would otherwise lose to a stale learner's calm past. After
        a drift (scores start over) the champion stays until there are enough of them.
        """
        self._recall()
        eligible = [s for s in self.slots if s.eligible()]
        if not eligible:
            fitted = [s for s in self.slots if s.learner.is_fitted and s.health.state != "failed"]
            self.champion = fitted[0].learner.name if fitted else None
            return
        common = min(len(s.evaluator) for s in eligible)
        if common < self.config.min_eval_samples and self.champion in {
            s.learner.name for s in eligible
        }:
            return  # too few common samples since a drift to change horses
        losses = {s.learner.name: s.headline_loss(self.config, common) for s in eligible}
        best = min(losses, key=losses.__getitem__)
        current = losses.get(self.champion or "")
        if current is None or losses[best] < current * (1.0 - self.config.champion_margin):
            self.champion = best

    def _recall(self) -> None:
        """A past regime's champion that now beats the live one serves again."""
        champion = self.champion_slot()
        if self.memory is None or champion is None or not champion.eligible():
            return
        revived = self.memory.recall(self.config)
        if revived is None:
            return
        name = revived.learner.name
        displaced = self.slot(name)
        self.slots = [revived if s is displaced else s for s in self.slots]
        self.memory.swap(revived, displaced)
        self.champion = name
        self.drift.record(self, EventKind.RECALL, name, "a past regime's champion returned")

    def slot(self, name: str) -> LearnerSlot:
        return next(s for s in self.slots if s.learner.name == name)

    def serving_model(self) -> ServingModel | None:
        if self.champion is None:
            return None
        slot = self.slot(self.champion)
        function = slot.learner.serving_function()
        if function is None:
            return None
        return ServingModel(
            key=self.key,
            learner=slot.learner.name,
            label=f"{slot.learner.name}@{self.key.accelerator}",
            key_label=self.key.label(),
            function=function,
            leading=function.leading(self.config.headline_index + 1),
            n_leading=self.config.headline_index + 1,
            offsets=slot.calibrator.offsets.copy(),
            pod_offsets=slot.pod_offsets.published(),
            n_samples=self.n_samples,
            version=self.version,
            updated_at=self.last_update or time.time(),
            model_scales={} if self.served_scales is None else self.served_scales.published(),
            ceiling=self.max_log_seen + math.log(CEILING_FACTOR),
        )

    def status(self, serving: bool) -> KeyStatus:
        """An immutable copy of what introspection shows; call on the learning thread."""
        return status_of(self, serving)

    def scores(self) -> dict[str, WindowScores]:
        return {slot.learner.name: slot.evaluator.scores() for slot in self.slots}
