"""The routing decision: place a request on a pod, shed it, or queue it (batch priority).

All candidates are predicted in one vectorised call on their in-flight-adjusted states.
A disaggregated pool (any prefill- or decode-only pod) is decided in two phases: the
prefill pod is chosen for TTFT and the decode pod for TPOT. While any candidate's model
is cold, predictions cannot tell pods apart reliably, so a load heuristic places the
request and nothing is shed on a guess.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from typing_extensions import TypedDict  # pydantic reads TypedDicts from here before 3.12

from features.engineering import NUMBER_FIELDS, ROLE_CODES, RequestColumns, number_rows
from features.schema import PodRole
from latency_oracle.settings import Settings
from models.registry import ModelRegistry, PredictionBatch
from predictor.routing.inflight import (
    DECODE_TOKENS,
    LOAD_FIELDS,
    PREFILL_TOKENS,
    RUNNING,
    WAITING,
    InFlightLedger,
)
from predictor.routing.policies import LeastLoaded, PhaseView, make_policy
from predictor.routing.schema import CandidatePod, RouteRequest, Slo

Decision = Literal["place", "shed", "queue"]
MIN_RETRY_AFTER_MS = 1.0
# Plain strings: the enum's ``.value`` is a Python-level property, and serialising the enum
# itself takes pydantic-core's slow path.
_ROLE_NAMES = {role: role.value for role in PodRole}
# The request number each column of a load delta (the ledger's) adds to.
_LOADED_NUMBER = {
    WAITING: "waiting_requests",
    RUNNING: "running_requests",
    PREFILL_TOKENS: "prefill_tokens_in_flight",
    DECODE_TOKENS: "decode_tokens_in_flight",
}
_LOAD_NUMBERS = [NUMBER_FIELDS.index(_LOADED_NUMBER[load]) for load in range(LOAD_FIELDS)]


class NoCandidates(LookupError):
    """The request has nowhere it could go (no pods, or half a disaggregated pool)."""


class CandidateReport(TypedDict):
    """One candidate of a decision, at the headline quantile: headroom is the SLO minus the
    prediction (null without that SLO); placements are this router's since the pod's scrape."""

    pod: str
    role: str
    accelerator: str
    ttft_ms: float
    tpot_ms: float
    ttft_headroom_ms: float | None
    tpot_headroom_ms: float | None
    meets_slo: bool
    cold: bool
    placed_since_scrape: float


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The answer of ``POST /v1/route`` (typed, so it is documented and serialised by schema:
    a fifth faster than inferring 64 candidates' types on every call)."""

    decision: Decision
    pod: str | None  # where to send the request (the prefill pod when disaggregated)
    decode_pod: str | None  # set only when the pool is disaggregated
    reason: str
    policy: str
    cold: bool
    retry_after_ms: float | None
    quantile: float
    candidates: list[CandidateReport]


@dataclass(frozen=True, slots=True)
class _Phase:
    """Candidates of one placement (indices into the pods) and the targets it is judged on."""

    name: str
    members: np.ndarray
    ttft: bool
    tpot: bool


