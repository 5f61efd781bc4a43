"""What goes into and comes out of a simulated engine: its knobs, requests, results, load.

Kept apart from the scheduler (``sim/engine/scheduler.py``) so the workloads, the cluster evaluation
and the HTTP shell depend on these records, not on how the engine schedules.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from latency_oracle.features.schema import ServerState
from latency_oracle.sim.engine.perf_model import BLOCK_SIZE_TOKENS

DEFAULT_STEP_JITTER = 0.02


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Scheduler knobs, with vLLM's names and defaults where it has them."""

    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 256
    block_size: int = BLOCK_SIZE_TOKENS
    max_model_len: int | None = None  # None: whatever fits in the KV cache
    step_jitter: float = DEFAULT_STEP_JITTER  # lognormal sigma of each step's duration
    num_gpu_blocks_override: int | None = None  # None: what the memory left by weights holds


@dataclass(frozen=True, slots=True)
class SimRequest:
    """A request as the engine sees it: token counts, not text.

    ``output_tokens`` is the length of the model's answer: where it would emit EOS. Only
    the engine knows it (a real model decides it token by token); the client's cap is
    ``max_tokens`` (None: unset, so the context limit less the prompt applies), and the
    request ends at whichever comes first. ``block_hashes`` name the prompt's full KV
    blocks for the prefix cache, as a chain (block i's hash covers all tokens up to the end
    of block i); requests sharing the first k hashes share those k blocks.
    ``shared_prefix_hashes`` builds them from a prefix id.
    """

    request_id: str
    arrival: float
    prompt_tokens: int
    output_tokens: int
    block_hashes: tuple[Hashable, ...] = ()
    max_tokens: int | None = None


def shared_prefix_hashes(
    prefix_id: str, prefix_tokens: int, block_size: int = BLOCK_SIZE_TOKENS
) -> tuple[Hashable, ...]:
    """Block hashes of a prefix of ``prefix_tokens`` tokens that all ``prefix_id`` users share."""
    return tuple((prefix_id, i) for i in range(prefix_tokens // block_size))


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    """What happened to one request, for latency measurements."""

    request_id: str
    arrival: float
    first_token_time: float
    finish_time: float
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int  # prompt tokens served from the prefix cache at first admission
    preemptions: int
    max_tokens: int | None = None  # the client's cap, as sent (None: unset)
    eos: bool = True  # the answer ended (EOS); False: cut at the cap or the context limit

    @property
    def ttft(self) -> float:
        return self.first_token_time - self.arrival

    @property
    def tpot(self) -> float | None:
        if self.output_tokens < 2:
            return None
        return (self.finish_time - self.first_token_time) / (self.output_tokens - 1)


@dataclass(slots=True)
class StepResult:
    """One forward pass: when it ran and which requests got a token at its end."""

    start: float
    end: float
    batch_tokens: int
    emitted: list[str] = field(default_factory=list)
    first_tokens: list[str] = field(default_factory=list)
    finished: list[FinishedRequest] = field(default_factory=list)
    preempted: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class EngineState:
    """The engine's load now: the pod-state fields plus prefix-cache counters."""

    running_requests: int
    waiting_requests: int
    kv_cache_usage: float
    prefill_tokens_in_flight: int
    decode_tokens_in_flight: int
    prefix_cache_queries: int  # prompt tokens looked up, cumulative
    prefix_cache_hits: int  # of which found, cumulative
    preemptions: int  # cumulative

    def server_state(self) -> ServerState:
        return ServerState(
            running_requests=self.running_requests,
            waiting_requests=self.waiting_requests,
            kv_cache_usage=min(max(self.kv_cache_usage, 0.0), 1.0),
            prefill_tokens_in_flight=self.prefill_tokens_in_flight,
            decode_tokens_in_flight=self.decode_tokens_in_flight,
        )
