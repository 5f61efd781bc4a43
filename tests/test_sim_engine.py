"""Scheduler invariants of the simulated engine, in simulated time."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from latency_oracle.sim.engine.records import (
    EngineConfig,
    FinishedRequest,
    SimRequest,
    StepResult,
    shared_prefix_hashes,
)
from latency_oracle.sim.engine.scheduler import Engine


def _workload(n: int, rate: float, seed: int, prompt: int = 1_500) -> list[SimRequest]:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, n))
    prompts = np.clip(rng.lognormal(np.log(prompt), 0.8, n), 16, 6_000).astype(int)
    outputs = np.clip(rng.lognormal(np.log(60), 0.8, n), 1, 400).astype(int)
    return [
        SimRequest(f"r{i}", float(t), int(p), int(o))
        for i, (t, p, o) in enumerate(zip(arrivals, prompts, outputs, strict=True))
    ]


def _replay(engine: Engine, requests: list[SimRequest]) -> list[StepResult]:
    steps: list[StepResult] = []
    for request in requests:
        steps += engine.run_until(request.arrival)
        engine.submit(request)
    while (step := engine.step()) is not None:
        steps.append(step)
    return steps


def _finished(steps: list[StepResult]) -> dict[str, FinishedRequest]:
    return {f.request_id: f for step in steps for f in step.finished}


def test_every_request_finishes_once_with_all_its_tokens_even_when_preempted() -> None:
    requests = _workload(300, rate=6.0, seed=1)
    tight = EngineConfig(num_gpu_blocks_override=1_200)  # ~19k tokens: forces preemption
    engine = Engine.create("A100", seed=3, config=tight)
    usage: list[float] = []
    steps: list[StepResult] = []
    for request in requests:
        for step in engine.run_until(request.arrival):
            steps.append(step)
            usage.append(engine.state().kv_cache_usage)
        engine.submit(request)
    while (step := engine.step()) is not None:
        steps.append(step)
        usage.append(engine.state().kv_cache_usage)
    finished = [f for step in steps for f in step.finished]
    assert sorted(f.request_id for f in finished) == sorted(r.request_id for r in requests)
    emitted = Counter(rid for step in steps for rid in step.emitted)
    firsts = Counter(rid for step in steps for rid in step.first_tokens)
    for request in requests:
        assert emitted[request.request_id] == request.output_tokens
        assert firsts[request.request_id] == 1
    by_id = {f.request_id: f for f in finished}
    assert all(by_id[r.request_id].output_tokens == r.output_tokens for r in requests)
    assert engine.state().preemptions > 0
    assert sum(f.preemptions for f in finished) == engine.state().preemptions
    assert max(usage) <= 1.0 and max(usage) > 0.9
    assert engine.kv.available == engine.kv.total_blocks  # every block came back
    for f in finished:
        assert f.arrival < f.first_token_time <= f.finish_time


def test_requests_wait_while_the_kv_cache_is_full() -> None:
    engine = Engine.create("H100", config=EngineConfig(num_gpu_blocks_override=400))
    for i in range(12):
        engine.submit(SimRequest(f"r{i}", 0.0, 1_000, 200))
    peak_waiting = 0
    while engine.step() is not None:
        state = engine.state()
        assert engine.kv.used <= engine.kv.total_blocks
        peak_waiting = max(peak_waiting, state.waiting_requests)
    assert peak_waiting > 0


def test_more_load_never_lowers_mean_ttft() -> None:
    """The same requests, arriving faster and faster."""
    base = _workload(300, rate=1.0, seed=5)
    means = []
    for load in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
        requests = [
            SimRequest(r.request_id, r.arrival / load, r.prompt_tokens, r.output_tokens)
            for r in base
        ]
        finished = _finished(_replay(Engine.create("A100", seed=0), requests))
        means.append(np.mean([f.ttft for f in finished.values()]))
    assert means == sorted(means), means
    assert means[-1] > 5 * means[0]


def test_deterministic_under_a_seed() -> None:
    requests = _workload(150, rate=8.0, seed=2)
    runs = [_finished(_replay(Engine.create("L4", seed=seed), requests)) for seed in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_a_shared_prefix_is_served_from_the_cache() -> None:
    prefix = shared_prefix_hashes("system-prompt", 1_024)
    engine = Engine.create("H100")
    first = SimRequest("a", 0.0, 1_200, 4, prefix)
    second = SimRequest("b", 10.0, 1_200, 4, prefix)
    cold = SimRequest("c", 20.0, 1_200, 4, shared_prefix_hashes("other", 1_024))
    finished = _finished(_replay(engine, [first, second, cold]))
    assert finished["a"].cached_tokens == 0 and finished["c"].cached_tokens == 0
    assert finished["b"].cached_tokens == 1_024
    assert finished["b"].ttft < 0.6 * finished["c"].ttft
    state = engine.state()
    assert state.prefix_cache_queries == 3 * 1_200 and state.prefix_cache_hits == 1_024


def test_state_reports_the_pod_state_fields() -> None:
    engine = Engine.create("H100")
    engine.submit(SimRequest("long", 0.0, 6_000, 10))
    engine.submit(SimRequest("short", 0.0, 100, 10))
    engine.step()  # one 2,048-token chunk of the long prompt
    state = engine.state()
    assert (state.running_requests, state.waiting_requests) == (1, 1)
    assert state.prefill_tokens_in_flight == (6_000 - 2_048) + 100
    server_state = state.server_state()
    assert server_state.running_requests == 1 and 0 < server_state.kv_cache_usage < 1
    while engine.state().prefill_tokens_in_flight:
        engine.step()
    assert engine.state().decode_tokens_in_flight == 6_001 + 101


def test_abort_frees_the_request_and_its_blocks() -> None:
    engine = Engine.create("H100")
    engine.submit(SimRequest("gone", 0.0, 3_000, 100))
    engine.step()
    assert engine.kv.used > 0
    assert engine.abort("gone") and not engine.abort("gone")
    assert engine.kv.used == 0 and not engine.has_work


def test_impossible_requests_are_rejected_at_submit() -> None:
    engine = Engine.create("H100", config=EngineConfig(max_model_len=4_096))
    with pytest.raises(ValueError, match="4096 tokens per sequence"):
        engine.submit(SimRequest("big", 0.0, 4_000, 200, max_tokens=200))
    with pytest.raises(ValueError, match="4096 tokens per sequence"):
        engine.submit(SimRequest("no room", 0.0, 4_096, 200))
    with pytest.raises(ValueError, match="max_tokens >= 1"):
        engine.submit(SimRequest("empty", 0.0, 10, 0))
    with pytest.raises(ValueError, match="max_tokens >= 1"):
        engine.submit(SimRequest("no cap", 0.0, 10, 5, max_tokens=0))


def test_a_request_ends_at_its_eos_or_its_cap_whichever_comes_first() -> None:
    engine = Engine.create("H100", config=EngineConfig(max_model_len=4_096))
    requests = [
        SimRequest("eos first", 0.0, 100, 20, max_tokens=50),
        SimRequest("cap first", 0.0, 100, 80, max_tokens=50),
        SimRequest("no cap", 0.0, 100, 80),
        SimRequest("context limit", 0.0, 4_000, 200),
    ]
    finished = _finished(_replay(engine, requests))
    ends = {rid: (f.output_tokens, f.eos, f.max_tokens) for rid, f in finished.items()}
    assert ends == {
        "eos first": (20, True, 50),
        "cap first": (50, False, 50),
        "no cap": (80, True, None),
        "context limit": (96, False, None),
    }


def test_a_degraded_pod_takes_proportionally_longer() -> None:
    requests = _workload(40, rate=0.5, seed=4)
    healthy = _finished(_replay(Engine.create("H100", seed=1), requests))
    degraded_engine = Engine.create("H100", seed=1)
    degraded_engine.slowdown = 2.0
    degraded = _finished(_replay(degraded_engine, requests))
    ratio = np.mean([degraded[r].ttft for r in healthy]) / np.mean(
        [f.ttft for f in healthy.values()]
    )
    assert ratio > 1.9
