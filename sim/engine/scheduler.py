"""A vLLM-like continuous-batching engine in simulated time.

Each ``step()`` is one forward pass. Scheduling follows vLLM v1 with chunked prefill:
running requests first, in admission order (a decode takes one token, an unfinished
prefill the next chunk), then waiting requests in arrival order while the step's token
budget (``max_num_batched_tokens``) and ``max_num_seqs`` allow. KV blocks are allocated
as tokens are scheduled; a waiting request whose blocks do not fit waits, and a running
request that needs a block when none is left preempts the most recently admitted running
request, which frees its blocks and later recomputes its prompt and the tokens it has
already generated. Prompt prefixes are found in the block cache (``sim/engine/kv_cache.py``)
and skipped. The step's duration comes from ``sim/engine/perf_model.py`` times a lognormal
jitter drawn from the seed, so runs are deterministic under a seed.

Time is in seconds and never read from a clock: the cluster evaluation drives many
engines in simulated time, the HTTP shell (``sim/engine/server.py``) sleeps between steps.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Hashable
from pathlib import Path

import numpy as np

from latency_oracle.sim.engine.gpu_profiles import canonical_model, shared_data_dir
from latency_oracle.sim.engine.hardware import DEFAULT_BASE_GPU, accelerator_profile
from latency_oracle.sim.engine.kv_cache import KVBlockPool
from latency_oracle.sim.engine.perf_model import PerfModel
from latency_oracle.sim.engine.records import (
    EngineConfig,
    EngineState,
    FinishedRequest,
    SimRequest,
    StepResult,
)

_JITTER_BATCH = 4096


class _Sequence:
    """A request's mutable progress inside the engine."""

    __slots__ = (
        "cached_tokens",
        "computed",
        "first_token_time",
        "generated",
        "limit",
        "owned_blocks",
        "preemptions",
        "published",
        "request",
        "shared",
    )

    def __init__(self, request: SimRequest, limit: int) -> None:
        self.request = request
        self.limit = limit  # tokens it will generate: its answer, or less at the cap
        self.generated = 0
        self.computed = 0  # tokens whose KV is in the cache
        self.owned_blocks = 0
        self.shared: list[Hashable] = []  # cached blocks this sequence references
        self.first_token_time = -1.0
        self.cached_tokens = -1  # set at first admission
        self.preemptions = 0
        self.published = False

    def fork(self) -> _Sequence:
        fork = copy.copy(self)
        fork.shared = list(self.shared)
        return fork

    @property
    def known_tokens(self) -> int:
        return self.request.prompt_tokens + self.generated


