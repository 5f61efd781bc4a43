"""TTFT laws that are not the learners' roofline: queue counts, chunk steps, batch waits.

The learners' TTFT baseline (``models/prior.py``, scaled per learner by
``models/baseline_fit.py``) is the drain time of the prefill tokens in flight, linear in
them. Each law here makes TTFT something else, as real schedulers do:

- ``counts``: every waiting request costs a fixed admission overhead plus the prefill of
  a prompt of the regime's mean size, whatever the queued prompts' own sizes; TTFT is
  linear in the number of waiting requests, not in tokens.
- ``chunked``: vLLM-style chunked prefill. The work ahead (queued plus own uncached
  tokens) is cut into chunks of the token budget, and every step that carries a chunk
  also runs the whole decode batch: TTFT jumps by one decode step each time the work
  ahead crosses a multiple of the budget.
- ``batch_wait``: the running batch is full (``max_num_seqs``); a new request waits for
  a slot, and slots free at the rate the running requests finish their answers: TTFT is
  the decode time of other requests' answers, set by the queue and the answer lengths.

Step costs are measured, not spec-sheet: a forward pass of Llama-2-7B on one H100 (TP1),
32 layers times the sum of the per-layer medians of every non-attention op in
``/work/shared/data/gpu-profiles/h100/Llama-2-7b-hf/mlp.csv`` (vidur's profiles), at the
batch's token count; attention in decode is the KV cache read at 65% of HBM bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Tokens in one forward pass -> its milliseconds (measured, see the module docstring).
STEP_TOKENS = np.array([1, 64, 128, 256, 512, 1024, 2048, 4096], float)
STEP_MS = np.array([5.66, 5.98, 6.56, 9.44, 12.5, 21.98, 42.3, 87.0])
# Llama-2-7B's KV cache: 2 (K, V) x 32 layers x 4096 dims x 2 bytes per token.
KV_BYTES_PER_TOKEN = 2 * 32 * 4096 * 2
H100_HBM_BYTES_PER_MS = 3.35e12 * 0.65 / 1e3
FLOOR_MS = 8.0  # tokenisation, scheduling, first-token sampling and detokenisation


def step_ms(tokens: np.ndarray) -> np.ndarray:
    """One forward pass over ``tokens`` tokens (linear beyond the last measured point)."""
    tokens = np.maximum(np.asarray(tokens, float), 1.0)
    beyond = STEP_MS[-1] * tokens / STEP_TOKENS[-1]
    return np.where(tokens > STEP_TOKENS[-1], beyond, np.interp(tokens, STEP_TOKENS, STEP_MS))


def decode_step_ms(running: np.ndarray, context_tokens: np.ndarray) -> np.ndarray:
    """One decode step of the running batch: its forward pass plus reading its KV cache."""
    return step_ms(running) + context_tokens * KV_BYTES_PER_TOKEN / H100_HBM_BYTES_PER_MS


@dataclass(frozen=True)
class PodState:
    """What the engine holds when a request arrives (all (n,) arrays; tokens, not words).

    ``prompt_mean`` and ``output_mean`` are the regime's mean sizes: the scheduler's
    reality, which no feature reports."""

    own_tokens: np.ndarray  # the request's uncached prompt tokens
    queued_tokens: np.ndarray  # uncached prompt tokens of the waiting requests
    waiting: np.ndarray
    running: np.ndarray
    context_tokens: np.ndarray  # KV tokens of the running batch
    prompt_mean: np.ndarray
    output_mean: np.ndarray
    chunk_tokens: np.ndarray  # the chunked-prefill token budget per step
    max_batch: int
    per_request_ms: float


def counts_ttft(s: PodState) -> np.ndarray:
    """Each waiting request costs an admission overhead plus a mean-sized prefill."""
    per_waiting = s.per_request_ms + step_ms(s.prompt_mean)
    return FLOOR_MS + s.waiting * per_waiting + step_ms(s.own_tokens + s.running)


def chunked_ttft(s: PodState) -> np.ndarray:
    """Steps of ``chunk_tokens`` prefill tokens, each also running the decode batch."""
    ahead = s.queued_tokens + s.own_tokens
    steps = np.ceil(ahead / s.chunk_tokens)
    per_token = (step_ms(s.chunk_tokens) - STEP_MS[0]) / s.chunk_tokens
    return FLOOR_MS + steps * decode_step_ms(s.running, s.context_tokens) + ahead * per_token


def batch_wait_ttft(s: PodState) -> np.ndarray:
    """A full batch: wait for ``waiting + 1`` of the running requests to finish their
    answers; a batch with room: half a decode step. Then the prefill itself."""
    decode = decode_step_ms(s.running, s.context_tokens)
    slot_ms = s.output_mean * decode / s.max_batch  # mean time between two finishes
    full = s.running >= s.max_batch
    wait = np.where(full, (s.waiting + 1.0) * slot_ms, 0.5 * decode)
    return FLOOR_MS + wait + step_ms(s.own_tokens + s.running)


LAWS = {"counts": counts_ttft, "chunked": chunked_ttft, "batch_wait": batch_wait_ttft}
