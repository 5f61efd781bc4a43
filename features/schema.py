"""The typed records pods report and routers ask about, validated at the edge.

A prediction request is an observation minus its outcome, so both share one set of
field definitions: the bounds that keep a bad sidecar from poisoning a model are the same
bounds that reject a malformed prediction request.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from latency_oracle.features.accelerators import normalize_accelerator

MAX_TOKENS = 10_000_000
MAX_REQUESTS = 1_000_000
MAX_TTFT_MS = 3_600_000.0
MAX_TPOT_MS = 60_000.0

# Strict numbers: "12" or true is a client bug to reject, not a value to coerce.
TokenCount = Annotated[int, Strict(), Field(ge=0, le=MAX_TOKENS)]
RequestCount = Annotated[int, Strict(), Field(ge=0, le=MAX_REQUESTS)]
Number = Annotated[float, Strict()]
Accelerator = Annotated[
    str, Field(min_length=1, max_length=128), AfterValidator(normalize_accelerator)
]


class PodRole(StrEnum):
    """What a pod does in a (possibly disaggregated) serving pool."""

    BOTH = "both"
    PREFILL = "prefill"
    DECODE = "decode"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class PodIdentity(_Record):
    """Which pod, on which hardware, serving which model."""

    pod: str = Field("", max_length=253, description="Pod name.")
    accelerator: Accelerator = Field(description="Accelerator type, e.g. H100, MI300X, L4.")
    role: PodRole = Field(PodRole.BOTH, description="both, prefill or decode.")
    model: str = Field("", max_length=256, description="Served model name.")


class ServerState(_Record):
    """The engine's load when the request arrived (from the sidecar's last scrape)."""

    running_requests: RequestCount = 0
    waiting_requests: RequestCount = 0
    kv_cache_usage: Number = Field(0.0, ge=0.0, le=1.0, description="KV-cache use in [0, 1].")
    prefill_tokens_in_flight: TokenCount = 0
    decode_tokens_in_flight: TokenCount = 0


class RequestShape(_Record):
    """What the request asks of the engine."""

    input_tokens: TokenCount = Field(description="Prompt length in tokens.")
    prefix_cache_score: Number | None = Field(
        None, ge=0.0, le=1.0, description="Fraction of the prompt found in the prefix cache."
    )
    prefix_cache_hit_tokens: TokenCount | None = Field(
        None, description="Prompt tokens found in the prefix cache (wins over the score)."
    )
    output_tokens: TokenCount = Field(0, description="Output tokens generated (so far).")
    max_tokens: TokenCount = Field(0, description="max_tokens requested; 0 when unset.")

    @model_validator(mode="after")
    def _hits_within_prompt(self) -> Self:
        hits, tokens = self.prefix_cache_hit_tokens, self.input_tokens
        if hits is not None and tokens is not None and hits > tokens:
            raise ValueError("prefix_cache_hit_tokens cannot exceed input_tokens")
        return self


class PredictionRequest(PodIdentity, RequestShape, ServerState):
    """A candidate placement: the request on a pod in its current state."""


PROMPT_SIZE_FIELDS = ("input_tokens", "prompt_chars", "prompt_words")


class PromptSize(_Record):
    """A prompt's size in the unit its caller counts: exactly one of tokens, characters or
    words. Gateways and llm-d's endpoint picker do not tokenize; the predictor converts
    characters and words with the served model's learned ratio (``models.prompt_units``)."""

    input_tokens: TokenCount | None = Field(None, description="Prompt length in tokens.")
    prompt_chars: TokenCount | None = Field(
        None, description="Prompt length in characters, instead of input_tokens."
    )
    prompt_words: TokenCount | None = Field(
        None, description="Prompt length in whitespace-separated words, instead of input_tokens."
    )

    @model_validator(mode="after")
    def _one_prompt_size(self) -> Self:
        given = [name for name in PROMPT_SIZE_FIELDS if getattr(self, name) is not None]
        if len(given) == 1:
            return self
        # An error at the field: none given names input_tokens, several the second one.
        error = PydanticCustomError(
            "prompt_size",
            "give the prompt size as exactly one of input_tokens, prompt_chars, "
            "prompt_words (given: {given})",
            {"given": ", ".join(given) or "none"},
        )
        field = given[1] if given else "input_tokens"
        details = InitErrorDetails(type=error, loc=(field,), input=getattr(self, field))
        raise ValidationError.from_exception_data(type(self).__name__, [details])


class PredictionQuery(PromptSize, PredictionRequest):
    """A prediction request as callers send it: the prompt size in their unit. The
    predictor answers it as the ``PredictionRequest`` with the size in tokens."""


def _unset(value: object) -> bool:
    return value is None


class Observation(PredictionRequest):
    """One request as a pod saw it, with its measured latencies: at its end, or at its
    first token (``finished`` false), when only its TTFT is known yet."""

    observation_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex,
        min_length=1,
        max_length=128,
        description="Idempotency key: the request's id. Each target (TTFT, TPOT, output "
        "length) is learned at most once per id, whichever record brings it first.",
    )
    timestamp: Number = Field(
        default_factory=time.time,
        gt=0,
        description="Unix time of the record: the request's end, or its first token when "
        "not finished.",
    )
    # Fields at their defaults are left out of the JSON (``exclude_if``): a finished
    # record dumps as it did before they existed, so readers of older versions and code
    # that turns a dumped observation into a prediction request keep working.
    prompt_chars: TokenCount | None = Field(
        None,
        description="Characters of the prompt, when sent as text: with input_tokens, "
        "teaches the served model's tokens per character.",
        exclude_if=_unset,
    )
    prompt_words: TokenCount | None = Field(
        None,
        description="Whitespace-separated words of the prompt, when sent as text.",
        exclude_if=_unset,
    )
    finished: bool = Field(
        True,
        exclude_if=bool,
        description="The request has ended and output_tokens is its final count, which "
        "output-length learning needs. False: a record sent at the first token, or one "
        "whose client did not send the final count (llm-d's TPOT entries).",
    )
    ttft_ms: Number | None = Field(None, gt=0, le=MAX_TTFT_MS, description="Time to first token.")
    tpot_ms: Number | None = Field(
        None, gt=0, le=MAX_TPOT_MS, description="Time per output token after the first."
    )

    @model_validator(mode="after")
    def _outcome_present(self) -> Self:
        if self.ttft_ms is None and self.tpot_ms is None:
            raise ValueError("an observation needs ttft_ms, tpot_ms or both")
        if self.tpot_ms is not None and self.output_tokens < 2:
            raise ValueError("tpot_ms needs output_tokens >= 2 (TPOT is undefined below)")
        return self
