"""Request streams for the cluster evaluation: real trace replay, synthetic arrivals, shifts.

A workload is a list of ``Arrival`` in time order. A replayed trace keeps its real
arrival times and token counts (``load`` divides the times, so 2.0 replays an hour in
half an hour); synthetic workloads draw arrivals and lengths from a seed. Every request
carries its client's ``max_tokens``: the trace's own column when it has one, else a cap
fixed per client (``sim/client_caps.py``); its output length is the model's, known to the
engine only. A router sees ``Arrival.sent``, the request as the client sent it. Shifts
are scheduled changes mid-run: a load surge and a switch to long prompts rewrite the
arrivals, a degraded pod is applied by the cluster at its time (``Shift.slowdown``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from latency_oracle.settings import Settings
from latency_oracle.sim.client_caps import client_cap, client_of
from latency_oracle.sim.engine.records import SimRequest, shared_prefix_hashes
from latency_oracle.sim.traces import TraceRow, arxiv_lengths, azure_trace, read_trace

WorkloadName = Literal["azure", "poisson", "bursty", "chat", "long-prompt", "conversation"]
WORKLOADS: tuple[str, ...] = ("azure", "poisson", "bursty", "chat", "long-prompt", "conversation")
ShiftKind = Literal["surge", "long-prompts", "degrade"]


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A request as its client sent it, all a router gets: no output length, which only
    the model knows when it ends its answer."""

    request_id: str
    arrival: float
    prompt_tokens: int
    max_tokens: int | None  # None: the client sent no cap
    block_hashes: tuple[Hashable, ...]  # the prompt's blocks (a router has the prompt)
    session: str | None


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request of a workload; ``session`` groups requests sharing a prompt prefix."""

    request: SimRequest
    session: str | None = None

    @property
    def sent(self) -> ClientRequest:
        """What the client sent: the request less its true output length."""
        r = self.request
        return ClientRequest(
            r.request_id, r.arrival, r.prompt_tokens, r.max_tokens, r.block_hashes, self.session
        )


@dataclass(frozen=True, slots=True)
class Shift:
    """A scheduled change at ``at`` seconds (of the replayed, load-scaled timeline)."""

    kind: ShiftKind
    at: float
    factor: float = 2.0  # surge: arrival-rate multiplier; degrade: step-time multiplier
    pod: int = 0  # degrade: index of the pod that slows down

    def describe(self) -> str:
        if self.kind == "surge":
            return f"load surge x{self.factor:g} from {self.at:.0f} s"
        if self.kind == "long-prompts":
            return f"switch to long (arXiv summarization) prompts from {self.at:.0f} s"
        return f"pod {self.pod} degraded to 1/{self.factor:g} speed from {self.at:.0f} s"


def replay(
    rows: Sequence[TraceRow], load: float = 1.0, prefix_tokens: int = 0, seed: int = 0
) -> list[Arrival]:
    """A trace as arrivals, time compressed by ``load``; sessions share ``prefix_tokens``.

    A row's cap is the trace's when it records one, else its client's (``TraceRow.sent_cap``).
    """
    if load <= 0:
        raise ValueError("load must be > 0")
    start = rows[0].arrival
    arrivals = []
    for i, row in enumerate(rows):
        hashes = ()
        if row.session is not None and prefix_tokens:
            shared = min(prefix_tokens, row.input_tokens)
            hashes = shared_prefix_hashes(row.session, shared)
        request = SimRequest(
            f"r{i}",
            (row.arrival - start) / load,
            row.input_tokens,
            row.output_tokens,
            hashes,
            row.sent_cap(i, seed),
        )
        arrivals.append(Arrival(request, row.session))
    return arrivals


DEFAULT_RATE = 2.6  # requests/s: the Azure trace's mean


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """A synthetic workload: arrival process, rate and length distribution."""

    name: WorkloadName
    rate: float = DEFAULT_RATE  # requests/s, before ``load``
    duration_s: float = 600.0
    seed: int = 0


def synthetic(spec: SyntheticSpec, load: float = 1.0, settings: Settings | None = None):
    """Arrivals of a synthetic workload; lengths from the Azure trace, except long-prompt
    (arXiv summarization) and conversation (a decode-heavy chat service's)."""
    rng = np.random.default_rng(spec.seed)
    rate = spec.rate * load
    times = _arrival_times(spec.name, rate, spec.duration_s, rng)
    n = len(times)
    if spec.name == "long-prompt":
        lengths = arxiv_lengths(settings)[rng.integers(0, len(arxiv_lengths(settings)), n)]
    elif spec.name == "conversation":
        lengths = _conversation_lengths(n, rng)
    else:
        trace = read_trace(azure_trace(settings))
        pool = np.array([(r.input_tokens, r.output_tokens) for r in trace])
        lengths = pool[rng.integers(0, len(pool), n)]
    if spec.name == "chat":
        return _chat_sessions(times, lengths, rng, spec.seed)
    return [
        Arrival(
            SimRequest(
                f"r{i}",
                float(t),
                int(p),
                int(o),
                (),
                client_cap(client_of(i, None, spec.seed), spec.seed),
            )
        )
        for i, (t, (p, o)) in enumerate(zip(times, lengths, strict=True))
    ]


# A conversation service's lengths (log-normal, as measured chat traces are): prompts of
# about a thousand tokens (history included), replies of a few hundred with a long tail.
CONVERSATION_PROMPT = (800.0, 0.8, 16, 6_000)  # median, sigma, min, max
CONVERSATION_OUTPUT = (150.0, 0.9, 1, 2_000)


def _conversation_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) prompt and output tokens: mean ~1,100 in and ~220 out, a decode-heavy mix."""
    columns = []
    for median, sigma, low, high in (CONVERSATION_PROMPT, CONVERSATION_OUTPUT):
        drawn = rng.lognormal(np.log(median), sigma, n)
        columns.append(np.clip(np.rint(drawn), low, high).astype(np.int64))
    return np.stack(columns, axis=1)


def _arrival_times(
    name: WorkloadName, rate: float, duration: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson; bursty = on-off (gamma-distributed gaps with shape 0.25: same mean, CV 2)."""
    n = max(int(rate * duration * 1.5) + 16, 16)
    if name == "bursty":
        gaps = rng.gamma(0.25, 1.0 / (0.25 * rate), n)
    else:
        gaps = rng.exponential(1.0 / rate, n)
    times = np.cumsum(gaps)
    return times[times < duration]


