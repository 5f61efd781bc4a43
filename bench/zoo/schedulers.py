"""Worlds whose TTFT follows the scheduler, not the learners' roofline (``zoo.laws``).

All three report what llm-d's endpoint picker sends: ``prefill_tokens_in_flight`` is the
words of every prompt on the pod, the ones already decoding included (so it mostly counts
the running batch, not the work ahead), ``input_words`` is the prompt in words (llm-d's
``input_token_length``), and ``decode_tokens_in_flight`` is 0. Step costs are the measured
Llama-2-7B on H100 profile.
"""

from __future__ import annotations

from zoo.world import Drift, Regime, World

# TTFT = waiting requests x (admission cost + a mean-sized prefill) + own prefill: the
# count of waiting requests is the signal, the queued prompts' own sizes are not.
# Drift: the mean prompt grows 3x (each waiting request costs more) and load rises.
# TTFT signal: waiting_requests (the law), input_tokens (own prefill), running_requests
# (decodes riding the prefill step); kv_cache_usage and prefill_tokens_in_flight are
# proxies of the load (llm-d's count is mostly the running prompts' words). TPOT: running
# and the KV cache. Noise: max_tokens; prefix and decode_tokens_in_flight are constant 0.
QUEUE_COUNTS = World(
    name="queue_counts",
    description="TTFT = waiting count x mean-prompt service; llm-d in-flight words; "
    "abrupt drift (prompts x3, load x1.2)",
    drift=Drift("abrupt", Regime(prompt=3.0, load=1.2)),
    ttft_law="counts",
    inflight="llmd",
    prompt_median=600.0,
    prompt_sigma=1.0,
    queue_gain=4.0,
    per_request_ms=20.0,
    ttft_signal=("waiting_requests", "input_tokens", "running_requests"),
    tpot_signal=("running_requests", "kv_cache_usage"),
    noise=("max_tokens", "prefix_cache_hit_tokens", "decode_tokens_in_flight"),
)

# Chunked prefill: TTFT jumps by one decode step of the running batch each time the
# queued plus own uncached tokens cross a multiple of the chunk budget. The regime
# recurs: 2,000-request blocks of a 512-token budget with prompts 2x longer (an operator
# tuning for TPOT while a document tenant is on), then back to 2,048, and so on.
# TTFT signal: waiting_requests and input_tokens (the work ahead, in chunks),
# running_requests and kv_cache_usage (the decode step each chunk pays),
# prefill_tokens_in_flight (the queued prompts' words are in it). TPOT: running, KV cache.
# Noise: max_tokens; prefix and decode_tokens_in_flight are constant 0.
CHUNKED_STEPS = World(
    name="chunked_steps",
    description="step-shaped chunked-prefill TTFT; llm-d in-flight words; recurring drift "
    "(budget 2,048 -> 512 and prompts x2, in 2k blocks)",
    drift=Drift("recurring", Regime(chunk=0.25, prompt=2.0)),
    ttft_law="chunked",
    inflight="llmd",
    chunk_tokens=2_048.0,
    prompt_median=1_500.0,
    prompt_sigma=0.7,
    queue_gain=3.0,
    ttft_signal=(
        "input_tokens",
        "waiting_requests",
        "running_requests",
        "kv_cache_usage",
        "prefill_tokens_in_flight",
    ),
    tpot_signal=("running_requests", "kv_cache_usage"),
    noise=("max_tokens", "prefix_cache_hit_tokens", "decode_tokens_in_flight"),
)

# A full batch (max_num_seqs 32): a new request waits for running requests to finish
# their answers. Waiting happens only when the batch is full, and each waiting request
# adds one answer's decode time over the batch. Drift: answers 1.25x longer (hidden but
# for the KV cache they fill and the queue they build), so slots turn over 1.25x slower
# while 1.25x more requests want one.
# TTFT signal: waiting_requests (the law), running_requests (whether the batch is full).
# TPOT: running_requests. Noise: kv_cache_usage (a 7B model's KV cache is 5% full),
# input_tokens (the prefill is small beside the wait), max_tokens; prefix and
# decode_tokens_in_flight are constant 0. prefill_tokens_in_flight is a proxy of the load.
BATCH_WAIT = World(
    name="batch_wait",
    description="TTFT = wait for a slot in a full batch; llm-d in-flight words; abrupt "
    "drift (answers x1.25)",
    drift=Drift("abrupt", Regime(output=1.25)),
    ttft_law="batch_wait",
    inflight="llmd",
    max_batch=32,
    load_mean=0.9,
    prompt_median=500.0,
    output_median=250.0,
    output_sigma=0.6,
    ttft_signal=("waiting_requests", "running_requests"),
    tpot_signal=("running_requests",),
    noise=(
        "max_tokens",
        "kv_cache_usage",
        "input_tokens",
        "prefix_cache_hit_tokens",
        "decode_tokens_in_flight",
    ),
)
