"""A physics prior for keys with no trained model at all: labelled ``prior``, always cold.

Roofline arithmetic for a 7B-parameter BF16 model: prefill costs 2 FLOPs per parameter per
uncached or queued prompt token at 40% of peak compute; a decode step reads the weights
once at 60% of peak HBM bandwidth, slowed by the running batch. Spread is a lognormal of
sigma 0.5. It only ranks pods sensibly until real models take over after ``min_samples``.

Its prefill term is also the baseline the trained TTFT learners fit the residual over
(``prefill_backlog_log_ms``, scaled and floored per learner, ``models.baseline_fit``):
trees predict flat beyond the queue depths they have seen,
while the backlog's drain time keeps growing with the queue, so a residual over it
extrapolates along the physics instead of stopping at the deepest queue in the window.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from latency_oracle.features.engineering import FEATURE_NAMES

PARAMETERS = 7e9
PREFILL_EFFICIENCY = 0.4
DECODE_EFFICIENCY = 0.6
FIXED_OVERHEAD_MS = 10.0
SIGMA = 0.5
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
# log(ms per token at 1 TFLOP/s): prefill_ms = exp(this + log_prefill_compute_time).
_LOG_PREFILL_MS_PER_TOKEN_TFLOP = math.log(2 * PARAMETERS / (1e12 * PREFILL_EFFICIENCY) * 1e3)
_LOG_OVERHEAD_MS = math.log(FIXED_OVERHEAD_MS)


def prefill_backlog_log_ms(features: np.ndarray) -> np.ndarray:
    """(n,) log-ms roofline time of the prefill work queued ahead (own prompt included),
    plus the fixed overhead: the TTFT baseline shared by the prior and the trained trees.

    One ufunc on one column (``log_prefill_compute_time``, the log of queued tokens over
    TFLOP/s, with the +1 of its log1p): it runs on every routing prediction.
    """
    scaled = features[:, _COLUMN["log_prefill_compute_time"]] + _LOG_PREFILL_MS_PER_TOKEN_TFLOP
    return np.logaddexp(scaled, _LOG_OVERHEAD_MS)


def prior_log_quantiles(
    features: np.ndarray, quantiles: tuple[float, ...]
) -> dict[str, np.ndarray]:
    """(n, q) log-ms TTFT and TPOT quantiles from the feature matrix alone."""
    hbm_gbps = np.exp(features[:, _COLUMN["log_hbm_gbps"]])
    running = features[:, _COLUMN["running_requests"]]
    step_ms = 2 * PARAMETERS / (hbm_gbps * 1e9 * DECODE_EFFICIENCY) * 1e3
    tpot_ms = step_ms * (1.0 + 0.02 * running)
    spread = SIGMA * np.array([NormalDist().inv_cdf(q) for q in quantiles])
    return {
        "ttft": prefill_backlog_log_ms(features)[:, None] + spread,
        "tpot": np.log(tpot_ms)[:, None] + spread,
    }
