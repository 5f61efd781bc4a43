"""What the /ui status page shows: bounded recent history, kept in memory by the service.

Nothing here touches the prediction path. Coverage and loss are sampled by a timer
thread; predicted-vs-actual pairs are taken from the predictions the learning thread
already made prequentially (each learner predicts a batch before learning it); route
decisions cost the route handler one append. Every buffer is bounded, so a predictor
that runs for months holds no more than ``ui_history_s`` of samples.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latency_oracle.features.schema import Observation
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey, Target
from latency_oracle.models.registry import LearnReport, ModelRegistry
from latency_oracle.routing.router import RouteDecision
from latency_oracle.settings import Settings


@dataclass(frozen=True, slots=True)
class QualitySample:
    """The serving learner's recent window scores of one model key at one moment."""

    at: float
    champion: str
    coverage: tuple[float, ...]
    pinball_ms: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One learned request: the quantiles the champion would have served, and the truth."""

    predicted_ms: tuple[float, ...]
    actual_ms: float


@dataclass(frozen=True, slots=True)
class RouteRecord:
    at: float
    decision: str
    pod: str | None
    policy: str
    reason: str


@dataclass(frozen=True, slots=True)
class ActivityView:
    """A consistent copy for one page render (the buffers keep moving meanwhile)."""

    quality: dict[str, list[QualitySample]]
    outcomes: dict[str, list[Outcome]]
    routes: list[RouteRecord]


class Activity:
    """Bounded histories per model key plus recent route decisions."""

    def __init__(self, settings: Settings) -> None:
        self.interval_s = settings.ui_sample_interval_s
        self.history_len = max(2, math.ceil(settings.ui_history_s / settings.ui_sample_interval_s))
        self.recent_len = settings.ui_recent_items
        self._quality: dict[str, deque[QualitySample]] = {}
        self._outcomes: dict[str, deque[Outcome]] = {}
        self._routes: deque[RouteRecord] = deque(maxlen=self.recent_len)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, models: ModelRegistry) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._sample_forever, args=(models,), name="ui-sampler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _sample_forever(self, models: ModelRegistry) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample(models)

    def sample(self, models: ModelRegistry) -> None:
        """Record every model key's champion scores now (from published statuses: this
        runs on the sampler thread while the learning thread mutates the model sets)."""
        now = time.time()
        statuses = models.statuses()
        self._forget_evicted({s.key.label() for s in statuses})
        for status in statuses:
            champion = status.champion_status()
            if champion is None or champion.scores.samples == 0:
                continue
            scores = champion.scores
            sample = QualitySample(now, champion.name, scores.coverage, scores.pinball)
            with self._lock:
                history = self._quality.setdefault(
                    status.key.label(), deque(maxlen=self.history_len)
                )
                history.append(sample)

    def _forget_evicted(self, labels: set[str]) -> None:
        """Drop histories of model keys the registry's cap evicted."""
        with self._lock:
            for history in (self._quality, self._outcomes):
                for label in history.keys() - labels:
                    del history[label]

    def record_learning(
        self, observations: Sequence[Observation], models: ModelRegistry, report: LearnReport
    ) -> None:
        """Keep the champion's pre-learning predictions of this batch next to the outcomes.

        Runs on the learning thread, between batches: the only reader of live slots here.
        """
        model_sets = {m.key: m for m in models.model_sets()}
        for key in report.samples:
            model_set = model_sets.get(key)
            slot = None if model_set is None else model_set.champion_slot()
            if slot is None or slot.last_served is None:
                continue
            actual = _outcomes_of(observations, key)
            if len(actual) != len(slot.last_served):
                continue  # a promotion swapped the slot mid-batch: nothing consistent to show
            served = slot.last_served[-self.recent_len :]
            actual = actual[-self.recent_len :]
            pairs = [
                Outcome(tuple(row), float(y))
                for row, y in zip(served.tolist(), actual.tolist(), strict=True)
            ]
            with self._lock:
                self._outcomes.setdefault(key.label(), deque(maxlen=self.recent_len)).extend(pairs)

    def record_route(self, decision: RouteDecision) -> None:
        record = RouteRecord(
            time.time(), decision.decision, decision.pod, decision.policy, decision.reason
        )
        with self._lock:
            self._routes.append(record)

    def view(self) -> ActivityView:
        with self._lock:
            return ActivityView(
                {label: list(samples) for label, samples in self._quality.items()},
                {label: list(pairs) for label, pairs in self._outcomes.items()},
                list(self._routes),
            )


def _outcomes_of(observations: Sequence[Observation], key: ModelKey) -> np.ndarray:
    """The outcomes a model key learned from this batch, in the order the registry used."""
    field = "ttft_ms" if key.target == Target.TTFT else "tpot_ms"
    everyone = key.accelerator == GLOBAL_ACCELERATOR
    own = (key.accelerator, key.model)
    return np.array(
        [
            value
            for o in observations
            if (value := getattr(o, field)) and (everyone or (o.accelerator, o.model) == own)
        ],
        dtype=float,
    )
