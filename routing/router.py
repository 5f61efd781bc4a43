"""The routing decision: place a request on a pod, shed it, or queue it (batch priority).

All candidates are predicted in one vectorised call on their in-flight-adjusted states.
A disaggregated pool (any prefill- or decode-only pod) is decided in two phases: the
prefill pod is chosen for TTFT and the decode pod for TPOT. A candidate whose own
accelerator model is still cold is answered by the global model (it learns from every
type, with hardware descriptors); only while some candidate has nothing learned for it
anywhere (the physics prior answers) can predictions not tell pods apart, so a load
heuristic places the request and nothing is shed on a guess.

A router never knows how many tokens a request will generate: it plans with the caller's
hint when given, else with the output-length distribution learned for the request's served
model, prompt size and cap (``models/output_length.py``), both cut at ``max_tokens``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Literal

import numpy as np

from latency_oracle.features.engineering import (
    NUMBER_FIELDS,
    ROLE_CODES,
    RequestColumns,
    record_numbers,
)
from latency_oracle.features.schema import PodRole
from latency_oracle.models.output_length import LEVELS, P50, P90
from latency_oracle.models.registry import PRIOR_MODEL, ModelRegistry, PredictionBatch
from latency_oracle.routing.candidate_report import CandidateReport, candidate_report
from latency_oracle.routing.inflight_ledger import (
    DECODE_TOKENS,
    LOAD_FIELDS,
    PREFILL_TOKENS,
    RUNNING,
    WAITING,
    InFlightLedger,
)
from latency_oracle.routing.phase import (
    Phase,
    relative_headroom,
    retry_after_ms,
    slo_index,
    with_attainment,
)
from latency_oracle.routing.policies import LeastLoaded, PhaseView, make_router_policy
from latency_oracle.routing.route_request import CandidatePod, RouteRequest
from latency_oracle.settings import Settings

Decision = Literal["place", "shed", "queue"]
MIN_RETRY_AFTER_MS = 1.0
# The request number each column of a load delta (the ledger's) adds to.
_LOADED_NUMBER = {
    WAITING: "waiting_requests",
    RUNNING: "running_requests",
    PREFILL_TOKENS: "prefill_tokens_in_flight",
    DECODE_TOKENS: "decode_tokens_in_flight",
}
_LOAD_NUMBERS = [NUMBER_FIELDS.index(_LOADED_NUMBER[load]) for load in range(LOAD_FIELDS)]
_MODEL_OF = attrgetter("model")


class NoCandidates(LookupError):
    """The request has nowhere it could go (no pods, or half a disaggregated pool)."""


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


class Router:
    """Decides placements; owns the in-flight ledger, so one Router serves a whole process."""

    def __init__(
        self, models: ModelRegistry, settings: Settings, rng: random.Random | None = None
    ) -> None:
        self.models = models
        self.settings = settings
        self.ledger = InFlightLedger(settings.route_inflight_ttl_s)
        self._rng = rng or random.Random()
        self._headline = models.config.headline_index
        # Decide-then-reserve must be atomic, or concurrent calls decide on the same state.
        self._lock = threading.Lock()

    def route(self, request: RouteRequest, pods: Sequence[CandidatePod]) -> RouteDecision:
        """Place, queue or shed one request among candidate pods, against its SLOs.

        Every candidate's TTFT and TPOT quantiles are predicted in one batch, on the pod's
        last scraped state plus the work this router placed there since; the policy picks
        among the pods likely to meet the SLO, and the placement is reserved in the
        in-flight ledger until the pod's next scrape shows it.

        Parameters
        ----------
        request
            What the client sent: prompt tokens, ``max_tokens`` (0: no cap), served model,
            SLOs (``slo.ttft_ms``, ``slo.tpot_ms`` at ``slo.quantile``), priority, and
            optionally a policy and headroom mode overriding the settings'.
        pods
            The candidates with their state as last scraped (names unique per call).

        Returns
        -------
        RouteDecision
            ``decision`` (place, queue or shed), the ``pod`` (and ``decode_pod`` when the
            pool is disaggregated), the ``reason`` in words, whether the models were
            cold, a ``retry_after_ms`` when shed or queued, and a report per candidate.

        Raises
        ------
        NoCandidates
            When ``pods`` is empty.

        Examples
        --------
        >>> import random
        >>> from latency_oracle.features import Observation
        >>> from latency_oracle.models import ModelConfig, ModelRegistry
        >>> from latency_oracle.routing import CandidatePod, RouteRequest, Router
        >>> from latency_oracle.settings import Settings
        >>> registry = ModelRegistry(ModelConfig())
        >>> _ = registry.learn([  # TTFT grows with the prompt and with the running batch
        ...     Observation(accelerator="H100", input_tokens=n, running_requests=n % 16,
        ...                 output_tokens=64, ttft_ms=20 + n / 50 + 8 * (n % 16), tpot_ms=12.0)
        ...     for n in range(100, 4000, 8)
        ... ])
        >>> router = Router(registry, Settings(), random.Random(0))
        >>> pods = [
        ...     CandidatePod(pod="busy", accelerator="H100", running_requests=12),
        ...     CandidatePod(pod="idle", accelerator="H100", running_requests=1),
        ... ]
        >>> decision = router.route(RouteRequest(input_tokens=2000, slo={"ttft_ms": 500}), pods)
        >>> decision.decision, decision.pod, decision.cold
        ('place', 'idle', False)
        >>> impossible = RouteRequest(input_tokens=2000, slo={"ttft_ms": 5})
        >>> router.route(impossible, pods).decision
        'shed'
        """
        if not pods:
            raise NoCandidates("no candidate pods")
        with self._lock:
            names = [p.pod for p in pods]
            pending = self.ledger.pending(names, [p.scraped_at for p in pods])
            columns = _columns(request, pods, names, pending)
            phases = _phases(columns.role)
            q = slo_index(request.slo, self.models.config.quantiles, self._headline)
            served = _served_models(request, pods)
            batch = self.models.predict(
                columns, through_headline=q <= self._headline, served_models=served
            )
            lengths = self._output_tokens(request, served)
            decision, placed = self._decide(
                request, pods, phases, columns, batch, pending, q, lengths
            )
            self._reserve(request, columns, placed)  # nothing when shed or queued
        return decision

    def _output_tokens(self, request: RouteRequest, served: np.ndarray) -> np.ndarray:
        """The request's output tokens at ``LEVELS``: the caller's hint (one point), else
        learned for its served model; one row when one model serves every candidate (the
        usual case), else one per candidate."""
        cap = request.max_tokens
        if request.output_tokens_hint is not None:
            hint = min(request.output_tokens_hint, cap or request.output_tokens_hint)
            return np.full(len(LEVELS), float(hint))
        lengths = self.models.output_lengths
        names = served.tolist()
        if names.count(names[0]) == len(names):
            return lengths.predict_one(names[0], request.input_tokens, cap)
        n = len(names)
        every = np.full(n, request.input_tokens), np.full(n, cap)
        return lengths.predict(served, *every).tokens

    def _decide(
        self,
        request: RouteRequest,
        pods: Sequence[CandidatePod],
        phases: list[Phase],
        columns: RequestColumns,
        batch: PredictionBatch,
        pending: np.ndarray,
        q: int,
        lengths: np.ndarray,
    ) -> tuple[RouteDecision, list[tuple[Phase, int]]]:
        """The decision, and the (phase, pod position) of each placement it made (none
        when it sheds or queues); ``q`` indexes the quantile the SLOs bind and
        ``lengths`` are the request's output tokens at ``LEVELS``, equally likely (one row,
        or one per pod)."""
        ttft, tpot = batch.ttft_ms[:, q], batch.tpot_ms[:, q]
        # Only a candidate that nothing has been learned for (the physics prior answers
        # it) cannot be compared: a cold type is answered by the global model.
        cold = PRIOR_MODEL in batch.ttft_model or PRIOR_MODEL in batch.tpot_model
        name = "heuristic" if cold else request.policy or self.settings.route_policy
        mode = request.headroom_mode or self.settings.route_headroom_mode
        policy = make_router_policy(name, mode, self.settings.route_tie_tolerance)
        judged = not isinstance(policy, LeastLoaded)
        slo = request.slo
        per_pod = lengths.ndim == 2  # candidates serving different models
        expected = lengths.sum(axis=-1) / lengths.shape[-1]  # equally likely: the mean
        eligible_any = np.zeros(len(pods), dtype=bool)
        placed: list[tuple[Phase, int]] = []
        reasons: list[str] = []
        retry_ms = 0.0
        for phase in phases:
            m = phase.members
            phase_ttft, phase_tpot = ttft[m], tpot[m]
            headroom = relative_headroom(
                (phase_ttft, slo.ttft_ms if phase.ttft else None),
                (phase_tpot, slo.tpot_ms if phase.tpot else None),
            )
            eligible = np.ones(len(phase_ttft), bool) if headroom is None else headroom >= 0
            eligible_any[m] |= eligible
            decode_ms = phase_tpot * (expected[m] if per_pod else expected)
            if judged and not eligible.any():
                wait = retry_after_ms(phase, phase_ttft, phase_tpot, decode_ms, request)
                retry_ms = max(retry_ms, wait)
                continue
            if phase.ttft and phase.tpot:
                latency = phase_ttft + decode_ms
            else:
                latency = phase_ttft if phase.ttft else decode_ms
            phase_columns = columns if isinstance(m, slice) else columns.take(m)
            first = phase_ttft if phase.ttft else None
            view = PhaseView(phase.name, eligible, headroom, latency, first, phase_columns)
            if name == "slo-attainment":
                phase_lengths = lengths[m] if per_pod else lengths
                view = with_attainment(view, phase, batch, q, request, phase_lengths)
            elif cold and phase.ttft:
                view = replace(view, prefill_ms=phase_ttft)
            choice = policy.choose(view, self._rng)
            position = phase.position(choice.index)
            placed.append((phase, position))
            reasons.append(f"{phase.name} {pods[position].pod}: {choice.reason}")
        report = candidate_report(
            columns, ttft, tpot, slo, eligible_any, batch.cold, pending, lengths[..., [P50, P90]]
        )
        quantile = self.models.config.quantiles[q]
        if len(placed) < len(phases):
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
            ), []
        chosen = [pods[position].pod for _, position in placed]
        prefix = f"models cold ({_untrained_accelerators(columns, batch)}); " if cold else ""
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
        ), placed

    def _reserve(
        self, request: RouteRequest, columns: RequestColumns, placed: list[tuple[Phase, int]]
    ) -> None:
        for phase, i in placed:
            delta = np.zeros(LOAD_FIELDS)
            if phase.ttft:
                delta[WAITING] = 1.0
                delta[PREFILL_TOKENS] = columns.input_tokens[i] - columns.cached_tokens[i]
            else:
                delta[RUNNING] = 1.0
            if phase.tpot:
                delta[DECODE_TOKENS] = request.input_tokens
            self.ledger.place(str(columns.pod[i]), delta)


def _phases(roles: np.ndarray) -> list[Phase]:
    """One phase for a pool of ``both`` pods, else prefill then decode (``roles``: codes)."""
    if (roles == ROLE_CODES[PodRole.BOTH]).all():
        return [Phase("pod", slice(None), ttft=True, tpot=True)]
    prefill = np.flatnonzero(roles != ROLE_CODES[PodRole.DECODE])
    decode = np.flatnonzero(roles != ROLE_CODES[PodRole.PREFILL])
    if not len(prefill) or not len(decode):
        missing = "prefill" if not len(prefill) else "decode"
        raise NoCandidates(f"disaggregated pool has no {missing} pods among the candidates")
    return [
        Phase("prefill", prefill, ttft=True, tpot=False),
        Phase("decode", decode, ttft=False, tpot=True),
    ]


def _columns(
    request: RouteRequest, pods: Sequence[CandidatePod], names: list[str], pending: np.ndarray
) -> RequestColumns:
    """The request on every pod, with placements the pod's scrape has not seen added."""
    numbers = record_numbers(
        pods, input_tokens=float(request.input_tokens), max_tokens=float(request.max_tokens)
    )
    if pending.any():
        numbers[:, _LOAD_NUMBERS] += pending
    return RequestColumns(
        np.array([p.accelerator for p in pods], dtype=object),
        np.array(names, dtype=object),
        numbers,
    )


def _served_models(request: RouteRequest, pods: Sequence[CandidatePod]) -> np.ndarray:
    """Each candidate's served model: its own, else the one the request names."""
    models = list(map(_MODEL_OF, pods))  # map with attrgetter: no Python frame per pod
    first = models[0]
    if models.count(first) == len(models):  # one pool, one model (list.count runs in C)
        return np.full(len(models), first or request.model, dtype=object)
    return np.array([m or request.model for m in models], dtype=object)


def _untrained_accelerators(columns: RequestColumns, batch: PredictionBatch) -> str:
    """Accelerator types the physics prior answered (nothing learned for them anywhere)."""
    untrained = [
        t == PRIOR_MODEL or p == PRIOR_MODEL
        for t, p in zip(batch.ttft_model, batch.tpot_model, strict=True)
    ]
    return ", ".join(sorted({str(a) for a in columns.accelerator[untrained]}))
