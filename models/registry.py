"""All model sets of a deployment, keyed by (accelerator type, target), plus the global ones.

A new accelerator type gets its own model sets on first sight; until they have
``min_samples`` samples, its requests are answered by the global model, which learns from
every accelerator and sees hardware descriptors, so what it learned on an H100 transfers
to an MI300X by compute and bandwidth ratios. Predictions read only published, immutable
``ServingModel`` objects, so they never wait for learning.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from latency_oracle.features.engineering import RequestColumns, build_features
from latency_oracle.features.schema import Observation
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.drift import ModelEvent
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey, Target
from latency_oracle.models.model_set import (
    BatchClock,
    LearnerFailure,
    ModelSet,
    ServingModel,
    served_quantiles,
)
from latency_oracle.models.prior import prior_log_quantiles

PRIOR_MODEL = "prior"
# Answers list their targets in this order (iterating the enum class itself would be a
# Python-level generator).
TARGETS = (Target.TTFT, Target.TPOT)


@dataclass(frozen=True, slots=True)
class PredictionBatch:
    """Quantiles in ms for n requests, and which model answered each."""

    quantiles: tuple[float, ...]
    ttft_ms: np.ndarray  # (n, q)
    tpot_ms: np.ndarray  # (n, q)
    ttft_model: list[str]  # (n,) learner@accelerator, or "prior"
    tpot_model: list[str]
    cold: np.ndarray  # (n,) bool: the request's own accelerator model is not trained yet


class LearnScope(StrEnum):
    """Which model keys a learn call trains: sharded trainers each own one part."""

    ALL = "all"
    GLOBAL = "global"
    ACCELERATORS = "accelerators"


@dataclass(frozen=True, slots=True)
class LearnReport:
    """What one learning cycle did."""

    observations: int
    samples: dict[ModelKey, int]
    failures: list[LearnerFailure]
    events: list[ModelEvent] = field(default_factory=list)  # drifts, promotions
    implausible: int = 0  # skipped: outside the configured plausibility bounds
    evicted: list[str] = field(default_factory=list)  # accelerators dropped by the cap


class ModelRegistry:
    """Creates, trains and publishes model sets; answers vectorised predictions."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._model_sets: dict[ModelKey, ModelSet] = {}
        self._serving: dict[ModelKey, ServingModel] = {}
        # Accelerators with model sets, least recently learned first: the cap evicts from here.
        self._accelerators: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    # -- learning (one trainer thread) -------------------------------------------------

    def learn(
        self, observations: Sequence[Observation], scope: LearnScope = LearnScope.ALL
    ) -> LearnReport:
        """Apply a batch of observations to every model set they concern within ``scope``.

        Implausible observations are skipped here too, whichever door they came in by.
        """
        plausible = self.config.bounds.keep_plausible(observations)
        implausible = len(observations) - len(plausible)
        if not plausible:
            return LearnReport(len(observations), {}, [], implausible=implausible)
        observations = plausible
        columns = RequestColumns.from_requests(observations)
        features = build_features(columns)
        outcomes = {
            Target.TTFT: np.array([o.ttft_ms or np.nan for o in observations]),
            Target.TPOT: np.array([o.tpot_ms or np.nan for o in observations]),
        }
        finished = np.array([o.timestamp for o in observations], dtype=np.float64)
        arrived = finished - np.array([_duration_s(o) for o in observations])
        samples: dict[ModelKey, int] = {}
        failures: list[LearnerFailure] = []
        events: list[ModelEvent] = []
        with self._lock:
            seen = [str(a) for a in np.unique(columns.accelerator) if a != GLOBAL_ACCELERATOR]
            own, evicted = self._admit(seen) if scope != LearnScope.GLOBAL else (set(), [])
            for target, values in outcomes.items():
                valid = ~np.isnan(values)
                if not valid.any():
                    continue
                groups = [(GLOBAL_ACCELERATOR, valid)] if scope != LearnScope.ACCELERATORS else []
                if scope != LearnScope.GLOBAL:
                    groups += [
                        (str(acc), valid & (columns.accelerator == acc))
                        for acc in np.unique(columns.accelerator[valid])
                        if acc in own  # never "global": a client cannot claim the global key
                    ]
                for accelerator, rows in groups:
                    key = ModelKey(accelerator, target)
                    clock = BatchClock(arrived[rows], float(finished[rows].max()))
                    failures += self._learn_key(
                        key, features[rows], np.log(values[rows]), clock, columns.pod[rows]
                    )
                    events += self._model_sets[key].drift.new_events
                    samples[key] = int(rows.sum())
        return LearnReport(
            len(observations) + implausible, samples, failures, events, implausible, evicted
        )

    def _admit(self, accelerators: list[str]) -> tuple[set[str], list[str]]:
        """Mark ``accelerators`` as just seen, evicting the least recently seen beyond the cap.

        Returns the accelerators that may have their own models in this batch and those
        that lost (or never got) them: a batch with more new types than the cap learns the
        extra ones into the global model only.
        """
        admitted = accelerators[: self.config.max_accelerators]
        evicted = accelerators[self.config.max_accelerators :]
        for accelerator in admitted:
            self._accelerators[accelerator] = None
            self._accelerators.move_to_end(accelerator)
        while len(self._accelerators) > self.config.max_accelerators:
            oldest, _ = self._accelerators.popitem(last=False)
            for target in Target:
                self._model_sets.pop(ModelKey(oldest, target), None)
                self._serving.pop(ModelKey(oldest, target), None)
            evicted.append(oldest)
        return set(admitted), evicted

    def _learn_key(
        self,
        key: ModelKey,
        features: np.ndarray,
        y_log: np.ndarray,
        clock: BatchClock,
        pods: np.ndarray,
    ) -> list[LearnerFailure]:
        model_set = self._model_sets.get(key)
        if model_set is None:
            model_set = self._model_sets[key] = ModelSet(key, self.config)
        failures = model_set.learn(features, y_log, clock, pods)
        self._publish(model_set)
        return failures

    def _publish(self, model_set: ModelSet) -> None:
        serving = model_set.serving_model()
        if serving is None:
            self._serving.pop(model_set.key, None)
        else:
            self._serving[model_set.key] = serving

    # -- prediction (any thread, lock-free) --------------------------------------------

    def predict(self, columns: RequestColumns, through_headline: bool = False) -> PredictionBatch:
        """p-quantiles of TTFT and TPOT for every request, vectorised per accelerator.

        ``through_headline`` answers only the quantiles up to the headline one, for callers
        (routing) that read nothing above it: a third less forest to walk.
        """
        quantiles = self.config.quantiles
        if through_headline:
            quantiles = quantiles[: self.config.headline_index + 1]
        features = build_features(columns)
        answers = [
            self._answer(
                str(accelerator),
                rows,
                features[rows],
                columns.pod[rows],
                quantiles,
                through_headline,
            )
            for accelerator, rows in _groups(columns.accelerator)
        ]
        if len(answers) == 1:  # one accelerator (the hot case): its arrays are the batch's
            (answer,) = answers
            n = len(columns)
            return PredictionBatch(
                quantiles=quantiles,
                ttft_ms=served_quantiles(answer.log_ms[0]),
                tpot_ms=served_quantiles(answer.log_ms[1]),
                ttft_model=[answer.model[0]] * n,
                tpot_model=[answer.model[1]] * n,
                cold=(np.ones if answer.cold else np.zeros)(n, dtype=bool),
            )
        return _assemble(answers, len(columns), quantiles)

    def _answer(
        self,
        accelerator: str,
        rows: slice | np.ndarray,
        features: np.ndarray,
        pods: np.ndarray,
        quantiles: tuple[float, ...],
        through_headline: bool,
    ) -> _Answer:
        """Both targets for one accelerator's rows: its own models, else the global ones,
        else the physics prior."""
        log_ms: list[np.ndarray] = []
        models: list[str] = []
        cold = False
        prior: dict[str, np.ndarray] | None = None
        for target in TARGETS:
            serving = self._published(accelerator, target)
            if serving is None:
                cold = True
                serving = self._published(GLOBAL_ACCELERATOR, target)
            if serving is None:
                prior = prior or prior_log_quantiles(features, quantiles)
                log_ms.append(prior[target.value])
                models.append(PRIOR_MODEL)
            else:
                log_ms.append(serving.predict_log(features, pods, through_headline))
                models.append(serving.label)
        return _Answer(rows, log_ms, models, cold)

    def _published(self, accelerator: str, target: Target) -> ServingModel | None:
        """``serving`` on the hot path: a plain tuple equals (and hashes as) its ModelKey,
        and skips the named tuple's Python-level constructor."""
        serving = self._serving.get((accelerator, target))
        if serving is None:
            return None
        if accelerator == GLOBAL_ACCELERATOR:
            enough = self.config.global_min_samples
        else:
            enough = self.config.min_samples
        return serving if serving.n_samples >= enough else None

    # -- introspection and persistence -------------------------------------------------

    def model_sets(self) -> list[ModelSet]:
        with self._lock:
            return list(self._model_sets.values())

    def serving(self, key: ModelKey) -> ServingModel | None:
        """The published model of ``key`` if it has learned enough to answer for it."""
        return self._published(key.accelerator, key.target)

    def export_state(self) -> dict[ModelKey, ModelSet]:
        """The model sets, for a snapshot; call from the learning thread (or with it idle)."""
        with self._lock:
            return dict(self._model_sets)

    def import_state(self, model_sets: dict[ModelKey, ModelSet]) -> None:
        """Replace every model set (restore from a snapshot) and republish them."""
        with self._lock:
            self._model_sets = {}
            self._serving = {}
            self._accelerators.clear()
            for model_set in model_sets.values():
                self._adopt(model_set)

    def merge_state(self, model_sets: dict[ModelKey, ModelSet]) -> None:
        """Replace only the given keys: a replica syncs each trainer shard's keys on its own."""
        with self._lock:
            for model_set in model_sets.values():
                self._adopt(model_set)

    def _adopt(self, model_set: ModelSet) -> None:
        model_set.config = self.config
        if model_set.key.accelerator != GLOBAL_ACCELERATOR:
            self._accelerators[model_set.key.accelerator] = None
        self._model_sets[model_set.key] = model_set
        self._publish(model_set)

    def last_update(self) -> float | None:
        stamps = [m.last_update for m in self.model_sets() if m.last_update is not None]
        return max(stamps, default=None)


