"""What ``/readyz`` says, for the predictor and the trainer alike.

Both processes learn into model sets with guarded learner slots, and a failed slot must
show the same way on either (the learner guard's promise), so the verdict, the failed-slot
problems and the HTTP answer are decided here once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from latency_oracle.features.native import compute_paths
from latency_oracle.models.status import KeyStatus

HTTP_OK = 200
HTTP_SERVICE_UNAVAILABLE = 503


@dataclass(frozen=True, slots=True)
class Readiness:
    """``ready``, ``degraded`` (doing its job, but something is wrong) or ``not_ready``."""

    status: str
    problems: list[str]

    @classmethod
    def judge(cls, blockers: Sequence[str], problems: Sequence[str]) -> Readiness:
        """Not ready while anything blocks the process's job; degraded while any problem lasts."""
        if blockers:
            return cls("not_ready", [*blockers, *problems])
        return cls("degraded" if problems else "ready", list(problems))

    @property
    def serving(self) -> bool:
        return self.status != "not_ready"

    @property
    def http_status(self) -> int:
        """A degraded process still answers 200: probes must not pull what still works."""
        return HTTP_OK if self.serving else HTTP_SERVICE_UNAVAILABLE

    def body(self) -> dict[str, object]:
        """The verdict, its problems, and which inner loops run compiled: a process on the
        numpy fallback serves correctly (so it stays ready), only slower, and says so."""
        return {"status": self.status, "problems": self.problems, "compute": compute_paths()}


def failed_learners(statuses: Iterable[KeyStatus]) -> list[str]:
    """One problem per failed learner slot, naming the key, the learner and its error.

    Read from published statuses, never the live model sets the learning thread mutates.
    """
    return [problem for status in statuses for problem in status.problems()]
