"""Routing's mirror of the live pods in Redis: stale but served while Redis is down, and
still expiring on time."""

from __future__ import annotations

import time

import pytest
import redis

from latency_oracle.features.pod_state import PodState
from latency_oracle.predictor.pod_mirror import PodMirror


class _Source:
    """A pod state store that answers until it is told Redis went away."""

    def __init__(self, states: list[PodState]) -> None:
        self.states = states
        self.down = False

    def put_pod_state(self, state: PodState) -> None:
        self.states.append(state)

    def live_pods(self, model: str | None = None) -> list[PodState]:
        if self.down:
            raise redis.ConnectionError("Connection refused")
        return [s for s in self.states if model is None or s.model == model]


def test_outage_keeps_the_last_states_until_each_one_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    source = _Source(
        [
            PodState(pod="fresh", accelerator="H100", model="m", updated_at=now),
            PodState(pod="older", accelerator="A100", model="m", updated_at=now - 20),
            PodState(pod="other", accelerator="L4", model="x", updated_at=now),
        ]
    )
    errors: list[Exception] = []
    mirror = PodMirror(source, pod_ttl_s=30.0, on_error=errors.append)
    mirror.refresh()
    assert [p.pod for p in mirror.live_pods("m")] == ["fresh", "older"]

    source.down = True
    mirror.refresh()
    assert len(errors) == 1 and "refused" in (mirror.last_error or "")
    assert [p.pod for p in mirror.live_pods("m")] == ["fresh", "older"]  # stale, served

    later = time.monotonic() + 15.0  # "older" was scraped 35 s ago by then
    monkeypatch.setattr(time, "monotonic", lambda: later)
    monkeypatch.setattr(time, "time", lambda: now - 86_400.0)  # a wall-clock step changes nothing
    assert [p.pod for p in mirror.live_pods("m")] == ["fresh"]
    assert mirror.failing_for_s() >= 15.0

    source.down = False
    mirror.refresh()
    assert mirror.last_error is None and mirror.failing_for_s() == 0.0
