"""A batch of observations made ready to learn: the plausible ones, as feature rows, with
each target's outcomes where its label was claimed, the batch's clock and its pairs.

``ModelRegistry.learn`` builds one per call, outside its lock, so the lock covers only
the model sets' own updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latency_oracle.features.engineering import RequestColumns, build_features
from latency_oracle.features.labels import Label
from latency_oracle.features.plausibility import ObservationBounds
from latency_oracle.features.schema import Observation
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, Target
from latency_oracle.models.prediction_batch import groups

__all__ = ["LearnBatch"]


@dataclass(frozen=True, slots=True)
class LearnBatch:
    """The plausible observations of one learn call, column-wise."""

    implausible: int  # observations left out: outside the plausibility bounds
    columns: RequestColumns
    served: np.ndarray  # each observation's served model (object array)
    features: np.ndarray
    outcomes: dict[Target, np.ndarray]  # per target, NaN where it is not learned
    lengths: list[Observation]  # those whose output length is learned
    arrived: np.ndarray  # seconds, each request's arrival
    finished: np.ndarray  # seconds, each request's finish
    # (accelerator, served model, row mask) per pair, in first-seen order; never "global":
    # a client cannot claim the global key.
    pairs: list[tuple[str, str, np.ndarray]]

    @classmethod
    def build(
        cls,
        observations: Sequence[Observation],
        labels: Sequence[Label],
        bounds: ObservationBounds,
    ) -> LearnBatch | None:
        """The batch of the plausible ``observations`` (None when none is): each learns
        the targets of its ``labels`` only."""
        kept = [
            (o, m) for o, m in zip(observations, labels, strict=True) if bounds.check(o) is None
        ]
        if not kept:
            return None
        plausible = [o for o, _ in kept]
        columns = RequestColumns.from_requests(plausible)
        served = np.array([o.model for o in plausible], dtype=object)
        finished = np.array([o.timestamp for o in plausible], dtype=np.float64)
        pairs = [
            (a, m, rows)
            for a, m, rows in _pair_rows(columns.accelerator, served)
            if a != GLOBAL_ACCELERATOR
        ]
        return cls(
            implausible=len(observations) - len(kept),
            columns=columns,
            served=served,
            features=build_features(columns),
            outcomes={
                Target.TTFT: _labelled(kept, Label.TTFT, "ttft_ms"),
                Target.TPOT: _labelled(kept, Label.TPOT, "tpot_ms"),
            },
            lengths=[o for o, m in kept if m & Label.USAGE],
            arrived=finished - np.array([_duration_s(o) for o in plausible]),
            finished=finished,
            pairs=pairs,
        )


def _labelled(kept: list[tuple[Observation, Label]], label: Label, field: str) -> np.ndarray:
    """Each observation's ``field`` where its ``label`` was claimed, else NaN (not learned)."""
    return np.array([(getattr(o, field) or np.nan) if m & label else np.nan for o, m in kept])


def _duration_s(observation: Observation) -> float:
    """Arrival to finish: the first token, then one TPOT per further output token."""
    ttft = observation.ttft_ms or 0.0
    decode = (observation.tpot_ms or 0.0) * max(observation.output_tokens - 1, 0)
    return (ttft + decode) / 1e3


def _pair_rows(accelerators: np.ndarray, served: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """A boolean row mask per (accelerator, served model) pair of a batch, in first-seen order."""
    n = len(accelerators)
    out = []
    for accelerator, model, rows in groups(accelerators, served):
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        out.append((accelerator, model, mask))
    return out
