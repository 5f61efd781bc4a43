"""A cluster of simulated engines behind one routing policy, in simulated time.

Discrete events: before each arrival every engine runs the steps that start before it;
each pod's sidecar counts the tokens of the steps that ended by then, and the requests
whose last token came out are handed to the policy (that is when a sidecar reports
them); scheduled pod slowdowns take effect, and the policy places the request. Policies
see only what production routers see (``sim/evaluation/pod_view.py``): each pod's last scrape
(every ``scrape_interval_s``), its sidecar's counts as of then, what they placed since,
and their index of routed prompt blocks. The oracle alone also reads the engines.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

from latency_oracle.features.schema import ServerState
from latency_oracle.sidecar.inflight import InflightCounter
from latency_oracle.sim.engine.gpu_profiles import canonical_model
from latency_oracle.sim.engine.hardware import DEFAULT_BASE_GPU, accelerator_profile
from latency_oracle.sim.engine.perf_model import PerfModel
from latency_oracle.sim.engine.records import EngineConfig, FinishedRequest, StepResult
from latency_oracle.sim.engine.scheduler import Engine
from latency_oracle.sim.evaluation.pod_view import PodSpec, PodView, PrefixIndex, scrape
from latency_oracle.sim.evaluation.workloads import Arrival, ClientRequest, Shift

DEFAULT_ACCELERATORS: tuple[str, ...] = ("H100", "H100", "A100", "A100", "L4", "L4")
DEFAULT_SCRAPE_INTERVAL_S = 0.2


def default_pods(accelerators: Sequence[str] = DEFAULT_ACCELERATORS) -> list[PodSpec]:
    """Pods named after their accelerator: h100-0, h100-1, a100-0, ..."""
    seen: dict[str, int] = {}
    pods = []
    for accelerator in accelerators:
        index = seen.get(accelerator, 0)
        seen[accelerator] = index + 1
        pods.append(PodSpec(f"{accelerator.lower()}-{index}", accelerator))
    return pods


@dataclass(frozen=True, slots=True)
class Placement:
    """The chosen pod, and the policy's p90 predictions for it when it makes any."""

    pod: int
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    cold: bool = False


class Policy(Protocol):
    name: str

    def choose(
        self, request: ClientRequest, pods: Sequence[PodView], now: float
    ) -> Placement | None:
        """A placement, or None to shed the request (which is all its client sent)."""
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
    state: ServerState  # as its sidecar recorded it at arrival: last scrape, own counts
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
    capped: int = 0  # oracle decisions its fork horizon made (sim/evaluation/oracle_policy.py)


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


@dataclass(slots=True)
class _Pod:
    """One simulated pod: its engine, its sidecar's counter, and the steps whose end the
    cluster's clock has not reached yet (the sidecar sees their tokens only then)."""

    engine: Engine
    sidecar: InflightCounter = field(default_factory=InflightCounter)
    steps: deque[StepResult] = field(default_factory=deque)

    def advance(self, now: float) -> list[FinishedRequest]:
        """Run the engine to ``now``; feed the sidecar every step that ended by then."""
        self.steps.extend(self.engine.run_until(now))
        return self._report(now)

    def drain(self) -> list[FinishedRequest]:
        """Run the engine until idle and report everything."""
        while (step := self.engine.step()) is not None:
            self.steps.append(step)
        return self._report(float("inf"))

    def _report(self, now: float) -> list[FinishedRequest]:
        finished: list[FinishedRequest] = []
        tokens: Counter[str] = Counter()
        sidecar = self.sidecar
        while self.steps and self.steps[0].end <= now:
            step = self.steps.popleft()
            for request_id in step.first_tokens:
                sidecar.first_token(request_id)
            tokens.update(step.emitted)
            tokens.subtract(step.first_tokens)
            for done in step.finished:
                sidecar.finish(done.request_id)
            finished += step.finished
        for request_id, n in tokens.items():
            if n > 0:
                sidecar.tokens(request_id, n)
        return finished


def run_cluster(
    arrivals: Sequence[Arrival],
    policy: Policy,
    engines: list[Engine],
    pods: Sequence[PodSpec],
    shifts: Sequence[Shift] = (),
    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Replay ``arrivals`` through ``policy`` until every placed request has finished.

    The policy gets the request as its client sent it (``Arrival.sent``: no output length)
    and ``PodView`` records (scrape, sidecar counts, its prefix index); only a policy with
    an ``attach_engines`` method (the oracle) is handed the engines too.
    """
    result = RunResult(
        policy.name,
        list(pods),
        len(arrivals),
        arrivals[-1].request.arrival - arrivals[0].request.arrival if arrivals else 0.0,
    )
    attach = getattr(policy, "attach_engines", None)
    if attach is not None:
        attach(engines)
    degrades = sorted((s for s in shifts if s.kind == "degrade"), key=lambda s: s.at)
    sims = [_Pod(engine) for engine in engines]
    views = [_view(spec, sim) for spec, sim in zip(pods, sims, strict=True)]
    dispatched: dict[str, tuple[int, ServerState, Placement]] = {}
    next_scrape = 0.0
    for done, arrival in enumerate(arrivals):
        now = arrival.request.arrival
        finished = [f for sim in sims for f in sim.advance(now)]
        while degrades and degrades[0].at <= now:
            shift = degrades.pop(0)
            engines[shift.pod].slowdown = shift.factor
        if now >= next_scrape:
            for view, sim in zip(views, sims, strict=True):
                view.scraped, view.scraped_at = scrape(sim.engine, sim.sidecar), now
                view.placed_since_scrape = view.placed_tokens_since_scrape = 0
            next_scrape = now + scrape_interval_s
        if finished:
            finished.sort(key=lambda f: f.finish_time)
            reported = [_outcome(f, dispatched, pods) for f in finished]
            result.outcomes.extend(reported)
            policy.learn(reported, now)
        placement = policy.choose(arrival.sent, views, now)
        if placement is None:
            result.shed.append(arrival)
        else:
            _dispatch(arrival, placement, views[placement.pod], sims[placement.pod], dispatched)
        if progress is not None:
            progress(done + 1)
    last = sorted((f for sim in sims for f in sim.drain()), key=lambda f: f.finish_time)
    result.outcomes += [_outcome(f, dispatched, pods) for f in last]
    return result


def _view(spec: PodSpec, sim: _Pod) -> PodView:
    """A pod as its router first sees it: one scrape, the cache size vLLM reports, no index."""
    engine = sim.engine
    block = engine.config.block_size
    return PodView(
        spec,
        scrape(engine, sim.sidecar),
        0.0,
        engine.kv.total_blocks * block,
        block,
        PrefixIndex(engine.kv.total_blocks),
    )


def _dispatch(
    arrival: Arrival,
    placement: Placement,
    view: PodView,
    sim: _Pod,
    dispatched: dict[str, tuple[int, ServerState, Placement]],
) -> None:
    """Send the request to its pod: the sidecar counts it, the router indexes its prefix."""
    request = arrival.request
    counts = sim.sidecar.arrive(request.request_id, request.prompt_tokens)
    dispatched[request.request_id] = (placement.pod, view.scraped.server_state(*counts), placement)
    sim.engine.submit(request)
    view.prefix.add(request.block_hashes[: request.prompt_tokens // view.block_size])
    view.placed_since_scrape += 1
    view.placed_tokens_since_scrape += request.prompt_tokens


def _outcome(
    finished: FinishedRequest,
    dispatched: dict[str, tuple[int, ServerState, Placement]],
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
