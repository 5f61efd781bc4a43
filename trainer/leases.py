"""Shard leases: at most one trainer consumes a shard's stream at any time.

Exclusive ownership is what makes "skip what the snapshot already contains" sound: one
owner applies a shard's entries strictly in stream order, so the checkpoint's applied id
marks a prefix. A dead owner's lease simply expires and another trainer takes over.

Reads are fenced too. A trainer that was paused past its lease must not read new entries
after a successor took over: they would sit in its pending list, newer than nothing the
successor claimed at take-over, and older than what the successor goes on to apply, so
the successor's "already applied" test would skip them. One script checks the lease and
reads atomically, so every entry the old owner read is pending before the take-over claim.
The read also extends the lease: a trainer that reads a shard is working on it, and its
lease then runs from the read, not from its last heartbeat.
"""

from __future__ import annotations

from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import RedisKeys

StreamEntry = tuple[bytes, dict[bytes, bytes]]

_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_FENCED_READ_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
                         'STREAMS', KEYS[2], '>')
if not reply then
  return {1, {}}
end
return {1, reply[1][2]}
"""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class ShardLeases:
    """Acquire, renew and release shard leases under this trainer's unique token."""

    def __init__(self, client: RedisClient, keys: RedisKeys, token: str, lease_s: float) -> None:
        self.client = client
        self.keys = keys
        self.token = token
        self.lease_ms = max(1, int(lease_s * 1000))
        self._renew = client.register_script(_RENEW_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)
        self._fenced_read = client.register_script(_FENCED_READ_SCRIPT)

    def acquire(self, shard: str) -> bool:
        return bool(self.client.set(self.keys.lease(shard), self.token, nx=True, px=self.lease_ms))

    def renew(self, shard: str) -> bool:
        """Extend the lease; False if it expired or another trainer holds it now."""
        return bool(self._renew(keys=[self.keys.lease(shard)], args=[self.token, self.lease_ms]))

    def read_new(
        self, shard: str, group: str, consumer: str, count: int
    ) -> list[StreamEntry] | None:
        """Up to ``count`` never-delivered entries of the shard; None if the lease is gone."""
        held, *rest = self._fenced_read(
            keys=[self.keys.lease(shard), self.keys.stream(shard)],
            args=[self.token, group, consumer, count, self.lease_ms],
        )
        if not held:
            return None
        return [(entry_id, _field_map(flat)) for entry_id, flat in rest[0]]

    def release(self, shard: str) -> None:
        self._release(keys=[self.keys.lease(shard)], args=[self.token])


def _field_map(flat: list[bytes]) -> dict[bytes, bytes]:
    """A stream entry's fields from the flat [field, value, ...] list a script returns."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
