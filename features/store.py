"""Where accepted observations wait to be learned: the embedded, in-process store.

Writes are all-or-nothing and idempotent by observation id, so a sidecar that retries a
write never creates a second sample, and a full buffer refuses a whole call (the caller
gets 503 and retries) instead of silently dropping part of it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from features.pod_state import PodState, select_pods
from features.schema import Observation


class StoreFull(RuntimeError):
    """The store cannot take these observations now; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class AppendResult:
    accepted: int
    duplicates: int


class ObservationStore(Protocol):
    """What the predictor writes to and the learner reads from."""

    def append(self, observations: Sequence[Observation]) -> AppendResult: ...

    def read_batch(self, max_items: int, timeout_s: float) -> list[Observation]: ...

    def pending(self) -> int: ...


class InProcessObservationStore:
    """A bounded FIFO with an id window for idempotency, shared by threads of one process."""

    def __init__(self, capacity: int, dedup_window: int, pod_ttl_s: float = 30.0) -> None:
        self.capacity = capacity
        self.dedup_window = dedup_window
        self.pod_ttl_s = pod_ttl_s
        self._pods: dict[str, tuple[float, PodState]] = {}
        self._queue: deque[Observation] = deque()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._ready = threading.Condition()

    def append(self, observations: Sequence[Observation]) -> AppendResult:
        with self._ready:
            fresh: dict[str, Observation] = {}
            for obs in observations:
                if obs.observation_id not in self._seen:
                    fresh.setdefault(obs.observation_id, obs)
            if len(self._queue) + len(fresh) > self.capacity:
                raise StoreFull(
                    f"observation buffer full ({len(self._queue)}/{self.capacity})",
                    retry_after_s=1.0,
                )
            for obs_id, obs in fresh.items():
                self._seen[obs_id] = None
                self._queue.append(obs)
            while len(self._seen) > self.dedup_window:
                self._seen.popitem(last=False)
            if fresh:
                self._ready.notify_all()
            return AppendResult(len(fresh), len(observations) - len(fresh))

    def read_batch(self, max_items: int, timeout_s: float) -> list[Observation]:
        """Up to ``max_items`` observations, waiting up to ``timeout_s`` for the first."""
        with self._ready:
            if not self._queue:
                self._ready.wait(timeout_s)
            count = min(max_items, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def pending(self) -> int:
        return len(self._queue)

    def put_pod_state(self, state: PodState) -> None:
        with self._ready:
            self._pods[state.pod] = (time.monotonic() + self.pod_ttl_s, state)

    def live_pods(self, model: str | None = None) -> list[PodState]:
        """Pods that reported within ``pod_ttl_s``; expired ones are forgotten here."""
        now = time.monotonic()
        with self._ready:
            for name in [n for n, (expires, _) in self._pods.items() if expires <= now]:
                del self._pods[name]
            states = [state for _, state in self._pods.values()]
        return select_pods(states, model)
