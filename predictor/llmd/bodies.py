"""llm-d's request and response bodies, and their conversion to and from model arrays.

The bodies are the Go client's structs (``latencypredictorclient/types.go``): lax numbers
as llm-d's own server takes them, unknown fields ignored, ``pod_type`` optional (the client
omits it when empty). They are ``TypedDict``s, so pydantic-core validates a call's raw
bytes straight into plain dicts, and ``request_columns`` reads those into the model's
arrays in one pass per column: no per-item model objects on the path llm-d's endpoint
picker takes for every request it schedules.

One extension: an optional ``pod`` (the pod's name) gives per-pod calibration to callers
that send it; the stock client does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from operator import contains, itemgetter
from typing import Annotated, Any, NotRequired

import numpy as np
from pydantic import BaseModel, Field
from pydantic_core import to_json
from typing_extensions import TypedDict

from latency_oracle.features.engineering import ROLE_CODES, RequestColumns
from latency_oracle.features.schema import MAX_REQUESTS, MAX_TOKENS, PodRole

MAX_BULK_REQUESTS = 10_000
MODEL_TYPE = "xgboost"  # tells the client to ask over HTTP: it has no coefficients to fetch
OBJECTIVE_TYPE = "quantile"

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Requests = Annotated[int, Field(ge=0, le=MAX_REQUESTS)]
Latency = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
_ROLE_CODES = {role.value: float(ROLE_CODES[role]) for role in (PodRole.PREFILL, PodRole.DECODE)}
# The raw numbers the model reads, and the llm-d field each is read from.
_REQUIRED = {
    "input_tokens": "input_token_length",
    "running_requests": "num_request_running",
    "waiting_requests": "num_request_waiting",
    "kv_cache_usage": "kv_cache_percentage",
}
# Native fields llm-d counts in words (its prompts' whitespace-separated words).
WORD_FIELDS = ("input_tokens", "prefill_tokens_in_flight")
_OPTIONAL = {
    "prefill_tokens_in_flight": "prefill_tokens_in_flight",
    "decode_tokens_in_flight": "decode_tokens_in_flight",
}


class LlmdRequest(TypedDict):
    """The client's ``PredictionRequest``."""

    kv_cache_percentage: Fraction
    input_token_length: Tokens
    num_request_waiting: Requests
    num_request_running: Requests
    num_tokens_generated: Tokens
    prefix_cache_score: Fraction
    pod_type: NotRequired[Annotated[str, Field(max_length=64)]]
    prefill_tokens_in_flight: NotRequired[Tokens]
    decode_tokens_in_flight: NotRequired[Tokens]
    pod: NotRequired[Annotated[str, Field(max_length=253)]]


class LlmdBulkRequest(TypedDict):
    requests: Annotated[list[LlmdRequest], Field(min_length=1, max_length=MAX_BULK_REQUESTS)]


class LlmdEntry(LlmdRequest):
    """The client's ``TrainingEntry``: a request plus what it measured (0 = not measured)."""

    actual_ttft_ms: Latency
    actual_tpot_ms: Latency
    timestamp: NotRequired[datetime]


class LlmdTrainingBatch(TypedDict):
    entries: list[LlmdEntry]


def request_columns(
    rows: Sequence[Any], accelerator: str, tokens_per_word: float = 1.0
) -> RequestColumns:
    """The model's raw numbers of validated llm-d requests (or entries), column by column.

    ``num_tokens_generated`` is not among them: tokens generated are an outcome, which the
    native API does not take as a feature either. llm-d counts prompts in words
    (``input_token_length`` and ``prefill_tokens_in_flight``): they become tokens at
    ``tokens_per_word`` (``OracleService.tokens_per_word``).
    """
    n = len(rows)
    numbers = {
        name: np.fromiter(map(itemgetter(key), rows), np.float64, n)
        for name, key in _REQUIRED.items()
    }
    numbers |= {name: _numbers(_column(rows, key, 0), n) for name, key in _OPTIONAL.items()}
    if tokens_per_word != 1.0:
        for name in WORD_FIELDS:
            numbers[name] = numbers[name] * tokens_per_word
    types = _column(rows, "pod_type", "")
    roles = (
        np.zeros(n)
        if types is None
        else np.array([_ROLE_CODES.get(t, 0.0) for t in types], dtype=np.float64)
    )
    pods = _column(rows, "pod", "")
    score = np.fromiter(map(itemgetter("prefix_cache_score"), rows), np.float64, n)
    return RequestColumns.of(
        _filled(n, accelerator),
        _filled(n, "") if pods is None else np.array(pods, dtype=object),
        cached_tokens=numbers["input_tokens"] * score,
        max_tokens=np.zeros(n),
        role=roles,
        **numbers,
    )


def _column(rows: Sequence[Any], key: str, default: object) -> list[Any] | None:
    """Every row's optional ``key``; None when no row has it (then all take ``default``).

    Looking each row up with a default costs several times a plain item lookup, and the
    Go client sends each field in all rows or in none (``pod_type`` is omitted when
    empty), so the common cases take one C-level pass.
    """
    present = sum(map(contains, rows, repeat(key)))
    if present == 0:
        return None
    if present == len(rows):
        return list(map(itemgetter(key), rows))
    return [row.get(key, default) for row in rows]


def _filled(n: int, value: str) -> np.ndarray:
    """An object array of ``value`` (``np.full`` converts its fill value: 10x slower)."""
    array = np.empty(n, dtype=object)
    array.fill(value)
    return array


def _numbers(values: list[Any] | None, n: int) -> np.ndarray:
    return np.zeros(n) if values is None else np.array(values, dtype=np.float64)


def role_of(pod_type: str) -> PodRole:
    """A pod type as a role; unknown types (and the omitted one) count as monolithic."""
    return PodRole(pod_type) if pod_type in _ROLE_CODES else PodRole.BOTH


def render_predictions(ttft: np.ndarray, tpot: np.ndarray, stamp: dict[str, Any]) -> str:
    """The ``predictions`` JSON array, formatted in one call over all numbers.

    Building a dict per item and serialising it cost more than the prediction itself for
    a thousand candidates; each item differs only in its two numbers (4 decimals of a
    millisecond), so one format string repeated n times takes them all at once.
    """
    tail = to_json(stamp).decode()[1:].replace("%", "%%")
    numbers = np.empty(2 * len(ttft))
    numbers[0::2], numbers[1::2] = ttft, tpot
    item = '{"ttft_ms":%.4f,"tpot_ms":%.4f,' + tail
    return ("[" + ",".join([item] * len(ttft)) + "]") % tuple(numbers.tolist())


class LlmdPrediction(BaseModel):
    """The client's ``PredictionResponse`` (documentation of the answer)."""

    ttft_ms: float
    tpot_ms: float
    predicted_at: datetime
    model_type: str
    objective_type: str
    quantile: float
    last_model_load: datetime | None


class LlmdBulkResponse(BaseModel):
    predictions: list[LlmdPrediction]
    total_requests: int
    successful_predictions: int
    failed_predictions: int
    processing_time_ms: float = Field(description="From the call's arrival, parsing included.")


class LlmdBulkError(BaseModel):
    index: int
    error: str
    request: dict[str, Any]


class LlmdBulkResponseWithErrors(LlmdBulkResponse):
    predictions: list[LlmdPrediction | None]  # type: ignore[assignment]
    errors: list[LlmdBulkError]


class TrainingReceipt(BaseModel):
    message: str
    accepted: int = Field(description="Entries queued for learning.")
    skipped: dict[str, int] = Field(
        description="Entries not learned, by reason: no_label, or the field out of bounds."
    )
