"""A physics prior for keys with no trained model at all: labelled ``prior``, always cold.

Roofline arithmetic for a 7B-parameter BF16 model: prefill costs 2 FLOPs per parameter per
uncached or queued prompt token at 40% of peak compute; a decode step reads the weights
once at 60% of peak HBM bandwidth, slowed by the running batch. Spread is a lognormal of
sigma 0.5. It only ranks pods sensibly until real models take over after ``min_samples``.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from features.engineering import FEATURE_NAMES

PARAMETERS = 7e9
PREFILL_EFFICIENCY = 0.4
DECODE_EFFICIENCY = 0.6
FIXED_OVERHEAD_MS = 10.0
SIGMA = 0.5
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}


def prior_log_quantiles(
    features: np.ndarray, quantiles: tuple[float, ...]
) -> dict[str, np.ndarray]:
    """(n, q) log-ms TTFT and TPOT quantiles from the feature matrix alone."""
    tflops = np.exp(features[:, _COLUMN["log_tflops"]])
    hbm_gbps = np.exp(features[:, _COLUMN["log_hbm_gbps"]])
    queued_tokens = np.expm1(features[:, _COLUMN["log_queued_prefill_work"]])
    running = features[:, _COLUMN["running_requests"]]
    prefill_ms = 2 * PARAMETERS * queued_tokens / (tflops * 1e12 * PREFILL_EFFICIENCY) * 1e3
    step_ms = 2 * PARAMETERS / (hbm_gbps * 1e9 * DECODE_EFFICIENCY) * 1e3
    tpot_ms = step_ms * (1.0 + 0.02 * running)
    spread = SIGMA * np.array([NormalDist().inv_cdf(q) for q in quantiles])
    return {
        "ttft": np.log(prefill_ms + FIXED_OVERHEAD_MS)[:, None] + spread,
        "tpot": np.log(tpot_ms)[:, None] + spread,
    }
