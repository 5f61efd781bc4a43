"""The Redis back end of the observation and pod-state store, used when a Redis URL is set.

One Lua script claims each observation id (``SET NX EX``) and only then appends it to its
accelerator's stream and to the ``global`` stream, atomically: a retried write, even one
whose first attempt died after Redis executed it, never makes a second entry.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import redis
from latency_oracle.features.pod_state import PodState, select_pods
from latency_oracle.features.redis_keys import GLOBAL_SHARD, TRAINER_GROUP, RedisKeys
from latency_oracle.features.schema import Observation
from latency_oracle.features.store import AppendResult

if TYPE_CHECKING:
    from latency_oracle.settings.fleet import FleetSettings

log = logging.getLogger(__name__)

# Observations per script call: bounds how long one call holds the single-threaded server.
WRITE_CHUNK = 500

# An accelerator beyond max_shards gets no shard of its own: the global model learns it.
_APPEND_SCRIPT = """
local ttl, maxlen, max_shards = ARGV[1], ARGV[2], tonumber(ARGV[3])
local accepted = 0
redis.call('SADD', KEYS[1], ARGV[4])
for i = 1, (#KEYS - 2) / 2 do
  if redis.call('SET', KEYS[1 + 2 * i], '1', 'NX', 'EX', ttl) then
    local shard, payload = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
    if redis.call('SISMEMBER', KEYS[1], shard) == 1
        or redis.call('SCARD', KEYS[1]) <= max_shards then
      redis.call('XADD', KEYS[2 + 2 * i], 'MAXLEN', '~', maxlen, '*', 'o', payload)
      redis.call('SADD', KEYS[1], shard)
    end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'o', payload)
    accepted = accepted + 1
  end
end
return accepted
"""


def connect(
    url: str, timeout_s: float, username: str | None = None, password: str | None = None
) -> redis.Redis:
    """A client whose calls fail fast while Redis is down, instead of hanging a caller."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=5,
        username=username,
        password=password,
    )


def connect_as(settings: FleetSettings) -> redis.Redis:
    """A client logged in as this process's Redis ACL user (its role's permissions)."""
    password = settings.redis_password
    return connect(
        settings.redis_url or "",
        settings.redis_timeout_s,
        settings.redis_username,
        None if password is None else password.get_secret_value(),
    )


class RedisObservationStore:
    """Observations into sharded streams, pod state into expiring hashes."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        stream_maxlen: int,
        id_ttl_s: int,
        pod_ttl_s: float,
        max_pods: int = 10_000,
        max_shards: int = 256,
    ) -> None:
        self.client = client
        self.keys = keys
        self.stream_maxlen = stream_maxlen
        self.id_ttl_s = id_ttl_s
        self.pod_ttl_s = pod_ttl_s
        self.max_pods = max_pods
        self.max_shards = max_shards
        self._append = client.register_script(_APPEND_SCRIPT)

    def append(self, observations: Sequence[Observation]) -> AppendResult:
        """Write with idempotency by id; raises ``redis.RedisError`` if Redis is unreachable."""
        accepted = 0
        for start in range(0, len(observations), WRITE_CHUNK):
            chunk = observations[start : start + WRITE_CHUNK]
            keys = [self.keys.shards, self.keys.stream(GLOBAL_SHARD)]
            args: list[str | int] = [
                self.id_ttl_s,
                self.stream_maxlen,
                self.max_shards,
                GLOBAL_SHARD,
            ]
            for obs in chunk:
                keys += [self.keys.seen(obs.observation_id), self.keys.stream(obs.accelerator)]
                args += [obs.accelerator, obs.model_dump_json()]
            accepted += int(self._append(keys=keys, args=args))
        return AppendResult(accepted, len(observations) - accepted)

    def pending(self) -> int:
        """Observations written but not yet read or acknowledged by the trainer group."""
        stream = self.keys.stream(GLOBAL_SHARD)
        try:
            groups = self.client.xinfo_groups(stream)
        except redis.ResponseError:  # no stream yet
            return 0
        group = next((g for g in groups if g["name"].decode() == TRAINER_GROUP), None)
        if group is None:
            return int(self.client.xlen(stream))
        return int(group["pending"]) + int(group.get("lag") or 0)

    def put_pod_state(self, state: PodState) -> None:
        fields = {k: json.dumps(v) for k, v in state.model_dump(mode="json").items()}
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.pod(state.pod))
        pipe.hset(self.keys.pod(state.pod), mapping=fields)
        pipe.pexpire(self.keys.pod(state.pod), int(self.pod_ttl_s * 1000))
        pipe.zadd(self.keys.pods, {state.pod: time.time()})
        # The index keeps the most recent max_pods; evicted pods' hashes expire by TTL.
        pipe.zremrangebyrank(self.keys.pods, 0, -self.max_pods - 1)
        evicted = pipe.execute()[-1]
        if evicted:
            log.warning("live pod cap %d reached in redis: evicted %d", self.max_pods, evicted)

    def live_pods(self, model: str | None = None) -> list[PodState]:
        """Pods whose hash has not expired; the index forgets pods past their TTL."""
        self.client.zremrangebyscore(self.keys.pods, "-inf", time.time() - self.pod_ttl_s)
        names = [n.decode() for n in self.client.zrange(self.keys.pods, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.pod(name))
        states = [
            PodState.model_validate_json(
                json.dumps({k.decode(): json.loads(v) for k, v in fields.items()})
            )
            for fields in pipe.execute()
            if fields
        ]
        return select_pods(states, model)
