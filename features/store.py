"""Where accepted observations wait to be learned: the embedded, in-process store.

Writes are all-or-nothing and idempotent per target and observation id
(``features.labels``), so a sidecar that retries a write never creates a second sample,
a request's first-token and finish records teach each target once, and a full buffer
refuses a whole call (the caller gets 503 and retries) instead of silently dropping part
of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from latency_oracle.features.labels import Claimed, Label, claim, offered
from latency_oracle.features.pod_state import PodState, PodStateStore, select_pods
from latency_oracle.features.schema import Observation

log = logging.getLogger(__name__)


class StoreFull(RuntimeError):
    """The store cannot take these observations now; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class AppendResult:
    accepted: int
    duplicates: int


class ObservationStore(PodStateStore, Protocol):
    """What the predictor writes to and the learner reads from; it keeps live pods too."""

    def append(self, observations: Sequence[Observation]) -> AppendResult: ...

    def read_batch(self, max_items: int, timeout_s: float) -> list[Claimed]: ...

    def pending(self) -> int: ...


class InProcessObservationStore:
    """A bounded FIFO with an id window (the labels each id has taught) for idempotency,
    shared by threads of one process."""

    def __init__(
        self,
        capacity: int,
        dedup_window: int,
        pod_ttl_s: float = 30.0,
        max_pods: int = 10_000,
        on_pod_evicted: Callable[[], None] = lambda: None,
    ) -> None:
        self.capacity = capacity
        self.dedup_window = dedup_window
        self.pod_ttl_s = pod_ttl_s
        self.max_pods = max_pods
        self.on_pod_evicted = on_pod_evicted
        self.pods_evicted = 0
        # Least recently reported first, so the cap evicts the stalest pod.
        self._pods: OrderedDict[str, tuple[float, PodState]] = OrderedDict()
        self._queue: deque[Claimed] = deque()
        self._seen: OrderedDict[str, Label] = OrderedDict()
        self._ready = threading.Condition()

    def append(self, observations: Sequence[Observation]) -> AppendResult:
        with self._ready:
            taken: dict[str, Label] = {}  # the ids' labels with this call's claims
            fresh: list[Claimed] = []
            for obs in observations:
                before = taken.get(obs.observation_id, self._seen.get(obs.observation_id, Label(0)))
                labels = claim(before, offered(obs))
                if labels:
                    taken[obs.observation_id] = before | labels
                    fresh.append(Claimed(obs, labels))
            if len(self._queue) + len(fresh) > self.capacity:
                raise StoreFull(
                    f"observation buffer full ({len(self._queue)}/{self.capacity})",
                    retry_after_s=1.0,
                )
            for obs_id, labels in taken.items():
                self._seen[obs_id] = labels
                self._seen.move_to_end(obs_id)
            self._queue.extend(fresh)
            while len(self._seen) > self.dedup_window:
                self._seen.popitem(last=False)
            if fresh:
                self._ready.notify_all()
            return AppendResult(len(fresh), len(observations) - len(fresh))

    def read_batch(self, max_items: int, timeout_s: float) -> list[Claimed]:
        """Up to ``max_items`` records with the labels they claimed, waiting up to
        ``timeout_s`` for the first."""
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
            self._pods.move_to_end(state.pod)
            if len(self._pods) > self.max_pods:
                evicted, _ = self._pods.popitem(last=False)
                self.pods_evicted += 1
                if self.pods_evicted % 1_000 == 1:  # a flood logs a line per thousand
                    log.warning(
                        "live pod cap %d reached: evicted %s (%d so far)",
                        self.max_pods,
                        evicted,
                        self.pods_evicted,
                    )
                self.on_pod_evicted()

    def live_pods(self, model: str | None = None) -> list[PodState]:
        """Pods that reported within ``pod_ttl_s``; expired ones are forgotten here."""
        now = time.monotonic()
        with self._ready:
            for name in [n for n, (expires, _) in self._pods.items() if expires <= now]:
                del self._pods[name]
            states = [state for _, state in self._pods.values()]
        return select_pods(states, model)