def _duration_s(observation: Observation) -> float:
    """Arrival to finish: the first token, then one TPOT per further output token."""
    ttft = observation.ttft_ms or 0.0
    decode = (observation.tpot_ms or 0.0) * max(observation.output_tokens - 1, 0)
    return (ttft + decode) / 1e3


def _groups(accelerators: np.ndarray) -> list[tuple[str, slice | np.ndarray]]:
    """Rows per accelerator; one slice when all rows share one (the common, hot case)."""
    names = accelerators.tolist()
    first = names[0] if names else ""
    if names.count(first) == len(names):  # a list's count runs in C; == on objects does not
        return [(str(first), slice(None))]
    kinds, inverse = np.unique(accelerators, return_inverse=True)
    return [(str(kind), np.flatnonzero(inverse == i)) for i, kind in enumerate(kinds)]


@dataclass(frozen=True, slots=True)
class _Answer:
    """One accelerator's rows of a batch: log-ms quantiles and model per target (in
    ``TARGETS`` order), and whether its own models were cold."""

    rows: slice | np.ndarray
    log_ms: list[np.ndarray]
    model: list[str]
    cold: bool


def _assemble(answers: list[_Answer], n: int, quantiles: tuple[float, ...]) -> PredictionBatch:
    """One batch from the answers of several accelerators, each row where it came from."""
    log_ms = [np.empty((n, len(quantiles))) for _ in TARGETS]
    models = [np.empty(n, dtype=object) for _ in TARGETS]
    cold = np.zeros(n, dtype=bool)
    for answer in answers:
        for t in range(len(TARGETS)):
            log_ms[t][answer.rows] = answer.log_ms[t]
            models[t][answer.rows] = answer.model[t]
        cold[answer.rows] = answer.cold
    return PredictionBatch(
        quantiles=quantiles,
        ttft_ms=served_quantiles(log_ms[0]),
        tpot_ms=served_quantiles(log_ms[1]),
        ttft_model=models[0].tolist(),
        tpot_model=models[1].tolist(),
        cold=cold,
    )
