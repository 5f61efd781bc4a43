"""Worlds about the fleet and the workload: mixed hardware, shared prefixes, long chats."""

from __future__ import annotations

from zoo.world import Drift, Noise, Regime, World

MIXED_FLEET = World(
    name="mixed_fleet",
    description="H100, A100 and L4 pods; abrupt drift: A100s throttle x1.6, prompts x2",
    drift=Drift("abrupt", Regime(prompt=2.0, slowdown=1.6, slowed=("A100",))),
    accelerators=("H100", "A100", "L4"),
    pods_per_accelerator=2,
    prompt_median=700.0,
    ttft_signal=("accelerator", "prefill_tokens_in_flight", "kv_cache_usage", "input_tokens"),
    tpot_signal=("accelerator", "kv_cache_usage"),
    noise=("max_tokens", "prefix_cache_hit_tokens"),
)

SHARED_PREFIX = World(
    name="shared_prefix",
    description="70% of prompts share a cached 3k-token prefix; drift: sharing drops to 20%, x1.3",
    drift=Drift("abrupt", Regime(prefix_share=0.2, slowdown=1.3)),
    prompt_median=3_500.0,
    prompt_sigma=0.25,
    prefix_share=0.7,
    prefix_tokens=3_000.0,
    model_scale=2.0,
    ttft_signal=("prefix_cache_hit_tokens", "input_tokens", "prefill_tokens_in_flight"),
    tpot_signal=("running_requests", "decode_tokens_in_flight"),
    noise=("max_tokens",),
)

CHAT_DECODE = World(
    name="chat_decode",
    description="decode-heavy chat (short prompts, long answers, big batches); gradual drift",
    drift=Drift("gradual", Regime(load=1.3, slowdown=1.5)),
    prompt_median=250.0,
    output_median=700.0,
    max_batch=192,
    load_mean=0.5,
    tpot_noise=Noise(0.12),
    ttft_signal=("prefill_tokens_in_flight", "running_requests", "input_tokens"),
    tpot_signal=("running_requests", "kv_cache_usage"),
    noise=("max_tokens", "prefix_cache_hit_tokens"),
)
