"""How likely a request meets its SLOs on each pod, and what it costs the streams there.

The models serve a few quantiles per target; between them a latency is taken as
log-normal (its p50 and the SLO's quantile fix the spread), which is how service times
behave and what the models' log-space targets assume. A request that joins a pod's batch
also slows every stream already decoding there: each decode step reads one more
sequence's KV cache. Its harm is counted in the same unit as its own chance of success:
the expected number of the pod's running streams it tips over their TPOT SLO.

Both depend on how long the request will decode, which no router knows: they are
averaged over its likely output lengths (equally likely nodes of the learned
distribution, ``models/output_length.py``). A longer answer reads more of its own
context at every step and shares more of the other streams' remaining steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from latency_oracle.features.engineering import RequestColumns

# Share of a decode step that scales with the batch's context (KV reads) rather than being
# paid once per step (weights): about half for a 7-13B model at a few thousand tokens.
ATTENTION_SHARE = 0.5
# The normal's quantile function at each level (so levels need not be looked up per call).
_Z = NormalDist()


@dataclass(frozen=True, slots=True)
class Predicted:
    """One target's served quantiles (n, k) at ``levels`` (ascending, with 0.5 first)."""

    ms: np.ndarray
    levels: tuple[float, ...]
    index: int  # the quantile the SLO binds (the headline, or the p99 of a tail SLO)

    @property
    def at_slo_quantile(self) -> np.ndarray:
        return self.ms[:, self.index]

    def meet_probability(self, slo_ms: float) -> np.ndarray:
        """(n,) chance the latency stays within ``slo_ms``."""
        if self.index == 0:
            return (self.ms[:, 0] <= slo_ms).astype(float)
        return _normal_cdf(self.standard_score(slo_ms)[0])

    def standard_score(self, slo_ms: float) -> tuple[np.ndarray, np.ndarray]:
        """(n,) how many log-normal sigmas ``slo_ms`` lies above each median, and (n,)
        the sigmas: the log-normal's from its p50 and the SLO's quantile (the latency
        times s is the same log-normal shifted by log(s), its score by log(s) / sigma)."""
        median = np.maximum(self.ms[:, 0], 1e-6)
        upper = np.maximum(self.ms[:, self.index], 1e-6)
        sigma = np.maximum(np.log(upper / median), 1e-6) / _Z.inv_cdf(self.levels[self.index])
        return np.log(slo_ms / median) / sigma, sigma


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF, vectorised (an erf approximation good to 1.5e-7)."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(z) / np.sqrt(2.0))
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-(z**2) / 2.0)
    return 0.5 * (1.0 + np.sign(z) * erf)


def tpot_outcomes(
    columns: RequestColumns, tpot: Predicted, slo_tpot_ms: float, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) chance the request meets its TPOT SLO on each pod and (n,) the expected number
    of the pod's running streams its decode pushes over theirs, both over its equally
    likely output lengths ``lengths`` ((k,), or (n, k)).

    Its own TPOT: a longer answer reads more of its own context (the prompt plus half the
    answer, on average) at every step, so each length scales the prediction, which stands
    for the expected length, by that context's share of the batch's KV reads
    (``ATTENTION_SHARE`` of a step; the weights are read once for all streams).

    Its harm: the pod's running streams are taken to share the request's predicted TPOT
    (they are in the same batch); the new stream adds its context to every step's KV
    reads, for as many of their steps as it shares: all of them for an answer of the
    expected length or longer, a proportional share for a shorter one.
    """
    batch = (columns.decode_tokens_in_flight + columns.prefill_tokens_in_flight)[:, None]
    prompt = columns.input_tokens[:, None]
    half = lengths * 0.5  # the answer's mean context over its decode
    mean_half = np.maximum(half.sum(axis=-1, keepdims=True) / half.shape[-1], 0.5)
    context = prompt + half  # (n, k)
    own = 1.0 + ATTENTION_SHARE * (half - mean_half) / np.maximum(batch + prompt + mean_half, 1.0)
    shared = np.minimum(half / mean_half, 1.0)
    growth = 1.0 + ATTENTION_SHARE * shared * context / np.maximum(batch + context, 1.0)
    running = columns.running_requests + columns.waiting_requests
    if tpot.index == 0:  # the SLO binds the median: met or not, no spread
        median = tpot.ms[:, :1]
        met, after = median * own <= slo_tpot_ms, median * growth <= slo_tpot_ms
        before = median[:, 0] <= slo_tpot_ms
        return met.mean(axis=1), running * np.maximum(before - after.mean(axis=1), 0.0)
    score, sigma = tpot.standard_score(slo_tpot_ms)
    k = own.shape[1]
    shifts = np.log(np.concatenate([own, growth], axis=1)) / sigma[:, None]
    met = _normal_cdf(np.concatenate([score[:, None] - shifts, score[:, None]], axis=1))
    harmed = np.maximum(met[:, -1] - met[:, k : 2 * k].sum(axis=1) / k, 0.0)
    return met[:, :k].sum(axis=1) / k, running * harmed
