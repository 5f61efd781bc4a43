"""The body of ``POST /v1/route``: a request's shape, its SLOs and the pods it may go to.

Candidate pods reuse the native identity and server-state records, so a pod state a
router sends is bounded exactly like one a sidecar reports.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from latency_oracle.features.schema import (
    MAX_TOKENS,
    MAX_TPOT_MS,
    MAX_TTFT_MS,
    Number,
    PodIdentity,
    PromptSize,
    ServerState,
    TokenCount,
)
from latency_oracle.settings import HeadroomMode, RoutePolicyName

Priority = Literal["interactive", "batch"]


class CandidatePod(PodIdentity, ServerState):
    """A pod the request may be placed on, with its last scraped state."""

    pod: str = Field(min_length=1, max_length=253, description="Pod name (unique per call).")
    prefix_cache_score: Number | None = Field(
        None, ge=0.0, le=1.0, description="Fraction of this request's prompt cached on the pod."
    )
    prefix_cache_hit_tokens: TokenCount | None = Field(
        None, description="Prompt tokens cached on the pod (wins over the score)."
    )
    scraped_at: Number | None = Field(
        None,
        gt=0,
        description="Unix time the state was scraped; placements made after it are added "
        "to the state until a newer scrape (or the in-flight TTL) retires them.",
    )


class Slo(BaseModel):
    """Latency objectives, each optional; a pod meets the SLO when it meets every one given."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    ttft_ms: Number | None = Field(None, gt=0, le=MAX_TTFT_MS, description="Time to first token.")
    tpot_ms: Number | None = Field(None, gt=0, le=MAX_TPOT_MS, description="Time per token.")
    quantile: Number | None = Field(
        None,
        ge=0.5,
        lt=1.0,
        description="The share of requests the SLOs bind (0.99 for a p99 tail SLO): judged "
        "on the smallest served quantile at or above it; unset, the headline quantile.",
    )


class RouteRequest(PromptSize):
    """One routing question: where (if anywhere) should this request go now? The prompt
    size comes in the caller's unit (``PromptSize``); the router sees it in tokens."""

    max_tokens: TokenCount = Field(0, description="max_tokens requested; 0 when unset.")
    output_tokens_hint: Annotated[int, Strict(), Field(ge=1, le=MAX_TOKENS)] | None = Field(
        None,
        description="The caller's own estimate of the output tokens (a classifier's, a "
        "client's history): routing plans with it, cut at max_tokens, instead of the "
        "learned distribution of the request's served model, prompt size and cap.",
    )
    model: str = Field("", max_length=256, description="Served model name.")
    slo: Slo = Field(default_factory=Slo)
    priority: Priority = Field(
        "interactive", description="batch requests that no pod can serve now are queued."
    )
    policy: RoutePolicyName | None = Field(None, description="Overrides the default policy.")
    headroom_mode: HeadroomMode | None = Field(None, description="Overrides pack/spread.")
    pods: list[CandidatePod] | None = Field(
        None, min_length=1, description="Candidates; when absent, the store's live pods."
    )

    @model_validator(mode="after")
    def _consistent_pods(self) -> Self:
        pods = self.pods or []
        names = [p.pod for p in pods]
        if len(set(names)) != len(names):
            raise ValueError("pods: pod names must be unique")
        hits = [p.prefix_cache_hit_tokens for p in pods]
        if self.input_tokens is not None and hits.count(None) < len(hits):  # (in C)
            for name, pod_hits in zip(names, hits, strict=True):
                if pod_hits is not None and pod_hits > self.input_tokens:
                    raise ValueError(f"pods: {name}: prefix_cache_hit_tokens > input_tokens")
        return self
