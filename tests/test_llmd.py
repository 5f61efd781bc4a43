"""llm-d latency predictor compatibility: same fields, bounds and status codes."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from latency_oracle.features.engineering import ROLE_CODES
from latency_oracle.features.schema import Observation, PodRole
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.llmd.bodies import request_columns
from latency_oracle.predictor.llmd.training import SkipLog, observation
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import SyntheticStream

REQUEST = {
    "kv_cache_percentage": 0.3,
    "input_token_length": 800,
    "num_request_waiting": 1,
    "num_request_running": 10,
    "num_tokens_generated": 0,
    "prefix_cache_score": 0.2,
}
ENTRY = {**REQUEST, "num_tokens_generated": 64, "actual_ttft_ms": 120.5, "actual_tpot_ms": 9.5}
PREDICTION_FIELDS = {
    "ttft_ms",
    "tpot_ms",
    "predicted_at",
    "model_type",
    "objective_type",
    "quantile",
    "last_model_load",
}


def make_client(settings: Settings, service: OracleService) -> Iterator[TestClient]:
    with TestClient(create_app(settings, service)) as client:
        yield client


@pytest.fixture
def llmd_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"llmd_prefix": "/llm-d", "llmd_accelerator": "H100"})


@pytest.fixture
def cold(llmd_settings: Settings) -> Iterator[tuple[TestClient, OracleService]]:
    service = OracleService(llmd_settings)
    for client in make_client(llmd_settings, service):
        yield client, service


@pytest.fixture
def warm(
    llmd_settings: Settings, stream: SyntheticStream
) -> Iterator[tuple[TestClient, OracleService]]:
    service = OracleService(llmd_settings)
    service.models.learn(stream.observations[:600])
    for client in make_client(llmd_settings, service):
        yield client, service


def test_predict_answers_in_llmd_shape(warm: tuple[TestClient, OracleService]) -> None:
    client, _ = warm
    response = client.post("/llm-d/predict", json={**REQUEST, "pod_type": "prefill"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == PREDICTION_FIELDS
    assert body["ttft_ms"] > 0 and body["tpot_ms"] > 0
    assert (body["model_type"], body["objective_type"], body["quantile"]) == (
        "xgboost",
        "quantile",
        0.9,
    )
    assert body["last_model_load"] is not None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kv_cache_percentage", 1.5),
        ("prefix_cache_score", -0.1),
        ("input_token_length", -1),
        ("num_request_waiting", -3),
        ("num_tokens_generated", 2.5),
        ("prefill_tokens_in_flight", -1),
    ],
)
def test_out_of_range_fields_are_422_naming_the_field(
    warm: tuple[TestClient, OracleService], field: str, value: float
) -> None:
    client, _ = warm
    response = client.post("/llm-d/predict", json={**REQUEST, field: value})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


def test_missing_required_field_is_422(warm: tuple[TestClient, OracleService]) -> None:
    client, _ = warm
    body = {k: v for k, v in REQUEST.items() if k != "prefix_cache_score"}
    assert client.post("/llm-d/predict", json=body).status_code == 422


def test_cold_models_answer_from_the_physics_prior(cold: tuple[TestClient, OracleService]) -> None:
    client, _ = cold
    one = client.post("/llm-d/predict", json=REQUEST)
    assert one.status_code == 200
    assert one.json()["ttft_ms"] > 0 and one.json()["last_model_load"] is None
    assert (
        client.post("/llm-d/predict/bulk/strict", json={"requests": [REQUEST]}).status_code == 200
    )
    assert client.get("/llm-d/readyz").status_code == 200
    status = client.get("/llm-d/status").json()
    assert status["is_ready"] is True
    assert status["models_exist"] == {"ttft_model": False, "tpot_model": False}
    assert status["model_source"] == {"ttft": "prior", "tpot": "prior"}


def test_strict_readiness_keeps_llmds_503s(llmd_settings: Settings) -> None:
    strict = llmd_settings.model_copy(update={"llmd_strict_readiness": True})
    for client in make_client(strict, OracleService(strict)):
        assert client.post("/llm-d/predict", json=REQUEST).json() == {"detail": "Models not ready"}
        bulk_strict = client.post("/llm-d/predict/bulk/strict", json={"requests": [REQUEST]})
        assert bulk_strict.status_code == 503
        ready = client.get("/llm-d/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"detail": "Models are not ready"}
        status = client.get("/llm-d/status").json()
        assert (status["is_ready"], status["strict_readiness"]) == (False, True)
        assert status["last_model_load"] is None
        # /predict/bulk never answers 503: every item fails inside a 200.
        bulk = client.post("/llm-d/predict/bulk", json={"requests": [REQUEST, REQUEST]})
        assert bulk.status_code == 200
        body = bulk.json()
        assert body["predictions"] == [None, None]
        assert (body["successful_predictions"], body["failed_predictions"]) == (0, 2)
        assert body["errors"][1]["index"] == 1
        assert body["errors"][1]["request"]["pod_type"] == ""


def test_bulk_strict_keeps_order_and_matches_single_predictions(
    warm: tuple[TestClient, OracleService],
) -> None:
    client, _ = warm
    requests = [{**REQUEST, "input_token_length": n} for n in (50, 4_000, 700)]
    response = client.post("/llm-d/predict/bulk/strict", json={"requests": requests})
    assert response.status_code == 200
    body = response.json()
    assert (body["total_requests"], body["successful_predictions"]) == (3, 3)
    assert body["failed_predictions"] == 0
    assert "errors" not in body
    singles = [client.post("/llm-d/predict", json=r).json()["ttft_ms"] for r in requests]
    assert [p["ttft_ms"] for p in body["predictions"]] == pytest.approx(singles)


def test_bulk_variants_fail_whole_on_one_bad_item(warm: tuple[TestClient, OracleService]) -> None:
    client, _ = warm
    bad = [REQUEST, {**REQUEST, "kv_cache_percentage": 2.0}, REQUEST]
    for path in ("/llm-d/predict/bulk/strict", "/llm-d/predict/bulk"):
        response = client.post(path, json={"requests": bad})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == [
            "body",
            "requests",
            1,
            "kv_cache_percentage",
        ]
        assert client.post(path, json={"requests": []}).status_code == 422
    ok = client.post("/llm-d/predict/bulk", json={"requests": [REQUEST]}).json()
    assert (ok["errors"], ok["successful_predictions"]) == ([], 1)


def test_training_data_is_accepted_for_the_default_accelerator(
    cold: tuple[TestClient, OracleService],
) -> None:
    client, service = cold
    entries = [
        ENTRY,
        {**ENTRY, "actual_tpot_ms": 0},  # TTFT label only
        {**ENTRY, "actual_ttft_ms": 0, "actual_tpot_ms": 0},  # no label: skipped
        {**ENTRY, "encoder_input_size": 3, "predicted_ttft_ms": 100.0, "unknown": 1},
    ]
    response = client.post("/llm-d/add_training_data_bulk", json={"entries": entries})
    assert response.status_code == 202
    assert response.json() == {
        "message": "Accepted 3 training samples.",
        "accepted": 3,
        "skipped": {"no_label": 1},
    }
    assert service.wait_learned(3, timeout_s=10)
    assert service.learned_total == 3
    samples = {m.key: m.n_samples for m in service.models.model_sets()}
    assert samples[ModelKey("H100", Target.TTFT)] == 3
    assert samples[ModelKey("H100", Target.TPOT)] == 2  # the entry with tpot 0 has no label


@pytest.mark.parametrize(
    ("field", "value"), [("actual_ttft_ms", -1.0), ("kv_cache_percentage", 1.01)]
)
def test_invalid_training_entry_rejects_the_whole_batch(
    cold: tuple[TestClient, OracleService], field: str, value: float
) -> None:
    client, service = cold
    entries = [ENTRY, {**ENTRY, field: value}]
    response = client.post("/llm-d/add_training_data_bulk", json={"entries": entries})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "entries", 1, field]
    assert service.store.pending() == 0


def test_status_and_probes(warm: tuple[TestClient, OracleService]) -> None:
    client, _ = warm
    assert client.get("/llm-d/healthz").json() == {
        "status": "ok",
        "service": "http-based-latency-predictor",
    }
    assert client.get("/llm-d/readyz").json() == {
        "status": "ready",
        "model_type": "xgboost",
        "objective_type": "quantile",
        "quantile": 0.9,
    }
    status = client.get("/llm-d/status").json()
    assert status["is_ready"] is True
    assert status["models_exist"] == {"ttft_model": True, "tpot_model": True}
    assert status["training_server_url"].endswith("/llm-d")


def test_llmd_endpoints_are_at_the_root_by_default(
    settings: Settings, stream: SyntheticStream
) -> None:
    service = OracleService(settings)
    service.models.learn(stream.observations[:600])
    for client in make_client(settings, service):
        assert client.post("/predict", json=REQUEST).status_code == 200
        assert client.get("/status").json()["is_ready"] is True
        assert client.get("/healthz").json()["status"] == "ok"  # the native probe


def test_a_pod_name_reaches_the_columns_and_the_observation() -> None:
    """The optional ``pod`` extension: per-pod calibration for callers that send it."""
    rows = [{**REQUEST, "pod": "vllm-0", "pod_type": "decode"}, {**REQUEST, "pod": "vllm-1"}]
    columns = request_columns(rows, "H100")
    assert columns.pod.tolist() == ["vllm-0", "vllm-1"]
    assert columns.role.tolist() == [ROLE_CODES[PodRole.DECODE], ROLE_CODES[PodRole.BOTH]]
    plain = request_columns([REQUEST], "H100")
    assert plain.pod.tolist() == [""] and plain.prefill_tokens_in_flight.tolist() == [0.0]
    entry = {**ENTRY, "pod": "vllm-0", "pod_type": "prefill"}
    obs = observation(entry, "H100")  # type: ignore[arg-type]
    assert isinstance(obs, Observation)
    assert (obs.pod, obs.role, obs.accelerator) == ("vllm-0", PodRole.PREFILL, "H100")


def test_a_tpot_entry_without_a_token_count_is_one_tpot_sample() -> None:
    tpot_entry = {**ENTRY, "actual_ttft_ms": 0, "num_tokens_generated": 0, "prefix_cache_score": 0}
    obs = observation(tpot_entry, "H100")  # type: ignore[arg-type]
    assert isinstance(obs, Observation)
    assert (obs.ttft_ms, obs.tpot_ms, obs.output_tokens) == (None, 9.5, 2)


def test_skipped_entries_are_logged_at_most_once_a_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = SkipLog(every_s=3600)
    with caplog.at_level(logging.WARNING):
        log.note(Counter({"no_label": 2}))
        log.note(Counter({"actual_ttft_ms_out_of_bounds": 1}))
        log.note(Counter())
    assert len(caplog.records) == 1
    assert "no_label" in caplog.records[0].getMessage()
