"""Request streams for the cluster evaluation: real trace replay, synthetic arrivals, shifts.

A workload is a list of ``Arrival`` in time order. A replayed trace keeps its real
arrival times and token counts (``load`` divides the times, so 2.0 replays an hour in
half an hour); synthetic workloads draw arrivals and lengths from a seed. Shifts are
scheduled changes mid-run: a load surge and a switch to long prompts rewrite the
arrivals, a degraded pod is applied by the cluster at its time (``Shift.slowdown``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from latency_oracle.sim.engine_records import SimRequest, shared_prefix_hashes
from latency_oracle.sim.gpu_profiles import shared_data_dir

from latency_oracle.settings import Settings

AZURE_TRACE = "traces/azure_code_2023.csv"
ARXIV_LENGTHS = "traces/arxiv_summarization_lengths.csv"
WorkloadName = Literal["azure", "poisson", "bursty", "chat", "long-prompt", "conversation"]
WORKLOADS: tuple[str, ...] = ("azure", "poisson", "bursty", "chat", "long-prompt", "conversation")
ShiftKind = Literal["surge", "long-prompts", "degrade"]

# Column names a trace may use for each field (the first present wins).
_ARRIVAL = ("arrived_at", "arrival", "arrival_time", "timestamp")
_INPUT = ("num_prefill_tokens", "input_tokens", "prompt_tokens")
_OUTPUT = ("num_decode_tokens", "output_tokens", "completion_tokens")
_SESSION = ("session_id", "session", "conversation_id")


class TraceError(ValueError):
    """A trace row that cannot be replayed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request of a workload; ``session`` groups requests sharing a prompt prefix."""

    request: SimRequest
    session: str | None = None


@dataclass(frozen=True, slots=True)
class TraceRow:
    arrival: float
    input_tokens: int
    output_tokens: int
    session: str | None


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


def read_trace(path: Path) -> list[TraceRow]:
    """Rows of a CSV (header row) or JSONL (one object per line) trace, in arrival order."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = list(_jsonl_rows(path))
    else:
        rows = list(_csv_rows(path))
    if not rows:
        raise TraceError(f"{path}: no requests")
    return sorted(rows, key=lambda row: row.arrival)


def _csv_rows(path: Path) -> Iterable[TraceRow]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        for line, record in enumerate(reader, start=2):
            yield _row(path, line, record)


def _jsonl_rows(path: Path) -> Iterable[TraceRow]:
    with path.open() as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except ValueError as exc:
                raise TraceError(f"{path}:{line}: not JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise TraceError(f"{path}:{line}: expected a JSON object")
            yield _row(path, line, record)


def _row(path: Path, line: int, record: dict[str, object]) -> TraceRow:
    where = f"{path}:{line}"
    arrival = _number(where, record, _ARRIVAL, float)
    input_tokens = _number(where, record, _INPUT, int)
    output_tokens = _number(where, record, _OUTPUT, int)
    if not np.isfinite(arrival) or arrival < 0:
        raise TraceError(f"{where}: arrival time must be a finite number >= 0, got {arrival}")
    if input_tokens < 1 or output_tokens < 1:
        raise TraceError(f"{where}: input and output tokens must be >= 1")
    session = next((record[k] for k in _SESSION if record.get(k) not in (None, "")), None)
    return TraceRow(arrival, input_tokens, output_tokens, None if session is None else str(session))


def _number(where: str, record: dict[str, object], names: Sequence[str], kind: type) -> float:
    name = next((n for n in names if n in record), None)
    if name is None:
        raise TraceError(f"{where}: missing column, expected one of {', '.join(names)}")
    value = record[name]
    try:
        number = kind(float(value)) if kind is int else kind(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise TraceError(f"{where}: {name}={value!r} is not a number") from exc
    if kind is int and float(value) != number:  # type: ignore[arg-type]
        raise TraceError(f"{where}: {name}={value!r} is not a whole number of tokens")
    return number


def replay(rows: Sequence[TraceRow], load: float = 1.0, prefix_tokens: int = 0) -> list[Arrival]:
    """A trace as arrivals, time compressed by ``load``; sessions share ``prefix_tokens``."""
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
            f"r{i}", (row.arrival - start) / load, row.input_tokens, row.output_tokens, hashes
        )
        arrivals.append(Arrival(request, row.session))
    return arrivals


def azure_trace(settings: Settings | None = None) -> Path:
    return shared_data_dir(settings) / AZURE_TRACE


def arxiv_lengths(settings: Settings | None = None) -> np.ndarray:
    """(n, 2) prompt and output token counts of arXiv summarization requests."""
    with (shared_data_dir(settings) / ARXIV_LENGTHS).open(newline="") as handle:
        rows = [
            (int(r["num_prefill_tokens"]), int(r["num_decode_tokens"]))
            for r in csv.DictReader(handle)
        ]
    return np.array(rows, dtype=np.int64)


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
        return _chat_sessions(times, lengths, rng)
    return [
        Arrival(SimRequest(f"r{i}", float(t), int(p), int(o)))
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


def _chat_sessions(times: np.ndarray, lengths: np.ndarray, rng: np.random.Generator):
    """Turns of a few dozen conversations; a turn's prompt extends its session's history.

    Every turn shares the session's system prompt plus earlier turns as a cached prefix:
    the workload where prefix affinity should pay.
    """
    sessions = rng.integers(0, CHAT_SESSIONS, len(times))
    history: dict[int, int] = {}
    arrivals = []
    for i, (t, session, (prompt, output)) in enumerate(zip(times, sessions, lengths, strict=True)):
        prefix = history.get(int(session), CHAT_SYSTEM_PROMPT_TOKENS)
        total = min(prefix + int(prompt) // 4 + 1, 8_000)
        hashes = shared_prefix_hashes(f"s{session}", min(prefix, total - 1))
        history[int(session)] = min(total + int(output), 6_000)
        request = SimRequest(f"r{i}", float(t), total, int(output), hashes)
        arrivals.append(Arrival(request, f"s{session}"))
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
        arrival.request, prompt_tokens=int(lengths[0]), max_tokens=int(lengths[1]), block_hashes=()
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
