"""Observation writes that survive a Redis outage: accepted data is buffered, never dropped.

While Redis answers, writes go straight through. When a write fails, the observations
(with their ids) wait in a bounded in-memory queue that a delivery thread flushes once
Redis is back; Redis dedups by id, so a flush retried after an ambiguous failure never
doubles a sample. A full queue refuses the whole call (503, Retry-After), so the sidecar
keeps the data and retries instead of it being lost here. Live pods are read from the
replica's ``PodMirror`` the same way: the last known states while Redis is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import redis

from latency_oracle.features.labels import record_key
from latency_oracle.features.pod_state import PodState
from latency_oracle.features.redis.observation_store import WRITE_CHUNK, RedisObservationStore
from latency_oracle.features.schema import Observation
from latency_oracle.features.store import AppendResult, StoreFull
from latency_oracle.predictor.pod_mirror import PodMirror

log = logging.getLogger(__name__)

RETRY_INTERVAL_S = 0.5
# The trainers' backlog is read every shard's stream at a time (one call per shard): often
# enough for a gauge, rarely enough that replicas add little to Redis's load.
BACKLOG_POLL_S = 5.0


class BufferedRedisStore:
    """The predictor's observation store in Redis mode."""

    def __init__(
        self,
        store: RedisObservationStore,
        pods: PodMirror,
        capacity: int,
        on_error: Callable[[Exception], None] = lambda _: None,
    ) -> None:
        self.store = store
        self.pods = pods
        self.capacity = capacity
        self.on_error = on_error
        self.last_error: str | None = None
        self.remote_backlog = 0
        self._backlog_read_at = -BACKLOG_POLL_S
        self._buffer: deque[Observation] = deque()
        # Records buffered, by id and labels offered: a first-token and a finish record of
        # one request are two records, a retry of either is one.
        self._buffered_ids: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def append(self, observations: Sequence[Observation]) -> AppendResult:
        """Write to Redis, or buffer; raises ``StoreFull`` with nothing accepted."""
        if not self.buffered():
            try:
                return self.store.append(observations)
            except redis.RedisError as exc:
                self._failed(exc)
        return self._buffer_up(observations)

    def buffered(self) -> int:
        return len(self._buffer)

    def put_pod_state(self, state: PodState) -> None:
        """Straight to Redis (raises ``RedisError`` while it is down): only the newest counts."""
        self.store.put_pod_state(state)

    def live_pods(self, model: str | None = None) -> list[PodState]:
        """From the mirror, never a Redis read per request (and the last known pods while
        Redis is down)."""
        return self.pods.live_pods(model)

    def pending(self) -> int:
        """Accepted but not learned: the local buffer plus the trainers' last known backlog."""
        return self.buffered() + self.remote_backlog

    def deliver_forever(self, stop: threading.Event) -> None:
        """Flush the buffer whenever Redis takes writes again; otherwise track the backlog."""
        while not stop.is_set():
            try:
                if self.buffered():
                    self._flush()
                elif time.monotonic() - self._backlog_read_at >= BACKLOG_POLL_S:
                    self.remote_backlog = self.store.pending()
                    self._backlog_read_at = time.monotonic()
                    self.last_error = None
            except redis.RedisError as exc:
                self._failed(exc)
            self._wake.wait(RETRY_INTERVAL_S)
            self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def _buffer_up(self, observations: Sequence[Observation]) -> AppendResult:
        with self._lock:
            fresh = {
                record_key(o): o for o in observations if record_key(o) not in self._buffered_ids
            }
            if len(self._buffer) + len(fresh) > self.capacity:
                raise StoreFull(
                    f"redis down and outage buffer full ({len(self._buffer)}/{self.capacity})",
                    retry_after_s=2 * RETRY_INTERVAL_S,
                )
            self._buffer.extend(fresh.values())
            self._buffered_ids.update(fresh)
        return AppendResult(len(fresh), len(observations) - len(fresh))

    def _flush(self) -> None:
        started = time.monotonic()
        while self._buffer:
            with self._lock:
                chunk = [self._buffer[i] for i in range(min(WRITE_CHUNK, len(self._buffer)))]
            self.store.append(chunk)
            with self._lock:
                for _ in chunk:
                    self._buffered_ids.discard(record_key(self._buffer.popleft()))
        self.last_error = None
        log.info("redis back: flushed buffered observations in %.2fs", time.monotonic() - started)

    def _failed(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.on_error(exc)
