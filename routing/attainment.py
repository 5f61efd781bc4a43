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

    def meet_probability(self, slo_ms: float, scale: np.ndarray | float = 1.0) -> np.ndarray:
        """(n,) chance the latency (times ``scale``) stays within ``slo_ms``; a scale of
        shape (n, k) gives the chance averaged over its k equally likely columns."""
        columns = np.ndim(scale) == 2
        median = np.maximum(self.ms[:, 0], 1e-6)
        upper = self.ms[:, self.index]
        if columns:
            median, upper = median[:, None], upper[:, None]
        median = median * scale
        if self.index == 0:
            met = (median <= slo_ms).astype(float)
        else:
            upper = np.maximum(upper * scale, median * (1 + 1e-6))
            sigma = np.log(upper / median) / _Z.inv_cdf(self.levels[self.index])
            met = _normal_cdf(np.log(slo_ms / median) / sigma)
        return met.mean(axis=1) if columns else met


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF, vectorised (an erf approximation good to 1.5e-7)."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(z) / np.sqrt(2.0))
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-(z**2) / 2.0)
    return 0.5 * (1.0 + np.sign(z) * erf)


def own_length_scale(columns: RequestColumns, nodes: np.ndarray) -> np.ndarray:
    """(n, k) the request's TPOT at each of its ``nodes`` lengths, relative to the
    prediction (which stands for its expected length): its own context, the prompt plus
    half its answer on average, is part of every step's KV reads."""
    batch = (columns.decode_tokens_in_flight + columns.prefill_tokens_in_flight)[:, None]
    prompt = columns.input_tokens[:, None]
    half = nodes / 2.0
    expected = prompt + half.mean(axis=-1, keepdims=True)
    return 1.0 + ATTENTION_SHARE * (prompt + half - expected) / np.maximum(batch + expected, 1.0)


def decode_harm(
    columns: RequestColumns, tpot: Predicted, slo_tpot_ms: float, nodes: np.ndarray
) -> np.ndarray:
    """(n,) expected streams on each pod the request's decode pushes over the TPOT SLO,
    over its equally likely output lengths ``nodes`` ((k,), or (n, k)).

    The pod's running streams are taken to share the request's predicted TPOT (they are
    in the same batch). The new stream adds its context to every step's KV reads, so the
    KV-bound part of a step (``ATTENTION_SHARE``; the weights are read once for all
    streams) grows by the context's share of the batch's, for as many of the streams'
    steps as it shares: all of them for an answer of the expected length or longer, a
    proportional share for a shorter one.
    """
    running = columns.running_requests + columns.waiting_requests
    context = columns.input_tokens[:, None] + nodes / 2.0
    batch_context = (columns.decode_tokens_in_flight + columns.prefill_tokens_in_flight)[:, None]
    shared = np.minimum(nodes / np.maximum(nodes.mean(axis=-1, keepdims=True), 1.0), 1.0)
    growth = 1.0 + ATTENTION_SHARE * shared * context / np.maximum(batch_context + context, 1.0)
    before = tpot.meet_probability(slo_tpot_ms)
    after = tpot.meet_probability(slo_tpot_ms, growth)
    return running * np.maximum(before - after, 0.0)
