"""Which of a shard's entries its models learn, and how many each key has seen.

A shard whose stream runs faster than ``hot_key_max_rate`` would need more than one trainer
process to learn it, and one (accelerator, served model) key cannot be split between
trainers (its models are one state). Past the ceiling the shard learns a sample of about
``max_rate`` entries a second instead, and counts every entry (``models.learned_share``), so
``/v1/models`` and ``/metrics`` say what share was learned.

The rate is measured on the stream's own clock (entry ids are the writing master's
milliseconds), over the last ``WINDOW_S`` seconds of entries: a trainer catching up on a
backlog does not mistake its own speed for the shard's rate. Which entries are in the
sample is decided by observation id (``features.sampling``); the decision is final once a
checkpoint holds it, which is what exactly-once needs.
"""

from __future__ import annotations

from collections import deque

from latency_oracle.features.sampling import HOT_KEY_SAMPLE, in_sample

WINDOW_S = 10


class HotKeyGate:
    """Learn everything until the shard's stream rate passes ``max_rate`` (0: never)."""

    def __init__(self, max_rate: float) -> None:
        self.max_rate = max_rate
        self._seconds: deque[list[int]] = deque()  # [second of stream time, entries]
        self._total = 0

    def learns(self, entry_ms: int, observation_id: str) -> bool:
        """Count the entry in the rate; whether it is in the sample learned now."""
        if self.max_rate <= 0:
            return True
        second = entry_ms // 1000
        if self._seconds and self._seconds[-1][0] == second:
            self._seconds[-1][1] += 1
        elif not self._seconds or second > self._seconds[-1][0]:
            self._seconds.append([second, 1])
        else:  # an id from an earlier second (a reclaimed entry): counted where it fell
            self._seconds[-1][1] += 1
        self._total += 1
        while self._seconds[0][0] <= second - WINDOW_S:
            self._total -= self._seconds.popleft()[1]
        return in_sample(observation_id, self.share(), HOT_KEY_SAMPLE)

    def rate(self) -> float:
        """Entries per second of stream time over the window (a shorter span while young)."""
        if not self._seconds:
            return 0.0
        span = min(WINDOW_S, self._seconds[-1][0] - self._seconds[0][0] + 1)
        return self._total / span

    def share(self) -> float:
        """The share of entries learned at the current rate."""
        rate = self.rate()
        return 1.0 if self.max_rate <= 0 or rate <= self.max_rate else self.max_rate / rate
