"""The yardstick policy: the pod where the first token truly comes soonest.

For each arrival it simulates the request on a copy of every pod (same queue, same KV
cache, same step-time jitter to come). It knows the present perfectly but not the future
(the copies see no later arrivals) and it is greedy (it ignores what its choice does to
later requests), so it bounds what any per-request predictor can reach, not what any
router can. It alone is handed the engines (``attach_engines``).

Its cost grows with the queues: under overload a fork may run for thousands of steps
before the request's first token. Two bounds keep it finite: pods are tried likeliest
first and every later fork stops once it is sure to lose to the best so far, and no fork
runs past ``horizon_s`` of simulated time. When every fork hits the horizon the request
goes to the pod with the least queued work, and the case is counted (``capped``) so the
report can say how often the limit decided.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from latency_oracle.sim.engine.records import SimRequest
from latency_oracle.sim.engine.scheduler import Engine
from latency_oracle.sim.evaluation.cluster import Outcome, Placement, PodView
from latency_oracle.sim.evaluation.workloads import ClientRequest

DEFAULT_HORIZON_S = 30.0


class TrueLatencyOracle:
    """Picks the pod with the truly earliest first token (see the module docstring)."""

    name = "oracle"

    def __init__(self, seed: int = 0, horizon_s: float = DEFAULT_HORIZON_S) -> None:
        self._rng = random.Random(seed)
        self.horizon_s = horizon_s
        self.capped = 0
        self._engines: list[Engine] = []

    def attach_engines(self, engines: list[Engine]) -> None:
        """The cluster's engines: perfect knowledge is what makes this the limit."""
        self._engines = engines

    def choose(self, request: ClientRequest, pods: Sequence[PodView], now: float) -> Placement:
        engines = self._engines
        order = sorted(range(len(pods)), key=lambda i: _queued_work_ms(engines[i]))
        best = self.horizon_s
        ttfts = [float("inf")] * len(pods)
        for i in order:
            ttfts[i] = _true_ttft(engines[i], request, bound=best)
            best = min(best, ttfts[i])
        fastest = min(ttfts)
        if fastest == float("inf"):
            self.capped += 1
            return Placement(order[0])
        ties = [i for i, t in enumerate(ttfts) if t == fastest]
        index = self._rng.choice(ties)
        return Placement(index, ttft_ms=ttfts[index] * 1e3)

    def learn(self, outcomes: Sequence[Outcome], now: float) -> None:
        """Knows everything already."""


def _queued_work_ms(engine: Engine) -> float:
    """Rough prefill backlog in ms: only orders the forks, never decides."""
    perf = engine.perf
    tokens = engine.state().prefill_tokens_in_flight
    return tokens * perf.non_attention_ms(2048) / 2048 * engine.slowdown


def _true_ttft(engine: Engine, request: ClientRequest, bound: float) -> float:
    """The request's TTFT on a copy of ``engine``; inf once it is sure to exceed ``bound``.

    The copy serves the request's prompt and first token only: its answer's length cannot
    change when that token comes.
    """
    fork = engine.fork()
    rid = request.request_id
    fork.submit(SimRequest(rid, request.arrival, request.prompt_tokens, 1, request.block_hashes))
    deadline = request.arrival + bound
    while fork.now < deadline:
        step = fork.step()
        if step is None:
            break
        if rid in step.first_tokens:
            return step.end - request.arrival
    return float("inf")
