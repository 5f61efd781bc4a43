"""Mondrian conformal by pod: each pod's own correction on top of its model's calibration.

The pods of one accelerator type share a model but not their fate: one is throttled,
misconfigured or holds a hot prefix, and nothing in the features says which. Shared
offsets then over-cover the others and under-cover it (measured: 4% coverage on a pod
slowed to half speed, for a minute). Each pod keeps its last ``window`` conformal scores
against the model's calibrated prediction for it. Once it has ``min_samples`` and misses
clearly more often than the target allows and than its peers lately do (``SIGNIFICANCE``
binomial standard deviations above the larger rate),
its offset is the empirical quantile of those scores, so its own p90 covers 90% again
within a few dozen outcomes.

Corrections only ever raise a prediction. A pod made to look faster than its model says
attracts the router's traffic, which slows it and voids the correction: symmetric
corrections took shifted-traffic coverage from 85% down to 77% in the cluster evaluation.
A raised prediction sends traffic away, which is self-limiting. Healthy pods, whose miss
counts stay within noise, get no correction, so noise adds no bias. The model's shared
calibration adapts its levels to the misses of what was served, corrections included, so
once a slow pod is raised the shared offsets come down and the healthy pods are not left
over-covered. Pods are capped, the least recently seen evicted.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from latency_oracle.models.calibration import conformal_quantiles
from latency_oracle.models.ring import RingBuffer

SIGNIFICANCE = 2.0


class PodOffsets:
    """Per-pod additive offsets (log-ms, one per quantile) from windowed scores."""

    def __init__(
        self, quantiles: tuple[float, ...], window: int, min_samples: int, max_pods: int
    ) -> None:
        self.targets = np.asarray(quantiles, dtype=float)
        self.window = window
        self.min_samples = min(min_samples, window)
        self.max_pods = max_pods
        # Misses a healthy pod stays within, by how many scores it holds (row n: n scores).
        self.reset()

    def reset(self) -> None:
        self._scores: OrderedDict[str, RingBuffer] = OrderedDict()
        self._offsets: dict[str, np.ndarray] = {}
        # Per pod, how often the other pods of the key missed lately (per quantile).
        self._peer_miss_rate: dict[str, np.ndarray] = {}

    def _miss_limit(self, pod: str, n: int) -> np.ndarray:
        """Misses of ``n`` scores a pod stays within while it is no worse than the target
        allows and than its peers do: a drift every pod shares is the shared calibration's
        to follow; correcting each pod on top of it over-widened them all."""
        floor = 1.0 - self.targets
        rate = np.clip(np.maximum(self._peer_miss_rate.get(pod, floor), floor), 1e-6, 1 - 1e-6)
        return n * rate + SIGNIFICANCE * np.sqrt(n * rate * (1 - rate))

    def __len__(self) -> int:
        return len(self._scores)

    def update(self, pods: np.ndarray, scores: np.ndarray) -> None:
        """Add (n, q) scores ``y - served`` of the pods named in ``pods`` ("" = unknown)."""
        names, inverse = np.unique(pods.astype(str), return_inverse=True)
        order = np.argsort(inverse, kind="stable")  # rows grouped by pod, in arrival order
        bounds = np.searchsorted(inverse[order], np.arange(len(names) + 1)).tolist()
        misses = scores > 0
        total_misses = misses.sum(axis=0)
        for index, name in enumerate(names.tolist()):
            if not name:
                continue
            rows = order[bounds[index] : bounds[index + 1]]
            self._follow_peers(
                name, total_misses - misses[rows].sum(axis=0), len(scores) - len(rows)
            )
            ring = self._scores.pop(name, None) or RingBuffer(
                self.window,
                len(self.targets),
                np.float32,  # thousands of pods: keep them small
            )
            self._scores[name] = ring  # re-inserted last: most recently seen
            ring.extend(scores[rows])
            if len(ring) >= self.min_samples:
                self._refit(name, ring.view())
        while len(self._scores) > self.max_pods:
            evicted, _ = self._scores.popitem(last=False)
            self._offsets.pop(evicted, None)
            self._peer_miss_rate.pop(evicted, None)

    def _follow_peers(self, pod: str, misses: np.ndarray, n: int) -> None:
        """Fold the other pods' misses in this batch into ``pod``'s view of its peers."""
        if n == 0:
            return
        weight = min(1.0, n / (4.0 * self.window))
        before = self._peer_miss_rate.get(pod, 1.0 - self.targets)
        self._peer_miss_rate[pod] = (1 - weight) * before + weight * misses / n

    def _refit(self, pod: str, scores: np.ndarray) -> None:
        under = (scores > 0).sum(axis=0) > self._miss_limit(pod, len(scores))
        if under.any():
            corrections = conformal_quantiles(scores, self.targets)
            self._offsets[pod] = np.where(under, corrections, 0.0).astype(float)
        else:
            self._offsets.pop(pod, None)

    def published(self) -> dict[str, np.ndarray]:
        """The corrections of the pods that have one, for serving (a copy: arrays are
        replaced, never mutated, so the copy stays valid while learning goes on)."""
        return dict(self._offsets)

    def rows(self, pods: np.ndarray) -> np.ndarray | None:
        """(n, q) corrections of ``pods`` as served now; None when no pod has one."""
        return offsets_of(self._offsets, pods, len(self.targets))


def offsets_of(table: dict[str, np.ndarray], pods: np.ndarray, width: int) -> np.ndarray | None:
    """Each row's pod correction from ``table`` (zero for pods without one), or None when
    no row has one: on the prediction path that costs nothing while no pod is corrected,
    else one lookup per row."""
    if not table:
        return None
    corrected = [(row, table[pod]) for row, pod in enumerate(pods.tolist()) if pod in table]
    if not corrected:
        return None
    out = np.zeros((len(pods), width))
    for row, offsets in corrected:
        out[row] = offsets
    return out
