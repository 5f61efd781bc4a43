"""The Redis back end of the observation and pod-state store, used when a Redis URL is set.

Observations go to their shard's stream: one per (accelerator type, served model) pair
(``key_layout``), so on a Redis Cluster shards spread over the masters. One Lua script per
shard and write claims each record's labels under its idempotency id (``SET NX EX``,
``features.labels``) and only then appends it, atomically and within the shard's hash
slot: a retried write, even one whose first attempt died after Redis executed it, never
makes a second entry, and a request's first-token and finish records teach each target
once.

The global model learns from a sample of every shard (``global_sample_rate``, decided by
the observation id, ``features.sampling``): the sampled observations are appended to the
``global`` stream too, by a second script in the global shard's slot, idempotent the same
way. A write that failed between the two is retried whole by its writer and completes.
Pairs beyond ``max_shards`` get no shard: their observations go to the global stream only
(marked as its own, so the global model counts them once and learns them all).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import redis

from latency_oracle.features.labels import offered
from latency_oracle.features.pod_state import PodState, select_pods
from latency_oracle.features.redis.client import RedisClient, ScriptCall, run_scripts
from latency_oracle.features.redis.key_layout import (
    GLOBAL_SHARD,
    TRAINER_GROUP,
    RedisKeys,
    shard_of,
)
from latency_oracle.features.redis.pods import PodStateReader, RedisPodStates
from latency_oracle.features.sampling import GLOBAL_SAMPLE, in_sample
from latency_oracle.features.schema import Observation
from latency_oracle.features.store import AppendResult

if TYPE_CHECKING:
    from latency_oracle.settings import Settings
    from latency_oracle.settings.fleet import FleetSettings

log = logging.getLogger(__name__)

# Observations per script call: bounds how long one call holds the single-threaded server.
WRITE_CHUNK = 500
# A writer asks again whether a shard is registered this often (the set may be reset).
REGISTRATION_TTL_S = 60.0

# KEYS: the shard's stream. ARGV: id TTL, stream length, "1" for the global stream's
# sampled copies, the shard's idempotency-key prefix, then per record its JSON, its
# observation id and the labels it offers (``features.labels``: 1 TTFT, 2 TPOT, 4 output
# length). The idempotency key of an id holds 8 plus the labels claimed so far: a record
# claims the labels not yet taken and is appended only if it claimed one, its field "t"
# holding them. The first record of an id costs one SET NX, as before labels were
# claimed apart; a key written before (value 1) counts as every label taken. The entry
# carries "i" and "t", and "c" on a sampled copy, so trainers count and sample without
# parsing the observation. The idempotency keys are built here rather than declared:
# they share the stream's hash tag, so they are in its slot on any cluster node, and
# declaring 500 keys made redis-py's cluster client hash every one.
APPEND_SCRIPT = """
local ttl, maxlen, copy, seen = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4]
local accepted = 0
for at = 5, #ARGV, 3 do
  local key, offered = seen .. ARGV[at + 1], tonumber(ARGV[at + 2])
  local claimed = offered
  if not redis.call('SET', key, 8 + offered, 'NX', 'EX', ttl) then
    local taken = tonumber(redis.call('GET', key)) or 15
    if taken < 8 then
      taken = 15
    end
    claimed = bit.band(offered, bit.bnot(taken))
    if claimed ~= 0 then
      redis.call('SET', key, bit.bor(taken, claimed), 'KEEPTTL')
    end
  end
  if claimed ~= 0 then
    if copy then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
                 'o', ARGV[at], 'i', ARGV[at + 1], 't', claimed, 'c', '1')
    else
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
                 'o', ARGV[at], 'i', ARGV[at + 1], 't', claimed)
    end
    accepted = accepted + 1
  end
end
return accepted
"""

# A shard joins the set trainers share out unless ``ARGV[2]`` shards are in it already.
_REGISTER_SCRIPT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 1
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
return redis.call('SADD', KEYS[1], ARGV[1])
"""


def dedup_id(observation: Observation) -> str:
    """What makes two writes the same observation: the one place idempotency is keyed."""
    return observation.observation_id


def connect(
    url: str, timeout_s: float, username: str | None = None, password: str | None = None
) -> RedisClient:
    """A client of a single Redis or a cluster (asked on first use), whose calls fail fast
    while Redis is down instead of hanging a caller."""
    return RedisClient(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=5,
        username=username,
        password=password,
    )


def connect_as(settings: FleetSettings) -> RedisClient:
    """A client logged in as this process's Redis ACL user (its role's permissions)."""
    password = settings.redis_password
    return connect(
        settings.redis_url or "",
        settings.redis_timeout_s,
        settings.redis_username,
        None if password is None else password.get_secret_value(),
    )


def store_for(settings: Settings, client: RedisClient | None = None) -> RedisObservationStore:
    """The observation store every writer (sidecar, predictor) configures the same way; its
    client logged in as this process's role unless given."""
    return RedisObservationStore(
        client or connect_as(settings),
        RedisKeys(settings.redis_key_prefix),
        stream_maxlen=settings.stream_maxlen,
        id_ttl_s=settings.observation_id_ttl_s,
        pod_ttl_s=settings.pod_ttl_s,
        max_pods=settings.max_live_pods,
        max_shards=settings.max_accelerators,
        global_sample_rate=settings.global_sample_rate,
    )


