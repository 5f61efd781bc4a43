"""The trainer process: share the shards fairly with its peers and learn the owned ones.

Each trainer heartbeats into a shared set; with ``n`` live trainers and ``s`` shards each
takes at most ``ceil(s / n)`` shards, so a new trainer gets work as soon as a busy one
hands a shard over (after checkpointing it), and a dead one's shards are taken over when
its leases expire.
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

import redis
from prometheus_client import CollectorRegistry

from features.redis_keys import TRAINER_GROUP, RedisKeys
from features.redis_store import connect
from latency_oracle.settings import Settings
from models.config import ModelConfig
from models.redis_checkpoint import CheckpointStore, LeaseLost
from predictor.tracking import ModelTracker
from trainer.leases import ShardLeases
from trainer.shard_worker import ShardWorker

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.05  # how long an idle trainer waits before reading its shards again


class Trainer:
    """Owns shard workers and runs the read-learn-checkpoint loop over them."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        if client is None and not settings.redis_url:
            raise ValueError("the trainer needs LATENCY_ORACLE_REDIS_URL")
        self.settings = settings
        self.config = ModelConfig.from_settings(settings)
        self.client = client or connect(settings.redis_url or "", settings.redis_timeout_s)
        self.keys = RedisKeys(settings.redis_key_prefix)
        self.name = settings.trainer_name or f"{socket.gethostname()}-{os.getpid()}"
        self.leases = ShardLeases(
            self.client, self.keys, f"{self.name}:{uuid.uuid4().hex}", settings.trainer_lease_s
        )
        self.checkpoints = CheckpointStore(self.client, self.keys, self.config.quantiles)
        self.workers: dict[str, ShardWorker] = {}
        # The trainer has no /metrics endpoint yet: its counters live in this registry.
        self.metrics_registry = CollectorRegistry()
        self.tracker = ModelTracker(settings, self.config, self.metrics_registry)
        self._housekeeping_every_s = min(0.5, settings.trainer_lease_s / 4)
        self._next_housekeeping = 0.0

    def run(self, stop: threading.Event) -> None:
        """Train until ``stop`` is set; a Redis outage pauses it, never ends it."""
        self.tracker.start()
        try:
            while not stop.is_set():
                try:
                    self.step()
                except redis.RedisError as exc:
                    log.warning("redis unavailable, retrying: %s", exc)
                    stop.wait(1.0)
        finally:
            self.shutdown()

    def step(self) -> None:
        if time.monotonic() >= self._next_housekeeping:
            self._housekeep()
            self._next_housekeeping = time.monotonic() + self._housekeeping_every_s
        self._consume()
        for worker in list(self.workers.values()):
            if worker.checkpoint_due(self.settings.trainer_checkpoint_interval_s):
                self._checkpoint(worker)

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
        for shard in list(self.workers):
            if not self.leases.renew(shard):
                log.warning("lost the lease of shard %s", shard)
                del self.workers[shard]
        shards = sorted(m.decode() for m in members)
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
            self.tracker.submit,
        )
        self.workers[shard] = worker
        worker.take_over(self.settings.trainer_batch_size)

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
        """One lease-fenced read per owned shard; idles briefly when nothing is new."""
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
        if not read_any:
            time.sleep(IDLE_POLL_S)


def run_until_signalled(settings: Settings) -> None:
    """Run a trainer until SIGTERM or SIGINT, then checkpoint and hand its shards back."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    Trainer(settings).run(stop)
