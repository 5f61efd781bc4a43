"""Routing policies in front of real engines: where each request is sent, or that it is shed.

Every policy answers ``target(request)`` with the URL to send the request to (a pod's
sidecar, or a peer router that picks the pod itself) or ``None`` to shed it, and hears
``done(target)`` when the request has finished. They know what a router in production
knows: the request as its client sends it (prompt size, cap), what the engines export
on ``/metrics`` (scraped by ``epp_view.PodView``, as llm-d's endpoint picker scrapes it)
and what they sent themselves; never how long the answer will be.

- ``round-robin``: each pod in turn.
- ``least-requests``: fewest running + waiting requests at the last scrape, plus those
  sent there since (the cluster evaluation's definition, ``sim/policies.py``).
- ``least-kv-cache``: lowest KV-cache use at the last scrape, plus the prompt tokens sent
  there since, as a share of the pod's KV capacity.
- ``latency-oracle`` / ``latency-oracle-shed``: the service's ``POST /v1/route`` over
  the pods its sidecars report. Without shedding, a request the service would shed goes
  to the pod it predicts fastest (a second call, without SLOs), as the cluster
  evaluation does, so that every policy serves the same requests.
- ``vllm-router-<policy>``: every request to one vLLM router (``peer_router.py``), which
  picks the pod.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from real_engine import peer_router
from real_engine.epp_view import PodView
from real_engine.route_score import Slo
from real_engine.trace_load import TraceRequest

# The policies by family: the heuristics, the peer router's own, and the service's.
HEURISTICS = ("round-robin", "least-requests", "least-kv-cache")
PEERS = tuple(f"vllm-router-{p}" for p in peer_router.POLICIES)
SERVICE = ("latency-oracle", "latency-oracle-shed")
ALL = (*HEURISTICS, *PEERS, *SERVICE)


class Policy(Protocol):
    name: str

    async def target(self, request: TraceRequest) -> str | None:
        """The URL to send ``request`` to, or None to shed it."""
        ...

    def done(self, target: str) -> None:
        """The request sent to ``target`` has finished (or failed)."""
        ...


@dataclass
class ScrapedPod:
    """A pod as a load heuristic sees it: its scrape, and what it was sent since."""

    url: str  # where requests go (its sidecar)
    view: PodView  # its /metrics, refreshed in the background
    kv_capacity_tokens: int
    _scrape: object = None
    sent_since_scrape: int = 0
    tokens_since_scrape: int = 0

    def refresh(self) -> None:
        """Forget what was sent before the latest scrape (the scrape has counted it)."""
        if self.view.sample is not self._scrape:
            self._scrape = self.view.sample
            self.sent_since_scrape = self.tokens_since_scrape = 0

    def requests(self) -> float:
        s = self.view.sample
        return (s.running_requests or 0) + (s.waiting_requests or 0) + self.sent_since_scrape

    def kv_cache_usage(self) -> float:
        used = self.view.sample.kv_cache_usage or 0.0
        return used + self.tokens_since_scrape / self.kv_capacity_tokens

    def sent(self, tokens: int) -> None:
        self.sent_since_scrape += 1
        self.tokens_since_scrape += tokens


@dataclass
class RoundRobin:
    pods: list[ScrapedPod]
    name: str = "round-robin"
    _turn: itertools.count = field(default_factory=itertools.count)

    async def target(self, request: TraceRequest) -> str | None:
        return self.pods[next(self._turn) % len(self.pods)].url

    def done(self, target: str) -> None:
        """Nothing to count."""


@dataclass
class Least:
    """The pod with the least of a scraped load (ties: the first listed)."""

    pods: list[ScrapedPod]
    name: str  # least-requests or least-kv-cache

    async def target(self, request: TraceRequest) -> str | None:
        for pod in self.pods:
            pod.refresh()
        score = ScrapedPod.requests if self.name == "least-requests" else ScrapedPod.kv_cache_usage
        best = min(self.pods, key=score)
        best.sent(request.prompt_tokens)
        return best.url

    def done(self, target: str) -> None:
        """The next scrape counts it."""


@dataclass
class LatencyOracle:
    """The service's ``/v1/route`` over the live pods its sidecars report."""

    predictor_url: str
    pods: Mapping[str, str]  # pod name -> where its requests go
    model: str
    slo: Slo
    client: httpx.AsyncClient
    shed: bool = False
    name: str = ""
    # What each decision said, by trace index: the policy that decided ("heuristic" while
    # the models are cold), and the chosen pod's predicted p90 TTFT; for the rows.
    decisions: dict[int, dict[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = "latency-oracle-shed" if self.shed else "latency-oracle"

    async def target(self, request: TraceRequest) -> str | None:
        body: dict[str, object] = {
            "input_tokens": request.prompt_tokens,
            "max_tokens": request.max_tokens,
            "model": self.model,
            "slo": {"ttft_ms": self.slo.ttft_ms, "tpot_ms": self.slo.tpot_ms},
        }
        decision = await self._route(body)
        if decision.get("decision") != "place" and not self.shed:
            decision = await self._route({**body, "slo": {}, "policy": "least-latency"})
        chosen = [c for c in decision.get("candidates", []) if c.get("pod") == decision.get("pod")]
        self.decisions[request.index] = {
            "route_decision": decision.get("decision"),
            "route_policy": decision.get("policy"),
            "route_cold": decision.get("cold"),
            "route_ttft_p90": chosen[0].get("ttft_ms") if chosen else None,
        }
        if decision.get("decision") != "place":
            return None
        return self.pods[str(decision["pod"])]

    async def _route(self, body: dict[str, object]) -> dict[str, object]:
        response = await self.client.post(f"{self.predictor_url}/v1/route", json=body)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def done(self, target: str) -> None:
        """The sidecar reports it to the service."""


@dataclass
class PeerRouter:
    """Every request to a running peer router, which picks the pod."""

    url: str
    name: str

    async def target(self, request: TraceRequest) -> str | None:
        return self.url

    def done(self, target: str) -> None:
        """The router counts its own."""
