"""How much of the physics baseline to trust: its scale and floor, fitted to the data.

The TTFT learners' baseline is a roofline drain time of the prefill tokens in flight for
a 7B model (``models.prior``). Imposed as is, a wrong baseline is paid for in full: where
the in-flight tokens are not the work ahead of the request (chunked prefill beside it,
a sidecar-less pod's zeros, an estimate off by a factor of ten for a 70B model) the trees
under their monotone constraints cannot take it back. So each learner fits
``ttft_ms ~ floor + scale * baseline_ms`` (a robust median fit) and learns the residual
over that: a wrong baseline gets a scale near zero and costs almost nothing, a right one
keeps its slope, and the predictions keep rising past the deepest queue seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latency_oracle.models.residual import Offset

# Fitting rounds of the weighted median regression (each a 2x2 solve over the samples).
_ROUNDS = 8
# A scale under this is no slope at all: the baseline is then just a floor.
_MIN_SCALE = 1e-6
# Predictions are floored here before weighting, so a zero fit never divides by zero.
_MIN_PREDICTED_MS = 1e-6


@dataclass(frozen=True, slots=True)
class FittedOffset:
    """``log(floor_ms + scale * exp(base(x)))``: the base baseline, scaled and floored.

    Immutable (it is part of a published serving function); two ufuncs per call.
    """

    base: Offset
    log_scale: float = 0.0
    log_floor: float = -math.inf  # no floor: exactly the base baseline

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.logaddexp(self.base(features) + self.log_scale, self.log_floor)


def fit_offset(base: Offset, base_log: np.ndarray, y_log: np.ndarray) -> FittedOffset:
    """The floor and scale of ``base`` (its values ``base_log`` here, log-ms) that best fit
    these samples' median, in ms.

    Iteratively reweighted least squares for the median (L1) fit of
    ``y_ms = floor + scale * base_ms``, each residual weighted relative to its prediction
    (latency noise is multiplicative), with floor and scale kept non-negative.
    """
    with np.errstate(over="ignore"):
        x, y = np.exp(base_log), np.exp(y_log)
    usable = np.isfinite(x) & np.isfinite(y)  # extreme inputs overflow: they fit nothing
    if not usable.any():
        return FittedOffset(base)
    x, y = x[usable], y[usable]
    floor, scale = float(np.median(y)), 0.0
    for _ in range(_ROUNDS):
        predicted = np.maximum(floor + scale * x, _MIN_PREDICTED_MS)
        weights = 1.0 / (np.maximum(np.abs(y - predicted), 0.02 * predicted) * predicted)
        with np.errstate(invalid="ignore", divide="ignore"):
            fitted = _weighted_line(x, y, weights)
        if not all(math.isfinite(v) for v in fitted):
            break  # weights beyond float range: keep the last finite fit
        floor, scale = fitted
    return FittedOffset(base, math.log(max(scale, _MIN_SCALE)), math.log(max(floor, 1e-3)))


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares of ``y = a + b x`` with ``a, b >= 0``."""
    sw, sx, sy = w.sum(), (w * x).sum(), (w * y).sum()
    sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
    det = sw * sxx - sx * sx
    if det > 1e-12 * sw * sxx:
        b = (sw * sxy - sx * sy) / det
        a = (sy - b * sx) / sw
        if a >= 0 and b >= 0:
            return float(a), float(b)
    # On the boundary: the better of a line through the origin and a flat floor.
    through_origin = max(sxy / sxx, 0.0) if sxx > 0 else 0.0
    flat = sy / sw
    cost_origin = (w * np.abs(y - through_origin * x)).sum()
    cost_flat = (w * np.abs(y - flat)).sum()
    return (0.0, float(through_origin)) if cost_origin < cost_flat else (float(flat), 0.0)
