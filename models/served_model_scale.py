"""Each served model's scale, so the global model transfers across served models too.

The global model learns from every observation, of every served model on every
accelerator, and sees hardware descriptors but not the served model: an 8B and a 70B
model (8x slower) look the same to it. Worse, what it learns of the hardware is then
confounded with the mix of models each accelerator happens to serve: if only the 8B runs
on the A100s, the A100 looks fast. So the global model learns normalised latency: each
served model keeps one log-scale, the mean of its outcomes over the global model's
median, and the global model fits ``log y - scale``. It then sees one kind of work on
every accelerator and learns the hardware from all of it; a served model's predictions
are the global model's plus its scale, wherever it runs, also on a pair never seen.

Scales move by a running mean of the residual (exact for a model's first samples, then an
exponential average of ``rate`` per sample, so they follow a model that changes), and
are capped in number, the least recently seen evicted. Shifting every scale and the
global level by one constant changes no prediction; outcomes naming no served model
anchor it, with a scale fixed at 0, so a fleet that names none trains the global model
exactly as before served models were a signal. Where served models are named, the global
key's own scores (``/v1/models``, ``/metrics``) are of normalised latency.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from latency_oracle.models.keys import ANY_MODEL

DEFAULT_RATE = 0.05  # per sample: a model's scale follows it over ~20 outcomes


class ServedModelScale:
    """One log-scale per named served model (outcomes naming none keep 0)."""

    def __init__(self, max_models: int, min_samples: int, rate: float = DEFAULT_RATE) -> None:
        self.max_models = max_models
        self.min_samples = min_samples
        self.rate = rate
        self.reset()

    def reset(self) -> None:
        # model -> (scale, samples); replaced, never mutated, so published copies stay valid
        self._scales: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._scales)

    def rows(self, models: np.ndarray) -> np.ndarray:
        """(n,) each row's served model's current scale (0 for a model without one)."""
        if not self._scales:
            return np.zeros(len(models))
        return np.array([self._scales.get(m, (0.0, 0))[0] for m in models.tolist()])

    def update(self, models: np.ndarray, residuals: np.ndarray) -> None:
        """Move each served model's scale by its rows' (n,) ``residuals``, log-ms: normalised
        outcomes less the global model's median for them."""
        names, inverse = np.unique(models.astype(str), return_inverse=True)
        for index, name in enumerate(names.tolist()):
            if name == ANY_MODEL:
                continue
            mine = residuals[inverse == index]
            scale, seen = self._scales.pop(name, (0.0, 0))
            n = len(mine)
            # The exact mean while few samples are in, then ``rate`` per sample of the batch.
            weight = max(n / (seen + n), 1.0 - (1.0 - self.rate) ** n)
            # Re-inserted last: the most recently seen.
            self._scales[name] = (scale + weight * float(mine.mean()), seen + n)
        while len(self._scales) > self.max_models:
            self._scales.popitem(last=False)

    def published(self) -> dict[str, float]:
        """The scales of served models with ``min_samples`` outcomes, for serving."""
        return {m: s for m, (s, n) in self._scales.items() if n >= self.min_samples}
