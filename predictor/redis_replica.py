"""A predictor replica's Redis side: observation writes with an outage buffer, model and
pod state sync.

Only imported when a Redis URL is configured, so the embedded default never needs Redis.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge

from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.features.redis.observation_store import connect_as, store_for
from latency_oracle.models.persistence.redis_checkpoint import CheckpointStore
from latency_oracle.models.persistence.redis_pins import FleetPins
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.operations.metrics import PREFIX, redis_errors, snapshots_refused
from latency_oracle.predictor.model_sync import ModelSync
from latency_oracle.predictor.outage_buffer import BufferedRedisStore
from latency_oracle.predictor.pod_mirror import PodMirror
from latency_oracle.settings import Settings


class RedisReplica:
    """Runs the model sync, pod sync and buffer delivery threads of one predictor process."""

    def __init__(self, settings: Settings, models: ModelRegistry) -> None:
        self.settings = settings
        client = connect_as(settings)
        keys = RedisKeys(settings.redis_key_prefix)
        redis_store = store_for(settings, client)
        self.pods = PodMirror(
            redis_store, settings.pod_ttl_s, on_error=lambda _: self._count_error("pods")
        )
        self.store = BufferedRedisStore(
            redis_store,
            self.pods,
            settings.observation_buffer,
            on_error=lambda _: self._count_error("write"),
        )
        self.pins = FleetPins(client, keys, models.config.quantiles, settings.snapshot_signing_key)
        self.sync = ModelSync(
            CheckpointStore(client, keys, models.config.quantiles, settings.snapshot_signing_key),
            models,
            self.pins,
            on_error=lambda _: self._count_error("sync"),
            on_refused=self._count_refused,
        )
        self._errors: Counter | None = None
        self._refused: Counter | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def expose(self, registry: CollectorRegistry) -> None:
        """Redis errors, sync staleness and the outage buffer on the service's /metrics."""
        self._errors = redis_errors(registry)
        self._refused = snapshots_refused(registry)
        Gauge(
            f"{PREFIX}_model_sync_staleness_seconds",
            "Seconds since this replica last synced models from Redis.",
            registry=registry,
        ).set_function(self.sync.staleness_s)
        Gauge(
            f"{PREFIX}_outage_buffered_observations",
            "Observations accepted while Redis was unreachable, waiting to be written.",
            registry=registry,
        ).set_function(self.store.buffered)
        Gauge(
            f"{PREFIX}_corrupt_checkpoints",
            "Shards whose newest checkpoint was refused (corrupt, unsigned, forged or "
            "unusable); their last good models serve.",
            registry=registry,
        ).set_function(lambda: len(self.sync.corrupt))

    def start(self) -> None:
        """Load the current models before serving, then keep them and the buffer moving."""
        self._stop.clear()
        self.sync.poll()
        self.pods.refresh()
        self._threads = [
            threading.Thread(
                target=self.pods.refresh_forever,
                args=(self._stop, self.settings.pod_sync_interval_s),
                name="pod-sync",
                daemon=True,
            ),
            threading.Thread(
                target=self.sync.sync_forever,
                args=(self._stop, self.settings.model_sync_interval_s),
                name="model-sync",
                daemon=True,
            ),
            threading.Thread(
                target=self.store.deliver_forever,
                args=(self._stop,),
                name="observation-delivery",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.store.wake()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def running(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def problems(self) -> list[str]:
        """Why this replica is degraded: stale models or observations stuck in memory."""
        problems = []
        if self.sync.last_error:
            problems.append(
                f"model sync failing for {self.sync.staleness_s():.1f}s, serving last good "
                f"models: {self.sync.last_error}"
            )
        if self.pods.last_error:
            problems.append(
                f"pod state sync failing for {self.pods.failing_for_s():.1f}s, routing on the "
                f"last known pods: {self.pods.last_error}"
            )
        problems += [
            f"snapshot_refused: checkpoint of shard {shard} unreadable, serving its last "
            f"good models: {error}"
            for shard, error in self.sync.corrupt.items()
        ]
        if self.store.buffered():
            problems.append(
                f"{self.store.buffered()} observations buffered in memory, redis writes "
                f"failing: {self.store.last_error}"
            )
        return problems

    def _count_error(self, operation: str) -> None:
        if self._errors is not None:
            self._errors.labels(operation).inc()

    def _count_refused(self, reason: str) -> None:
        if self._refused is not None:
            self._refused.labels(reason).inc()
