"""Hostile clients: bearer tokens on writes, plausibility bounds, caps on client-given names."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latency_oracle.features.engineering import RequestColumns
from latency_oracle.features.pod_state import PodState
from latency_oracle.features.schema import Observation, PredictionRequest
from latency_oracle.features.store import InProcessObservationStore
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.registry import LearnScope, ModelRegistry
from latency_oracle.operations.label_cap import OVERFLOW_LABEL, LabelCap
from latency_oracle.operations.metrics import ServiceMetrics
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.routing.inflight_ledger import SWEEP_MIN_PODS, InFlightLedger
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import SyntheticStream

WRITE_TOKEN, READ_TOKEN = "write-secret", "read-secret"
PREDICTION = {"accelerator": "H100", "input_tokens": 1_000}
OBSERVATION = {**PREDICTION, "output_tokens": 50, "ttft_ms": 120.0, "tpot_ms": 20.0}
POD = {"pod": "p0", "accelerator": "H100", "model": "m", "updated_at": 1.0}


def _tuned(settings: Settings, **overrides: object) -> Settings:
    return Settings(**{**settings.model_dump(), **overrides})


def _client(settings: Settings, **overrides: object) -> TestClient:
    tuned = _tuned(settings, **overrides)
    return TestClient(create_app(tuned, OracleService(tuned)))


def _metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def guarded(settings: Settings) -> Iterator[TestClient]:
    with _client(settings, api_token=WRITE_TOKEN, read_token=READ_TOKEN) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/observations", OBSERVATION),
        ("/add_training_data_bulk", {"entries": []}),
        ("/v1/pods", POD),
        ("/v1/models/H100/ttft/rollback", {"version": 1}),
    ],
)
def test_writes_need_the_api_token(guarded: TestClient, path: str, body: object) -> None:
    for headers in (
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Basic {READ_TOKEN}"},
    ):
        response = guarded.post(path, json=body, headers=headers)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"][0]["loc"] == ["header", "authorization"]
    read_only = guarded.post(path, json=body, headers={"authorization": f"Bearer {READ_TOKEN}"})
    assert read_only.status_code == 401
    allowed = guarded.post(path, json=body, headers={"authorization": f"Bearer {WRITE_TOKEN}"})
    assert allowed.status_code != 401


@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/route", "/predict/bulk/strict"])
def test_reads_take_either_token_when_a_read_token_is_set(guarded: TestClient, path: str) -> None:
    body = {
        "/v1/predictions": PREDICTION,
        "/v1/route": {"input_tokens": 10, "pods": [{"pod": "a", "accelerator": "H100"}]},
        "/predict/bulk/strict": {"requests": []},
    }[path]
    assert guarded.post(path, json=body).status_code == 401
    for token in (READ_TOKEN, WRITE_TOKEN):
        response = guarded.post(path, json=body, headers={"authorization": f"Bearer {token}"})
        assert response.status_code != 401, response.text


def test_without_a_read_token_predictions_stay_open(settings: Settings) -> None:
    with _client(settings, api_token=WRITE_TOKEN) as client:
        assert client.post("/v1/predictions", json=PREDICTION).status_code == 200
        assert client.post("/v1/observations", json=OBSERVATION).status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ttft_ms": 3_000_000.0}, "ttft_ms"),  # 50 minutes: inside the schema, not plausible
        ({"tpot_ms": 0.001}, "tpot_ms"),
        ({"tpot_ms": 50_000.0}, "tpot_ms"),
        ({"input_tokens": 3_000_000}, "input_tokens"),
    ],
)
def test_implausible_observations_are_rejected_naming_the_field(
    settings: Settings, change: dict[str, float], field: str
) -> None:
    with _client(settings) as client:
        one = client.post("/v1/observations", json={**OBSERVATION, **change})
        assert one.status_code == 422
        assert one.json()["detail"][0]["loc"] == ["body", "one", field]
        many = client.post("/v1/observations", json=[OBSERVATION, {**OBSERVATION, **change}])
        assert many.status_code == 422
        assert [e["loc"] for e in many.json()["detail"]] == [["body", "many", 1, field]]
        assert _metric(client, 'latency_oracle_observations_total{outcome="implausible"}') == 2


def test_llmd_training_skips_implausible_entries_by_their_own_field_names(
    settings: Settings,
) -> None:
    entry = {
        "kv_cache_percentage": 0.1,
        "input_token_length": 100,
        "num_request_waiting": 0,
        "num_request_running": 1,
        "num_tokens_generated": 10,
        "prefix_cache_score": 0.0,
        "actual_ttft_ms": 100.0,
        "actual_tpot_ms": 10.0,
    }
    with _client(settings) as client:
        body = {"entries": [entry, {**entry, "actual_ttft_ms": 0, "actual_tpot_ms": 0}]}
        body["entries"].append({**entry, "actual_ttft_ms": 3_000_000.0})
        response = client.post("/add_training_data_bulk", json=body)
        assert response.status_code == 202
        assert response.json()["accepted"] == 1
        assert response.json()["skipped"] == {"no_label": 1, "actual_ttft_ms_out_of_bounds": 1}
        skipped = "latency_oracle_llmd_training_entries_skipped_total"
        assert _metric(client, f'{skipped}{{reason="actual_ttft_ms_out_of_bounds"}}') == 1
        assert _metric(client, 'latency_oracle_observations_total{outcome="implausible"}') == 1


def test_a_flood_of_absurd_observations_does_not_move_the_served_p90(
    fast_config: ModelConfig, stream: SyntheticStream
) -> None:
    """What a broken sidecar writing straight to Redis would feed a trainer: the model fed
    the flood serves what a twin fed only the good observations serves."""
    good = stream.observations
    absurd = [o.model_copy(update={"ttft_ms": 3_000_000.0, "tpot_ms": 0.001}) for o in good]
    clean, flooded = ModelRegistry(fast_config), ModelRegistry(fast_config)
    for start in range(0, 1_500, 250):
        clean.learn(good[start : start + 250])
        report = flooded.learn([*absurd[start : start + 1_000], *good[start : start + 250]])
        assert report.implausible == 1_000
    assert flooded.learn(absurd).implausible == len(absurd)
    probe = RequestColumns.from_requests(
        [PredictionRequest.model_validate(PREDICTION | {"input_tokens": n}) for n in (100, 2_000)]
    )
    expected, served = clean.predict(probe), flooded.predict(probe)
    p90 = fast_config.quantiles.index(0.9)
    assert not served.cold.any()
    np.testing.assert_allclose(served.ttft_ms[:, p90], expected.ttft_ms[:, p90], rtol=0.01)
    np.testing.assert_allclose(served.tpot_ms[:, p90], expected.tpot_ms[:, p90], rtol=0.01)


def test_100k_accelerator_names_keep_models_and_memory_bounded(
    settings: Settings, stream: SyntheticStream
) -> None:
    cap = 16
    config = ModelConfig.from_settings(_tuned(settings, max_accelerators=cap))
    registry = ModelRegistry(config)
    metrics = ServiceMetrics(max_label_values=cap)
    template = stream.observations[0]
    registry.learn([template])  # the real H100, seen again after the flood
    names = iter(range(100_000))
    tracemalloc.start()
    try:
        memory: list[int] = []
        for batch in range(100):
            flood = [
                template.model_copy(update={"accelerator": f"fake-{next(names)}"})
                for _ in range(1_000)
            ]
            metrics.record_learning(registry.learn(flood, LearnScope.ACCELERATORS))
            assert len({m.key.accelerator for m in registry.model_sets()} - {"global"}) <= cap
            if batch in (9, 99):
                memory.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert memory[1] < memory[0] * 1.5 + 2_000_000, memory  # flat from 10k to 100k names
    evicted = metrics.cardinality_capped.labels("accelerator")._value.get()
    assert evicted == 100_000 + 1 - cap
    registry.learn([template])
    assert "H100" in {m.key.accelerator for m in registry.model_sets()}


def test_global_key_cannot_be_claimed_or_evicted(
    fast_config: ModelConfig, stream: SyntheticStream
) -> None:
    registry = ModelRegistry(fast_config)
    claimed = [o.model_copy(update={"accelerator": "global"}) for o in stream.observations[:50]]
    report = registry.learn(claimed)
    assert {k.accelerator for k in report.samples} == {"global"}
    assert all(n == 50 for n in report.samples.values())  # learned once, not twice


def test_live_pods_are_capped_least_recently_reported_first(settings: Settings) -> None:
    evictions: list[int] = []
    store = InProcessObservationStore(
        10, 10, pod_ttl_s=60, max_pods=1_000, on_pod_evicted=lambda: evictions.append(1)
    )
    for i in range(100_000):
        store.put_pod_state(PodState(pod=f"pod-{i}", accelerator="H100", updated_at=1.0))
    live = store.live_pods()
    assert len(live) == 1_000 and len(evictions) == 99_000
    assert {p.pod for p in live} == {f"pod-{i}" for i in range(99_000, 100_000)}


def test_pod_cap_shows_in_metrics(settings: Settings) -> None:
    with _client(settings, max_live_pods=5) as client:
        for i in range(12):
            assert client.post("/v1/pods", json={**POD, "pod": f"p{i}"}).status_code == 204
        assert _metric(client, 'latency_oracle_cardinality_capped_total{kind="pod"}') == 7


def test_route_ledger_forgets_pods_it_is_never_asked_about() -> None:
    now = [0.0]
    ledger = InFlightLedger(ttl_s=1.0, clock=lambda: now[0])
    for i in range(50_000):
        now[0] = i * 0.001
        ledger.place(f"pod-{i}", np.ones(4))
    assert len(ledger._pods) <= 2 * max(SWEEP_MIN_PODS, 1_000) + 1


def test_metric_labels_beyond_the_cap_count_as_other() -> None:
    capped: list[int] = []
    label = LabelCap("accelerator", 3, lambda: capped.append(1))
    assert [label(f"a{i}") for i in range(5)] == ["a0", "a1", "a2", OVERFLOW_LABEL, OVERFLOW_LABEL]
    assert label("a1") == "a1" and len(capped) == 2


def test_observation_schema_still_rejects_what_cannot_be_parsed(settings: Settings) -> None:
    with _client(settings) as client:
        bad = client.post("/v1/observations", content=b"\xff{", headers={"content-type": "x"})
        assert bad.status_code in (400, 422)
        assert bad.json()["detail"][0]["loc"][0] == "body"
    assert Observation.model_fields["ttft_ms"]  # the schema bounds stay the outer fence
