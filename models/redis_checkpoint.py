"""Shard checkpoints in Redis: a shard's model sets together with the last stream id in them.

The applied id travels inside the checksummed snapshot bytes, so the models and the
position they reflect can never disagree. The write is a Lua script, atomic like a
MULTI/EXEC transaction, that also checks the writer still holds the shard's lease: a
trainer that lost its lease while paused can never overwrite its successor's work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from latency_oracle.features.redis_keys import RedisKeys
from latency_oracle.models.keys import ModelKey
from latency_oracle.models.model_set import ModelSet
from latency_oracle.models.output_length import LengthCounts
from latency_oracle.models.snapshot import decode_snapshot, encode_snapshot

log = logging.getLogger(__name__)

NO_ENTRY_ID = "0-0"

_WRITE_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[4], ARGV[4], ARGV[5])
return redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
"""


def entry_order(entry_id: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence), not as strings."""
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


@dataclass(slots=True)
class ShardCheckpoint:
    """What a shard's trainer has learned, up to and including ``applied_id`` (the output
    lengths only where it learns them: the global shard)."""

    model_sets: dict[ModelKey, ModelSet]
    applied_id: str = NO_ENTRY_ID
    output_lengths: dict[str, LengthCounts] | None = None


class LeaseLost(RuntimeError):
    """The shard's lease belongs to someone else now; this trainer's state is stale."""


class CheckpointStore:
    """Reads and (lease-fenced) writes shard checkpoints, signed with ``signing_key`` when
    given: then only checkpoints signed with it are read (``models.snapshot``)."""

    def __init__(
        self,
        client: redis.Redis,
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
        data = self.client.get(self.keys.snapshot(shard))
        return None if data is None else self.decode(data)

    def decode(self, data: bytes) -> ShardCheckpoint:
        payload = decode_snapshot(data, self.quantiles, self.signing_key)
        return ShardCheckpoint(
            payload["model_sets"], payload["extra"]["applied_id"], payload["output_lengths"]
        )

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
            self.keys.versions,
            self.keys.applied,
        ]
        version = int(self._write(keys=keys, args=[lease_token, data, shard, trainer, applied]))
        if version < 0:
            raise LeaseLost(f"lease of shard {shard} lost before checkpoint")
        return version

    def versions(self) -> dict[str, int]:
        """Checkpoint version per shard: a replica reloads a shard when its version moves."""
        return {k.decode(): int(v) for k, v in self.client.hgetall(self.keys.versions).items()}
