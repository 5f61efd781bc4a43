"""Retrying a store that is down, the way a fleet of sidecars must.

When Redis (or the predictor) goes away, every sidecar of the fleet fails at the same
moment. Retries on a fixed or merely doubling schedule keep them in step: hundreds of
reconnects land together each round, and together again on a store just back up. Full
jitter (each pause drawn uniformly between 0 and the capped exponential bound) spreads
them over the whole window instead.

Logging follows the outage, not the attempts: a warning when it starts, a summary at a
fixed interval while it lasts, and a line when it ends, instead of one warning per retry
(or per 0.2 s scrape for the pod state).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable


class Backoff:
    """Capped exponential backoff with full jitter; ``reset()`` after a success."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.rng = rng or random.Random()
        self.failures = 0

    def next_pause(self) -> float:
        """The pause before the next attempt, after one more failure."""
        bound = min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 62))
        self.failures += 1
        return self.rng.uniform(0.0, bound)

    def reset(self) -> None:
        self.failures = 0


class OutageLog:
    """One warning per outage, a summary every ``summary_interval_s``, one line at its end."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        summary_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.what = what
        self.summary_interval_s = summary_interval_s
        self.clock = clock
        self.started: float | None = None
        self.failures = 0
        self._summarised_at = 0.0

    def failed(self, error: object) -> None:
        now = self.clock()
        self.failures += 1
        if self.started is None:
            self.started = self._summarised_at = now
            self.log.warning("%s failed, retrying with backoff: %s", self.what, error)
        elif now - self._summarised_at >= self.summary_interval_s:
            self._summarised_at = now
            self.log.warning(
                "%s still failing after %.0fs (%d attempts): %s",
                self.what,
                now - self.started,
                self.failures,
                error,
            )

    def succeeded(self) -> None:
        if self.started is None:
            return
        self.log.info(
            "%s recovered after %.1fs (%d failed attempts)",
            self.what,
            self.clock() - self.started,
            self.failures,
        )
        self.started = None
        self.failures = 0
