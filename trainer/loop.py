"""The trainer process: share the shards fairly with its peers and learn the owned ones.

Each trainer heartbeats into a shared set; with ``n`` live trainers and ``s`` shards each
takes at most ``ceil(s / n)`` shards, so a new trainer gets work as soon as a busy one
hands a shard over (after checkpointing it), and a dead one's shards are taken over when
its leases expire. Its endpoint (``trainer.endpoint``) shows a failed learner, a Redis
outage or an idle trainer on ``/readyz`` and ``/metrics`` like a predictor does.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from prometheus_client import Gauge

from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, TRAINER_GROUP, RedisKeys
from latency_oracle.features.redis.observation_store import connect_as
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.learned_share import fleet_observed
from latency_oracle.models.persistence.redis_checkpoint import CheckpointStore, LeaseLost
from latency_oracle.models.persistence.redis_pins import FleetPins
from latency_oracle.models.registry import LearnReport, ModelRegistry
from latency_oracle.models.status import KeyStatus
from latency_oracle.operations.metrics import (
    PREFIX,
    LearningMetrics,
    redis_errors,
    snapshots_refused,
)
from latency_oracle.operations.readiness import Readiness, failed_learners
from latency_oracle.operations.tracking import ModelTracker
from latency_oracle.settings import Settings
from latency_oracle.trainer.endpoint import StatusEndpoint
from latency_oracle.trainer.leases import ShardLeases
from latency_oracle.trainer.shard_worker import ShardWorker

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.05  # how long an idle trainer waits before reading its shards again
FLEET_COUNT_EVERY_S = 1.0  # how often the global shard's owner sums every shard's count


class Trainer:
    """Owns shard workers and runs the read-learn-checkpoint loop over them."""

    def __init__(
        self,
        settings: Settings,
        client: RedisClient | None = None,
        model_config: ModelConfig | None = None,
    ) -> None:
        if client is None and not settings.redis_url:
            raise ValueError("the trainer needs LATENCY_ORACLE_REDIS_URL")
        self.settings = settings
        self.config = model_config or ModelConfig.from_settings(settings)
        self.client = client or connect_as(settings)
        self.keys = RedisKeys(settings.redis_key_prefix)
        self.name = settings.trainer_name or f"{socket.gethostname()}-{os.getpid()}"
        self.leases = ShardLeases(
            self.client, self.keys, f"{self.name}:{uuid.uuid4().hex}", settings.trainer_lease_s
        )
        self.checkpoints = CheckpointStore(
            self.client, self.keys, self.config.quantiles, settings.snapshot_signing_key
        )
        self.workers: dict[str, ShardWorker] = {}
        self.metrics = LearningMetrics(settings.max_accelerators)
        self.metrics.watch(self.statuses)
        self.redis_errors = redis_errors(self.metrics.registry).labels("train")
        self.snapshots_refused = snapshots_refused(self.metrics.registry)
        Gauge(
            f"{PREFIX}_trainer_shards",
            "Shards whose lease this trainer holds.",
            registry=self.metrics.registry,
        ).set_function(lambda: len(self.workers))
        # A pinned key's learning is a challenger: its versions never take the champion alias.
        self.pins = FleetPins(
            self.client, self.keys, self.config.quantiles, settings.snapshot_signing_key
        )
        self.tracker = ModelTracker(
            settings, self.config, self.metrics.registry, lambda key: key in self.pins.pins()
        )
        self.running = False
        self.redis_error: str | None = None
        self._seen = (0, 0)  # shards and live trainers at the last housekeeping
        self._shards: list[str] = []  # the shard set at the last housekeeping
        self._housekeeping_every_s = min(0.5, settings.trainer_lease_s / 4)
        self._next_housekeeping = 0.0
        self._next_fleet_count = 0.0
        # After a Redis error, Redis may have failed over to a replica that missed the last
        # writes: owned shards are resumed from what Redis holds (checkpoint and pending
        # entries), exactly as a successor would, before anything else is learned.
        self._resume_from_redis = False

    def run(self, stop: threading.Event) -> None:
        """Train until ``stop`` is set; a Redis outage pauses it, never ends it."""
        with self._status_endpoint():
            self.tracker.start()
            self.running = True
            try:
                while not stop.is_set():
                    try:
                        self.step()
                        self.redis_error = None
                    except redis.RedisError as exc:
                        self._resume_from_redis = True
                        self.redis_error = f"{type(exc).__name__}: {exc}"
                        self.redis_errors.inc()
                        log.warning("redis unavailable, retrying: %s", exc)
                        stop.wait(1.0)
            finally:
                self.running = False
                self.shutdown()

    def readiness(self) -> Readiness:
        """Not ready while it cannot train; degraded while a learner failed or it owns nothing.

        Owning no shard is not "not ready": a trainer beside a peer that holds every shard
        is a warm standby, and a rollout must be able to start one before the old one goes.
        """
        blockers = []
        if not self.running:
            blockers.append("training loop is not running")
        if self.redis_error:
            blockers.append(f"redis unreachable: {self.redis_error}")
        problems = failed_learners(self.statuses())
        problems += [
            f"snapshot_refused: checkpoint of shard {shard} refused, learning it afresh: "
            f"{worker.refused}"
            for shard, worker in list(self.workers.items())
            if worker.refused
        ]
        if not self.workers:
            shards, trainers = self._seen
            problems.append(
                f"holds no shard lease ({shards} shards among {trainers} live trainers)"
            )
        return Readiness.judge(blockers, problems)

    def statuses(self) -> list[KeyStatus]:
        """The published key statuses of every shard this trainer owns (each learns its own)."""
        return [s for worker in list(self.workers.values()) for s in worker.registry.statuses()]

    @contextmanager
    def _status_endpoint(self) -> Iterator[None]:
        """/metrics, /healthz and /readyz for as long as the trainer runs (port 0: none)."""
        if not self.settings.trainer_metrics_port:
            yield
            return
        endpoint = StatusEndpoint(
            self.settings.host,
            self.settings.trainer_metrics_port,
            self.metrics.registry,
            self.readiness,
        )
        endpoint.start()
        try:
            yield
        finally:
            endpoint.stop()

    def step(self) -> None:
        if self._resume_from_redis:
            self._resume()
        if time.monotonic() >= self._next_housekeeping:
            self._housekeep()
            self._next_housekeeping = time.monotonic() + self._housekeeping_every_s
        self._consume()
        if GLOBAL_SHARD in self.workers and time.monotonic() >= self._next_fleet_count:
            self._count_fleet(self.workers[GLOBAL_SHARD])
            self._next_fleet_count = time.monotonic() + FLEET_COUNT_EVERY_S

    def _resume(self) -> None:
        """Drop in-memory shard state and take every still-leased shard over afresh."""
        for shard in list(self.workers):
            if self.leases.renew(shard):
                self._take(shard)  # replaces its worker; a failure leaves the flag set
            else:
                del self.workers[shard]
        self._resume_from_redis = False

    def _count_fleet(self, worker: ShardWorker) -> None:
        """The global keys count every observation of every shard (as last checkpointed),
        plus the global stream's own, though they learn only a sample."""
        shards = [s for s in self._shards if s != GLOBAL_SHARD]
        per_shard = self.checkpoints.observed(shards)
        per_shard[GLOBAL_SHARD] = dict(worker.observed.counts)
        worker.registry.count_observed(fleet_observed(per_shard))

    def shutdown(self) -> None:
        """Checkpoint and hand back every shard, so a peer can take over without waiting."""
        try:
            for shard in list(self.workers):
                self._release(shard)
            self.client.zrem(self.keys.trainers, self.name)
        except redis.RedisError as exc:
            log.warning("could not hand shards back cleanly: %s", exc)
        finally:
            self.tracker.stop()

    def _housekeep(self) -> None:
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.trainers, {self.name: now})
        pipe.zremrangebyscore(self.keys.trainers, "-inf", now - self.settings.trainer_lease_s)
        pipe.zcard(self.keys.trainers)
        pipe.smembers(self.keys.shards)
        _, _, trainers, members = pipe.execute()
        self._seen = (len(members), trainers)
        self._shards = sorted(m.decode() for m in members)
        for shard in list(self.workers):
            if not self.leases.renew(shard):
                log.warning("lost the lease of shard %s", shard)
                del self.workers[shard]
        shards = self._shards
        fair_share = math.ceil(len(shards) / max(1, trainers))
        while len(self.workers) > fair_share:
            self._release(next(iter(self.workers)))
        free = [s for s in shards if s not in self.workers]
        random.shuffle(free)
        for shard in free:
            if len(self.workers) >= fair_share:
                break
            if self.leases.acquire(shard):
                self._take(shard)

    def _take(self, shard: str) -> None:
        worker = ShardWorker(
            shard,
            self.client,
            self.keys,
            self.checkpoints,
            self.config,
            self.name,
            self.leases.token,
            self._learned,
            lambda reason: self.snapshots_refused.labels(reason).inc(),
            self.settings.hot_key_max_rate,
        )
        self.workers[shard] = worker
        worker.take_over(self.settings.trainer_batch_size)
        self.checkpoints.publish(shard)  # in case its last owner died before it could

    def _learned(self, report: LearnReport, registry: ModelRegistry) -> None:
        self.metrics.record_learning(report)
        self.tracker.submit(report, registry)

    def _release(self, shard: str) -> None:
        worker = self.workers.pop(shard)
        try:
            worker.checkpoint()
        except LeaseLost:
            return
        self.leases.release(shard)

    def _checkpoint(self, worker: ShardWorker) -> None:
        try:
            worker.checkpoint()
        except LeaseLost:
            log.warning("shard %s was taken over; dropping its unsaved state", worker.shard)
            self.workers.pop(worker.shard, None)

    def _consume(self) -> None:
        """Per owned shard, one lease-fenced read (which extends the lease), learning, and
        the checkpoint when due, before the next shard: a shard's lease never has to outlast
        the other shards' work, however slow this machine is. Idles briefly when nothing
        is new."""
        read_any = False
        for shard, worker in list(self.workers.items()):
            entries = self.leases.read_new(
                shard, TRAINER_GROUP, self.name, self.settings.trainer_batch_size
            )
            if entries is None:
                log.warning("lost the lease of shard %s; dropping its unsaved state", shard)
                del self.workers[shard]
                continue
            if entries:
                read_any = True
                worker.apply(entries)
            if worker.checkpoint_due(self.settings.trainer_checkpoint_interval_s):
                self._checkpoint(worker)
        if not read_any:
            time.sleep(IDLE_POLL_S)


def run_until_signalled(settings: Settings) -> None:
    """Run a trainer until SIGTERM or SIGINT, then checkpoint and hand its shards back."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    Trainer(settings).run(stop)