class Router:
    """Decides placements; owns the in-flight ledger, so one Router serves a whole process."""

    def __init__(
        self, models: ModelRegistry, settings: Settings, rng: random.Random | None = None
    ) -> None:
        self.models = models
        self.settings = settings
        self.ledger = InFlightLedger(settings.route_inflight_ttl_s)
        self._rng = rng or random.Random()
        # Decide-then-reserve must be atomic, or concurrent calls decide on the same state.
        self._lock = threading.Lock()

    def route(self, request: RouteRequest, pods: Sequence[CandidatePod]) -> RouteDecision:
        if not pods:
            raise NoCandidates("no candidate pods")
        with self._lock:
            pending = self.ledger.pending([p.pod for p in pods], [p.scraped_at for p in pods])
            columns = _columns(request, pods, pending)
            phases = _phases(columns.role)
            batch = self.models.predict(columns, through_headline=True)
            decision = self._decide(request, pods, phases, columns, batch, pending)
            if decision.decision == "place":
                self._reserve(request, phases, columns, decision)
        return decision

    def _decide(
        self,
        request: RouteRequest,
        pods: Sequence[CandidatePod],
        phases: list[_Phase],
        columns: RequestColumns,
        batch: PredictionBatch,
        pending: np.ndarray,
    ) -> RouteDecision:
        q = self.models.config.headline_index
        ttft, tpot = batch.ttft_ms[:, q], batch.tpot_ms[:, q]
        cold = bool(batch.cold.any())
        name = "heuristic" if cold else request.policy or self.settings.route_policy
        mode = request.headroom_mode or self.settings.route_headroom_mode
        policy = make_policy(name, mode, self.settings.route_tie_tolerance)
        judged = not isinstance(policy, LeastLoaded)
        slo = request.slo
        decode_length = max(request.max_tokens, 1)
        queued = columns.prefill_tokens_in_flight + columns.input_tokens - columns.cached_tokens
        busy = columns.waiting_requests + columns.running_requests
        eligible_any = np.zeros(len(pods), dtype=bool)
        chosen: list[str] = []
        reasons: list[str] = []
        retry_ms = 0.0
        for phase in phases:
            m = phase.members
            headroom = _relative_headroom(
                len(m),
                (ttft[m], slo.ttft_ms if phase.ttft else None),
                (tpot[m], slo.tpot_ms if phase.tpot else None),
            )
            eligible = np.isnan(headroom) | (headroom >= 0)
            eligible_any[m] |= eligible
            if judged and not eligible.any():
                retry_ms = max(retry_ms, _retry_after_ms(phase, ttft[m], tpot[m], request))
                continue
            latency = (ttft[m] if phase.ttft else 0.0) + (
                tpot[m] * decode_length if phase.tpot else 0.0
            )
            view = PhaseView(phase.name, eligible, headroom, latency, queued[m], busy[m])
            choice = policy.choose(view, self._rng)
            chosen.append(pods[int(m[choice.index])].pod)
            reasons.append(f"{phase.name} {chosen[-1]}: {choice.reason}")
        report = _candidate_report(pods, ttft, tpot, slo, eligible_any, batch, pending)
        quantile = self.models.config.quantiles[q]
        if len(chosen) < len(phases):
            verdict: Decision = "queue" if request.priority == "batch" else "shed"
            return RouteDecision(
                verdict,
                None,
                None,
                f"no candidate meets the SLO at p{quantile * 100:g}; {verdict}",
                policy.name,
                cold,
                round(max(retry_ms, MIN_RETRY_AFTER_MS), 1),
                quantile,
                report,
            )
        prefix = f"models cold ({_cold_accelerators(columns, batch)}); " if cold else ""
        return RouteDecision(
            "place",
            chosen[0],
            chosen[1] if len(chosen) > 1 else None,
            prefix + "; ".join(reasons),
            policy.name,
            cold,
            None,
            quantile,
            report,
        )

    def _reserve(
        self,
        request: RouteRequest,
        phases: list[_Phase],
        columns: RequestColumns,
        decision: RouteDecision,
    ) -> None:
        targets = [(phases[0], decision.pod)]
        if decision.decode_pod is not None:
            targets.append((phases[1], decision.decode_pod))
        for phase, pod in targets:
            delta = np.zeros(LOAD_FIELDS)
            if phase.ttft:
                i = columns.pod.tolist().index(pod)
                delta[WAITING] = 1.0
                delta[PREFILL_TOKENS] = columns.input_tokens[i] - columns.cached_tokens[i]
            else:
                delta[RUNNING] = 1.0
            if phase.tpot:
                delta[DECODE_TOKENS] = request.input_tokens
            self.ledger.place(str(pod), delta)


def _phases(roles: np.ndarray) -> list[_Phase]:
    """One phase for a pool of ``both`` pods, else prefill then decode (``roles``: codes)."""
    if (roles == ROLE_CODES[PodRole.BOTH]).all():
        return [_Phase("pod", np.arange(len(roles)), ttft=True, tpot=True)]
    prefill = np.flatnonzero(roles != ROLE_CODES[PodRole.DECODE])
    decode = np.flatnonzero(roles != ROLE_CODES[PodRole.PREFILL])
    if not len(prefill) or not len(decode):
        missing = "prefill" if not len(prefill) else "decode"
        raise NoCandidates(f"disaggregated pool has no {missing} pods among the candidates")
    return [
        _Phase("prefill", prefill, ttft=True, tpot=False),
        _Phase("decode", decode, ttft=False, tpot=True),
    ]


