"""Routing policies for the cluster evaluation: heuristics, Latency Oracle, and an oracle.

The heuristics are what gateways do without a latency model. ``LatencyOracle`` routes
through the service's own ``Router`` and ``ModelRegistry``, learning online from the
requests it placed, exactly as a predictor fed by sidecars would. All of them see only
``PodView`` records (scrapes, sidecar counts, their prefix index); the yardstick that
reads the engines is ``sim/evaluation/oracle_policy.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from latency_oracle.features.schema import Observation
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.routing.inflight_ledger import InFlightLedger
from latency_oracle.routing.route_request import CandidatePod, RouteRequest, Slo
from latency_oracle.routing.router import Router
from latency_oracle.settings import Settings
from latency_oracle.sim.evaluation.cluster import Outcome, Placement, PodView
from latency_oracle.sim.evaluation.oracle_policy import TrueLatencyOracle
from latency_oracle.sim.evaluation.workloads import ClientRequest

# Simulated time 0 as a Unix time: records and the in-flight ledger need real-looking stamps.
EPOCH = 1_700_000_000.0


@dataclass(frozen=True, slots=True)
class SloTargets:
    ttft_ms: float
    tpot_ms: float


def _least(scores: Sequence[float], rng: random.Random) -> int:
    """Index of the lowest score, ties broken at random (so equal pods share the load)."""
    best = min(scores)
    return rng.choice([i for i, s in enumerate(scores) if s == best])


class RoundRobin:
    name = "round-robin"

    def __init__(self, seed: int = 0) -> None:
        self._next = seed

    def choose(self, request: ClientRequest, pods: Sequence[PodView], now: float) -> Placement:
        self._next += 1
        return Placement(self._next % len(pods))

    def learn(self, outcomes: Sequence[Outcome], now: float) -> None:
        """Learns nothing."""


class _ScoredHeuristic:
    """Least of a load score; subclasses name the score."""

    name = ""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def score(self, request: ClientRequest, pod: PodView) -> float:
        raise NotImplementedError

    def choose(self, request: ClientRequest, pods: Sequence[PodView], now: float) -> Placement:
        return Placement(_least([self.score(request, p) for p in pods], self._rng))

    def learn(self, outcomes: Sequence[Outcome], now: float) -> None:
        """Learns nothing."""


class LeastRequests(_ScoredHeuristic):
    """Fewest waiting + running requests (Kubernetes' and most gateways' default)."""

    name = "least-requests"

    def score(self, request: ClientRequest, pod: PodView) -> float:
        return pod.requests


class LeastKvCache(_ScoredHeuristic):
    """Lowest KV-cache use, counting the prompts placed since the scrape."""

    name = "least-kv-cache"

    def score(self, request: ClientRequest, pod: PodView) -> float:
        return pod.kv_cache_usage


class PrefixAffinity(_ScoredHeuristic):
    """A session sticks to the pod that served it last (its prefix is cached there).

    New sessions and requests without one go to the pod with the fewest requests, as
    prefix-aware gateways fall back to load when there is no cache to follow.
    """

    name = "prefix-affinity"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self._home: dict[str, int] = {}

    def score(self, request: ClientRequest, pod: PodView) -> float:
        return pod.requests

    def choose(self, request: ClientRequest, pods: Sequence[PodView], now: float) -> Placement:
        session = request.session
        if session is not None and session in self._home:
            return Placement(self._home[session])
        placement = super().choose(request, pods, now)
        if session is not None:
            self._home[session] = placement.pod
        return placement


class LatencyOracle:
    """The service's router and models, learning online from the cluster's outcomes.

    Observations carry the pod's state at dispatch and the measured latencies, as a
    sidecar reports them; they are learned in batches every ``learn_interval_s`` of
    simulated time (the service's background learner drains its buffer the same way).
    With ``shed`` False a request no pod can serve within the SLO still goes to the pod
    predicted fastest, so every policy serves the same requests.
    """

    def __init__(
        self,
        settings: Settings,
        slo: SloTargets,
        seed: int = 0,
        shed: bool = False,
        learn_interval_s: float = 1.0,
    ) -> None:
        self.name = "latency-oracle-shed" if shed else "latency-oracle"
        self.registry = ModelRegistry(ModelConfig.from_settings(settings))
        self.router = Router(self.registry, settings, random.Random(seed))
        self._now = 0.0
        self.router.ledger = InFlightLedger(settings.route_inflight_ttl_s, self._clock)
        self.slo = Slo(ttft_ms=slo.ttft_ms, tpot_ms=slo.tpot_ms)
        self.shed = shed
        self.learn_interval_s = learn_interval_s
        self.learned = 0
        self._buffer: list[Observation] = []
        self._last_learn = 0.0

    def _clock(self) -> float:
        return EPOCH + self._now

    def choose(
        self, request: ClientRequest, pods: Sequence[PodView], now: float
    ) -> Placement | None:
        self._now = now
        candidates = [_candidate(pod, request) for pod in pods]
        route = RouteRequest(
            input_tokens=request.prompt_tokens, max_tokens=request.max_tokens or 0, slo=self.slo
        )
        decision = self.router.route(route, candidates)
        if decision.decision != "place":
            if self.shed:
                return None
            anyway = route.model_copy(update={"slo": Slo(), "policy": "least-latency"})
            decision = self.router.route(anyway, candidates)
        index = next(i for i, c in enumerate(candidates) if c.pod == decision.pod)
        report = decision.candidates[index]
        return Placement(index, _ms(report["ttft_ms"]), _ms(report["tpot_ms"]), decision.cold)

    def learn(self, outcomes: Sequence[Outcome], now: float) -> None:
        self._buffer += [_observation(o) for o in outcomes]
        if now - self._last_learn >= self.learn_interval_s:
            self.flush(now)

    def flush(self, now: float) -> None:
        if self._buffer:
            self.registry.learn(self._buffer)
            self.learned += len(self._buffer)
            self._buffer = []
        self._last_learn = now


def _ms(value: object) -> float:
    return float(value)  # type: ignore[arg-type]


def _candidate(pod: PodView, request: ClientRequest) -> CandidatePod:
    state = pod.server_state()
    hits = pod.cached_tokens(request)
    return CandidatePod(
        pod=pod.spec.name,
        accelerator=pod.spec.accelerator,
        prefix_cache_hit_tokens=min(hits, request.prompt_tokens) if hits else None,
        scraped_at=EPOCH + pod.scraped_at,
        **state.model_dump(),
    )


def _observation(outcome: Outcome) -> Observation:
    """What the pod's sidecar reports for a finished request."""
    finished = outcome.finished
    return Observation(
        observation_id=outcome.request_id,
        timestamp=EPOCH + finished.finish_time,
        pod=outcome.pod_name,
        accelerator=outcome.accelerator,
        input_tokens=finished.prompt_tokens,
        prefix_cache_hit_tokens=finished.cached_tokens,
        output_tokens=finished.output_tokens,
        max_tokens=finished.max_tokens or 0,  # the cap the client sent, as the sidecar reads it
        ttft_ms=max(outcome.ttft_ms, 1e-3),
        tpot_ms=outcome.tpot_ms,
        **outcome.state.model_dump(),
    )


PolicyFactory = Callable[[int], object]
HEURISTICS: dict[str, type[_ScoredHeuristic] | type[RoundRobin]] = {
    "round-robin": RoundRobin,
    "least-requests": LeastRequests,
    "least-kv-cache": LeastKvCache,
    "prefix-affinity": PrefixAffinity,
}
POLICY_NAMES: tuple[str, ...] = (*HEURISTICS, "latency-oracle", "latency-oracle-shed", "oracle")


def make_policy(name: str, settings: Settings, slo: SloTargets, seed: int):
    """A fresh policy called ``name`` (one of POLICY_NAMES)."""
    if name in HEURISTICS:
        return HEURISTICS[name](seed)
    if name == "oracle":
        return TrueLatencyOracle(seed)
    if name in ("latency-oracle", "latency-oracle-shed"):
        return LatencyOracle(settings, slo, seed, shed=name.endswith("shed"))
    raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}")
