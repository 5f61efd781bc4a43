"""Shard checkpoints in Redis: a shard's model sets together with the last stream id in them.

The applied id travels inside the checksummed snapshot bytes, so the models and the
position they reflect can never disagree. The write is a Lua script, atomic like a
MULTI/EXEC transaction, that also checks the writer still holds the shard's lease: a
trainer that lost its lease while paused can never overwrite its successor's work. The
same script counts the observations the shard's keys have seen, learned or sampled away
(``observed``), and the entries each trainer applied, in the shard's meta hash: every key
it touches is in the shard's hash slot, so it runs unchanged on a Redis Cluster.

Predictors find new checkpoints through one small global hash, shard -> version, which
the trainer sets right after the script. It is a notice, not the record: if a trainer
dies between the two, the shard's next owner publishes the version it took over.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.models.keys import ModelKey
from latency_oracle.models.model_set import ModelSet
from latency_oracle.models.output_length import LengthCounts
from latency_oracle.models.persistence.snapshot import decode_snapshot, encode_snapshot

log = logging.getLogger(__name__)

NO_ENTRY_ID = "0-0"

# KEYS: the shard's lease, snapshot, meta and stream (one hash slot). ARGV: lease token,
# snapshot, trainer, entries applied since the last checkpoint, observed counts (JSON),
# the applied stream id. The stream is trimmed up to the applied id (approximately, by
# whole stream nodes): what a checkpoint holds is never needed again, so a stream keeps
# about its backlog rather than ``stream_maxlen`` entries.
_WRITE_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], 'observed', ARGV[5])
redis.call('HINCRBY', KEYS[3], 'applied:' .. ARGV[3], ARGV[4])
redis.call('XTRIM', KEYS[4], 'MINID', '~', ARGV[6])
return redis.call('HINCRBY', KEYS[3], 'version', 1)
"""
APPLIED_FIELD = "applied:"


def entry_order(entry_id: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence), not as strings."""
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


@dataclass(slots=True)
class ShardCheckpoint:
    """What a shard's trainer has learned, up to and including ``applied_id``; ``observed``
    counts every observation per model key label, learned or not; the output lengths only
    where it learns them (the global shard)."""

    model_sets: dict[ModelKey, ModelSet]
    applied_id: str = NO_ENTRY_ID
    observed: dict[str, int] = field(default_factory=dict)
    output_lengths: dict[str, LengthCounts] | None = None


class LeaseLost(RuntimeError):
    """The shard's lease belongs to someone else now; this trainer's state is stale."""


class CheckpointStore:
    """Reads and (lease-fenced) writes shard checkpoints, signed with ``signing_key`` when
    given: then only checkpoints signed with it are read (``models.persistence.snapshot``)."""

    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys,
        quantiles: tuple[float, ...],
        signing_key: bytes | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.quantiles = quantiles
        self.signing_key = signing_key
        if signing_key is None:
            log.warning(
                "LATENCY_ORACLE_SNAPSHOT_KEY is not set: checkpoints in Redis are neither "
                "signed nor verified, anyone able to write them can replace the models"
            )
        self._write = client.register_script(_WRITE_SCRIPT)

    def read(self, shard: str) -> ShardCheckpoint | None:
        """The shard's checkpoint with its observed counts (read together, in one slot)."""
        with self.client.pipeline(transaction=True) as tx:
            tx.get(self.keys.snapshot(shard))
            tx.hget(self.keys.meta(shard), "observed")
            data, observed = tx.execute()
        if data is None:
            return None
        checkpoint = self.decode(data)
        checkpoint.observed = _counts(observed)
        return checkpoint

    def decode(self, data: bytes) -> ShardCheckpoint:
        payload = decode_snapshot(data, self.quantiles, self.signing_key)
        return ShardCheckpoint(
            payload["model_sets"],
            payload["extra"]["applied_id"],
            output_lengths=payload["output_lengths"],
        )

    def observed(self, shards: list[str]) -> dict[str, dict[str, int]]:
        """Each shard's observed counts as of its last checkpoint (small reads, no snapshot)."""
        pipe = self.client.pipeline(transaction=False)
        for shard in shards:
            pipe.hget(self.keys.meta(shard), "observed")
        return {shard: _counts(raw) for shard, raw in zip(shards, pipe.execute(), strict=True)}

    def applied(self, shard: str) -> dict[str, int]:
        """Entries each trainer has checkpointed for the shard (how the work was shared)."""
        meta = self.client.hgetall(self.keys.meta(shard))
        return {
            name.decode()[len(APPLIED_FIELD) :]: int(count)
            for name, count in meta.items()
            if name.decode().startswith(APPLIED_FIELD)
        }

    def write(
        self, shard: str, checkpoint: ShardCheckpoint, lease_token: str, trainer: str, applied: int
    ) -> int:
        """Store the checkpoint and count ``applied`` entries for ``trainer``; the version."""
        data = encode_snapshot(
            checkpoint.model_sets,
            self.quantiles,
            {"applied_id": checkpoint.applied_id},
            self.signing_key,
            checkpoint.output_lengths,
        )
        keys = [
            self.keys.lease(shard),
            self.keys.snapshot(shard),
            self.keys.meta(shard),
            self.keys.stream(shard),
        ]
        observed = json.dumps(checkpoint.observed, sort_keys=True)
        args = [lease_token, data, trainer, applied, observed, checkpoint.applied_id]
        version = int(self._write(keys=keys, args=args))
        if version < 0:
            raise LeaseLost(f"lease of shard {shard} lost before checkpoint")
        self.publish(shard, version)
        return version

    def publish(self, shard: str, version: int | None = None) -> None:
        """Tell predictors the shard's checkpoint version (its current one when None)."""
        if version is None:
            raw = self.client.hget(self.keys.meta(shard), "version")
            if raw is None:
                return
            version = int(raw)
        self.client.hset(self.keys.versions, shard, version)

    def versions(self) -> dict[str, int]:
        """Checkpoint version per shard: a replica reloads a shard when its version moves."""
        return {k.decode(): int(v) for k, v in self.client.hgetall(self.keys.versions).items()}


def _counts(raw: bytes | None) -> dict[str, int]:
    """Observed counts as stored (JSON label -> count); {} before any checkpoint had them."""
    if raw is None:
        return {}
    counts = json.loads(raw)
    if not isinstance(counts, dict):
        raise ValueError("observed counts are not a JSON object")
    return {str(label): int(n) for label, n in counts.items()}
