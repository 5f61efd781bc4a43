"""Live pod states mirrored from Redis, so routing makes no Redis round trip per request.

Routers call ``/v1/route`` without candidates on every request they place. Reading every
pod's hash from Redis in the request put network I/O on the hot path (blocking the event
loop) and turned a Redis outage into failed routing. A thread refreshes this mirror every
``pod_sync_interval_s`` instead; while Redis is unreachable, routing goes on with the last
states it read, each still forgotten ``pod_ttl_s`` after its scrape (counted on the
monotonic clock from the refresh, so a wall-clock step cannot revive or expire them), and
the replica's health says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from latency_oracle.features.pod_state import PodState, PodStateStore, select_pods


class PodMirror:
    """The live pods of a Redis store as of the last successful refresh."""

    def __init__(
        self,
        source: PodStateStore,
        pod_ttl_s: float,
        on_error: Callable[[Exception], None] = lambda _: None,
    ) -> None:
        self._source = source
        self._pod_ttl_s = pod_ttl_s
        self._on_error = on_error
        self._states: list[tuple[float, PodState]] = []  # (monotonic expiry, state)
        self.last_error: str | None = None
        self._failing_since: float | None = None

    def refresh(self) -> None:
        """Read every live pod from the source; on a Redis error keep the last states."""
        try:
            states = self._source.live_pods()
        except redis.RedisError as exc:
            self.last_error = str(exc) or type(exc).__name__
            self._failing_since = self._failing_since or time.monotonic()
            self._on_error(exc)
            return
        wall, now = time.time(), time.monotonic()
        self._states = [(now + self._pod_ttl_s - (wall - s.updated_at), s) for s in states]
        self.last_error = None
        self._failing_since = None

    def refresh_forever(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.wait(interval_s):
            self.refresh()

    def live_pods(self, model: str | None = None) -> list[PodState]:
        """The mirrored pods serving ``model`` (all when None) that have not expired."""
        now = time.monotonic()
        return select_pods((s for expires, s in self._states if expires > now), model)

    def failing_for_s(self) -> float:
        """Seconds refreshes have been failing (0 while they succeed)."""
        return 0.0 if self._failing_since is None else time.monotonic() - self._failing_since
