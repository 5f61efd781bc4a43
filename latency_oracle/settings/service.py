"""Where the service listens, who may call it and what it accepts as plausible."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class ServiceSettings(BaseModel):
    """Where the service listens, who may call it and what it accepts as plausible."""

    host: str = Field(
        "127.0.0.1",
        description="Address the predictor, and a trainer's metrics and probe endpoint, listen on.",
    )
    port: int = Field(8080, ge=1, le=65535, description="Port the predictor listens on.")
    log_level: str = Field("info", description="Python logging level.")
    opentelemetry: bool = Field(
        False,
        description="FastAPI's own OpenTelemetry spans and metrics for every HTTP request, "
        "sent to the OpenTelemetry SDK the process configures. Off by default: the service's "
        "metrics are Prometheus, and when on FastAPI looks its providers up on every request "
        "(~7 us a request), SDK or not.",
    )

    max_batch_items: int = Field(
        10_000, ge=1, description="Most items in one bulk prediction or observation call."
    )
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token writes need (observations, training data, pod state, "
        "rollback); unset: writes are open.",
    )
    read_token: SecretStr | None = Field(
        None,
        description="Bearer token predictions and routing need (the api_token also works); "
        "unset: they are open.",
    )
    max_ttft_ms: float = Field(
        600_000.0,
        gt=0,
        description="Implausible above: observations with a longer TTFT are rejected (422) "
        "and, if they reach a trainer another way, skipped and counted.",
    )
    min_tpot_ms: float = Field(
        0.05, ge=0, description="Implausible below: TPOT faster than this is rejected."
    )
    max_tpot_ms: float = Field(
        10_000.0, gt=0, description="Implausible above: TPOT slower than this is rejected."
    )
    max_context_tokens: int = Field(
        2_097_152,
        ge=1,
        description="Implausible above: prompt plus output tokens beyond any model's context.",
    )
    max_accelerators: int = Field(
        256,
        ge=1,
        description="(Accelerator type, served model) pairs with their own models (and "
        "metric labels), and served models with a scale in the global model; beyond it the "
        "least recently seen one's are evicted (the global models never).",
    )
    max_live_pods: int = Field(
        10_000, ge=1, description="Live pod states kept; beyond it the stalest are evicted."
    )
