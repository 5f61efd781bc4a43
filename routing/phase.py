"""One placement phase of a routing decision, and the SLO arithmetic it is judged by.

A pool of ``both`` pods is decided in one phase; a disaggregated pool in two (prefill for
TTFT, decode for TPOT). Each phase's candidates are judged on their headroom against the
SLOs, and when none has any, on how soon the best of them should meet them again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from latency_oracle.models.prediction_batch import PredictionBatch
from latency_oracle.routing.attainment import Predicted, tpot_outcomes
from latency_oracle.routing.policies import PhaseView
from latency_oracle.routing.route_request import RouteRequest, Slo

__all__ = ["Phase", "relative_headroom", "retry_after_ms", "slo_index", "with_attainment"]


@dataclass(frozen=True, slots=True)
class Phase:
    """Candidates of one placement and the targets it is judged on: the members are all
    pods (a slice, so every array of the phase is a view) or indices into them."""

    name: str
    members: slice | np.ndarray
    ttft: bool
    tpot: bool

    def position(self, index: int) -> int:
        """The pod position of the phase's ``index``-th candidate."""
        return index if isinstance(self.members, slice) else int(self.members[index])


def relative_headroom(*targets: tuple[np.ndarray, float | None]) -> np.ndarray | None:
    """Worst (slo - prediction) / slo over the targets with an SLO; None when none has one."""
    parts = [(slo - predicted) / slo for predicted, slo in targets if slo is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else np.minimum(*parts)


def retry_after_ms(
    phase: Phase,
    ttft: np.ndarray,
    tpot: np.ndarray,
    decode_ms: np.ndarray,
    request: RouteRequest,
) -> float:
    """When the best pod of a failed phase should meet the SLO again.

    Queued prefill work drains in real time, so a TTFT overshoot of X ms is gone in about
    X ms; a TPOT miss lasts until the decodes it would share the batch with finish, about
    the request's own expected decode time (``decode_ms``).
    """
    wait = np.zeros(len(ttft))
    if phase.ttft and request.slo.ttft_ms is not None:
        wait = np.maximum(wait, ttft - request.slo.ttft_ms)
    if phase.tpot and request.slo.tpot_ms is not None:
        missed = tpot > request.slo.tpot_ms
        wait = np.maximum(wait, np.where(missed, decode_ms, 0.0))
    return float(wait.min())


def slo_index(slo: Slo, quantiles: tuple[float, ...], headline: int) -> int:
    """The served quantile the SLOs bind: the smallest at or above the SLO's own quantile
    (p99 for a tail SLO), else the headline one."""
    if slo.quantile is None:
        return headline
    above = [i for i, level in enumerate(quantiles) if level >= slo.quantile - 1e-9]
    return above[0] if above else len(quantiles) - 1


def with_attainment(
    view: PhaseView,
    phase: Phase,
    batch: PredictionBatch,
    q: int,
    request: RouteRequest,
    lengths: np.ndarray,
) -> PhaseView:
    """The phase view with each pod's chance of meeting the SLOs and its decode harm, both
    over the request's likely output lengths (``lengths``: equally likely, one row or one
    per pod)."""
    slo = request.slo
    if slo.ttft_ms is None and slo.tpot_ms is None:
        return view
    levels = batch.quantiles
    ttft = Predicted(batch.ttft_ms[phase.members], levels, q)
    tpot = Predicted(batch.tpot_ms[phase.members], levels, q)
    n = len(view.latency_ms)
    attainment = np.ones(n)
    harm = None
    if phase.ttft and slo.ttft_ms is not None:
        attainment *= ttft.meet_probability(slo.ttft_ms)
    if phase.tpot and slo.tpot_ms is not None:
        met, harm = tpot_outcomes(view.columns, tpot, slo.tpot_ms, lengths)
        attainment *= met
    return replace(view, attainment=attainment, harm=harm)
