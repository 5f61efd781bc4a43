"""The cluster simulation's invariants: every request accounted for, queueing grows with
load, runs repeat under a seed, and the oracle's "true latency" is the latency."""

from __future__ import annotations

import gc
import types
from dataclasses import replace

import numpy as np
import pytest

from latency_oracle.features.schema import ServerState
from latency_oracle.settings import Settings
from latency_oracle.sim.engine.gpu_profiles import shared_data_dir
from latency_oracle.sim.engine.kv_cache import KVBlockPool
from latency_oracle.sim.engine.records import EngineConfig, EngineState, SimRequest
from latency_oracle.sim.engine.scheduler import Engine
from latency_oracle.sim.evaluation.cluster import ClusterConfig, build_engines, run_cluster
from latency_oracle.sim.evaluation.evaluated_policies import POLICY_NAMES, SloTargets, make_policy
from latency_oracle.sim.evaluation.oracle_policy import TrueLatencyOracle
from latency_oracle.sim.evaluation.pod_view import PodSpec, PodView, PrefixIndex, Scrape
from latency_oracle.sim.evaluation.workloads import (
    Arrival,
    Shift,
    SyntheticSpec,
    synthetic,
)

SLO = SloTargets(ttft_ms=1_400.0, tpot_ms=340.0)
CONFIG = ClusterConfig()


def _run(arrivals, name: str, settings: Settings, seed: int = 0, config=CONFIG, shifts=()):
    policy = make_policy(name, settings, SLO, seed)
    engines = build_engines(config, shared_data_dir(), seed)
    return run_cluster(arrivals, policy, engines, config.pods, shifts), engines


@pytest.fixture(scope="module")
def arrivals() -> list[Arrival]:
    return synthetic(SyntheticSpec("chat", rate=12.0, duration_s=60, seed=5))


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_request_is_served_or_shed_exactly_once(
    arrivals: list[Arrival], name: str, settings: Settings
) -> None:
    result, engines = _run(arrivals, name, settings)
    served = [o.request_id for o in result.outcomes]
    shed = [a.request.request_id for a in result.shed]
    assert len(served) == len(set(served))
    assert sorted(served + shed) == sorted(a.request.request_id for a in arrivals)
    assert not any(engine.has_work for engine in engines)
    by_id = {a.request.request_id: a.request for a in arrivals}
    for outcome in result.outcomes:
        request = by_id[outcome.request_id]
        assert outcome.finished.output_tokens == min(
            request.output_tokens, request.max_tokens or request.output_tokens
        )
        assert outcome.finished.first_token_time > request.arrival
        assert outcome.finished.finish_time >= outcome.finished.first_token_time
    if name != "latency-oracle-shed":
        assert not shed


def test_queueing_grows_with_load(settings: Settings) -> None:
    """The same requests, arriving faster, wait longer (round robin: same pods each time)."""
    base = synthetic(SyntheticSpec("poisson", rate=6.0, duration_s=120, seed=2))
    exact = replace(CONFIG, engine=EngineConfig(step_jitter=0.0))
    means = []
    for load in (1.0, 2.0, 4.0, 8.0):
        faster = [
            replace(a, request=replace(a.request, arrival=a.request.arrival / load)) for a in base
        ]
        result, _ = _run(faster, "round-robin", settings, config=exact)
        means.append(np.mean([o.ttft_ms for o in result.outcomes]))
    assert means == sorted(means) and means[-1] > 3 * means[0]


def test_runs_repeat_under_a_seed_and_differ_across_seeds(
    arrivals: list[Arrival], settings: Settings
) -> None:
    first, _ = _run(arrivals, "latency-oracle", settings, seed=1)
    again, _ = _run(arrivals, "latency-oracle", settings, seed=1)
    other, _ = _run(arrivals, "latency-oracle", settings, seed=2)

    def trace(result):
        return [(o.request_id, o.pod, o.finished.first_token_time) for o in result.outcomes]

    assert trace(first) == trace(again)
    assert trace(first) != trace(other)
    assert any(o.ttft_pred_ms is not None and not o.cold for o in first.outcomes)


def test_the_oracle_knows_the_true_ttft(settings: Settings) -> None:
    """Alone in the cluster, a request gets exactly the TTFT the oracle simulated for it."""
    warmup = [Arrival(SimRequest(f"w{i}", i * 0.01, 3_000, 50)) for i in range(12)]
    probe = Arrival(SimRequest("probe", 0.2, 1_500, 5))
    result, _ = _run([*warmup, probe], "oracle", settings)
    outcome = next(o for o in result.outcomes if o.request_id == "probe")
    assert outcome.ttft_pred_ms == pytest.approx(outcome.ttft_ms, rel=1e-9)


