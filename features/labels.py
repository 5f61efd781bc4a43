"""What an observation can teach, and the rule that teaches each target once per request.

A request's outcome arrives in parts: its TTFT at the first token, its TPOT and its output
length when it ends. The sidecar sends a record at each moment under the request's one
observation id, so a model learns TTFT seconds before the request finishes. Each record
offers the labels it measured (``offered``); the store claims each label at most once per
id (``claim``), whichever record brings it first, and a learner learns only the labels
its record claimed. A retried write claims nothing new, and neither does the finish
record's TTFT when the first-token record already taught it.
"""

from __future__ import annotations

from enum import IntFlag
from typing import NamedTuple

from latency_oracle.features.schema import Observation

__all__ = ["Claimed", "Label", "claim", "offered", "record_key"]


class Label(IntFlag):
    """The targets a record teaches (the stream field ``t`` holds their sum)."""

    TTFT = 1
    TPOT = 2
    USAGE = 4  # the request's final output tokens (output-length learning)


ALL_LABELS = Label.TTFT | Label.TPOT | Label.USAGE


class Claimed(NamedTuple):
    """A stored record and the labels it is the first to bring for its id."""

    observation: Observation
    labels: Label


def offered(observation: Observation) -> Label:
    """The labels ``observation`` measured: its latencies, and its output length only when
    the request has ended (``finished``) with a count."""
    labels = Label(0)
    if observation.ttft_ms:
        labels |= Label.TTFT
    if observation.tpot_ms:
        labels |= Label.TPOT
    if observation.finished and observation.output_tokens > 0:
        labels |= Label.USAGE
    return labels


def claim(taken: Label, record: Label) -> Label:
    """The labels of ``record`` not ``taken`` yet by an earlier record of its id."""
    return record & ~taken & ALL_LABELS


def record_key(observation: Observation) -> tuple[str, int]:
    """What makes two writes the same record: its id and what it offers, so a request's
    first-token and finish records are two records, and a retry of either is one."""
    return observation.observation_id, int(offered(observation))
