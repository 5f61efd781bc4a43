"""One measured exchange and the sidecar's records of it: at its first token and at its end.

A streamed request yields up to two records under one observation id. At its first token
the TTFT is known, often seconds before the request ends: once the stream is still
running a while after it (``FirstTokenRecords``), a first-token record (``finished``
false) teaches TTFT then, its prompt tokens the sidecar's estimate and its prefix-cache
hits the pod's recent share (the engine reports both only at the end). The finish
record carries everything (the engine's prompt count, output tokens, TPOT, and TTFT
again, for when the first-token record was never sent): the store claims each target
once per id (``features.labels``), so nothing is counted twice, whichever record lands
first.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from latency_oracle.features.schema import MAX_TOKENS, Observation, PodIdentity, ServerState
from latency_oracle.sidecar.completion_request import CompletionRequest, prompt_words
from latency_oracle.sidecar.sse import StreamMeter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FirstTokenRecords:
    """When a stream sends a first-token record: ``after_s`` past its first token (None:
    never), while the pod's recent prefix-cache hit share is at most ``max_hit_share``.

    The record cannot carry the request's own cached tokens (the engine reports them at
    the end), only the pod's share. Where caching is rare that costs nothing; where it
    sets TTFT, TTFT learned from the finish record, with the request's hits, is sharper
    than one learned early without them (``bench/first_token_labels.py``).
    """

    after_s: float | None = None
    max_hit_share: float = 1.0

    def wanted(self, hit_share: float) -> bool:
        return self.after_s is not None and hit_share <= self.max_hit_share


@dataclass
class Exchange:
    """One request's measurements, filled in as its response passes through."""

    arrived: float
    state: ServerState | None
    plan: CompletionRequest | None
    request_id: str = ""
    observation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    prompt_estimate: int = 0  # the sidecar's estimate of the prompt's tokens at arrival
    inflight: tuple[int, int] = (0, 0)  # (prefill, decode) tokens in flight at arrival
    status: int = 0
    meter: StreamMeter | None = None
    body: list[bytes] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    completed_at: float = 0.0

    @property
    def kind(self) -> str:
        if self.plan is None:
            return "passthrough"
        return "streamed" if self.plan.streamed else "unstreamed"


def first_token_record(
    exchange: Exchange, identity: PodIdentity, hit_share: float
) -> Observation | None:
    """The record sent while the stream runs: TTFT, with the prompt's estimated tokens
    and, for its prefix-cache hits (reported only at the end), ``hit_share``: the share of
    prompt tokens the pod's recent requests found cached."""
    meter = exchange.meter
    if meter is None or meter.first_token_at is None:
        return None
    now = time.perf_counter()
    return _record(
        exchange,
        identity,
        input_tokens=exchange.prompt_estimate,
        output_tokens=max(meter.tokens, 1),
        prefix_cache_score=min(max(hit_share, 0.0), 1.0),
        ttft_ms=(meter.first_token_at - exchange.arrived) * 1e3,
        timestamp=time.time() - (now - meter.first_token_at),
        finished=False,
    )


def finish_record(exchange: Exchange, identity: PodIdentity) -> Observation | None:
    """The record of a finished stream: both latencies, the engine's token counts."""
    meter, plan = exchange.meter, exchange.plan
    if meter is None or plan is None:
        return None
    usage = meter.usage or {}
    prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if meter.first_token_at is None or meter.last_token_at is None:
        return None
    if type(prompt) is not int or type(output) is not int:
        return None
    tpot_ms = None
    if output >= 2:
        tpot_ms = (meter.last_token_at - meter.first_token_at) * 1e3 / (output - 1)
    return _record(
        exchange,
        identity,
        input_tokens=prompt,
        output_tokens=output,
        prefix_cache_hit_tokens=cached_tokens(usage, prompt),
        prompt_chars=plan.prompt_chars if not plan.prompt_token_ids else None,
        prompt_words=prompt_words(plan.prompt) if not plan.prompt_token_ids else None,
        ttft_ms=(meter.first_token_at - exchange.arrived) * 1e3,
        tpot_ms=tpot_ms or None,
    )


def _record(exchange: Exchange, identity: PodIdentity, **outcome: Any) -> Observation | None:
    """The exchange's record: the pod, its state and in-flight counts at arrival, and
    ``outcome``; None for a request no record can describe."""
    plan = exchange.plan
    if plan is None or exchange.state is None or not plan.single_choice:
        return None
    prefill, decode = exchange.inflight
    state = exchange.state.model_dump()
    state["prefill_tokens_in_flight"] = min(prefill, MAX_TOKENS)
    state["decode_tokens_in_flight"] = min(decode, MAX_TOKENS)
    try:
        return Observation(
            **identity.model_dump(),
            **state,
            observation_id=exchange.observation_id,
            max_tokens=plan.max_tokens,
            **outcome,
        )
    except ValidationError as exc:
        log.warning("measured request is no valid observation: %s", exc)
        return None


def cached_tokens(usage: dict[str, Any], prompt_tokens: int) -> int | None:
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if type(cached) is int and 0 <= cached <= prompt_tokens else None
