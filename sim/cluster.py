"""A cluster of simulated engines behind one routing policy, in simulated time.

Discrete events: before each arrival every engine runs the steps that start before it,
finished requests whose last token came out by then are handed to the policy (that is
when a sidecar would report them), scheduled pod slowdowns take effect, and the policy
places the request. Policies see each pod's state as of its last scrape (every
``scrape_interval_s``, like the sidecar) plus what was placed on it since, so stale
state costs every policy the same. The oracle alone also reads the engines themselves.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

from latency_oracle.sim.engine import Engine
from latency_oracle.sim.engine_records import EngineConfig, EngineState, FinishedRequest
from latency_oracle.sim.gpu_profiles import canonical_model
from latency_oracle.sim.hardware import DEFAULT_BASE_GPU, accelerator_profile
from latency_oracle.sim.perf_model import PerfModel
from latency_oracle.sim.workloads import Arrival, Shift

DEFAULT_ACCELERATORS: tuple[str, ...] = ("H100", "H100", "A100", "A100", "L4", "L4")
DEFAULT_SCRAPE_INTERVAL_S = 0.2


@dataclass(frozen=True, slots=True)
class PodSpec:
    name: str
    accelerator: str


def default_pods(accelerators: Sequence[str] = DEFAULT_ACCELERATORS) -> list[PodSpec]:
    """Pods named after their accelerator: h100-0, h100-1, a100-0, ..."""
    seen: dict[str, int] = {}
    pods = []
    for accelerator in accelerators:
        index = seen.get(accelerator, 0)
        seen[accelerator] = index + 1
        pods.append(PodSpec(f"{accelerator.lower()}-{index}", accelerator))
    return pods


@dataclass(slots=True)
class PodView:
    """What a policy knows of one pod when it decides."""

    spec: PodSpec
    engine: Engine  # only the oracle may look: real routers see scrapes, not engines
    scraped: EngineState
    scraped_at: float
    placed_since_scrape: int = 0
    placed_tokens_since_scrape: int = 0

    @property
    def requests(self) -> int:
        """Waiting + running requests, counting placements the scrape has not seen."""
        return (
            self.scraped.running_requests + self.scraped.waiting_requests + self.placed_since_scrape
        )

    @property
    def queued_prefill_tokens(self) -> int:
        return self.scraped.prefill_tokens_in_flight + self.placed_tokens_since_scrape

    def cached_tokens(self, arrival: Arrival) -> int:
        """Prompt tokens this pod's prefix cache holds for the request (a KV-aware scorer)."""
        request = arrival.request
        if not request.block_hashes:
            return 0
        block = self.engine.config.block_size
        hits = self.engine.kv.match(request.block_hashes, (request.prompt_tokens - 1) // block)
        return hits * block


@dataclass(frozen=True, slots=True)
class Placement:
    """The chosen pod, and the policy's p90 predictions for it when it makes any."""

    pod: int
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    cold: bool = False


class Policy(Protocol):
    name: str

    def choose(self, arrival: Arrival, pods: Sequence[PodView], now: float) -> Placement | None:
        """A placement, or None to shed the request."""
        ...

    def learn(self, outcomes: Sequence[Outcome], now: float) -> None:
        """Finished requests, reported at ``now`` (their finish time or later)."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished request: where it ran, the pod's state at dispatch, what was predicted."""

    request_id: str
    arrival: float
    pod: int
    pod_name: str
    accelerator: str
    state: EngineState
    finished: FinishedRequest
    ttft_pred_ms: float | None
    tpot_pred_ms: float | None
    cold: bool

    @property
    def ttft_ms(self) -> float:
        return self.finished.ttft * 1e3

    @property
    def tpot_ms(self) -> float | None:
        tpot = self.finished.tpot
        return None if tpot is None else tpot * 1e3


@dataclass(slots=True)
class RunResult:
    policy: str
    pods: list[PodSpec]
    arrivals: int
    duration_s: float  # first to last arrival
    outcomes: list[Outcome] = field(default_factory=list)
    shed: list[Arrival] = field(default_factory=list)
    wall_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    pods: tuple[PodSpec, ...] = tuple(default_pods())
    model: str = "Llama-2-7b-hf"
    engine: EngineConfig = field(default_factory=EngineConfig)
    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S
    data_dir: Path | None = None


@cache
def _perf_model(accelerator: str, model: str, data_dir: Path, max_tokens: int) -> PerfModel:
    """Performance models are immutable: build one per accelerator, share it across runs."""
    profile = accelerator_profile(accelerator, canonical_model(model), data_dir, DEFAULT_BASE_GPU)
    return PerfModel(profile, 1, max_tokens)


def build_engines(config: ClusterConfig, data_dir: Path, seed: int) -> list[Engine]:
    """One engine per pod; pod i draws its step jitter from seed ``seed * 1000 + i``."""
    budget = max(config.engine.max_num_batched_tokens, 1)
    return [
        Engine(
            _perf_model(p.accelerator, config.model, data_dir, budget),
            config.engine,
            seed * 1000 + i,
        )
        for i, p in enumerate(config.pods)
    ]


def run_cluster(
    arrivals: Sequence[Arrival],
    policy: Policy,
    engines: list[Engine],
    pods: Sequence[PodSpec],
    shifts: Sequence[Shift] = (),
    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Replay ``arrivals`` through ``policy`` until every placed request has finished."""
    result = RunResult(
        policy.name,
        list(pods),
        len(arrivals),
        arrivals[-1].request.arrival - arrivals[0].request.arrival if arrivals else 0.0,
    )
    degrades = sorted((s for s in shifts if s.kind == "degrade"), key=lambda s: s.at)
    views = [
        PodView(spec, engine, engine.state(), 0.0)
        for spec, engine in zip(pods, engines, strict=True)
    ]
    dispatched: dict[str, tuple[int, EngineState, Placement]] = {}
    finished: list[tuple[float, int, FinishedRequest]] = []  # heap by finish time
    next_scrape = 0.0
    sequence = 0
    for done, arrival in enumerate(arrivals):
        now = arrival.request.arrival
        for engine in engines:
            for step in engine.run_until(now):
                for f in step.finished:
                    sequence += 1
                    heapq.heappush(finished, (f.finish_time, sequence, f))
        while degrades and degrades[0].at <= now:
            shift = degrades.pop(0)
            engines[shift.pod].slowdown = shift.factor
        if now >= next_scrape:
            for view in views:
                view.scraped, view.scraped_at = view.engine.state(), now
                view.placed_since_scrape = view.placed_tokens_since_scrape = 0
            next_scrape = now + scrape_interval_s
        reported = [_outcome(f, dispatched, pods) for f in _pop_until(finished, now)]
        if reported:
            result.outcomes.extend(reported)
            policy.learn(reported, now)
        placement = policy.choose(arrival, views, now)
        if placement is None:
            result.shed.append(arrival)
        else:
            view = views[placement.pod]
            dispatched[arrival.request.request_id] = (placement.pod, view.engine.state(), placement)
            view.engine.submit(arrival.request)
            view.placed_since_scrape += 1
            view.placed_tokens_since_scrape += arrival.request.prompt_tokens
        if progress is not None:
            progress(done + 1)
    for engine in engines:
        while (step := engine.step()) is not None:
            for f in step.finished:
                sequence += 1
                heapq.heappush(finished, (f.finish_time, sequence, f))
    result.outcomes += [_outcome(f, dispatched, pods) for f in _pop_until(finished, float("inf"))]
    return result


def _pop_until(
    heap: list[tuple[float, int, FinishedRequest]], time: float
) -> list[FinishedRequest]:
    out = []
    while heap and heap[0][0] <= time:
        out.append(heapq.heappop(heap)[2])
    return out


def _outcome(
    finished: FinishedRequest,
    dispatched: dict[str, tuple[int, EngineState, Placement]],
    pods: Sequence[PodSpec],
) -> Outcome:
    pod, state, placement = dispatched[finished.request_id]
    return Outcome(
        finished.request_id,
        finished.arrival,
        pod,
        pods[pod].name,
        pods[pod].accelerator,
        state,
        finished,
        placement.ttft_ms,
        placement.tpot_ms,
        placement.cold,
    )
