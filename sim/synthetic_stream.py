"""A generated observation stream whose true latency quantiles are known exactly.

Latency is a nonlinear function of queue and prompt size times lognormal noise, so the
true p-quantile of every sample is ``median * exp(sigma * z_p)``: tests and benchmarks can
measure coverage and compare pinball loss against the truth. ``shift_at`` switches, from
that sample on, to double the load and a slower pod: the abrupt shift of a real fleet.

Requests carry their clients' ``max_tokens`` (``client_caps``: fixed per client, from the
documented mix), never their true answer length; a request ends at its EOS or its cap,
whichever comes first. The true lengths (``output_log_mean``) feed nothing a router sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from latency_oracle.features.schema import Observation
from latency_oracle.sim.client_caps import sessionless_caps

TTFT_SIGMA = 0.35
TPOT_SIGMA = 0.2
CONTEXT_TOKENS = 32_768  # an uncapped answer stops at the context left after the prompt


@dataclass(frozen=True, slots=True)
class SyntheticStream:
    """Observations in arrival order, with the true median of each latency."""

    observations: list[Observation]
    ttft_median_ms: np.ndarray
    tpot_median_ms: np.ndarray

    def true_ttft_quantile(self, q: float) -> np.ndarray:
        return self.ttft_median_ms * np.exp(TTFT_SIGMA * NormalDist().inv_cdf(q))

    def true_tpot_quantile(self, q: float) -> np.ndarray:
        return self.tpot_median_ms * np.exp(TPOT_SIGMA * NormalDist().inv_cdf(q))


def generate_stream(
    n: int,
    *,
    seed: int = 0,
    accelerator: str = "H100",
    shift_at: int | None = None,
    id_prefix: str = "obs",
    output_log_mean: float = 4.0,
) -> SyntheticStream:
    rng = np.random.default_rng(seed)
    after = np.zeros(n, dtype=bool) if shift_at is None else np.arange(n) >= shift_at
    load = np.where(after, 2.0, 1.0)
    slowdown = np.where(after, 1.6, 1.0)
    input_tokens = np.clip(rng.lognormal(6.5, 1.0, n), 1, 32_000).astype(int)
    hit = np.where(rng.random(n) < 0.3, rng.uniform(0.2, 0.9, n), 0.0)
    eos = np.clip(rng.lognormal(output_log_mean, 1.0, n), 2, 4_000).astype(int)
    caps = sessionless_caps(n, seed)
    limit = np.where(caps > 0, caps, CONTEXT_TOKENS - input_tokens)
    output_tokens = np.maximum(np.minimum(eos, limit), 2)
    running = rng.poisson(12 * load)
    waiting = rng.poisson(1.5 * load)
    prefill_in_flight = rng.poisson(400 * load) + waiting * rng.poisson(900, n)
    decode_in_flight = running * rng.poisson(300, n)
    kv = np.clip(0.25 * load + rng.normal(0, 0.08, n), 0, 1)
    uncached = input_tokens * (1 - hit)
    queue_work = prefill_in_flight + uncached
    ttft_median = slowdown * (15.0 + 0.04 * uncached + 0.02 * queue_work * (1 + 0.5 * kv) ** 2)
    tpot_median = slowdown * (7.0 + 0.35 * running + 4e-4 * decode_in_flight) * (1 + kv**3)
    ttft = ttft_median * rng.lognormal(0.0, TTFT_SIGMA, n)
    tpot = tpot_median * rng.lognormal(0.0, TPOT_SIGMA, n)
    observations = [
        Observation(
            observation_id=f"{id_prefix}-{seed}-{i}",
            pod=f"pod-{i % 4}",
            accelerator=accelerator,
            input_tokens=int(input_tokens[i]),
            prefix_cache_score=float(hit[i]),
            output_tokens=int(output_tokens[i]),
            max_tokens=int(caps[i]),
            running_requests=int(running[i]),
            waiting_requests=int(waiting[i]),
            kv_cache_usage=float(kv[i]),
            prefill_tokens_in_flight=int(prefill_in_flight[i]),
            decode_tokens_in_flight=int(decode_in_flight[i]),
            ttft_ms=float(ttft[i]),
            tpot_ms=float(tpot[i]),
        )
        for i in range(n)
    ]
    return SyntheticStream(observations, ttft_median, tpot_median)


def served_model_stream(
    n: int, *, seed: int, accelerator: str, model: str, slowdown: float
) -> SyntheticStream:
    """``generate_stream``'s requests served by ``model`` on ``accelerator``, ``slowdown``
    times slower (a bigger model, a slower chip), on pods of their own."""
    base = generate_stream(
        n, seed=seed, accelerator=accelerator, id_prefix=f"{model}-{accelerator}"
    )
    observations = [
        o.model_copy(
            update={
                "model": model,
                "pod": f"{model}-{accelerator}-{o.pod}",
                "ttft_ms": o.ttft_ms * slowdown,  # type: ignore[operator]
                "tpot_ms": o.tpot_ms * slowdown,  # type: ignore[operator]
            }
        )
        for o in base.observations
    ]
    return SyntheticStream(
        observations, base.ttft_median_ms * slowdown, base.tpot_median_ms * slowdown
    )
