"""The store's live pods as route candidates, each pod state converted once.

A ``/v1/route`` call without candidates routes over every live pod of the model.
Validating a ``CandidatePod`` from a ``PodState`` costs ~3 us, which for 64 pods came to
0.19 ms a call, more than the decision itself. A pod's state only changes when the store
hands out a new state object for it (a new scrape, or a refresh of the Redis mirror), so
each conversion is kept until then.
"""

from __future__ import annotations

from latency_oracle.features.pod_state import PodState, PodStateStore
from latency_oracle.routing.route_request import CandidatePod


class LiveCandidates:
    """Live pods of a store as candidates; call it from one thread (the event loop)."""

    def __init__(self, store: PodStateStore, max_pods: int) -> None:
        self._store = store
        # Names of pods that left stay until the cache holds twice the pods a store keeps;
        # then it starts over, an amortised O(1) per conversion.
        self._capacity = 2 * max_pods
        self._converted: dict[str, tuple[PodState, CandidatePod]] = {}

    def __call__(self, model: str | None) -> list[CandidatePod]:
        states = self._store.live_pods(model)
        if len(self._converted) + len(states) > self._capacity:
            self._converted = {}
        converted = self._converted
        candidates = []
        for state in states:
            known = converted.get(state.pod)
            if known is None or known[0] is not state:
                known = converted[state.pod] = (state, as_candidate(state))
            candidates.append(known[1])
        return candidates

    def __len__(self) -> int:
        """Conversions kept."""
        return len(self._converted)


def as_candidate(state: PodState) -> CandidatePod:
    """A pod state as a candidate: what it was scraped as, and when."""
    fields = state.model_dump(exclude={"updated_at"})
    return CandidatePod.model_validate({**fields, "scraped_at": state.updated_at})
