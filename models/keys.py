"""What a model is keyed by: served model, accelerator type and latency target."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from latency_oracle.features.accelerators import GLOBAL_ACCELERATOR

__all__ = ["ANY_MODEL", "GLOBAL_ACCELERATOR", "ModelKey", "Target"]

# The served model of requests and observations that name none: their key is the
# accelerator-only key every deployment had before served models were a signal.
ANY_MODEL = ""


class Target(StrEnum):
    """The two latencies of an LLM request, one per serving phase."""

    TTFT = "ttft"  # prefill: time to first token
    TPOT = "tpot"  # decode: time per output token


class ModelKey(NamedTuple):
    """One model set: an accelerator type (or the global model), a target, a served model.

    ``model`` comes last with a default, so a key naming no model is the same tuple, label,
    metric labels and MLflow name as before served models were keyed.
    """

    accelerator: str
    target: Target
    model: str = ANY_MODEL

    def label(self) -> str:
        """The key as plain text: ``H100/ttft``, or ``H100/ttft/<served model>``.

        Accelerator names never contain ``/`` (they are normalised) and targets are fixed
        words, so the model, which may (``meta-llama/Llama-3.1-8B``), is all the rest.
        """
        base = f"{self.accelerator}/{self.target.value}"
        return f"{base}/{self.model}" if self.model else base

    @classmethod
    def parse(cls, label: str) -> ModelKey:
        """The key a ``label()`` names; ValueError when it names none."""
        accelerator, _, rest = label.partition("/")
        target, _, model = rest.partition("/")
        if not accelerator:
            raise ValueError(f"model key {label!r} names no accelerator")
        return cls(accelerator, Target(target), model)