class Engine:
    """One simulated engine (a pod's GPUs); not thread-safe, driven by one caller."""

    def __init__(self, perf: PerfModel, config: EngineConfig | None = None, seed: int = 0):
        self.perf = perf
        self.config = config or EngineConfig()
        self.now = 0.0
        self.slowdown = 1.0  # multiplies every step's duration: a degraded pod, mid-run
        block = self.config.block_size
        blocks = self.config.num_gpu_blocks_override or perf.kv_capacity_tokens // block
        self.kv = KVBlockPool(blocks)
        self.max_sequence_tokens = self.kv.total_blocks * block
        if self.config.max_model_len is not None:
            self.max_sequence_tokens = min(self.max_sequence_tokens, self.config.max_model_len)
        self._running: list[_Sequence] = []
        self._waiting: deque[_Sequence] = deque()
        self._rng = np.random.default_rng(seed)
        self._jitter: list[float] = []
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0
        self.preemptions = 0

    @classmethod
    def create(
        cls,
        accelerator: str,
        model: str = "Llama-2-7b-hf",
        tp: int = 1,
        seed: int = 0,
        config: EngineConfig | None = None,
        data_dir: Path | None = None,
        base_gpu: str = DEFAULT_BASE_GPU,
    ) -> Engine:
        """An engine for an accelerator type by name, measured or derived."""
        profile = accelerator_profile(
            accelerator, canonical_model(model), data_dir or shared_data_dir(), base_gpu
        )
        cfg = config or EngineConfig()
        return cls(PerfModel(profile, tp, max(cfg.max_num_batched_tokens, 1)), cfg, seed)

    @property
    def has_work(self) -> bool:
        return bool(self._running or self._waiting)

    def submit(self, request: SimRequest) -> None:
        """Queue a request; an idle engine's clock jumps to its arrival.

        As vLLM does, a request whose prompt plus ``max_tokens`` cannot fit a sequence is
        refused, and one without ``max_tokens`` may generate up to the context limit.
        """
        cap = request.max_tokens
        if request.prompt_tokens < 1 or request.output_tokens < 1 or (cap is not None and cap < 1):
            raise ValueError("a request needs prompt_tokens >= 1 and max_tokens >= 1")
        room = self.max_sequence_tokens - request.prompt_tokens
        if room < 1 or (cap is not None and cap > room):
            raise ValueError(
                f"prompt_tokens + max_tokens = {request.prompt_tokens + (cap or 1)} exceeds "
                f"this engine's {self.max_sequence_tokens} tokens per sequence"
            )
        if not self.has_work:
            self.now = max(self.now, request.arrival)
        self._waiting.append(_Sequence(request, min(request.output_tokens, cap or room)))

    def run_until(self, time: float) -> list[StepResult]:
        """Steps that start before ``time`` (the last may end after it)."""
        results = []
        while self.now < time:
            result = self.step()
            if result is None:
                break
            results.append(result)
        return results

    def step(self) -> StepResult | None:
        """Run one forward pass and advance the clock by its duration; None when idle."""
        if not self.has_work:
            return None
        start = self.now
        result = StepResult(start, start, 0)
        scheduled = self._schedule(result)
        tokens = 0
        pairs = 0.0
        decode_context = 0
        for seq, n in scheduled:
            tokens += n
            if seq.known_tokens - seq.computed == 1:
                decode_context += seq.computed + 1
            else:
                pairs += n * (seq.computed + n / 2)
        step_ms = self.perf.step_ms(tokens, pairs, decode_context)
        duration_ms = step_ms * self.slowdown * self._next_jitter()
        self.now = end = start + duration_ms / 1e3
        result.end = end
        result.batch_tokens = tokens
        self._advance(scheduled, result)
        return result

    def fork(self) -> Engine:
        """An independent copy that will run exactly like this engine from now on.

        The oracle routing policy asks each pod "when would this request's first token
        come?" by running a fork; sharing the immutable performance model and copying
        only the mutable state keeps that cheap enough to do for every arrival.
        """
        fork = copy.copy(self)
        sequences = {id(s): s.fork() for s in (*self._running, *self._waiting)}
        fork._running = [sequences[id(s)] for s in self._running]
        fork._waiting = deque(sequences[id(s)] for s in self._waiting)
        fork.kv = self.kv.fork()
        fork._rng = copy.deepcopy(self._rng)
        fork._jitter = list(self._jitter)
        return fork

    def abort(self, request_id: str) -> bool:
        """Drop an unfinished request (its client went away) and free its blocks."""
        for queue in (self._running, self._waiting):
            for seq in queue:
                if seq.request.request_id == request_id:
                    queue.remove(seq)
                    self._free_blocks(seq)
                    return True
        return False

    def state(self) -> EngineState:
        prefill = decode = 0
        for seq in self._running:
            remaining = seq.known_tokens - seq.computed
            if remaining > 1:
                prefill += remaining
            else:
                decode += seq.computed + 1
        for seq in self._waiting:
            prefill += seq.known_tokens
        return EngineState(
            running_requests=len(self._running),
            waiting_requests=len(self._waiting),
            kv_cache_usage=self.kv.used / self.kv.total_blocks,
            prefill_tokens_in_flight=prefill,
            decode_tokens_in_flight=decode,
            prefix_cache_queries=self.prefix_cache_queries,
            prefix_cache_hits=self.prefix_cache_hits,
            preemptions=self.preemptions,
        )

    def _schedule(self, result: StepResult) -> list[tuple[_Sequence, int]]:
        budget = self.config.max_num_batched_tokens
        block = self.config.block_size
        running = self._running
        scheduled: list[tuple[_Sequence, int]] = []
        i = 0
        while i < len(running) and budget > 0:
            seq = running[i]
            n = min(seq.known_tokens - seq.computed, budget)
            need = -(-(seq.computed + n) // block) - seq.owned_blocks - len(seq.shared)
            if need > 0 and not self._make_room(need, i, result):
                break
            seq.owned_blocks += max(need, 0)
            scheduled.append((seq, n))
            budget -= n
            i += 1
        if not result.preempted:
            self._admit(budget, scheduled)
        return scheduled

    def _make_room(self, blocks: int, keep: int, result: StepResult) -> bool:
        """Allocate, preempting from the most recently admitted; False if ``keep`` went too."""
        running = self._running
        while not self.kv.allocate(blocks):
            victim = running.pop()
            self._preempt(victim)
            result.preempted.append(victim.request.request_id)
            if len(running) <= keep:
                return False
        return True

    def _admit(self, budget: int, scheduled: list[tuple[_Sequence, int]]) -> None:
        block = self.config.block_size
        waiting = self._waiting
        max_seqs = self.config.max_num_seqs
        while waiting and budget > 0 and len(self._running) < max_seqs:
            seq = waiting[0]
            known = seq.known_tokens
            hashes = seq.request.block_hashes
            hit_blocks = self.kv.match(hashes, (known - 1) // block)
            shared = hashes[:hit_blocks]
            self.kv.acquire(shared)
            computed = hit_blocks * block
            n = min(known - computed, budget)
            need = -(-(computed + n) // block) - hit_blocks
            if not self.kv.allocate(need):
                self.kv.release_cached(shared)
                return
            waiting.popleft()
            seq.shared = list(shared)
            seq.owned_blocks = need
            seq.computed = computed
            if seq.cached_tokens < 0:
                seq.cached_tokens = computed
                self.prefix_cache_queries += seq.request.prompt_tokens
                self.prefix_cache_hits += computed
            self._running.append(seq)
            scheduled.append((seq, n))
            budget -= n

    def _free_blocks(self, seq: _Sequence) -> None:
        self.kv.release(seq.owned_blocks)
        self.kv.release_cached(seq.shared)
        seq.owned_blocks = 0
        seq.shared = []

    def _preempt(self, seq: _Sequence) -> None:
        self._free_blocks(seq)
        seq.computed = 0
        seq.preemptions += 1
        self.preemptions += 1
        self._waiting.appendleft(seq)

    def _advance(self, scheduled: list[tuple[_Sequence, int]], result: StepResult) -> None:
        end = result.end
        finished: list[_Sequence] = []
        for seq, n in scheduled:
            seq.computed += n
            if seq.computed < seq.known_tokens:
                continue
            if not seq.published:
                self._publish_prompt(seq)
            seq.generated += 1
            rid = seq.request.request_id
            result.emitted.append(rid)
            if seq.first_token_time < 0:
                seq.first_token_time = end
                result.first_tokens.append(rid)
            if seq.generated >= seq.limit:
                finished.append(seq)
                result.finished.append(self._finish(seq, end))
        if finished:
            done = set(finished)
            self._running = [s for s in self._running if s not in done]

    def _publish_prompt(self, seq: _Sequence) -> None:
        """Cache the prompt's full blocks once its prefill is done (vLLM caches as it goes)."""
        seq.published = True
        full = seq.request.block_hashes[: seq.request.prompt_tokens // self.config.block_size]
        published = self.kv.publish(full[len(seq.shared) :])
        seq.shared.extend(published)
        seq.owned_blocks -= len(published)

    def _finish(self, seq: _Sequence, end: float) -> FinishedRequest:
        self._free_blocks(seq)
        request = seq.request
        return FinishedRequest(
            request_id=request.request_id,
            arrival=request.arrival,
            first_token_time=seq.first_token_time,
            finish_time=end,
            prompt_tokens=request.prompt_tokens,
            output_tokens=seq.generated,
            cached_tokens=seq.cached_tokens,
            preemptions=seq.preemptions,
            max_tokens=request.max_tokens,
            eos=seq.generated >= request.output_tokens,
        )

    def _next_jitter(self) -> float:
        if not self._jitter:
            sigma = self.config.step_jitter
            draws = np.exp(sigma * self._rng.standard_normal(_JITTER_BATCH) - sigma**2 / 2)
            self._jitter = draws.tolist()
        return self._jitter.pop()
