"""A fixed-size ring of rows: the sliding windows of learners, calibrators and evaluators."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """The most recent ``capacity`` rows of width ``width``; order inside is not kept."""

    def __init__(self, capacity: int, width: int, dtype: type = np.float64) -> None:
        self.capacity = capacity
        self._rows = np.empty((capacity, width), dtype=dtype)
        self._filled = 0
        self._head = 0

    def __len__(self) -> int:
        return self._filled

    def extend(self, rows: np.ndarray) -> None:
        rows = rows[-self.capacity :]
        positions = (self._head + np.arange(len(rows))) % self.capacity
        self._rows[positions] = rows
        self._head = int((self._head + len(rows)) % self.capacity)
        self._filled = min(self.capacity, self._filled + len(rows))

    def view(self) -> np.ndarray:
        """The stored rows (a view: copy it before keeping it past the next ``extend``)."""
        return self._rows[: self._filled]

    def latest(self, n: int) -> np.ndarray:
        """The ``n`` most recently added rows (fewer if fewer are stored), a copy."""
        n = min(n, self._filled)
        return self._rows[(self._head - n + np.arange(n)) % self.capacity]
