"""The per-candidate report of a routing decision: what each pod was predicted to do.

Kept apart from the decision itself: it is presentation (headroom against the SLOs,
placements since the scrape), built once per decision from arrays the router already has.
"""

from __future__ import annotations

import numpy as np
from typing_extensions import TypedDict  # pydantic reads TypedDicts from here before 3.12

from latency_oracle.features.engineering import ROLE_CODES, RequestColumns
from latency_oracle.routing.inflight_ledger import RUNNING, WAITING
from latency_oracle.routing.route_request import Slo

# Role names by code (as the numbers matrix holds them): plain strings, since the enum's
# ``.value`` is a Python-level property and serialising the enum takes pydantic-core's
# slow path.
_ROLE_NAMES = {float(code): role.value for role, code in ROLE_CODES.items()}


class OutputTokens(TypedDict):
    """The request's output tokens as routing planned with them: the caller's hint, or the
    learned distribution's median and p90, cut at max_tokens."""

    p50: float
    p90: float


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
    output_tokens: OutputTokens


def candidate_report(
    columns: RequestColumns,
    ttft: np.ndarray,
    tpot: np.ndarray,
    slo: Slo,
    eligible: np.ndarray,
    cold: np.ndarray,
    pending: np.ndarray,
    output_tokens: np.ndarray,
) -> list[CandidateReport]:
    """One report per candidate, in the candidates' order, as plain JSON-ready values;
    ``output_tokens`` is (p50, p90), shared by every candidate, or one pair each."""
    n = len(columns)
    if output_tokens.ndim == 1:
        p50, p90 = output_tokens.tolist()
        lengths = [{"p50": p50, "p90": p90}] * n
    else:
        lengths = [{"p50": p50, "p90": p90} for p50, p90 in output_tokens.tolist()]
    no_slo = [None] * n
    ttft_headroom = no_slo if slo.ttft_ms is None else (slo.ttft_ms - ttft).tolist()
    tpot_headroom = no_slo if slo.tpot_ms is None else (slo.tpot_ms - tpot).tolist()
    placed = pending[:, WAITING] + pending[:, RUNNING]
    return [
        {
            "pod": pod,
            "role": _ROLE_NAMES[role],
            "accelerator": accelerator,
            "ttft_ms": ttft_ms,
            "tpot_ms": tpot_ms,
            "ttft_headroom_ms": ttft_room,
            "tpot_headroom_ms": tpot_room,
            "meets_slo": meets,
            "cold": cold_model,
            "placed_since_scrape": placed_count,
            "output_tokens": length,
        }
        for (
            pod,
            role,
            accelerator,
            ttft_ms,
            tpot_ms,
            ttft_room,
            tpot_room,
            meets,
            cold_model,
            placed_count,
            length,
        ) in zip(
            columns.pod.tolist(),
            columns.role.tolist(),
            columns.accelerator.tolist(),
            ttft.tolist(),
            tpot.tolist(),
            ttft_headroom,
            tpot_headroom,
            eligible.tolist(),
            cold.tolist(),
            placed.tolist(),
            lengths,
            strict=True,
        )
    ]