def test_a_degraded_pod_slows_down_at_its_time(settings: Settings) -> None:
    steady = synthetic(SyntheticSpec("poisson", rate=6.0, duration_s=120, seed=4))
    shift = Shift("degrade", 60.0, factor=2.0, pod=0)
    plain, _ = _run(steady, "round-robin", settings)
    slowed, engines = _run(steady, "round-robin", settings, shifts=[shift])
    assert engines[0].slowdown == 2.0 and engines[1].slowdown == 1.0

    def pod0_mean(result, after: bool) -> float:
        return np.mean(
            [o.ttft_ms for o in result.outcomes if o.pod == 0 and (o.arrival >= 60) == after]
        )

    assert pod0_mean(slowed, after=False) == pytest.approx(pod0_mean(plain, after=False))
    assert pod0_mean(slowed, after=True) > 1.5 * pod0_mean(plain, after=True)


class _Recording:
    """Wraps a policy and keeps every view it was shown."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.views: list[object] = []

    def choose(self, arrival, pods, now):
        self.views.append(list(pods))
        return self.inner.choose(arrival, pods, now)

    def learn(self, outcomes, now) -> None:
        self.inner.learn(outcomes, now)


def _reachable_types(roots: list[object]) -> set[type]:
    """Types of every object reachable from ``roots`` by reference, not via classes or
    modules (those reach everything)."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    seen: set[int] = set()
    found: set[type] = set()
    stack = list(roots)
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, skip):
            continue
        seen.add(id(item))
        found.add(type(item))
        stack.extend(gc.get_referents(item))
    return found


@pytest.mark.parametrize("name", [n for n in POLICY_NAMES if n != "oracle"])
def test_policies_see_only_scrapes_sidecar_counts_and_their_own_index(
    arrivals: list[Arrival], name: str, settings: Settings
) -> None:
    """No engine, KV pool or engine state is reachable from what a policy is shown or keeps;
    the oracle alone is handed the engines."""
    policy = _Recording(make_policy(name, settings, SLO, 0))
    engines = build_engines(CONFIG, shared_data_dir(), 0)
    result = run_cluster(arrivals[:200], policy, engines, CONFIG.pods)
    found = _reachable_types([policy.views, policy.inner])
    assert not found & {Engine, KVBlockPool, EngineState}, found & {Engine, KVBlockPool}
    assert Scrape in found and PrefixIndex in found
    # What the learners are taught is the sidecar's record at arrival, not the engine's.
    states = [o.state for o in result.outcomes]
    assert all(isinstance(s, ServerState) for s in states)
    assert any(s.prefill_tokens_in_flight > 0 for s in states)


def test_prefix_hits_are_estimated_from_what_was_routed_where() -> None:
    index = PrefixIndex(capacity_blocks=4)
    index.add(["a", "b", "c"])
    assert index.match(["a", "b", "x", "c"]) == 2
    index.add(["d", "e"])  # five blocks routed, four kept: the least recent ("a") is gone
    assert index.match(["a", "b"]) == 0
    assert index.match(["b", "c", "d"]) == 3
    view = PodView(
        PodSpec("p", "H100"),
        Scrape(0, 0, 0.0, 0, 0, 0, 0),
        0.0,
        kv_capacity_tokens=64,
        block_size=16,
        prefix=index,
    )
    request = SimRequest("r", 0.0, 40, 5, ("b", "c", "d"))
    # Only blocks the prompt fully covers, short of its last token, can be hits.
    assert view.cached_tokens(Arrival(request).sent) == 32


def test_learned_predictions_take_over_within_two_minutes_at_the_traces_rate() -> None:
    """A fresh Latency Oracle, default settings, on the Azure trace's lengths at its mean
    rate (the trace's own first minutes are far sparser than its hour)."""
    settings = Settings(mlflow_enabled=False)
    arrivals = synthetic(SyntheticSpec("poisson", duration_s=200.0, seed=3), 1.0, settings)
    result, _ = _run(arrivals, "latency-oracle", settings)
    later = [o for o in result.outcomes if o.arrival >= 120.0]
    assert later and not any(o.cold for o in later)
    assert any(o.cold for o in result.outcomes)  # it did start cold


def test_the_oracles_forks_stop_at_its_horizon_and_say_how_often() -> None:
    """Under a queue no fork can clear within the horizon, the oracle still decides, by the
    least queued work, and counts each such decision."""
    burst = [Arrival(SimRequest(f"b{i}", 0.001 * i, 4_000, 20)) for i in range(60)]
    engines = build_engines(CONFIG, shared_data_dir(), 0)
    oracle = TrueLatencyOracle(horizon_s=0.05)
    result = run_cluster(burst, oracle, engines, CONFIG.pods)
    assert len(result.outcomes) == len(burst)
    assert 0 < oracle.capped <= len(burst)
    capped = [o for o in result.outcomes if o.ttft_pred_ms is None]
    assert len(capped) == oracle.capped
