"""The model versions that served recent requests, so calibration grades what was served.

An observation reaches the learners only once its request has finished, and by then they
have already learned from requests that arrived after it. Scoring it against the current
model (plain prequential order) grades a model that never served it and knows more than
the one that did; while queues grow or the workload drifts, the conformal offsets then
come out too small and the p90 served at routing time covers well under 90%. Each
learned version is stamped with the data clock (the latest finish time it has learned),
and an observation is scored by the newest version stamped no later than its request's
arrival: the one that could have answered for it.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from latency_oracle.models.learner import QuantileFunction


class ServedHistory:
    """The last ``size`` versions of one learner, stamped with the data clock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._stamps: deque[float] = deque(maxlen=size)
        self._functions: deque[QuantileFunction] = deque(maxlen=size)

    def record(self, learned_until: float, function: QuantileFunction | None) -> None:
        """A new version, having learned outcomes finished up to ``learned_until``."""
        if function is None or self.size == 0:
            return
        stamp = max(learned_until, self._stamps[-1]) if self._stamps else learned_until
        self._stamps.append(stamp)
        self._functions.append(function)

    def clear(self) -> None:
        self._stamps.clear()
        self._functions.clear()

    def raw_as_served(
        self, features: np.ndarray, arrived: np.ndarray, current_raw: np.ndarray
    ) -> np.ndarray:
        """Each row's raw output from the version serving when its request arrived.

        ``current_raw`` is the newest version's output; rows that arrived before the
        oldest kept version get that oldest one (the closest still known).
        """
        if len(self._stamps) < 2:
            return current_raw
        newest = len(self._stamps) - 1
        version = np.clip(np.searchsorted(self._stamps, arrived, side="right") - 1, 0, newest)
        older = version < newest
        if not older.any():
            return current_raw
        out = current_raw.copy()
        for index in np.unique(version[older]):
            rows = version == index
            out[rows] = self._functions[int(index)](features[rows])
        return out
