"""Worlds whose in-flight token fields do not mean what the product's roofline assumes."""

from __future__ import annotations

from zoo.world import Drift, Regime, World

# The fields are random numbers: a learner that trusts them pays for it.
INFLIGHT_NOISE = World(
    name="inflight_noise",
    description="in-flight token fields are pure noise; abrupt drift (prompts x3, x1.4)",
    drift=Drift("abrupt", Regime(prompt=3.0, slowdown=1.4)),
    inflight="noise",
    model_scale=2.0,
    ttft_signal=("waiting_requests", "input_tokens", "running_requests"),
    tpot_signal=("running_requests", "decode_tokens_in_flight"),
    noise=("prefill_tokens_in_flight", "max_tokens", "prefix_cache_hit_tokens"),
)

# A real vLLM pod without the sidecar's counts reports zeros; its regimes come back.
INFLIGHT_ABSENT = World(
    name="inflight_absent",
    description="in-flight fields absent (zeros); recurring drift (2k-sample blocks, x1.5)",
    drift=Drift("recurring", Regime(prompt=2.5, slowdown=1.5, load=1.2)),
    inflight="absent",
    model_scale=2.0,
    ttft_signal=("waiting_requests", "input_tokens", "running_requests"),
    tpot_signal=("running_requests",),
    noise=(
        "prefill_tokens_in_flight",
        "decode_tokens_in_flight",
        "max_tokens",
        "prefix_cache_hit_tokens",
    ),
)

# Chunked prefill of long documents runs beside the request: many tokens in flight, little
# of it ahead of the request.
CHUNKED_BESIDE = World(
    name="chunked_beside",
    description="prefill tokens in flight are chunked prefills running beside; abrupt drift",
    drift=Drift("abrupt", Regime(prompt=2.0, slowdown=1.35)),
    inflight="beside",
    model_scale=2.0,
    ttft_signal=("waiting_requests", "input_tokens", "running_requests"),
    tpot_signal=("running_requests", "decode_tokens_in_flight"),
    noise=("prefill_tokens_in_flight", "max_tokens", "prefix_cache_hit_tokens"),
)
