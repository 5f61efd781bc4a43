"""One shard owned by a trainer: its models, its stream position and its unacknowledged entries.

Exactly-once: entries are applied in stream order, the checkpoint stores the models with
the last applied id atomically, and only then are the entries acknowledged. After a crash
the next owner restores the checkpoint, reclaims the pending entries and skips any entry
whose id the checkpoint already covers, so no entry is lost and none is applied twice.
Applying an entry counts it for its keys (``observed``, checkpointed with the models) and
learns it unless the shard is hot and it is outside the sample (``trainer.hot_keys``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from pydantic import ValidationError

from latency_oracle.features.labels import Claimed, Label, offered
from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, TRAINER_GROUP, RedisKeys
from latency_oracle.features.schema import Observation
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.learned_share import ObservedCounts
from latency_oracle.models.persistence.redis_checkpoint import (
    NO_ENTRY_ID,
    CheckpointStore,
    ShardCheckpoint,
    entry_order,
)
from latency_oracle.models.persistence.snapshot import refusal_reason
from latency_oracle.models.registry import LearnReport, LearnScope, ModelRegistry
from latency_oracle.trainer.hot_keys import HotKeyGate
from latency_oracle.trainer.leases import StreamEntry

log = logging.getLogger(__name__)


# Ids per XACK call, to keep each command small.
ACK_CHUNK = 1_000


class ShardWorker:
    """Learns one shard's stream into its own registry and checkpoints it."""

    def __init__(
        self,
        shard: str,
        client: RedisClient,
        keys: RedisKeys,
        checkpoints: CheckpointStore,
        config: ModelConfig,
        consumer: str,
        lease_token: str,
        on_learned: Callable[[LearnReport, ModelRegistry], None],
        on_refused: Callable[[str], None] = lambda _: None,
        hot_key_max_rate: float = 0.0,
    ) -> None:
        self.shard = shard
        self.client = client
        self.stream = keys.stream(shard)
        self.checkpoints = checkpoints
        self.consumer = consumer
        self.lease_token = lease_token
        self.on_learned = on_learned
        self.on_refused = on_refused
        # Why the shard's checkpoint was refused at take-over, until a new one replaces it.
        self.refused: str | None = None
        self.registry = ModelRegistry(config)
        self.scope = LearnScope.GLOBAL if shard == GLOBAL_SHARD else LearnScope.ACCELERATORS
        self.applied_id = NO_ENTRY_ID
        self.applied_since_checkpoint = 0
        self.observed = ObservedCounts(shard)
        # The global stream's load is set by the writers' global_sample_rate instead.
        self.gate = HotKeyGate(0.0 if shard == GLOBAL_SHARD else hot_key_max_rate)
        self.last_checkpoint = time.monotonic()
        self._unacked: list[bytes] = []

    def take_over(self, batch_size: int) -> int:
        """Restore the checkpoint, then reclaim and apply every entry left pending in the group.

        The lease guarantees no one else consumes this stream, so every pending entry is
        an orphan of a previous owner (or of this trainer's previous life), idle or not.
        """
        checkpoint = self._restorable_checkpoint()
        if checkpoint is not None:
            self.registry.import_state(checkpoint.model_sets)
            if checkpoint.output_lengths is not None:
                self.registry.import_output_lengths(checkpoint.output_lengths)
            self.applied_id = checkpoint.applied_id
            self.observed = ObservedCounts(self.shard, checkpoint.observed)
            self._publish_observed()
        try:
            self.client.xgroup_create(self.stream, TRAINER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        claimed: list[StreamEntry] = []
        cursor = "0-0"
        while True:
            reply = self.client.xautoclaim(
                self.stream, TRAINER_GROUP, self.consumer, 0, start_id=cursor, count=batch_size
            )
            cursor = reply[0].decode()
            claimed += [entry for entry in reply[1] if entry[1] is not None]
            if cursor == "0-0":
                break
        claimed.sort(key=lambda entry: entry_order(entry[0].decode()))
        for start in range(0, len(claimed), batch_size):
            self.apply(claimed[start : start + batch_size])
        self._forget_other_consumers()
        log.info(
            "shard %s: resumed after %s, reclaimed %d", self.shard, self.applied_id, len(claimed)
        )
        return len(claimed)

    def _forget_other_consumers(self) -> None:
        """Consumers of crashed trainers linger in the group; after the claim they hold nothing."""
        for consumer in self.client.xinfo_consumers(self.stream, TRAINER_GROUP):
            name = consumer["name"].decode()
            if name != self.consumer and int(consumer["pending"]) == 0:
                self.client.xgroup_delconsumer(self.stream, TRAINER_GROUP, name)

    def apply(self, entries: list[StreamEntry]) -> int:
        """Count and learn the entries newer than the applied id, in order; the number learned."""
        applied = entry_order(self.applied_id)
        fresh: list[Claimed] = []
        for entry_id, fields in entries:
            self._unacked.append(entry_id)
            order = entry_order(entry_id.decode())
            if order <= applied:
                continue
            applied = order
            self.applied_id = entry_id.decode()
            self.applied_since_checkpoint += 1
            try:
                claimed = self._count(fields, order[0])
            except (KeyError, ValueError, ValidationError) as exc:  # validated at write
                log.error("shard %s: dropping unreadable entry %s: %s", self.shard, entry_id, exc)
                continue
            if claimed is not None:
                fresh.append(claimed)
        if fresh:
            report = self.registry.learn(
                [c.observation for c in fresh], self.scope, [c.labels for c in fresh]
            )
            for failure in report.failures:
                log.error(
                    "learner failed: %s %s: %s", failure.key.label(), failure.learner, failure.error
                )
            self.on_learned(report, self.registry)
        self._publish_observed()
        return len(fresh)

    def _count(self, fields: dict[bytes, bytes], entry_ms: int) -> Claimed | None:
        """Count one entry for its keys; the observation and the labels it claimed
        (``features.labels``) if it is in the sample learned.

        The id, labels and copy flag are small fields of the entry, so an entry outside a
        hot shard's sample is counted without parsing its observation.
        """
        if b"i" in fields and b"t" in fields:
            observation_id, labels = fields[b"i"].decode(), Label(int(fields[b"t"]))
            observation = None
        else:  # an entry without them: what they say is in the observation
            observation = Observation.model_validate_json(fields[b"o"])
            observation_id, labels = observation.observation_id, offered(observation)
        if fields.get(b"c") != b"1":  # a sampled copy is counted by its own shard
            self.observed.count(labels)
        if not self.gate.learns(entry_ms, observation_id):
            return None
        return Claimed(observation or Observation.model_validate_json(fields[b"o"]), labels)

    def _publish_observed(self) -> None:
        """The shard's own keys' counts into its statuses (the global keys' are the fleet's,
        which the trainer sums over every shard)."""
        if not self.observed.is_global:
            self.registry.count_observed(self.observed.by_key())

    def _restorable_checkpoint(self) -> ShardCheckpoint | None:
        """The shard's checkpoint, or None (reported) when it is refused: the shard then
        learns afresh from the entries still pending, and its next checkpoint replaces
        the refused one."""
        try:
            return self.checkpoints.read(self.shard)
        except redis.RedisError:
            raise
        except Exception as exc:  # a forged or broken snapshot must not stop the trainer
            reason = refusal_reason(exc)
            log.error("refused checkpoint of shard %s (%s): %s", self.shard, reason, exc)
            self.refused = f"{reason}: {type(exc).__name__}: {exc}"[:300]
            self.on_refused(reason)
            return None

    def checkpoint_due(self, interval_s: float) -> bool:
        return bool(self._unacked) and time.monotonic() - self.last_checkpoint >= interval_s

    def checkpoint(self) -> None:
        """Store models and applied id atomically, then acknowledge; raises ``LeaseLost``."""
        if self.applied_since_checkpoint:
            self.checkpoints.write(
                self.shard,
                ShardCheckpoint(
                    self.registry.export_state(),
                    self.applied_id,
                    dict(self.observed.counts),
                    self.registry.export_output_lengths(),
                ),
                self.lease_token,
                self.consumer,
                self.applied_since_checkpoint,
            )
            self.refused = None
        for start in range(0, len(self._unacked), ACK_CHUNK):
            self.client.xack(self.stream, TRAINER_GROUP, *self._unacked[start : start + ACK_CHUNK])
        self._unacked = []
        self.applied_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
