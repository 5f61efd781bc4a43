"""The REST API: predictions, observations, model state, health, metrics and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from latency_oracle.features.native import compute_paths
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import SyntheticStream

REQUEST = {
    "pod": "vllm-0",
    "accelerator": "NVIDIA H100 80GB HBM3",
    "input_tokens": 1_200,
    "running_requests": 8,
    "waiting_requests": 1,
    "kv_cache_usage": 0.3,
}


@pytest.fixture
def service(settings: Settings) -> OracleService:
    return OracleService(settings)


@pytest.fixture
def client(settings: Settings, service: OracleService) -> Iterator[TestClient]:
    with TestClient(create_app(settings, service)) as test_client:
        yield test_client


def _observe(client: TestClient, service: OracleService, observations: list) -> None:
    body = [o.model_dump(mode="json") for o in observations]
    response = client.post("/v1/observations", json=body)
    assert response.status_code == 202, response.text
    assert service.wait_learned(service.learned_total + response.json()["accepted"], timeout_s=20)


def test_cold_prediction_says_so(client: TestClient) -> None:
    body = client.post("/v1/predictions", json=REQUEST).json()
    assert body["cold"] is True and body["model"] == {"ttft": "prior", "tpot": "prior"}
    assert body["accelerator"] == "H100" and body["pod"] == "vllm-0"
    assert body["ttft_ms"]["p50"] < body["ttft_ms"]["p90"] < body["ttft_ms"]["p99"]


def test_learns_from_observations_then_serves_warm(
    client: TestClient, service: OracleService, stream: SyntheticStream
) -> None:
    _observe(client, service, stream.observations[:600])
    body = client.post("/v1/predictions", json=REQUEST).json()
    assert body["cold"] is False
    assert body["model"]["ttft"].endswith("@H100") and body["model"]["tpot"].endswith("@H100")
    models = {(m["accelerator"], m["target"]): m for m in client.get("/v1/models").json()["models"]}
    assert (
        models[("H100", "ttft")]["samples"] == 600 and models[("global", "tpot")]["samples"] == 600
    )
    assert models[("H100", "ttft")]["serving"] is True
    window = models[("H100", "ttft")]["learners"][0]["window"]
    assert 0.7 < window["coverage"]["p90"] <= 1.0
    metrics = client.get("/metrics").text
    assert 'latency_oracle_model_samples{accelerator="H100",target="ttft"} 600.0' in metrics
    assert "latency_oracle_model_coverage{" in metrics
    learner = models[("H100", "ttft")]["learners"][0]
    losses = {
        sample.labels["predicted_quantile"]: sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "latency_oracle_model_pinball_loss_seconds"
        for sample in family.samples
        if sample.labels["accelerator"] == "H100"
        and sample.labels["target"] == "ttft"
        and sample.labels["learner"] == learner["name"]
    }
    assert set(losses) == {"0.5", "0.9", "0.99"}  # a number, never p90, never `quantile`
    assert losses["0.9"] * 1e3 == pytest.approx(learner["window"]["pinball_ms"]["p90"])
    assert 'latency_oracle_observations_total{outcome="accepted"} 600.0' in metrics


def test_new_accelerator_is_served_by_the_global_model(
    client: TestClient, service: OracleService, stream: SyntheticStream
) -> None:
    _observe(client, service, stream.observations[:600])
    body = client.post("/v1/predictions", json=REQUEST | {"accelerator": "MI300X"}).json()
    assert body["cold"] is True
    assert body["model"]["ttft"].endswith("@global")


def test_bulk_predictions_keep_order_and_mix_accelerators(client: TestClient) -> None:
    items = [
        REQUEST | {"pod": f"p{i}", "accelerator": acc}
        for i, acc in enumerate(["L4", "H100", "A100"] * 5)
    ]
    body = client.post("/v1/predictions", json=items).json()
    assert [p["pod"] for p in body["predictions"]] == [f"p{i}" for i in range(15)]
    ttft = {p["accelerator"]: p["ttft_ms"]["p50"] for p in body["predictions"]}
    assert ttft["L4"] > ttft["A100"] > ttft["H100"]


def test_duplicate_observation_ids_count_once(
    client: TestClient, service: OracleService, stream: SyntheticStream
) -> None:
    body = [o.model_dump(mode="json") for o in stream.observations[:50]]
    assert client.post("/v1/observations", json=body).json() == {"accepted": 50, "duplicates": 0}
    assert client.post("/v1/observations", json=body).json() == {"accepted": 0, "duplicates": 50}
    assert service.wait_learned(50, timeout_s=10)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in REQUEST.items() if k != "input_tokens"}, "input_tokens"),
        (REQUEST | {"input_tokens": -5}, "input_tokens"),
        (REQUEST | {"kv_cache_usage": 1.7}, "kv_cache_usage"),
        (REQUEST | {"running_requests": "eight"}, "running_requests"),
        (REQUEST | {"accelerator": ""}, "accelerator"),
        ([REQUEST] * 10_001, "many"),
        ([], "many"),
    ],
)
def test_bad_prediction_requests_get_422_naming_the_field(
    client: TestClient, body, field: str
) -> None:
    response = client.post("/v1/predictions", json=body)
    assert response.status_code == 422
    assert any(field in map(str, error["loc"]) for error in response.json()["detail"])


def test_nan_is_rejected_and_never_reaches_a_model(
    client: TestClient, service: OracleService
) -> None:
    raw = json.dumps({"accelerator": "H100", "input_tokens": 10, "ttft_ms": 5.0}).replace(
        "5.0", "NaN"
    )
    response = client.post(
        "/v1/observations", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "ttft_ms" in response.text
    good = {"accelerator": "H100", "input_tokens": 10, "ttft_ms": 5.0}
    response = client.post("/v1/observations", json=[good, good | {"input_tokens": -1}])
    assert response.status_code == 422
    assert service.store.pending() == 0 and service.learned_total == 0
    assert (
        'latency_oracle_observations_total{outcome="rejected"} 2.0' in client.get("/metrics").text
    )


def test_full_buffer_answers_503_with_retry_after(tmp_path, stream: SyntheticStream) -> None:
    settings = Settings(state_dir=tmp_path, observation_buffer=10, mlflow_enabled=False)
    service = OracleService(settings)
    client = TestClient(create_app(settings, service))  # not started: nothing drains the buffer
    body = [o.model_dump(mode="json") for o in stream.observations[:11]]
    response = client.post("/v1/observations", json=body)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert service.store.pending() == 0
    assert client.post("/v1/observations", json=body[:10]).status_code == 202


def test_health_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "problems": []}
    assert client.get("/readyz").json() == {
        "status": "ready",
        "problems": [],
        "compute": compute_paths(),  # tests/test_native_fallback.py checks what it says
    }


def test_readyz_is_503_before_the_learning_loop_runs(settings: Settings) -> None:
    client = TestClient(create_app(settings))
    assert client.get("/readyz").status_code == 503


OPENTELEMETRY_PROBE = """
import sys
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from latency_oracle.settings import Settings
from latency_oracle.predictor.app import create_app

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
for enabled in (False, True):
    with TestClient(create_app(Settings(state_dir=sys.argv[1], opentelemetry=enabled))) as client:
        assert client.get("/healthz").status_code == 200
    print(len(exporter.get_finished_spans()))
    exporter.clear()
"""


def test_opentelemetry_spans_only_when_the_setting_asks(tmp_path) -> None:
    """Off by default (FastAPI's per-request provider lookup is not free); on, requests are
    traced to the process's OpenTelemetry SDK. A subprocess: the global provider is set once."""
    env = {**os.environ, "LATENCY_ORACLE_MLFLOW_ENABLED": "false"}
    probe = subprocess.run(
        [sys.executable, "-c", OPENTELEMETRY_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    off, on = (int(line) for line in probe.stdout.split())
    assert off == 0
    assert on >= 1
