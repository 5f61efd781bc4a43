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
from operator import itemgetter
from typing import Annotated, Any, NotRequired

import numpy as np
from latency_oracle.features.engineering import ROLE_CODES, RequestColumns
from latency_oracle.features.schema import MAX_REQUESTS, MAX_TOKENS, PodRole
from pydantic import BaseModel, Field
from pydantic_core import to_json
from typing_extensions import TypedDict

MAX_BULK_REQUESTS = 10_000
MODEL_TYPE = "xgboost"  # tells the client to ask over HTTP: it has no coefficients to fetch
OBJECTIVE_TYPE = "quantile"

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Requests = Annotated[int, Field(ge=0, le=MAX_REQUESTS)]
Latency = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
_ROLE_CODES = {role.value: float(ROLE_CODES[role]) for role in (PodRole.PREFILL, PodRole.DECODE)}
_NUMBERS = itemgetter(
    "input_token_length",
    "prefix_cache_score",
    "num_request_running",
    "num_request_waiting",
    "kv_cache_percentage",
)


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


def request_columns(rows: Sequence[Any], accelerator: str) -> RequestColumns:
    """The model's raw numbers of validated llm-d requests (or entries), column by column.

    ``num_tokens_generated`` is not among them: tokens generated are an outcome, which the
    native API does not take as a feature either.
    """
    n = len(rows)
    base = np.array(list(map(_NUMBERS, rows)), dtype=np.float64).reshape(n, 5)
    types = [row.get("pod_type") or "" for row in rows]
    roles = (
        np.zeros(n)
        if types.count("") == n
        else np.array([_ROLE_CODES.get(t, 0.0) for t in types], dtype=np.float64)
    )
    return RequestColumns.of(
        np.full(n, accelerator, dtype=object),
        np.array([row.get("pod", "") for row in rows], dtype=object),
        input_tokens=base[:, 0],
        cached_tokens=base[:, 0] * base[:, 1],
        max_tokens=np.zeros(n),
        running_requests=base[:, 2],
        waiting_requests=base[:, 3],
        kv_cache_usage=base[:, 4],
        prefill_tokens_in_flight=_optional(rows, "prefill_tokens_in_flight"),
        decode_tokens_in_flight=_optional(rows, "decode_tokens_in_flight"),
        role=roles,
    )


def _optional(rows: Sequence[Any], name: str) -> np.ndarray:
    return np.fromiter((row.get(name, 0) for row in rows), np.float64, len(rows))


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
