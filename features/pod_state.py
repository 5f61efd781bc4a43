"""The live state of one serving pod, as routers see candidates.

A pod's state lives only as long as it keeps reporting: every store forgets a pod
``pod_ttl_s`` after its last report, so a dead pod leaves the candidate list by itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from pydantic import Field

from latency_oracle.features.schema import PodIdentity, ServerState


class PodState(PodIdentity, ServerState):
    """The latest scrape of a pod's engine, with who and what the pod is."""

    pod: str = Field(min_length=1, max_length=253, description="Pod name.")
    updated_at: float = Field(
        default_factory=time.time, gt=0, description="Unix time of the scrape."
    )


class PodStateStore(Protocol):
    """Where sidecars put pod state and routers list the live pods."""

    def put_pod_state(self, state: PodState) -> None: ...

    def live_pods(self, model: str | None = None) -> list[PodState]: ...


def select_pods(states: Iterable[PodState], model: str | None) -> list[PodState]:
    """The pods serving ``model`` (all when None), in a stable order for routers."""
    return sorted((s for s in states if model is None or s.model == model), key=lambda s: s.pod)
