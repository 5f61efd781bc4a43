"""The sidecar next to each engine."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PodRoleName = Literal["both", "prefill", "decode"]


class SidecarSettings(BaseModel):
    """The sidecar next to each engine."""

    engine_url: str = Field(
        "http://127.0.0.1:8000",
        description="Sidecar: base URL of the engine (OpenAI API and /metrics) it fronts.",
    )
    sidecar_host: str = Field(
        "0.0.0.0", description="Sidecar: listen address (all interfaces: clients are off-pod)."
    )
    sidecar_port: int = Field(8001, ge=1, le=65535, description="Sidecar: listen port.")
    scrape_interval_s: float = Field(
        0.2, gt=0, description="Sidecar: seconds between scrapes of the engine's /metrics."
    )
    accelerator: str | None = Field(
        None,
        max_length=128,
        description="Sidecar: accelerator type of this pod; unset: nvidia-smi, else unknown.",
    )
    pod_role: PodRoleName = Field("both", description="Sidecar: both, prefill or decode.")
    pod_name: str = Field(
        "", max_length=253, description="Sidecar: pod name; empty: the host name."
    )
    served_model: str = Field(
        "", max_length=256, description="Sidecar: model name; empty: asked from /v1/models."
    )
    predictor_url: str | None = Field(
        None,
        description="Sidecar without Redis: predictor base URL its observations and pod "
        "state are posted to (http://predictor:8080).",
    )
    sidecar_queue_size: int = Field(
        10_000,
        ge=1,
        description="Sidecar: observations waiting to be written; beyond it new ones are "
        "dropped (counted) rather than slowing requests down.",
    )
    sidecar_retry_base_s: float = Field(
        0.2,
        gt=0,
        description="Sidecar: first bound of the pause before retrying a store that is down; "
        "doubles per failure, each pause drawn at random below it (full jitter).",
    )
    sidecar_retry_cap_s: float = Field(
        30.0,
        gt=0,
        description="Sidecar: largest bound of a retry pause, seconds: a fleet's sidecars "
        "come back to a recovered store spread over up to this long.",
    )
    sidecar_state_retry_cap_s: float = Field(
        2.0,
        gt=0,
        description="Sidecar: largest bound of a pause before publishing pod state again "
        "after a failure: short, since routers cannot see the pod until it succeeds.",
    )
    sidecar_outage_log_interval_s: float = Field(
        60.0,
        gt=0,
        description="Sidecar: seconds between summaries logged while the store stays down "
        "(one warning when an outage starts, one line when it ends).",
    )
    sidecar_first_token_record_s: float | None = Field(
        0.1,
        ge=0,
        description="Sidecar: a stream still running this long after its first token sends "
        "a first-token record, so TTFT is learned before the request ends (0: at the first "
        "token; unset: only at the finish). Shorter streams send one record, at the finish.",
    )
    sidecar_first_token_max_hit_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Sidecar: first-token records only while the pod's recent prefix-cache "
        "hit share is at most this: the engine reports a request's cached tokens only at "
        "the end, and where caching sets TTFT a TTFT learned without them is worse than a "
        "later one learned with them.",
    )
    engine_timeout_s: float = Field(
        600.0, gt=0, description="Sidecar: longest wait for the engine's next bytes, seconds."
    )
