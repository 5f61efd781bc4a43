"""Model review logging: what the learning thread learned, sent to MLflow by a worker.

The learning thread only decides what is due and copies it into plain records (and, on a
promotion, a snapshot of that one model set); a daemon worker owns every MLflow call. The
queue between them is bounded and never waited on: when MLflow is slow or down, records
are dropped and counted, so tracking can never slow a prediction or a learning cycle.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from latency_oracle.models.config import ModelConfig
from latency_oracle.models.drift import EventKind, ModelEvent
from latency_oracle.models.keys import ModelKey
from latency_oracle.models.persistence.snapshot import encode_snapshot
from latency_oracle.models.registry import LearnReport, ModelRegistry
from latency_oracle.models.status import KeyStatus
from latency_oracle.operations.metrics import PREFIX, quantile_label
from latency_oracle.operations.mlflow.server_client import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    MlflowStore,
    RunMetrics,
    configure_http,
)
from latency_oracle.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """A model set to register as its key's new ``champion`` version."""

    key: ModelKey
    snapshot: bytes
    description: str
    first: bool  # the key's first serving champion: skipped if the registry has one already


TrackingRecord = RunMetrics | VersionRecord


class ModelTracker:
    """Queues model metrics and versions on the learning thread; a worker logs them."""

    def __init__(
        self,
        settings: Settings,
        config: ModelConfig,
        registry: CollectorRegistry,
        is_pinned: Callable[[ModelKey], bool] = lambda _: False,
    ) -> None:
        """``is_pinned``: whether the fleet serves a pinned version of a key (Redis mode);
        versions registered meanwhile are challengers, not champions."""
        self.settings = settings
        self.config = config
        self.is_pinned = is_pinned
        self.params = {name: str(value) for name, value in dataclasses.asdict(config).items()}
        self._queue: queue.Queue[TrackingRecord] = queue.Queue(settings.tracking_queue_size)
        self._last_logged: dict[ModelKey, tuple[int, float]] = {}
        self._serving: set[ModelKey] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = Counter(
            f"{PREFIX}_tracking_dropped",
            "MLflow log records dropped because the tracking queue was full.",
            ["kind"],
            registry=registry,
        )
        self.errors = Counter(
            f"{PREFIX}_tracking_errors",
            "MLflow log records that failed (server down, rejected, or a bug).",
            registry=registry,
        )
        self.logged = Counter(
            f"{PREFIX}_tracking_logged",
            "MLflow log records written, by kind: metrics or version.",
            ["kind"],
            registry=registry,
        )

    # -- worker lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        if not self.settings.mlflow_enabled or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, name="mlflow-tracking", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Let the worker drain the queue for up to ``tracking_flush_timeout_s``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.tracking_flush_timeout_s)
            self._thread = None

    def pending(self) -> int:
        return self._queue.qsize()

    # -- learning thread ---------------------------------------------------------------

    def submit(self, report: LearnReport, models: ModelRegistry) -> None:
        """Queue what this learning cycle made due; never blocks, never raises."""
        if self._thread is None:
            return
        try:
            self._collect(report, models)
        except Exception:  # tracking must never break learning
            self.errors.inc()
            log.exception("could not collect tracking records")

    def _collect(self, report: LearnReport, models: ModelRegistry) -> None:
        """Metrics from the published key statuses; a version's snapshot from its model set
        (this runs on the learning thread, between batches, so the set is at rest)."""
        events: dict[ModelKey, list[ModelEvent]] = defaultdict(list)
        for event in report.events:
            events[event.key].append(event)
        statuses = {status.key: status for status in models.statuses()}
        now = time.monotonic()
        if report.evicted:  # keys the registry's cap dropped: forget them here too
            self._last_logged = {k: v for k, v in self._last_logged.items() if k in statuses}
            self._serving &= statuses.keys()
        for key in report.samples:
            status = statuses.get(key)
            if status is None or status.champion is None:
                continue
            if key not in self._serving and status.serving:
                self._serving.add(key)
                self._offer(self._version(models, key, "first serving champion", first=True))
            for event in events[key]:
                if event.kind == EventKind.PROMOTION:
                    self._offer(self._version(models, key, event.detail, first=False))
            samples, at = self._last_logged.get(key, (-1, 0.0))
            due = (
                samples < 0
                or status.samples - samples >= self.settings.tracking_every_observations
                or now - at >= self.settings.tracking_interval_s
                or bool(events[key])
            )
            if due and (record := _metrics(status, self.config.headline_index)) is not None:
                self._last_logged[key] = (status.samples, now)
                self._offer(record)

    def _version(
        self, models: ModelRegistry, key: ModelKey, description: str, first: bool
    ) -> VersionRecord:
        model_set = models.export_state()[key]
        snapshot = encode_snapshot(
            {key: model_set}, model_set.config.quantiles, key=self.settings.snapshot_signing_key
        )
        return VersionRecord(key, snapshot, description, first)

    def _offer(self, record: TrackingRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped.labels(_kind(record)).inc()

    # -- worker --------------------------------------------------------------------------

    def _work(self) -> None:
        store: MlflowStore | None = None
        while True:
            try:
                record = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                store = store or self._open()
                self._write(store, record)
                self.logged.labels(_kind(record)).inc()
            except Exception as exc:  # a dead or failing MLflow costs a record, never the worker
                self.errors.inc()
                log.warning("MLflow %s log of %s failed: %s", _kind(record), record.key, exc)

    def _open(self) -> MlflowStore:
        configure_http(self.settings.mlflow_timeout_s, self.settings.mlflow_retries)
        return MlflowStore(
            self.settings.mlflow_tracking_uri,
            self.settings.mlflow_experiment,
            self.settings.mlflow_artifact_location,
        )

    def _write(self, store: MlflowStore, record: TrackingRecord) -> None:
        if isinstance(record, RunMetrics):
            store.log(record, self.params)
        elif not (record.first and store.champion_version(record.key) is not None):
            alias = CHALLENGER_ALIAS if self.is_pinned(record.key) else CHAMPION_ALIAS
            version = store.register_version(
                record.key,
                record.snapshot,
                self.config.quantiles,
                self.params,
                record.description,
                alias,
            )
            log.info(
                "registered %s version %s: %s", record.key.label(), version, record.description
            )


def _metrics(status: KeyStatus, headline: int) -> RunMetrics | None:
    """The champion's window scores and the key's drift counts, as one MLflow step."""
    champion = status.champion_status()
    if champion is None or champion.scores.samples == 0:
        return None
    scores = champion.scores
    metrics = {"samples": float(status.samples), "mae_ms": scores.mae}
    for q, loss, coverage in zip(status.quantiles, scores.pinball, scores.coverage, strict=True):
        metrics[f"pinball_{quantile_label(q)}_ms"] = loss
        metrics[f"coverage_{quantile_label(q)}"] = coverage
    metrics["drift_events"] = float(status.drifts)
    metrics["promotions"] = float(status.promotions)
    # Every learner's headline scores on the same window: the review's champion vs
    # challenger comparison (a drift race's challenger is a learner too, once promoted).
    label = quantile_label(status.quantiles[headline])
    for learner in status.learners:
        if learner.scores.samples:
            metrics[f"{learner.name}.pinball_{label}_ms"] = learner.scores.pinball[headline]
            metrics[f"{learner.name}.coverage_{label}"] = learner.scores.coverage[headline]
    return RunMetrics(
        key=status.key,
        step=status.samples,
        timestamp_ms=int(time.time() * 1000),
        metrics=metrics,
        tags={"champion": champion.name},
    )


def _kind(record: TrackingRecord) -> str:
    return "metrics" if isinstance(record, RunMetrics) else "version"
