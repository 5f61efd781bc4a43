"""Traffic for the observability tests: observations, predictions and route calls over HTTP.

The observations come from ``sim.synthetic_stream`` with an abrupt shift, so drift and a
promotion happen while Prometheus or a browser watches.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from test_mlflow_tracking import model_settings

from latency_oracle.features.schema import PredictionRequest
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream

PREDICTION_FIELDS = set(PredictionRequest.model_fields)

PODS = [
    {
        "pod": f"vllm-{i}",
        "accelerator": "H100",
        "running_requests": 4 + 4 * i,
        "waiting_requests": i,
        "kv_cache_usage": 0.2 + 0.2 * i,
        "prefill_tokens_in_flight": 500 * i,
        "decode_tokens_in_flight": 1_000 * (i + 1),
    }
    for i in range(3)
]
# A relaxed SLO places; one no pod can meet sheds (interactive) or queues (batch).
ROUTES = [
    {"input_tokens": 800, "max_tokens": 200, "slo": {"ttft_ms": 60_000}},
    {"input_tokens": 800, "max_tokens": 200, "slo": {"ttft_ms": 0.5}},
    {"input_tokens": 800, "max_tokens": 200, "slo": {"ttft_ms": 0.5}, "priority": "batch"},
]


def feed(client: httpx.Client, n: int, shift_at: int, chunk: int = 400) -> None:
    """Post the stream in chunks; after each, ask for predictions and route decisions.

    The learner catches up in the background, so early routes see cold models and place.
    """
    observations = generate_stream(n, seed=1, shift_at=shift_at).observations
    for start in range(0, n, chunk):
        part = observations[start : start + chunk]
        sent = client.post("/v1/observations", json=[o.model_dump(mode="json") for o in part])
        assert sent.status_code == 202, sent.text
        asked = [o.model_dump(mode="json", include=PREDICTION_FIELDS) for o in part[:32]]
        assert client.post("/v1/predictions", json=asked).status_code == 200
        route_all(client)


def route_all(client: httpx.Client) -> list[str]:
    """One call per route kind; the decisions (all place while models are still cold)."""
    decisions = []
    for route in ROUTES:
        routed = client.post("/v1/route", json={**route, "pods": PODS})
        assert routed.status_code == 200, routed.text
        decisions.append(routed.json()["decision"])
    return decisions


def learner_settings(tmp_path: Path, **overrides: object) -> Settings:
    """The MLflow flow's small windows (the shift gives drift and promotion), no MLflow."""
    return model_settings(tmp_path / "state", **{"mlflow_enabled": False, **overrides})
