"""No policy knows a request's output length: only the model does, when it ends its answer.

Two workloads whose requests are sent identically (times, prompts, caps) but whose answers
differ in length must look the same to every policy when it decides. Learning is allowed
to see what a sidecar sees of a finished request: its output tokens and the cap it was
sent with, never the one for the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import replace

import pytest

from latency_oracle.features.schema import Observation
from latency_oracle.settings import Settings
from latency_oracle.sim.demo.launcher import route_body
from latency_oracle.sim.engine.gpu_profiles import shared_data_dir
from latency_oracle.sim.evaluation.cluster import (
    ClusterConfig,
    RunResult,
    build_engines,
    run_cluster,
)
from latency_oracle.sim.evaluation.evaluated_policies import (
    POLICY_NAMES,
    LatencyOracle,
    SloTargets,
    make_policy,
)
from latency_oracle.sim.evaluation.workloads import Arrival, ClientRequest, SyntheticSpec, synthetic
from latency_oracle.sim.traces import TraceRow

SLO = SloTargets(ttft_ms=1_400.0, tpot_ms=340.0)
CONFIG = ClusterConfig()
ROUTERS = [n for n in POLICY_NAMES if n != "oracle"]  # the oracle reads the engines, by design


def _twins(arrivals: list[Arrival], short: Callable[[int], int], long: Callable[[int], int]):
    """The same requests, sent alike, with short answers in one and long ones in the other."""

    def answered(length: Callable[[int], int]) -> list[Arrival]:
        return [
            replace(a, request=replace(a.request, output_tokens=length(a.request.output_tokens)))
            for a in arrivals
        ]

    return answered(short), answered(long)


class _Inputs:
    """Wraps a policy and keeps what it is given at each decision (and, for Latency Oracle,
    the question its router is asked), as plain values."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.requests: list[ClientRequest] = []
        self.views: list[list[tuple]] = []
        self.routed: list[dict] = []
        self.decisions: list[object] = []
        self.learned: list[Observation] = []
        if isinstance(inner, LatencyOracle):
            route, learn = inner.router.route, inner.registry.learn

            def routed(request, pods):
                self.routed.append(request.model_dump(exclude={"pods"}))
                return route(request, pods)

            def learned(observations, *args):
                self.learned += observations
                return learn(observations, *args)

            inner.router.route = routed
            inner.registry.learn = learned

    def choose(self, request, pods, now):
        self.requests.append(request)
        self.views.append([_plain(p) for p in pods])
        decision = self.inner.choose(request, pods, now)
        self.decisions.append(decision)
        return decision

    def learn(self, outcomes, now) -> None:
        self.inner.learn(outcomes, now)


def _plain(view) -> tuple:
    """A pod view as plain values: its scrape, and what the policy placed since."""
    fields = dataclasses.asdict(view.scraped)
    return (view.spec, tuple(fields.values()), view.scraped_at, view.requests, view.kv_cache_usage)


def _run(arrivals: list[Arrival], name: str, settings: Settings) -> tuple[_Inputs, RunResult]:
    policy = _Inputs(make_policy(name, settings, SLO, 0))
    engines = build_engines(CONFIG, shared_data_dir(), 0)
    return policy, run_cluster(arrivals, policy, engines, CONFIG.pods)


@pytest.fixture(scope="module")
def loaded() -> list[Arrival]:
    """Chat turns at a rate that queues: their caps come from the documented mix."""
    return synthetic(SyntheticSpec("chat", rate=12.0, duration_s=20, seed=5))


def test_a_request_as_sent_carries_no_output_length() -> None:
    assert [f.name for f in dataclasses.fields(ClientRequest)] == [
        "request_id",
        "arrival",
        "prompt_tokens",
        "max_tokens",
        "block_hashes",
        "session",
    ]


@pytest.mark.parametrize("name", ROUTERS)
def test_under_load_every_policy_is_asked_the_same_question(
    loaded: list[Arrival], name: str, settings: Settings
) -> None:
    """Pod states differ between the twins (longer answers decode longer), but the request
    each policy decides on, and the question Latency Oracle asks its router, do not."""
    short, long = _twins(loaded, lambda n: max(n // 8, 1), lambda n: 4 * n)
    (a, ran_a), (b, ran_b) = _run(short, name, settings), _run(long, name, settings)
    served = [o.finished.output_tokens for o in ran_a.outcomes]
    assert served != [o.finished.output_tokens for o in ran_b.outcomes]
    assert a.requests == b.requests and len(a.requests) == len(loaded)
    assert a.routed == b.routed
    if name.startswith("latency-oracle"):
        assert len(a.routed) >= len(loaded)
        assert {r["max_tokens"] for r in a.routed} == {a.max_tokens or 0 for a in a.requests}


@pytest.mark.parametrize("name", ROUTERS)
def test_with_idle_pods_every_policy_sees_and_decides_the_same(
    name: str, settings: Settings
) -> None:
    """Requests far enough apart that every pod is idle when the next arrives: then all a
    policy sees is identical between the twins, and so is every decision it makes."""
    spaced = [
        replace(a, request=replace(a.request, arrival=20.0 * i, block_hashes=()))
        for i, a in enumerate(synthetic(SyntheticSpec("poisson", rate=5.0, duration_s=8, seed=2)))
    ]
    short, long = _twins(spaced, lambda n: min(n, 4), lambda n: 40 + min(n, 40))
    (a, _), (b, _) = _run(short, name, settings), _run(long, name, settings)
    assert a.requests == b.requests
    assert a.views == b.views
    assert a.routed == b.routed
    assert a.decisions == b.decisions


def test_latency_oracle_learns_the_cap_each_request_was_sent_with(
    loaded: list[Arrival], settings: Settings
) -> None:
    policy, result = _run(loaded, "latency-oracle", settings)
    policy.inner.flush(float("inf"))
    caps = {a.request.request_id: a.request.max_tokens or 0 for a in loaded}
    assert len(policy.learned) > len(result.outcomes) // 2  # those finished before the end
    assert all(o.max_tokens == caps[o.observation_id] for o in policy.learned)
    assert any(0 < o.output_tokens < o.max_tokens for o in policy.learned)  # ended at EOS
    assert any(o.output_tokens == o.max_tokens for o in policy.learned)  # cut at the cap


def test_the_demo_routes_on_the_cap_not_the_trace_output() -> None:
    rows = [TraceRow(0.0, 800, output, None, 512, True) for output in (3, 300, 3000)]
    bodies = [route_body(7, row) for row in rows]
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["max_tokens"] == 512
