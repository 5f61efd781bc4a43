"""Optimistic in-flight accounting: what a pod's last scrape cannot know yet.

Pod states arrive by periodic scrape, so between two scrapes every router sees the same
stale state and would send a burst to the same "best" pod. Each placement is therefore
added to its pod's state (a waiting request, its prefill tokens, its decode context)
until a scrape newer than the placement arrives or ``ttl_s`` passes, whichever is first.
Scrapes carry wall-clock times, so placements are stamped with the wall clock too; the
TTL is also measured on the monotonic clock, so a wall clock stepped back (NTP) cannot
pin stale placements on a pod for as long as the step.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

# Columns of a load delta, in this order.
WAITING, RUNNING, PREFILL_TOKENS, DECODE_TOKENS = range(4)
LOAD_FIELDS = 4
# Pods are forgotten when asked about; pods never asked about again (client-given names)
# are swept once the ledger doubles, so it stays bounded at amortised O(1) per placement.
SWEEP_MIN_PODS = 1_024


@dataclass(slots=True)
class _PodLoad:
    """Placements on one pod in time order (wall time, monotonic time, load), and their sum."""

    entries: deque[tuple[float, float, np.ndarray]] = field(default_factory=deque)
    total: np.ndarray = field(default_factory=lambda: np.zeros(LOAD_FIELDS))

    def retire_until(self, cutoff: float, monotonic_cutoff: float) -> None:
        while self.entries and (
            self.entries[0][0] <= cutoff or self.entries[0][1] <= monotonic_cutoff
        ):
            self.total -= self.entries.popleft()[2]
        if not self.entries:
            self.total[:] = 0.0  # no float drift survives an empty ledger


class InFlightLedger:
    """Placements not yet visible in pod state, per pod name; thread-safe."""

    def __init__(
        self,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.monotonic = monotonic
        self._pods: dict[str, _PodLoad] = {}
        self._lock = threading.Lock()
        self._sweep_at = SWEEP_MIN_PODS

    def pending(self, pods: Sequence[str], scraped_at: Sequence[float | None]) -> np.ndarray:
        """(n, LOAD_FIELDS) load placed on each pod since its scrape and within the TTL."""
        out = np.zeros((len(pods), LOAD_FIELDS))
        expired, monotonic_expired = self._cutoffs()
        with self._lock:
            for i, (pod, scraped) in enumerate(zip(pods, scraped_at, strict=True)):
                load = self._pods.get(pod)
                if load is None:
                    continue
                load.retire_until(
                    expired if scraped is None else max(expired, scraped), monotonic_expired
                )
                if load.entries:
                    out[i] = load.total
                else:
                    del self._pods[pod]
        return out

    def place(self, pod: str, delta: np.ndarray) -> None:
        """Count ``delta`` (a LOAD_FIELDS vector) against ``pod`` from now on."""
        with self._lock:
            load = self._pods.setdefault(pod, _PodLoad())
            load.entries.append((self.clock(), self.monotonic(), delta))
            load.total += delta
            if len(self._pods) > self._sweep_at:
                self._sweep()

    def _cutoffs(self) -> tuple[float, float]:
        return self.clock() - self.ttl_s, self.monotonic() - self.ttl_s

    def _sweep(self) -> None:
        cutoffs = self._cutoffs()
        for name, load in list(self._pods.items()):
            load.retire_until(*cutoffs)
            if not load.entries:
                del self._pods[name]
        self._sweep_at = max(SWEEP_MIN_PODS, 2 * len(self._pods))

    def __len__(self) -> int:
        with self._lock:
            return sum(len(load.entries) for load in self._pods.values())
