"""Routing policies, the llm-d endpoints and the reference data the simulator reads."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

RoutePolicyName = Literal["slo-attainment", "headroom", "least-latency", "heuristic"]
HeadroomMode = Literal["pack", "spread"]


class RoutingSettings(BaseModel):
    """Routing policies, the llm-d endpoints and the reference data the simulator reads."""

    route_policy: RoutePolicyName = Field(
        "slo-attainment",
        description="Default routing policy: slo-attainment (most SLOs met, counting the "
        "running streams a new decode slows), headroom, least-latency or heuristic.",
    )
    route_headroom_mode: HeadroomMode = Field(
        "spread",
        description="headroom policy: pack (least positive headroom) or spread (most).",
    )
    route_tie_tolerance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Pods within this fraction of the best score are near-ties; one is "
        "picked at random so concurrent routers do not herd onto the same pod.",
    )
    route_inflight_ttl_s: float = Field(
        2.0,
        gt=0,
        description="Seconds a placement counts against its pod when no newer pod-state "
        "scrape has arrived (optimistic in-flight accounting).",
    )
    llmd_accelerator: str = Field(
        "unknown",
        min_length=1,
        max_length=128,
        description="Accelerator type of llm-d API calls at the llm-d prefix (the EPP sends "
        "none); calls under <prefix>/accelerators/<type>/ are about that type instead.",
    )
    llmd_input_unit: Literal["words", "tokens"] = Field(
        "words",
        description="llm-d: what input_token_length and prefill_tokens_in_flight count. "
        "llm-d's endpoint picker sends words (whitespace-separated), converted to tokens "
        "with the tokens per word learned from the sidecars' reports; tokens: as sent.",
    )
    llmd_strict_readiness: bool = Field(
        False,
        description="llm-d's own behaviour: its prediction endpoints answer 503 (and /status "
        "is_ready false) until the accelerator's or the global TTFT and TPOT models are "
        "trained. Off: they answer from the first call, with the global model or the physics "
        "prior, and /status names the source.",
    )
    llmd_open: bool = Field(
        False,
        description="Serve the llm-d endpoints (predictions and training data) without a bearer "
        "token even when api_token or read_token is set: the EPP's client cannot send one. "
        "The native API keeps needing it; restrict who reaches the port instead.",
    )
    llmd_prefix: str = Field(
        "",
        pattern=r"^(/[A-Za-z0-9._-]+)*$",
        description="Path prefix of the llm-d compatible endpoints ('' serves them at the root).",
    )
    shared_data_dir: Path | None = Field(
        None,
        description="Folder of reference measurements (GPU profiles, traces) the simulated "
        "engine, demo and evaluation read, laid out as the package's own sim/data; unset: "
        "the data the package ships.",
    )