class RedisObservationStore:
    """Observations into sharded streams, pod state into bucketed hashes."""

    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys,
        *,
        stream_maxlen: int,
        id_ttl_s: int,
        pod_ttl_s: float,
        max_pods: int = 10_000,
        max_shards: int = 256,
        global_sample_rate: float = 1.0,
    ) -> None:
        self.client = client
        self.keys = keys
        self.stream_maxlen = stream_maxlen
        self.id_ttl_s = id_ttl_s
        self.pod_ttl_s = pod_ttl_s
        self.max_pods = max_pods
        self.max_shards = max_shards
        self.global_sample_rate = global_sample_rate
        self._append = client.register_script(APPEND_SCRIPT)
        self._register = client.register_script(_REGISTER_SCRIPT)
        self._registered: dict[str, tuple[bool, float]] = {}  # shard -> (admitted, until)
        self._pods = RedisPodStates(client, keys, pod_ttl_s, max_pods)
        self._pod_reader = PodStateReader(client, keys, pod_ttl_s, max_pods)
        self._pod_reader_lock = threading.Lock()

    def append(self, observations: Sequence[Observation]) -> AppendResult:
        """Write with idempotency by id; raises ``redis.RedisError`` if Redis is unreachable."""
        accepted = 0
        for start in range(0, len(observations), WRITE_CHUNK):
            by_shard: dict[str, list[tuple[str, Observation, str]]] = {}
            for obs in observations[start : start + WRITE_CHUNK]:
                entry = (dedup_id(obs), obs, obs.model_dump_json())
                by_shard.setdefault(self._shard(obs), []).append(entry)
            calls = [self._append_call(shard, group, False) for shard, group in by_shard.items()]
            sample = [
                entry
                for shard, group in by_shard.items()
                if shard != GLOBAL_SHARD
                for entry in group
                if in_sample(entry[0], self.global_sample_rate, GLOBAL_SAMPLE)
            ]
            copies = [self._append_call(GLOBAL_SHARD, sample, True)] if sample else []
            replies = run_scripts(self.client, calls + copies)
            accepted += sum(int(reply) for reply in replies[: len(calls)])
        return AppendResult(accepted, len(observations) - accepted)

    def _append_call(
        self, shard: str, group: list[tuple[str, Observation, str]], copy: bool
    ) -> ScriptCall:
        """One script call appending ``group`` ((dedup id, observation, JSON) each)."""
        seen = self.keys.seen(shard, "")
        args: list[str | int] = [self.id_ttl_s, self.stream_maxlen, int(copy), seen]
        for identifier, obs, payload in group:
            args += [payload, identifier, int(offered(obs))]
        return self._append, [self.keys.stream(shard)], args

    def _shard(self, observation: Observation) -> str:
        """The observation's shard, registered for trainers; ``global`` beyond the cap."""
        shard = shard_of(observation.accelerator, observation.model)
        if shard == GLOBAL_SHARD or not self._admitted(shard):
            return GLOBAL_SHARD
        return shard

    def _admitted(self, shard: str) -> bool:
        """Whether ``shard`` is in the shard set (added now if under the cap). Asked once a
        minute per shard and writer, so the global set is off the per-observation path."""
        now = time.monotonic()
        known = self._registered.get(shard)
        if known is not None and known[1] > now:
            return known[0]
        if GLOBAL_SHARD not in self._registered:
            self._register(keys=[self.keys.shards], args=[GLOBAL_SHARD, self.max_shards + 1])
            self._registered[GLOBAL_SHARD] = (True, now + REGISTRATION_TTL_S)
        admitted = bool(self._register(keys=[self.keys.shards], args=[shard, self.max_shards + 1]))
        self._registered[shard] = (admitted, now + REGISTRATION_TTL_S)
        return admitted

    def pending(self) -> int:
        """Observations written but not yet read or acknowledged by their shard's trainer.

        Each observation with a shard waits in that shard's stream; the global stream's
        sampled copies are extra work, not more observations, and are not counted (nor the
        rare pairs beyond the shard cap, which only the global stream holds).
        """
        backlogs = self.backlogs()
        return sum(n for shard, n in backlogs.items() if shard != GLOBAL_SHARD)

    def backlogs(self) -> dict[str, int]:
        """Entries not yet read or acknowledged by the trainers, per shard (global included)."""
        shards = [m.decode() for m in self.client.smembers(self.keys.shards)]
        pipe = self.client.pipeline(transaction=False)
        for shard in shards:
            pipe.xinfo_groups(self.keys.stream(shard))
            pipe.xlen(self.keys.stream(shard))
        replies = pipe.execute(raise_on_error=False)
        backlogs = {}
        for shard, groups, length in zip(shards, replies[::2], replies[1::2], strict=True):
            if isinstance(groups, redis.ResponseError):  # no stream yet
                continue
            for reply in (groups, length):
                if isinstance(reply, Exception):
                    raise reply
            group = next((g for g in groups if g["name"].decode() == TRAINER_GROUP), None)
            if group is None:
                backlogs[shard] = int(length)
            else:
                backlogs[shard] = int(group["pending"]) + int(group.get("lag") or 0)
        return backlogs

    def put_pod_state(self, state: PodState) -> None:
        evicted = self._pods.put(state)
        if evicted:
            log.warning("live pod cap reached in a redis pod bucket: evicted %d", evicted)

    def live_pods(self, model: str | None = None) -> list[PodState]:
        """Pods whose last report is younger than ``pod_ttl_s``, read incrementally."""
        with self._pod_reader_lock:
            return select_pods(self._pod_reader.refresh(), model)
