"""What a model is keyed by: accelerator type and latency target."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from latency_oracle.features.accelerators import GLOBAL_ACCELERATOR

__all__ = ["GLOBAL_ACCELERATOR", "ModelKey", "Target"]


class Target(StrEnum):
    """The two latencies of an LLM request, one per serving phase."""

    TTFT = "ttft"  # prefill: time to first token
    TPOT = "tpot"  # decode: time per output token


class ModelKey(NamedTuple):
    """One model set: an accelerator type (or the global model) and a target."""

    accelerator: str
    target: Target

    def label(self) -> str:
        return f"{self.accelerator}/{self.target.value}"
