"""Worlds where TTFT is the wait for the prefill work ahead, seen through different fields."""

from __future__ import annotations

from zoo.world import Drift, Noise, Regime, World

# The held-out stream of issue 19 in spirit: a bigger model than the product's roofline
# assumes, honest in-flight counts, then prompts 4x longer on a pod 1.35x slower.
QUEUE_BIG_MODEL = World(
    name="queue_big_model",
    description="TTFT driven by the queue; a 70B-class model; abrupt drift (prompts x4, pod x1.35)",
    drift=Drift("abrupt", Regime(prompt=4.0, slowdown=1.35)),
    model_scale=10.0,
    prompt_sigma=0.3,
    prompt_median=600.0,
    ttft_signal=(
        "prefill_tokens_in_flight",
        "waiting_requests",
        "input_tokens",
        "running_requests",
    ),
    tpot_signal=("running_requests", "decode_tokens_in_flight"),
    noise=("max_tokens", "prefix_cache_hit_tokens"),
)

# Prompt lengths spread over two decades: the count of waiting requests says little, the
# tokens in flight say it all.
INFLIGHT_TOKENS = World(
    name="inflight_tokens",
    description="TTFT driven by in-flight tokens (prompt lengths spread widely); gradual drift",
    drift=Drift("gradual", Regime(prompt=2.0, slowdown=1.6)),
    prompt_sigma=1.3,
    prompt_median=800.0,
    model_scale=2.0,
    queue_gain=3.0,
    ttft_signal=("prefill_tokens_in_flight", "input_tokens", "running_requests"),
    tpot_signal=("running_requests", "decode_tokens_in_flight"),
    noise=("max_tokens", "prefix_cache_hit_tokens"),
)

HEAVY_TAILS = World(
    name="heavy_tails",
    description="Pareto-tailed latency noise (8% of requests stall); abrupt drift (load up, x1.3)",
    drift=Drift("abrupt", Regime(load=1.3, slowdown=1.3)),
    ttft_noise=Noise(0.2, tail_share=0.08, tail_alpha=1.8),
    tpot_noise=Noise(0.1, tail_share=0.08, tail_alpha=2.5),
    model_scale=2.0,
    ttft_signal=("prefill_tokens_in_flight", "input_tokens", "running_requests"),
    tpot_signal=("running_requests",),
    noise=("max_tokens", "prefix_cache_hit_tokens"),
)
