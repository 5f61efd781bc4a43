"""Live pod states in Redis, spread over fixed buckets so no key is hot at fleet scale.

Every pod reports its engine's state a few times a second: 10,000 pods make ~50,000 writes
a second. One index for all of them would put every write on one Redis master and make
every reader fetch every pod. Instead a pod belongs to one of ``POD_BUCKETS`` buckets
(``key_layout.pod_bucket``): its state is a key of the bucket, and the bucket's index sorts
its pods by the Redis server's clock at their last report, all in one hash slot. A report
is one write-only script on one master, and a reader that keeps a cursor per bucket
fetches only the pods that reported since it last looked (``PodStateReader``), with one
``MGET`` per bucket.

A pod is forgotten ``pod_ttl_s`` after its last report: its state key expires, reports
sweep the index now and then, readers drop it by its ``updated_at``. Each bucket's index
keeps about ``bucket_cap`` pods at most, enough for twice ``max_pods`` spread evenly: a
bound on memory against a flood of client-made names, not an exact cap (readers keep the
``max_pods`` most recent).
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Iterable

from latency_oracle.features.pod_state import PodState, select_pods
from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import POD_BUCKETS, RedisKeys, pod_bucket

# KEYS: the pod's state key, its bucket's index. ARGV: pod, state JSON, TTL (ms), bucket
# cap, and "1" to sweep the index (expired pods, pods past the cap). Scores are the
# server's clock in microseconds (exact in a double), so all writers of a bucket order
# their reports on one clock, whatever their own clocks say. It only writes: a sidecar's
# user reads nothing. Pods swept past the cap keep their state key until it expires.
_PUT_SCRIPT = """
local now = redis.call('TIME')
local micros = tonumber(now[1]) * 1000000 + tonumber(now[2])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], micros, ARGV[1])
if ARGV[5] ~= '1' then
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', micros - tonumber(ARGV[3]) * 1000)
return redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[4]) - 1)
"""
# One report in this many sweeps its bucket's index: the sweep is a third of a report's
# cost in Redis, and a bucket reported to many times a second needs it rarely (an
# expired pod's state key is gone by itself; readers skip its index entry).
SWEEP_EVERY = 16

# A reader reads every pod again this often, whatever happened to a bucket's clock.
FULL_READ_EVERY_S = 30.0


class RedisPodStates:
    """Pod reports into buckets (writers: sidecars, predictors)."""

    def __init__(self, client: RedisClient, keys: RedisKeys, pod_ttl_s: float, max_pods: int):
        self.client = client
        self.keys = keys
        self.pod_ttl_s = pod_ttl_s
        self.max_pods = max_pods
        self.bucket_cap = math.ceil(2 * max_pods / POD_BUCKETS) + 16
        self._put = client.register_script(_PUT_SCRIPT)

    def put(self, state: PodState) -> int:
        """Store the pod's latest state; how many pods the bucket's cap evicted."""
        bucket = pod_bucket(state.pod)
        evicted = self._put(
            keys=[self.keys.pod(bucket, state.pod), self.keys.pod_index(bucket)],
            args=[
                state.pod,
                state.model_dump_json(),
                int(self.pod_ttl_s * 1000),
                self.bucket_cap,
                int(random.randrange(SWEEP_EVERY) == 0),
            ],
        )
        return int(evicted)


class PodStateReader:
    """Every live pod, kept current by reading only what changed since the last read.

    Not thread-safe: one reader per refreshing thread (a predictor's pod mirror).
    """

    def __init__(self, client: RedisClient, keys: RedisKeys, pod_ttl_s: float, max_pods: int):
        self.client = client
        self.keys = keys
        self.pod_ttl_s = pod_ttl_s
        self.max_pods = max_pods
        self._states: dict[str, PodState] = {}
        self._raw: dict[str, bytes] = {}  # the JSON each state was parsed from
        self._cursors = [0.0] * POD_BUCKETS
        self._full_read_at = 0.0
        self.fetched = 0  # pod states read from Redis by the last refresh

    def refresh(self) -> list[PodState]:
        """The live pods, most recently reported first cut at ``max_pods``, sorted by name."""
        if time.monotonic() >= self._full_read_at:
            self._cursors = [0.0] * POD_BUCKETS
            self._full_read_at = time.monotonic() + FULL_READ_EVERY_S
        changed = self._changed_pods()
        self.fetched = sum(len(pods) for pods in changed.values())
        pipe = self.client.pipeline(transaction=False)
        for bucket, pods in changed.items():
            # One slot per bucket (redis-py's cluster pipeline refuses its mget helper).
            pipe.execute_command("MGET", *(self.keys.pod(bucket, pod) for pod in pods))
        for pods, raws in zip(changed.values(), pipe.execute() if changed else [], strict=True):
            self._update(pods, raws)
        return self._live()

    def _changed_pods(self) -> dict[int, list[str]]:
        """Per bucket, the pods that reported at or after the newest report last seen there.

        One master's clock orders a bucket's reports, so nothing newer hides below the
        cursor; a bucket whose newest report is older than its cursor (its master's clock
        stepped back, or a replica with another clock took over) is read again in full.
        """
        pipe = self.client.pipeline(transaction=False)
        for bucket in range(POD_BUCKETS):
            index = self.keys.pod_index(bucket)
            pipe.zrangebyscore(index, self._cursors[bucket] or "-inf", "+inf", withscores=True)
            pipe.zrange(index, -1, -1, withscores=True)
        replies = pipe.execute()
        changed: dict[int, list[str]] = {}
        for bucket, (members, newest) in enumerate(zip(replies[::2], replies[1::2], strict=True)):
            if newest and newest[0][1] < self._cursors[bucket]:
                self._cursors[bucket] = 0.0  # read in full at the next refresh
                continue
            if members:
                self._cursors[bucket] = max(self._cursors[bucket], members[-1][1])
                changed[bucket] = [name.decode() for name, _ in members]
        return changed

    def _update(self, pods: list[str], raws: Iterable[bytes | None]) -> None:
        for pod, raw in zip(pods, raws, strict=True):
            if raw is None or raw == self._raw.get(pod):
                continue  # expired since, or unchanged
            self._raw[pod] = raw
            self._states[pod] = PodState.model_validate_json(raw)

    def _live(self) -> list[PodState]:
        cutoff = time.time() - self.pod_ttl_s
        for pod in [p for p, s in self._states.items() if s.updated_at <= cutoff]:
            del self._states[pod]
            del self._raw[pod]
        states = self._states.values()
        if len(states) > self.max_pods:
            states = heapq.nlargest(self.max_pods, states, key=lambda s: s.updated_at)
        return select_pods(states, None)
