"""All model sets of a deployment, keyed by (accelerator type, target, served model), plus
the global ones.

A new (accelerator type, served model) pair gets its own model sets on first sight; until
they have ``min_samples`` samples, its requests are answered by the global model, or, while
the global model has too few samples itself, by its own models from however few outcomes
(they know its speed better than a 7B roofline at a hardware label's spec FLOP/s). The
global model learns from every accelerator and every served model. It sees hardware descriptors, so
what it learned on an H100 transfers to an MI300X by compute and bandwidth ratios, and it
learns latency normalised by a scale per served model (``models.served_model_scale``), so
a 70B model seen only on H100s is predicted on an A100 by the 70B's scale and the A100's
speed as the other models showed it.
Requests and observations naming no served model use the accelerator-only key, as before
served models were keyed. Predictions read only published, immutable ``ServingModel``
objects and introspection only published ``KeyStatus`` ones, so neither waits for learning
nor sees a half-updated model set.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from latency_oracle.features.engineering import RequestColumns, build_features
from latency_oracle.features.labels import Label, offered
from latency_oracle.features.schema import Observation
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.drift import ModelEvent
from latency_oracle.models.keys import ANY_MODEL, GLOBAL_ACCELERATOR, ModelKey, Target
from latency_oracle.models.learn_batch import LearnBatch
from latency_oracle.models.model_set import BatchClock, LearnerFailure, ModelSet, ServingModel
from latency_oracle.models.output_length import LengthCounts, OutputLengths
from latency_oracle.models.prediction_batch import (
    TARGETS,
    Answer,
    PredictionBatch,
    assemble,
    groups,
)
from latency_oracle.models.prior import prior_log_quantiles
from latency_oracle.models.status import KeyStatus

__all__ = ["PRIOR_MODEL", "LearnReport", "LearnScope", "ModelRegistry", "PredictionBatch"]

PRIOR_MODEL = "prior"


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
    # (accelerator, served model) pairs whose models the cap dropped, as "H100" or
    # "H100 <served model>"
    evicted: list[str] = field(default_factory=list)


class ModelRegistry:
    """Creates, trains and publishes model sets; answers vectorised predictions."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._model_sets: dict[ModelKey, ModelSet] = {}
        self._serving: dict[ModelKey, ServingModel] = {}
        # Replaced whole on every publish, never mutated: readers on other threads iterate it.
        self._status: dict[ModelKey, KeyStatus] = {}
        # (accelerator, served model) pairs with model sets, least recently learned first:
        # the cap evicts from here.
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Observations counted per key where a sample is learned (``count_observed``).
        self._observed: dict[ModelKey, int] = {}
        # How many tokens requests generate, per served model: learned where the global
        # model is (its trainer sees every served model's observations), read by routing.
        self.output_lengths = OutputLengths()
        self._lock = threading.Lock()

    # -- learning (one trainer thread) -------------------------------------------------

    def learn(
        self,
        observations: Sequence[Observation],
        scope: LearnScope = LearnScope.ALL,
        labels: Sequence[Label] | None = None,
    ) -> LearnReport:
        """Apply a batch of observations to every model set they concern within ``scope``.

        Each observation trains the global model and its own (accelerator, served model)
        key, and, with the global model, the output lengths: only in the targets of its
        ``labels``, those its store claimed for it (``features.labels``; default, all it
        offers), so a request's first-token and finish records teach each target once.
        Implausible observations are skipped here too, whichever door they came in by.

        Parameters
        ----------
        observations
            Measured requests: shape, pod state at arrival, and outcome (``ttft_ms``,
            ``tpot_ms``; either may be missing).
        scope
            Which keys learn: all (one process), or, where trainers split the work, only
            the accelerators' or only the global ones.
        labels
            Per observation, the targets to learn from it (``features.labels.Label``);
            None: all it offers.

        Returns
        -------
        LearnReport
            How many observations came, the samples each key learned, the learners that
            failed (reset, never served), drift and promotion events, the implausible
            count and the pairs the model cap evicted.

        Examples
        --------
        >>> import numpy as np
        >>> from latency_oracle.features import Observation
        >>> from latency_oracle.models import ModelConfig, ModelRegistry
        >>> registry = ModelRegistry(ModelConfig())
        >>> rng = np.random.default_rng(0)
        >>> batch = [
        ...     Observation(accelerator="H100", input_tokens=int(n), running_requests=int(r),
        ...                 output_tokens=64, ttft_ms=20 + n / 50 + 8 * r, tpot_ms=12.0 + r)
        ...     for n, r in zip(rng.integers(100, 4000, 600), rng.integers(0, 16, 600))
        ... ]
        >>> report = registry.learn(batch)
        >>> report.observations, report.implausible, report.failures
        (600, 0, [])
        >>> sorted(f"{key.accelerator}/{key.target}" for key in report.samples)
        ['H100/tpot', 'H100/ttft', 'global/tpot', 'global/ttft']
        """
        if labels is None:
            labels = [offered(o) for o in observations]
        batch = LearnBatch.build(observations, labels, self.config.bounds)
        if batch is None:
            return LearnReport(len(observations), {}, [], implausible=len(observations))
        samples: dict[ModelKey, int] = {}
        failures: list[LearnerFailure] = []
        events: list[ModelEvent] = []
        with self._lock:
            if scope != LearnScope.ACCELERATORS:
                self.output_lengths.learn(batch.lengths)
            admit = [(a, m) for a, m, _ in batch.pairs] if scope != LearnScope.GLOBAL else []
            own, evicted = self._admit(admit)
            for target, values in batch.outcomes.items():
                valid = ~np.isnan(values)
                if not valid.any():
                    continue
                groups_ = [(ModelKey(GLOBAL_ACCELERATOR, target), valid)]
                if scope == LearnScope.ACCELERATORS:
                    groups_ = []
                groups_ += [
                    (ModelKey(a, target, m), valid & rows)
                    for a, m, rows in batch.pairs
                    if (a, m) in own
                ]
                for key, rows in groups_:
                    if not rows.any():
                        continue
                    clock = BatchClock(batch.arrived[rows], float(batch.finished[rows].max()))
                    failures += self._learn_key(
                        key,
                        batch.features[rows],
                        np.log(values[rows]),
                        clock,
                        batch.columns.pod[rows],
                        batch.served[rows],
                    )
                    events += self._model_sets[key].drift.new_events
                    samples[key] = int(rows.sum())
        return LearnReport(len(observations), samples, failures, events, batch.implausible, evicted)

    def _admit(self, pairs: list[tuple[str, str]]) -> tuple[set[tuple[str, str]], list[str]]:
        """Mark (accelerator, served model) ``pairs`` as just seen, evicting the least
        recently seen beyond the cap.

        Returns the pairs that may have their own models in this batch and those that lost
        (or never got) them: a batch with more new pairs than the cap learns the extra ones
        into the global model only.
        """
        cap = self.config.max_accelerators
        admitted, refused = pairs[:cap], pairs[cap:]
        for pair in admitted:
            self._pairs[pair] = None
            self._pairs.move_to_end(pair)
        evicted = []
        while len(self._pairs) > cap:
            (accelerator, model), _ = self._pairs.popitem(last=False)
            for target in Target:
                self._forget(ModelKey(accelerator, target, model))
            evicted.append((accelerator, model))
        return set(admitted), [f"{a} {m}".rstrip() for a, m in (*refused, *evicted)]

    def _forget(self, key: ModelKey) -> None:
        self._model_sets.pop(key, None)
        self._serving.pop(key, None)
        self._status = {k: v for k, v in self._status.items() if k != key}

    def _learn_key(
        self,
        key: ModelKey,
        features: np.ndarray,
        y_log: np.ndarray,
        clock: BatchClock,
        pods: np.ndarray,
        served_models: np.ndarray,
    ) -> list[LearnerFailure]:
        model_set = self._model_sets.get(key)
        if model_set is None:
            model_set = self._model_sets[key] = ModelSet(key, self.config)
        failures = model_set.learn(features, y_log, clock, pods, served_models)
        self._publish(model_set)
        return failures

    def _publish(self, model_set: ModelSet) -> None:
        """Swap in the set's serving function and its status, both immutable."""
        key = model_set.key
        serving = model_set.serving_model()
        if serving is None:
            self._serving.pop(key, None)
        else:
            self._serving[key] = serving
        answers = serving is not None and serving.n_samples >= self.config.min_samples
        status = replace(model_set.status(answers), observed=self._observed.get(key))
        self._status = {**self._status, key: status}

    def count_observed(self, observed: Mapping[ModelKey, int]) -> None:
        """Set how many observations each key has counted where it learns only a sample of
        them (Redis mode), so statuses report the share learned; republishes those keys."""
        with self._lock:
            self._observed.update(observed)
            self._status = {
                key: replace(status, observed=self._observed.get(key))
                for key, status in self._status.items()
            }

    # -- prediction (any thread, lock-free) --------------------------------------------

    def predict(
        self,
        columns: RequestColumns,
        through_headline: bool = False,
        served_models: np.ndarray | None = None,
    ) -> PredictionBatch:
        """p-quantiles of TTFT and TPOT for every request, vectorised per key.

        Each request is answered by its own (accelerator, served model) key once that has
        learned, else by the global model (scaled to its served model), else by the prior.

        Parameters
        ----------
        columns
            The requests as columns (``RequestColumns.from_requests``).
        through_headline
            Answer only the quantiles up to the headline one, for callers (routing) that
            read nothing above it: a third less forest to walk.
        served_models
            Each request's served model (object array; "" or None: unnamed).

        Returns
        -------
        PredictionBatch
            ``ttft_ms`` and ``tpot_ms`` of shape (requests, quantiles), and per request
            the key and learner that answered and whether its own key was cold.

        Examples
        --------
        >>> from latency_oracle.features import Observation, PredictionRequest, RequestColumns
        >>> from latency_oracle.models import ModelConfig, ModelRegistry
        >>> registry = ModelRegistry(ModelConfig())
        >>> _ = registry.learn([
        ...     Observation(accelerator="H100", input_tokens=n, running_requests=n % 16,
        ...                 output_tokens=64, ttft_ms=20 + n / 50, tpot_ms=12.0 + n % 16)
        ...     for n in range(100, 4000, 8)
        ... ])
        >>> answer = registry.predict(RequestColumns.from_requests([
        ...     PredictionRequest(accelerator="H100", input_tokens=2000, running_requests=4),
        ...     PredictionRequest(accelerator="L4", input_tokens=2000),
        ... ]))
        >>> answer.quantiles, answer.ttft_ms.shape
        ((0.5, 0.9, 0.99), (2, 3))
        >>> answer.ttft_key, answer.cold.tolist()  # L4 has learned nothing: the global model
        (['H100/ttft', 'global/ttft'], [False, True])
        >>> bool((answer.ttft_ms[:, :-1] <= answer.ttft_ms[:, 1:]).all())  # quantiles ordered
        True
        """
        quantiles = self.config.quantiles
        if through_headline:
            quantiles = quantiles[: self.config.headline_index + 1]
        features = build_features(columns)
        answers = [
            self._answer(
                accelerator,
                model,
                rows,
                features[rows],
                columns.pod[rows],
                quantiles,
                through_headline,
            )
            for accelerator, model, rows in groups(columns.accelerator, served_models)
        ]
        return assemble(answers, len(columns), quantiles)

    def _answer(
        self,
        accelerator: str,
        model: str,
        rows: slice | np.ndarray,
        features: np.ndarray,
        pods: np.ndarray,
        quantiles: tuple[float, ...],
        through_headline: bool,
    ) -> Answer:
        """Both targets for one (accelerator, served model)'s rows: its own models, else the
        global ones scaled to the served model, else the global ones, else its own models
        from however few outcomes, else the physics prior."""
        log_ms: list[np.ndarray] = []
        models: list[str] = []
        keys: list[str] = []
        cold = False
        prior: dict[str, np.ndarray] | None = None
        for target in TARGETS:
            serving = self._published(accelerator, target, model)
            scale = None
            if serving is None:
                cold = True
                serving = self._published(GLOBAL_ACCELERATOR, target, ANY_MODEL)
                scale = None if serving is None else serving.model_scales.get(model)
            if serving is None:  # its very first outcomes still beat a 7B roofline guess
                serving = self._serving.get((accelerator, target, model))
            if serving is None:
                prior = prior or prior_log_quantiles(features, quantiles)
                log_ms.append(prior[target.value])
                models.append(PRIOR_MODEL)
                keys.append(PRIOR_MODEL)
                continue
            log_ms.append(serving.predict_log(features, pods, through_headline, scale or 0.0))
            models.append(serving.label)
            scaled = scale is not None
            keys.append(
                ModelKey(GLOBAL_ACCELERATOR, target, model).label() if scaled else serving.key_label
            )
        return Answer(rows, log_ms, models, keys, cold)

    def _published(self, accelerator: str, target: Target, model: str) -> ServingModel | None:
        """``serving`` on the hot path: a plain tuple equals (and hashes as) its ModelKey,
        and skips the named tuple's Python-level constructor."""
        serving = self._serving.get((accelerator, target, model))
        if serving is None:
            return None
        if accelerator == GLOBAL_ACCELERATOR:
            enough = self.config.global_min_samples
        else:
            enough = self.config.min_samples
        return serving if serving.n_samples >= enough else None

    # -- introspection and persistence -------------------------------------------------

    def statuses(self) -> list[KeyStatus]:
        """Every key's status as last published: safe from any thread, never half-updated."""
        return list(self._status.values())

    def model_sets(self) -> list[ModelSet]:
        """The live model sets: for the learning thread (or with it idle) only."""
        with self._lock:
            return list(self._model_sets.values())

    def serving(self, key: ModelKey) -> ServingModel | None:
        """The published model of ``key`` if it has learned enough to answer for it."""
        return self._published(key.accelerator, key.target, key.model)

    def export_state(self) -> dict[ModelKey, ModelSet]:
        """The model sets, for a snapshot; call from the learning thread (or with it idle)."""
        with self._lock:
            return dict(self._model_sets)

    def import_state(self, model_sets: dict[ModelKey, ModelSet]) -> None:
        """Replace every model set (restore from a snapshot) and republish them."""
        with self._lock:
            self._model_sets = {}
            self._serving = {}
            self._status = {}
            self._pairs.clear()
            for model_set in model_sets.values():
                self._adopt(model_set)

    def export_output_lengths(self) -> dict[str, LengthCounts] | None:
        """The learned output lengths, for a snapshot (None: nothing learned here, as in an
        accelerator shard's trainer, so a reader keeps what it has)."""
        with self._lock:
            return self.output_lengths.export()

    def import_output_lengths(self, counts: dict[str, LengthCounts]) -> None:
        """Serve the output lengths of a snapshot (a restore, or a trainer's checkpoint)."""
        with self._lock:
            self.output_lengths.restore(counts)

    def merge_state(self, model_sets: dict[ModelKey, ModelSet]) -> None:
        """Replace only the given keys: a replica syncs each trainer shard's keys on its own."""
        with self._lock:
            for model_set in model_sets.values():
                self._adopt(model_set)

    def _adopt(self, model_set: ModelSet) -> None:
        model_set.config = self.config
        key = model_set.key
        if key.accelerator != GLOBAL_ACCELERATOR:
            self._pairs[(key.accelerator, key.model)] = None
        self._model_sets[key] = model_set
        self._publish(model_set)

    def last_update(self) -> float | None:
        stamps = [s.last_update for s in self.statuses() if s.last_update is not None]
        return max(stamps, default=None)