CHAT_SYSTEM_PROMPT_TOKENS = 512
CHAT_SESSIONS = 64


def _chat_sessions(
    times: np.ndarray, lengths: np.ndarray, rng: np.random.Generator, seed: int
) -> list[Arrival]:
    """Turns of a few dozen conversations; a turn's prompt extends its session's history.

    Every turn shares the session's system prompt plus earlier turns as a cached prefix:
    the workload where prefix affinity should pay. A session sends one cap throughout,
    and its history grows by the answers as served (cut at the cap).
    """
    sessions = rng.integers(0, CHAT_SESSIONS, len(times))
    history: dict[int, int] = {}
    arrivals = []
    for i, (t, session, (prompt, output)) in enumerate(zip(times, sessions, lengths, strict=True)):
        name = f"s{session}"
        cap = client_cap(client_of(i, name, seed), seed)
        prefix = history.get(int(session), CHAT_SYSTEM_PROMPT_TOKENS)
        total = min(prefix + int(prompt) // 4 + 1, 8_000)
        hashes = shared_prefix_hashes(name, min(prefix, total - 1))
        served = min(int(output), cap or int(output))
        history[int(session)] = min(total + served, 6_000)
        request = SimRequest(f"r{i}", float(t), total, int(output), hashes, cap)
        arrivals.append(Arrival(request, name))
    return arrivals


def apply_shifts(
    arrivals: list[Arrival],
    shifts: Sequence[Shift],
    settings: Settings | None = None,
    seed: int = 0,
) -> list[Arrival]:
    """The arrivals with surges and prompt-length switches applied (degrades are the cluster's).

    A surge of factor f compresses the gaps after its start by f; a long-prompt switch
    redraws the lengths of every later request from the arXiv summarization lengths.
    """
    rng = np.random.default_rng(seed)
    out = list(arrivals)
    for shift in sorted(shifts, key=lambda s: s.at):
        if shift.kind == "surge":
            out = [_surged(a, shift) for a in out]
        elif shift.kind == "long-prompts":
            lengths = arxiv_lengths(settings)
            out = [
                _long(a, lengths[rng.integers(0, len(lengths))])
                if a.request.arrival >= shift.at
                else a
                for a in out
            ]
    return sorted(out, key=lambda a: a.request.arrival)


def _surged(arrival: Arrival, shift: Shift) -> Arrival:
    t = arrival.request.arrival
    if t < shift.at:
        return arrival
    return replace(
        arrival, request=replace(arrival.request, arrival=shift.at + (t - shift.at) / shift.factor)
    )


def _long(arrival: Arrival, lengths: np.ndarray) -> Arrival:
    request = replace(
        arrival.request,
        prompt_tokens=int(lengths[0]),
        output_tokens=int(lengths[1]),
        block_hashes=(),
    )
    return replace(arrival, request=request)


def default_shifts(duration_s: float) -> list[Shift]:
    """The evaluation's shift scenario: surge at 1/4, long prompts at 1/2, a slow pod at 3/4.

    The surge ends the trace early (it compresses the rest), so the later shifts are placed
    on the surged timeline. The degraded pod is the first (an H100 in the default cluster).
    """
    surge_at = duration_s / 4
    return [
        Shift("surge", surge_at, factor=1.5),
        Shift("long-prompts", surge_at + (duration_s / 2 - surge_at) / 1.5),
        Shift("degrade", surge_at + (duration_s * 3 / 4 - surge_at) / 1.5, factor=2.0, pod=0),
    ]
