"""How the zoo scores a p90: pinball loss, over bench/accuracy.py's windows."""

from __future__ import annotations

import numpy as np

from zoo.world import Stream


def pinball(y: np.ndarray, q: np.ndarray, alpha: float = 0.9) -> float:
    """Mean pinball loss of quantile ``alpha`` (NaN predictions are left out)."""
    diff = y - q
    return float(np.nanmean(np.maximum(alpha * diff, (alpha - 1.0) * diff)))


def windows(stream: Stream, warmup: int) -> dict[str, slice]:
    """Before the drift (after ``warmup``), its first 2,000 samples, the rest."""
    at = stream.drift_at
    return {
        "before": slice(warmup, at),
        "first 2k after": slice(at, at + 2_000),
        "after": slice(at + 2_000, len(stream)),
    }
