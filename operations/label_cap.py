"""A cap on the distinct values a client-controlled metric label can take.

Accelerator types, pod and model names come from clients; every distinct value of a
Prometheus label is a time series kept for the life of the process, so an attacker or a
bug sending 100,000 names would grow the scrape and the memory without bound. Values
beyond the cap are reported as ``other``, and the first time that happens it is logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

OVERFLOW_LABEL = "other"


class LabelCap:
    """Passes the first ``limit`` distinct values through; maps the rest to ``other``."""

    def __init__(self, name: str, limit: int, on_capped: Callable[[], None]) -> None:
        self.name = name
        self.limit = limit
        self.on_capped = on_capped
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._warned = False

    def __call__(self, value: str) -> str:
        if value in self._known:
            return value
        with self._lock:
            if len(self._known) < self.limit:
                self._known.add(value)
                return value
            if not self._warned:
                self._warned = True
                log.warning(
                    "metric label %s reached its cap of %d values; new ones count as %r",
                    self.name,
                    self.limit,
                    OVERFLOW_LABEL,
                )
        self.on_capped()
        return OVERFLOW_LABEL
