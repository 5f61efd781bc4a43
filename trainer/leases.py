"""Shard leases: at most one trainer consumes a shard's stream at any time.

Exclusive ownership is what makes "skip what the snapshot already contains" sound: one
owner applies a shard's entries strictly in stream order, so the checkpoint's applied id
marks a prefix. A dead owner's lease simply expires and another trainer takes over.
"""

from __future__ import annotations

import redis

from features.redis_keys import RedisKeys

_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class ShardLeases:
    """Acquire, renew and release shard leases under this trainer's unique token."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, token: str, lease_s: float) -> None:
        self.client = client
        self.keys = keys
        self.token = token
        self.lease_ms = max(1, int(lease_s * 1000))
        self._renew = client.register_script(_RENEW_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)

    def acquire(self, shard: str) -> bool:
        return bool(self.client.set(self.keys.lease(shard), self.token, nx=True, px=self.lease_ms))

    def renew(self, shard: str) -> bool:
        """Extend the lease; False if it expired or another trainer holds it now."""
        return bool(self._renew(keys=[self.keys.lease(shard)], args=[self.token, self.lease_ms]))

    def release(self, shard: str) -> None:
        self._release(keys=[self.keys.lease(shard)], args=[self.token])
