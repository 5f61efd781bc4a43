"""Plausibility bounds on observations: what a healthy engine can physically report.

The schema's bounds reject what is malformed; these reject what is well-formed but cannot
be true of a working pod (a TTFT of hours, a TPOT of zero, more tokens than any context),
the typical output of a broken sidecar or clock. They are configurable because hardware
and models change, and they are applied at every door an observation comes in by: the
APIs reject such records with a 422 naming the field, and the learners skip (and count)
any that reached a stream another way, so one bad reporter cannot drag the quantiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from latency_oracle.features.schema import Observation


@dataclass(frozen=True, slots=True)
class Implausibility:
    """Which field of which item broke which bound."""

    index: int
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class ObservationBounds:
    max_ttft_ms: float = 600_000.0
    min_tpot_ms: float = 0.05
    max_tpot_ms: float = 10_000.0
    max_context_tokens: int = 2_097_152

    def check(self, observation: Observation, index: int = 0) -> Implausibility | None:
        """The first bound ``observation`` breaks, or None if it is plausible."""
        ttft, tpot = observation.ttft_ms, observation.tpot_ms
        if ttft is not None and ttft > self.max_ttft_ms:
            return Implausibility(index, "ttft_ms", f"above max_ttft_ms={self.max_ttft_ms:g}")
        if tpot is not None and tpot < self.min_tpot_ms:
            return Implausibility(index, "tpot_ms", f"below min_tpot_ms={self.min_tpot_ms:g}")
        if tpot is not None and tpot > self.max_tpot_ms:
            return Implausibility(index, "tpot_ms", f"above max_tpot_ms={self.max_tpot_ms:g}")
        if observation.input_tokens + observation.output_tokens > self.max_context_tokens:
            return Implausibility(
                index,
                "input_tokens",
                f"input plus output tokens above max_context_tokens={self.max_context_tokens}",
            )
        return None

    def problems(self, observations: Sequence[Observation]) -> list[Implausibility]:
        return [
            problem
            for i, obs in enumerate(observations)
            if (problem := self.check(obs, i)) is not None
        ]

    def keep_plausible(self, observations: Sequence[Observation]) -> list[Observation]:
        return [obs for obs in observations if self.check(obs) is None]


class ImplausibleObservations(ValueError):
    """A write carried implausible observations; none of the call was accepted."""

    def __init__(self, problems: list[Implausibility]) -> None:
        super().__init__(f"{len(problems)} implausible observation(s)")
        self.problems = problems