def _columns(
    request: RouteRequest, pods: Sequence[CandidatePod], pending: np.ndarray
) -> RequestColumns:
    """The request on every pod, with placements the pod's scrape has not seen added.

    One pass over the pods, straight into the matrix of numbers: this is the hot path.
    """
    prompt, max_tokens = float(request.input_tokens), float(request.max_tokens)
    numbers = number_rows(
        (
            (
                prompt,
                p.prefix_cache_hit_tokens
                if p.prefix_cache_hit_tokens is not None
                else (p.prefix_cache_score or 0.0) * prompt,
                max_tokens,
                p.running_requests,
                p.waiting_requests,
                p.kv_cache_usage,
                p.prefill_tokens_in_flight,
                p.decode_tokens_in_flight,
                ROLE_CODES[p.role],
            )
            for p in pods
        ),
        len(pods),
    )
    numbers[:, _LOAD_NUMBERS] += pending
    return RequestColumns(
        np.array([p.accelerator for p in pods], dtype=object),
        np.array([p.pod for p in pods], dtype=object),
        numbers,
    )


def _relative_headroom(size: int, *targets: tuple[np.ndarray, float | None]) -> np.ndarray:
    """Worst (slo - prediction) / slo over the targets with an SLO; NaN where none has one."""
    parts = [(slo - predicted) / slo for predicted, slo in targets if slo is not None]
    if not parts:
        return np.full(size, np.nan)
    return np.minimum.reduce(parts)


def _retry_after_ms(
    phase: _Phase, ttft: np.ndarray, tpot: np.ndarray, request: RouteRequest
) -> float:
    """When the best pod of a failed phase should meet the SLO again.

    Queued prefill work drains in real time, so a TTFT overshoot of X ms is gone in about
    X ms; a TPOT miss lasts until the decodes it would share the batch with finish, about
    the predicted TPOT times the request's own decode length.
    """
    wait = np.zeros(len(ttft))
    if phase.ttft and request.slo.ttft_ms is not None:
        wait = np.maximum(wait, ttft - request.slo.ttft_ms)
    if phase.tpot and request.slo.tpot_ms is not None:
        missed = tpot > request.slo.tpot_ms
        wait = np.maximum(wait, np.where(missed, tpot * max(request.max_tokens, 1), 0.0))
    return float(wait.min())


def _candidate_report(
    pods: Sequence[CandidatePod],
    ttft: np.ndarray,
    tpot: np.ndarray,
    slo: Slo,
    eligible: np.ndarray,
    batch: PredictionBatch,
    pending: np.ndarray,
) -> list[CandidateReport]:
    ttft_slo, tpot_slo = slo.ttft_ms, slo.tpot_ms
    placed = pending[:, WAITING] + pending[:, RUNNING]
    return [
        {
            "pod": pod.pod,
            "role": _ROLE_NAMES[pod.role],
            "accelerator": pod.accelerator,
            "ttft_ms": ttft_ms,
            "tpot_ms": tpot_ms,
            "ttft_headroom_ms": None if ttft_slo is None else ttft_slo - ttft_ms,
            "tpot_headroom_ms": None if tpot_slo is None else tpot_slo - tpot_ms,
            "meets_slo": meets,
            "cold": cold,
            "placed_since_scrape": placed_count,
        }
        for pod, ttft_ms, tpot_ms, meets, cold, placed_count in zip(
            pods,
            ttft.tolist(),
            tpot.tolist(),
            eligible.tolist(),
            batch.cold.tolist(),
            placed.tolist(),
            strict=True,
        )
    ]


def _cold_accelerators(columns: RequestColumns, batch: PredictionBatch) -> str:
    return ", ".join(sorted({str(a) for a in columns.accelerator[batch.cold]}))
