"""Each served model's scale against the global model, so what it learned transfers.

The global model learns from every observation, of every served model on every
accelerator, and sees hardware descriptors but not the served model: what it learned on
an H100 transfers to an A100 by compute and bandwidth, but an 8B and a 70B model (8x
slower) look the same to it. Each served model therefore keeps the conformal scores of
its own outcomes against the global model's served quantiles (``y - served``, log-ms),
and its offsets are their empirical quantiles: one per quantile, so the 70B's p90 covers
90% of the 70B's outcomes, wherever they ran. A (served model, accelerator) pair that has
no trained model of its own is answered by the global model plus these offsets: the
global model carries the hardware, the offsets the served model.

Unlike the per-pod corrections (``models.pod_calibration``), offsets go both ways: a
served model smaller than the fleet's mix must be predicted faster, not only slower.
Models are capped, the least recently seen evicted.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from latency_oracle.models.calibration import conformal_quantiles
from latency_oracle.models.ring import RingBuffer


class ServedModelOffsets:
    """Per served model: windowed scores against the global model, and their offsets."""

    def __init__(
        self, quantiles: tuple[float, ...], window: int, min_samples: int, max_models: int
    ) -> None:
        self.targets = np.asarray(quantiles, dtype=float)
        self.window = window
        self.min_samples = min(min_samples, window)
        self.max_models = max_models
        self.reset()

    def reset(self) -> None:
        self._scores: OrderedDict[str, RingBuffer] = OrderedDict()
        self._offsets: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._scores)

    def update(self, models: np.ndarray, scores: np.ndarray) -> None:
        """Add (n, q) scores ``y - served`` of the rows' served ``models`` ("" = unnamed)."""
        names, inverse = np.unique(models.astype(str), return_inverse=True)
        for index, name in enumerate(names.tolist()):
            ring = self._scores.pop(name, None) or RingBuffer(
                self.window, len(self.targets), np.float32
            )
            self._scores[name] = ring  # re-inserted last: most recently seen
            ring.extend(scores[inverse == index])
            if len(ring) >= self.min_samples:
                # A new array each time: a published table is never mutated.
                self._offsets[name] = conformal_quantiles(ring.view(), self.targets).astype(float)
        while len(self._scores) > self.max_models:
            evicted, _ = self._scores.popitem(last=False)
            self._offsets.pop(evicted, None)

    def published(self) -> dict[str, np.ndarray]:
        """Offsets of the served models that have enough scores, for serving (a copy)."""
        return dict(self._offsets)
