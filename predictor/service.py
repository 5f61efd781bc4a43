"""The predictor's engine room: models, the observation store and the learning loop.

Observations are accepted into the store and learned by one background thread in
batches, never on the request path; predictions read published models without locks.
Snapshots are written by the learning thread itself between batches, so a snapshot is
always of a consistent model state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from latency_oracle.features.engineering import RequestColumns
from latency_oracle.features.plausibility import Implausibility, ImplausibleObservations
from latency_oracle.features.schema import Observation, PredictionRequest, PromptSize
from latency_oracle.features.store import (
    AppendResult,
    InProcessObservationStore,
    ObservationStore,
    StoreFull,
)
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.output_length import LengthForecast
from latency_oracle.models.persistence.snapshot import (
    EncodeError,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
    write_atomically,
)
from latency_oracle.models.prompt_units import PromptUnit, to_tokens
from latency_oracle.models.registry import ModelRegistry, PredictionBatch
from latency_oracle.operations.metrics import ServiceMetrics
from latency_oracle.operations.model_versions import apply_pinned_versions
from latency_oracle.operations.readiness import Readiness, failed_learners
from latency_oracle.operations.tracking import ModelTracker
from latency_oracle.predictor.activity import Activity
from latency_oracle.settings import Settings

if TYPE_CHECKING:
    from latency_oracle.predictor.redis_replica import RedisReplica

log = logging.getLogger(__name__)
SizedRequest = TypeVar("SizedRequest", bound=PromptSize)


class OracleService:
    """Owns the registry, the store and the learning thread of one predictor process."""

    def __init__(
        self,
        settings: Settings,
        store: ObservationStore | None = None,
        model_config: ModelConfig | None = None,
    ) -> None:
        self.settings = settings
        self.config = model_config or ModelConfig.from_settings(settings)
        self.models = ModelRegistry(self.config)
        self.metrics = ServiceMetrics(settings.max_accelerators)
        # Bound once: looking a labelled child up costs more than counting in it.
        self._cold_predictions = self.metrics.predictions.labels("true")
        self._warm_predictions = self.metrics.predictions.labels("false")
        self.replica = None if store is not None else _redis_replica(settings, self.models)
        self.store = store or (
            self.replica.store
            if self.replica is not None
            else InProcessObservationStore(
                settings.observation_buffer,
                settings.dedup_window,
                settings.pod_ttl_s,
                settings.max_live_pods,
                self.metrics.cardinality_capped.labels("pod").inc,
            )
        )
        self.metrics.watch(self.models.statuses)
        self.metrics.watch_backlog(self.store.pending)
        self.tracker = ModelTracker(settings, self.config, self.metrics.registry)
        self.activity = Activity(settings)
        self.version_problems: list[str] = []
        if self.replica is not None:
            self.replica.expose(self.metrics.registry)
        self.learned_total = 0
        self.loop_error: str | None = None
        self.snapshot_error: str | None = None
        self._learned = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_snapshot = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.activity.start(self.models)
        if self.replica is not None:  # trainers learn; this replica syncs their models
            self.version_problems = apply_pinned_versions(
                self.models, self.settings, self.replica.pins
            )
            self.replica.start()
            return
        self.restore_snapshot()
        self.version_problems = apply_pinned_versions(self.models, self.settings)
        self.tracker.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._learn_forever, name="learner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.activity.stop()
        if self.replica is not None:
            self.replica.stop()
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.save_snapshot()
        self.tracker.stop()

    # -- requests ----------------------------------------------------------------------

    def in_tokens(self, request: SizedRequest, at_least: int = 0) -> SizedRequest:
        """``request`` with its prompt size in tokens, converted from the caller's
        characters or words with its served model's learned ratio (``models.prompt_units``);
        at least ``at_least`` (its prefix-cache hit tokens)."""
        if request.input_tokens is not None:
            return request
        unit = PromptUnit.CHARS if request.prompt_chars is not None else PromptUnit.WORDS
        amount = request.prompt_chars if unit == PromptUnit.CHARS else request.prompt_words
        ratio = self.models.output_lengths.tokens_per(getattr(request, "model", ""), unit)
        tokens = max(to_tokens(amount or 0, ratio), at_least)
        return request.model_copy(update={"input_tokens": tokens})

    def tokens_per_word(self) -> float:
        """What an llm-d word counts as (``llmd_input_unit``): the fleet's tokens per word,
        or 1 where llm-d's clients send tokens."""
        if self.settings.llmd_input_unit == "tokens":
            return 1.0
        return self.models.output_lengths.tokens_per("", PromptUnit.WORDS)

    def predict(self, requests: Sequence[PredictionRequest]) -> PredictionBatch:
        served = np.array([r.model for r in requests], dtype=object)
        return self.predict_columns(RequestColumns.from_requests(requests), served)

    def predict_output_tokens(self, requests: Sequence[PredictionRequest]) -> LengthForecast:
        """Each request's output tokens, learned by served model, prompt size and cap."""
        return self.models.output_lengths.predict(
            np.array([r.model for r in requests], dtype=object),
            np.array([r.input_tokens for r in requests]),
            np.array([r.max_tokens for r in requests]),
        )

    def predict_columns(
        self, columns: RequestColumns, served_models: np.ndarray | None = None
    ) -> PredictionBatch:
        """Predictions for requests already in columns (the llm-d adapter builds them);
        ``served_models`` names each request's served model, None for none."""
        batch = self.models.predict(columns, served_models=served_models)
        cold = int(batch.cold.sum())
        if cold:
            self._cold_predictions.inc(cold)
        if cold < len(columns):
            self._warm_predictions.inc(len(columns) - cold)
        return batch

    def ingest(self, observations: Sequence[Observation]) -> AppendResult:
        """Accept observations for learning; raises ``StoreFull`` or
        ``ImplausibleObservations`` with nothing accepted."""
        problems = self.config.bounds.problems(observations)
        if problems:
            self.metrics.observations.labels("implausible").inc(len(problems))
            raise ImplausibleObservations(problems)
        return self._append(observations)

    def _append(self, observations: Sequence[Observation]) -> AppendResult:
        try:
            result = self.store.append(observations)
        except StoreFull:
            self.metrics.observations.labels("buffer_full").inc(len(observations))
            raise
        self.metrics.observations.labels("accepted").inc(result.accepted)
        self.metrics.observations.labels("duplicate").inc(result.duplicates)
        return result

    def ingest_plausible(
        self, observations: Sequence[Observation]
    ) -> tuple[AppendResult, list[Implausibility]]:
        """Accept the plausible ``observations``, skip (and count) the rest: for clients
        that drop a whole batch on any error, where one bad entry must not cost the others.
        Raises ``StoreFull`` with nothing accepted."""
        problems = self.config.bounds.problems(observations)
        if problems:
            self.metrics.observations.labels("implausible").inc(len(problems))
            skipped = {p.index for p in problems}
            observations = [o for i, o in enumerate(observations) if i not in skipped]
        return self._append(observations), problems

    # -- learning ----------------------------------------------------------------------

    def learn_cycle(self, timeout_s: float = 0.2) -> int:
        """Learn one batch from the store; the number of observations applied."""
        batch = self.store.read_batch(self.settings.learn_batch_size, timeout_s)
        if not batch:
            return 0
        observations = [claimed.observation for claimed in batch]
        report = self.models.learn(observations, labels=[claimed.labels for claimed in batch])
        self.metrics.record_learning(report)
        self.activity.record_learning(observations, self.models, report)
        self.tracker.submit(report, self.models)
        for failure in report.failures:
            log.error(
                "learner failed: %s %s: %s", failure.key.label(), failure.learner, failure.error
            )
        with self._learned:
            self.learned_total += len(batch)
            self._learned.notify_all()
        return len(batch)

    def wait_learned(self, count: int, timeout_s: float) -> bool:
        """Block until ``count`` observations have been learned in total (for tests, tools)."""
        with self._learned:
            return self._learned.wait_for(lambda: self.learned_total >= count, timeout_s)

    def _learn_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.learn_cycle()
                self.loop_error = None
            except Exception as exc:  # the loop must survive anything a batch can throw
                self.loop_error = f"{type(exc).__name__}: {exc}"
                self.metrics.learn_cycle_errors.inc()
                log.exception("learning cycle failed")
            if time.monotonic() - self._last_snapshot >= self.settings.snapshot_interval_s:
                self.save_snapshot()

    # -- persistence -------------------------------------------------------------------

    def save_snapshot(self) -> None:
        """Write the models to disk; a failure is logged and shown on /readyz, never raised
        (an unlisted type in the state is a bug to fix, not a reason to stop serving)."""
        self._last_snapshot = time.monotonic()
        state = self.models.export_state()
        if not state:
            return
        try:
            data = encode_snapshot(
                state,
                self.config.quantiles,
                key=self.settings.snapshot_signing_key,
                output_lengths=self.models.export_output_lengths(),
            )
            write_atomically(self.settings.snapshot_path, data)
            self.snapshot_error = None
        except (OSError, EncodeError) as exc:
            log.exception("could not write snapshot to %s", self.settings.snapshot_path)
            self.snapshot_error = f"{type(exc).__name__}: {exc}"[:500]

    def restore_snapshot(self) -> bool:
        path = self.settings.snapshot_path
        if not path.exists():
            return False
        try:
            payload = decode_snapshot(
                path.read_bytes(), self.config.quantiles, self.settings.snapshot_signing_key
            )
        except (SnapshotError, OSError) as exc:
            log.error("ignoring snapshot %s: %s", path, exc)
            return False
        self.models.import_state(payload["model_sets"])
        if payload["output_lengths"] is not None:
            self.models.import_output_lengths(payload["output_lengths"])
        log.info("restored %d model sets from %s", len(payload["model_sets"]), path)
        return True

    # -- health ------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        blockers = []
        if self.replica is not None and not self.replica.running():
            blockers.append("model sync is not running")
        if self.replica is None and (self._thread is None or not self._thread.is_alive()):
            blockers.append("learning thread is not running")
        problems = failed_learners(self.models.statuses())
        if self.loop_error:
            problems.append(f"learning loop: {self.loop_error}")
        if self.snapshot_error:
            problems.append(f"model snapshot not saved: {self.snapshot_error}")
        problems += self.version_problems
        if self.replica is not None:
            problems += self.replica.problems()
        return Readiness.judge(blockers, problems)


def _redis_replica(settings: Settings, models: ModelRegistry) -> RedisReplica | None:
    """The Redis side of a replica when a Redis URL is set; imported only then."""
    if not settings.redis_url:
        return None
    from latency_oracle.predictor.redis_replica import RedisReplica

    return RedisReplica(settings, models)
