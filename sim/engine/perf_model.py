"""The simulated GPU's step time and KV capacity: measured GEMM costs plus an attention roofline.

One engine step runs one forward pass over a batch of ``N`` tokens (prefill chunks plus one
token per decoding request) on ``tp`` GPUs::

    step_ms = L * layer_ms(N, tp)                                  # measured, interpolated
            + 4 * L * d * sum_chunks c * (p + c / 2)  / (tp * F * PREFILL_ATTENTION_EFFICIENCY)
            + 2 * L * h_kv * d_h * BYTES * sum_decodes ctx / (tp * B * DECODE_ATTENTION_EFFICIENCY)
            + STEP_OVERHEAD_MS

``layer_ms`` is the measured (or derived, ``sim/engine/hardware.py``) non-attention cost of one
layer, interpolated between measured token counts within GEMM tiles (``gpu_profiles``).
A prefill chunk of ``c`` tokens after ``p`` tokens already in the KV cache does ``4 * d``
FLOPs per (query, key) pair per layer (QK^T and PV), causally ``c * (p + c / 2)`` pairs;
decode attention reads the K and V of all ``ctx`` cached tokens of each decoding request
once. ``F`` is dense BF16 FLOP/s, ``B`` HBM
bytes/s of one GPU.

=============================  =========  ===================================================
Constant                       Value      Why
=============================  =========  ===================================================
PREFILL_ATTENTION_EFFICIENCY   0.45       FlashAttention-2 forward reaches ~35-70% of peak
DECODE_ATTENTION_EFFICIENCY    0.70       paged decode attention streams KV near HBM speed
STEP_OVERHEAD_MS               1.0        CPU scheduling, input preparation, sampling per step
BYTES_PER_ELEMENT              2          BF16 weights and KV cache
GPU_MEMORY_UTILIZATION         0.90       vLLM's default share of GPU memory it may use
BLOCK_SIZE_TOKENS              16         vLLM's default KV block size
=============================  =========  ===================================================

Not modelled: tensor-parallel all-reduce (not in the measurements, so TP > 1 is
optimistic), the LM head, and CUDA-graph padding. KV capacity is
``tp * GPU_MEMORY_UTILIZATION * memory - weights`` over the KV bytes of one token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latency_oracle.sim.engine.hardware import AcceleratorProfile

PREFILL_ATTENTION_EFFICIENCY = 0.45
DECODE_ATTENTION_EFFICIENCY = 0.70
STEP_OVERHEAD_MS = 1.0
BYTES_PER_ELEMENT = 2
GPU_MEMORY_UTILIZATION = 0.90
BLOCK_SIZE_TOKENS = 16


class ModelDoesNotFit(ValueError):
    """The weights leave no room for a KV cache on this accelerator and TP degree."""


@dataclass(frozen=True, slots=True)
class StepCost:
    """The parts of one step's time, milliseconds."""

    non_attention_ms: float
    prefill_attention_ms: float
    decode_attention_ms: float
    overhead_ms: float

    @property
    def total_ms(self) -> float:
        return (
            self.non_attention_ms
            + self.prefill_attention_ms
            + self.decode_attention_ms
            + self.overhead_ms
        )


class PerfModel:
    """Step times of one (accelerator, model, TP) in O(1) per step.

    The non-attention curve is tabulated once for every batch size up to ``max_tokens`` so
    a step costs one list lookup and two multiplications: the cluster evaluation runs
    millions of steps.
    """

    def __init__(self, profile: AcceleratorProfile, tp: int = 1, max_tokens: int = 16_384):
        shape = profile.measured.shape
        self.profile = profile
        self.shape = shape
        self.tp = tp
        sizes = np.arange(max_tokens + 1, dtype=float)
        table = shape.n_layers * profile.layer_ms(tp, np.maximum(sizes, 1.0))
        table[0] = 0.0
        self._non_attention_ms: list[float] = table.tolist()
        flops = tp * profile.spec.tflops * 1e12 * PREFILL_ATTENTION_EFFICIENCY
        bandwidth = tp * profile.spec.hbm_gbps * 1e9 * DECODE_ATTENTION_EFFICIENCY
        self.prefill_ms_per_pair = 4 * shape.n_layers * shape.n_embd / flops * 1e3
        self.kv_bytes_per_token = (
            2 * shape.n_layers * shape.n_kv_head * shape.head_dim * BYTES_PER_ELEMENT
        )
        self.decode_ms_per_token = self.kv_bytes_per_token / bandwidth * 1e3
        self.weight_bytes = shape.parameters * BYTES_PER_ELEMENT
        usable = tp * profile.spec.memory_gb * 1e9 * GPU_MEMORY_UTILIZATION
        self.kv_capacity_tokens = int((usable - self.weight_bytes) // self.kv_bytes_per_token)
        if self.kv_capacity_tokens < BLOCK_SIZE_TOKENS:
            raise ModelDoesNotFit(
                f"{shape.name} ({self.weight_bytes / 1e9:.0f} GB of weights) does not fit on "
                f"{tp}x {profile.name} ({profile.spec.memory_gb:.0f} GB each)"
            )

    def non_attention_ms(self, tokens: int) -> float:
        """All layers' measured non-attention time for a batch of ``tokens`` tokens."""
        table = self._non_attention_ms
        if tokens < len(table):
            return table[tokens]
        layers = self.shape.n_layers
        return float(layers * self.profile.layer_ms(self.tp, np.array([float(tokens)]))[0])

    def step_ms(self, tokens: int, prefill_pairs: float, decode_context: int) -> float:
        """Duration of one step: ``prefill_pairs`` = sum of c * (p + c / 2) over chunks."""
        return (
            self.non_attention_ms(tokens)
            + self.prefill_ms_per_pair * prefill_pairs
            + self.decode_ms_per_token * decode_context
            + STEP_OVERHEAD_MS
        )

    def step_cost(self, tokens: int, prefill_pairs: float, decode_context: int) -> StepCost:
        """The same step, split into its terms (reports and tests)."""
        return StepCost(
            self.non_attention_ms(tokens),
            self.prefill_ms_per_pair * prefill_pairs,
            self.decode_ms_per_token * decode_context,
            STEP_OVERHEAD_MS,
        )

    def prefill_step_ms(self, prompt_tokens: int, cached_tokens: int = 0) -> float:
        """One step prefilling one whole prompt after ``cached_tokens`` of cache hits."""
        chunk = prompt_tokens - cached_tokens
        return self.step_ms(chunk, chunk * (cached_tokens + chunk / 2), 0)
