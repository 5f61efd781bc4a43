"""Routing policies: given one phase's scored candidates, pick a pod.

Every policy turns candidates into a score (lower is better) and picks at random among
the near-ties of the best, so routers sharing a stale view of the fleet do not all pick
the same pod. Policies only choose among pods the router marked eligible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

from latency_oracle.features.engineering import RequestColumns
from latency_oracle.settings import HeadroomMode


@dataclass(frozen=True, slots=True)
class PhaseView:
    """One placement decision's candidates (a whole pool, or its prefill or decode side)."""

    phase: str  # "pod", "prefill" or "decode"
    eligible: np.ndarray  # (n,) bool: the pod meets every SLO of this phase
    headroom: np.ndarray | None  # (n,) worst relative headroom (slo - p)/slo; None without SLOs
    latency_ms: np.ndarray  # (n,) predicted time this phase keeps the request
    ttft_ms: np.ndarray | None  # (n,) predicted time to first token; None in a decode phase
    columns: RequestColumns  # the request on each pod (in-flight-adjusted)
    # (n,) chance the request meets this phase's SLOs on each pod, and the running streams
    # its decode would tip over the TPOT SLO there; None without SLOs
    attainment: np.ndarray | None = None
    harm: np.ndarray | None = None
    # (n,) the prior's TTFT while nothing is learned: the queued prefill's roofline time on
    # each pod's hardware, which ranks a fast and a slow pod with equal queues apart
    prefill_ms: np.ndarray | None = None

    @property
    def queued_prefill_tokens(self) -> np.ndarray:
        """(n,) prefill work ahead of the request, including its own uncached prompt."""
        c = self.columns
        return c.prefill_tokens_in_flight + c.input_tokens - c.cached_tokens

    @property
    def requests(self) -> np.ndarray:
        """(n,) waiting + running requests."""
        return self.columns.waiting_requests + self.columns.running_requests


@dataclass(frozen=True, slots=True)
class Choice:
    """A chosen candidate (index into the phase) and why, in a few words."""

    index: int
    reason: str


class RoutingPolicy(Protocol):
    """One way to pick a pod: a name (what ``policy`` in a route request selects, and
    what decisions report) and ``choose``, which scores one phase's candidates and
    picks among the near-ties of the best with the router's ``rng``."""

    name: str

    def choose(self, view: PhaseView, rng: random.Random) -> Choice: ...


def near_best(
    scores: np.ndarray, eligible: np.ndarray | None, tolerance: float, relative: bool = True
) -> np.ndarray:
    """Indices of candidates (the ``eligible`` ones, or all) within ``tolerance`` of the
    best score: relative to it, or in the scores' own units."""
    masked = scores if eligible is None else np.where(eligible, scores, np.inf)
    best = float(masked.min())
    margin = tolerance * max(abs(best), 1e-9) if relative else tolerance
    return np.flatnonzero(masked <= best + margin)


class LeastLatency:
    """The pod with the lowest predicted latency for this phase."""

    name = "least-latency"

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance

    def choose(self, view: PhaseView, rng: random.Random) -> Choice:
        ties = near_best(view.latency_ms, view.eligible, self.tolerance)
        index = int(rng.choice(ties))
        return Choice(index, f"least predicted latency ({len(ties)} near-tie(s))")


class Headroom:
    """Pack onto the pod with the least spare headroom, or spread to the one with the most."""

    name = "headroom"

    def __init__(self, mode: HeadroomMode, tolerance: float) -> None:
        self.mode = mode
        self.tolerance = tolerance
        self._without_slo = LeastLatency(tolerance)

    def choose(self, view: PhaseView, rng: random.Random) -> Choice:
        if view.headroom is None:
            fallback = self._without_slo.choose(view, rng)
            return Choice(fallback.index, f"no SLO for this phase, so {fallback.reason}")
        # Headroom is a fraction of the SLO, so the tolerance is absolute in SLO units.
        scores = view.headroom if self.mode == "pack" else -view.headroom
        ties = near_best(scores, view.eligible, self.tolerance, relative=False)
        index = int(rng.choice(ties))
        headroom = float(view.headroom[index])
        reason = f"{self.mode}: headroom {headroom:.0%} of SLO ({len(ties)} near-tie(s))"
        return Choice(index, reason)


class SloAttainment:
    """Most SLOs met: the request's own chance of meeting them on the pod, less the
    running streams its decode would push over theirs (``routing/attainment.py``).

    Pods within ``tolerance`` of the best are near-ties, decided by the predicted time to
    first token relative to the soonest of them plus the pod's KV-cache use: at light load
    every pod meets the SLOs, and then the pod that starts the answer first wins unless
    its cache is much fuller, which keeps the KV balance that makes least-KV-cache routing
    strong under decode load. The decode is weighed already, in the chance of meeting the
    TPOT SLO and in the harm; ranking near-ties by total latency (first token plus the
    expected decode) let decode speed decide, which queued long prompts on the fastest
    pods. A decode-only phase has no first token: its decode time ranks.
    """

    name = "slo-attainment"

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self._without_slo = LeastLatency(tolerance)

    def choose(self, view: PhaseView, rng: random.Random) -> Choice:
        if view.attainment is None:
            fallback = self._without_slo.choose(view, rng)
            return Choice(fallback.index, f"no SLO for this phase, so {fallback.reason}")
        harm = 0.0 if view.harm is None else view.harm
        utility = view.attainment - harm
        ties = near_best(-utility, None, self.tolerance, relative=False)
        soonest = view.latency_ms if view.ttft_ms is None else view.ttft_ms
        soonest = soonest[ties]
        balance = soonest / max(float(soonest.min()), 1e-9) + view.columns.kv_cache_usage[ties]
        index = int(ties[int(np.argmin(balance))])
        reason = (
            f"slo-attainment: {view.attainment[index]:.0%} likely to meet the SLO, "
            f"{float(np.broadcast_to(harm, utility.shape)[index]):.2f} streams harmed "
            f"({len(ties)} near-tie(s))"
        )
        return Choice(index, reason)


class LeastLoaded:
    """The heuristic while models are cold: least queued prefill work, or fewest requests.

    Prefill time is dominated by the prompt tokens queued ahead, decode time by the batch
    a request joins, so each phase is ranked by the load that drives its latency. Where
    the router passes the prior's roofline time of the queued prefill (``prefill_ms``),
    that ranks instead: the same backlog drains faster on faster hardware.
    """

    name = "heuristic"

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance

    def choose(self, view: PhaseView, rng: random.Random) -> Choice:
        if view.phase == "decode":
            scores, what = view.requests, "fewest waiting+running requests"
        elif view.prefill_ms is not None:
            scores, what = view.prefill_ms, "least queued prefill work, in time on its hardware"
        else:
            scores, what = view.queued_prefill_tokens, "least queued prefill work"
        ties = near_best(scores, None, self.tolerance)
        return Choice(int(rng.choice(ties)), f"heuristic: {what}")


@lru_cache(maxsize=64)
def make_router_policy(name: str, mode: HeadroomMode, tolerance: float) -> RoutingPolicy:
    """The policy called ``name`` (a RoutePolicyName); policies hold no state, so each is
    built once and shared."""
    if name == "headroom":
        return Headroom(mode, tolerance)
    if name == "least-latency":
        return LeastLatency(tolerance)
    if name == "slo-attainment":
        return SloAttainment(tolerance)
    return LeastLoaded(tolerance)
