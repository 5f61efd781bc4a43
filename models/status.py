"""Immutable status of one model key, published beside its serving function.

The learning thread mutates model sets (slots, health, evaluation windows, the champion)
while ``/v1/models``, ``/metrics``, ``/readyz``, ``/ui`` and MLflow tracking describe them
from other threads. Walking live slots there reads half-updated state, or a list that
a promotion is replacing. Instead, each time the learning thread publishes a key's
serving function it also publishes a ``KeyStatus``: plain values copied from the set, never
mutated after, swapped in by reference. Introspection reads only these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from latency_oracle.models.evaluation import WindowScores
from latency_oracle.models.keys import ModelKey

if TYPE_CHECKING:  # the model set builds these: no import cycle at run time
    from latency_oracle.models.model_set import ModelSet


@dataclass(frozen=True, slots=True)
class LearnerStatus:
    """One learner slot as it was when its key was last published."""

    name: str
    state: str  # warming, ok or failed
    samples: int
    failures: int
    last_error: str | None
    scores: WindowScores  # over the prequential evaluation window

    @property
    def failed(self) -> bool:
        return self.state == "failed"


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """One model key as it was when last published."""

    key: ModelKey
    quantiles: tuple[float, ...]
    samples: int
    champion: str | None
    last_update: float | None
    version: int
    serving: bool  # learned enough to answer for its own key
    learners: tuple[LearnerStatus, ...]
    drifts: int
    promotions: int
    served_models: tuple[str, ...]  # the global key's served models with their own scale
    # Observations of the key counted, learned or not: a sampled key (the global model's
    # sample of each shard, a hot key) learns a share of them. None: every one is learned.
    observed: int | None = None

    @property
    def learned_share(self) -> float:
        """Share of the key's observations its models learned (1.0 when all were)."""
        if self.observed is None or self.observed <= 0:
            return 1.0
        return min(1.0, self.samples / self.observed)

    def champion_status(self) -> LearnerStatus | None:
        return next((s for s in self.learners if s.name == self.champion), None)

    def problems(self) -> list[str]:
        """One line per failed learner, naming the key, the learner and its error."""
        return [
            f"{self.key.label()} {s.name} failed: {s.last_error}" for s in self.learners if s.failed
        ]


def status_of(model_set: ModelSet, serving: bool) -> KeyStatus:
    """Copy what introspection shows out of ``model_set`` (on the learning thread)."""
    scales = model_set.served_scales
    return KeyStatus(
        key=model_set.key,
        quantiles=tuple(model_set.config.quantiles),
        samples=model_set.n_samples,
        champion=model_set.champion,
        last_update=model_set.last_update,
        version=model_set.version,
        serving=serving,
        learners=tuple(
            LearnerStatus(
                name=slot.learner.name,
                state=slot.health.state,
                samples=slot.learner.n_samples,
                failures=slot.health.failures,
                last_error=slot.health.last_error,
                scores=slot.evaluator.scores(),
            )
            for slot in model_set.slots
        ),
        drifts=model_set.drift.drifts,
        promotions=model_set.drift.promotions,
        served_models=() if scales is None else tuple(sorted(scales.published())),
    )
