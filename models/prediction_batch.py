"""A vectorised answer, assembled from the per-key answers of its rows.

A batch's rows are grouped by (accelerator, served model); each group is answered by one
chain of models (``ModelRegistry._answer``), and the batch is put back together in row
order. Nearly every batch (a router's candidates, one request) is one group: then the
group's arrays are the batch's, with no copying.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latency_oracle.models.keys import ANY_MODEL, Target
from latency_oracle.models.model_set import served_quantiles

# Answers list their targets in this order (iterating the enum class itself would be a
# Python-level generator).
TARGETS = (Target.TTFT, Target.TPOT)


@dataclass(frozen=True, slots=True)
class PredictionBatch:
    """Quantiles in ms for n requests, and which model (and key) answered each."""

    quantiles: tuple[float, ...]
    ttft_ms: np.ndarray  # (n, q)
    tpot_ms: np.ndarray  # (n, q)
    ttft_model: list[str]  # (n,) learner@accelerator, or "prior"
    tpot_model: list[str]
    cold: np.ndarray  # (n,) bool: the request's own (accelerator, served model) is not trained
    # (n,) the label of the key that answered: its own (``H100/ttft/<model>``), the global
    # model scaled to its served model (``global/ttft/<model>``), the global one, or "prior".
    ttft_key: list[str]
    tpot_key: list[str]


@dataclass(frozen=True, slots=True)
class Answer:
    """One group's rows of a batch: log-ms quantiles, learner and key per target (in
    ``TARGETS`` order), and whether its own models were cold."""

    rows: slice | np.ndarray
    log_ms: list[np.ndarray]
    model: list[str]
    key: list[str]
    cold: bool


def groups(
    accelerators: np.ndarray, served_models: np.ndarray | None
) -> list[tuple[str, str, slice | np.ndarray]]:
    """Rows per (accelerator, served model); one slice when all rows share one (the hot case)."""
    names = accelerators.tolist()
    models = [ANY_MODEL] * len(names) if served_models is None else served_models.tolist()
    first, first_model = (names[0], models[0]) if names else ("", ANY_MODEL)
    # A list's count runs in C; == on object arrays does not.
    if names.count(first) == len(names) and models.count(first_model) == len(models):
        return [(str(first), str(first_model), slice(None))]
    pairs: dict[tuple[str, str], list[int]] = {}
    for row, pair in enumerate(zip(names, models, strict=True)):
        pairs.setdefault(pair, []).append(row)
    return [(str(a), str(m), np.array(rows)) for (a, m), rows in pairs.items()]


def assemble(answers: list[Answer], n: int, quantiles: tuple[float, ...]) -> PredictionBatch:
    """One batch from its groups' answers, each row where it came from."""
    if len(answers) == 1 and isinstance(answers[0].rows, slice):
        (answer,) = answers
        return PredictionBatch(
            quantiles=quantiles,
            ttft_ms=served_quantiles(answer.log_ms[0]),
            tpot_ms=served_quantiles(answer.log_ms[1]),
            ttft_model=[answer.model[0]] * n,
            tpot_model=[answer.model[1]] * n,
            cold=(np.ones if answer.cold else np.zeros)(n, dtype=bool),
            ttft_key=[answer.key[0]] * n,
            tpot_key=[answer.key[1]] * n,
        )
    log_ms = [np.empty((n, len(quantiles))) for _ in TARGETS]
    models = [np.empty(n, dtype=object) for _ in TARGETS]
    keys = [np.empty(n, dtype=object) for _ in TARGETS]
    cold = np.zeros(n, dtype=bool)
    for answer in answers:
        for t in range(len(TARGETS)):
            log_ms[t][answer.rows] = answer.log_ms[t]
            models[t][answer.rows] = answer.model[t]
            keys[t][answer.rows] = answer.key[t]
        cold[answer.rows] = answer.cold
    return PredictionBatch(
        quantiles=quantiles,
        ttft_ms=served_quantiles(log_ms[0]),
        tpot_ms=served_quantiles(log_ms[1]),
        ttft_model=models[0].tolist(),
        tpot_model=models[1].tolist(),
        cold=cold,
        ttft_key=keys[0].tolist(),
        tpot_key=keys[1].tolist(),
    )
