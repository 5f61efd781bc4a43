"""Predictor replicas in Redis mode: model sync, and serving through a Redis outage, on a
single Redis and on a three-master Redis Cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from polling import wait_until
from redis_support import (
    delete_prefix,
    learn_and_checkpoint,
    make_store,
    private_server,
    redis_settings,
    stream_ids,
    unique_prefix,
)

from latency_oracle.features.pod_state import PodState
from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.processes import free_port
from latency_oracle.sim.synthetic_stream import generate_stream
from latency_oracle.trainer.loop import Trainer

H100_TTFT = ModelKey("H100", Target.TTFT)


def _samples(service: OracleService, key: ModelKey) -> int:
    return next((m.n_samples for m in service.models.model_sets() if m.key == key), 0)


@pytest.fixture
def shared(redis_url: str) -> Iterator[tuple[Settings, RedisClient]]:
    settings = redis_settings(unique_prefix(), redis_url, trainer_checkpoint_interval_s=3600)
    client = connect(redis_url, 2.0)
    yield settings, client
    delete_prefix(client, settings.redis_key_prefix)


def test_replica_picks_up_a_new_snapshot_within_two_seconds(
    shared: tuple[Settings, RedisClient],
) -> None:
    settings, client = shared
    store = make_store(client, settings)
    trainer = Trainer(settings, client)
    service = OracleService(settings)
    service.start()
    try:
        store.append(generate_stream(1_000, seed=11, id_prefix="x").observations)
        learn_and_checkpoint(trainer, 1_000)
        assert wait_until(lambda: _samples(service, H100_TTFT) == 1_000, timeout_s=2.0)

        store.append(generate_stream(500, seed=12, id_prefix="y").observations)
        written = learn_and_checkpoint(trainer, 1_500)
        assert wait_until(lambda: _samples(service, H100_TTFT) == 1_500, timeout_s=2.0)
        assert time.monotonic() - written < 2.0
        prediction = service.predict(generate_stream(1, seed=13).observations)
        assert prediction.ttft_model[0].endswith("@H100")
    finally:
        service.stop()
        trainer.shutdown()


def test_replica_routes_to_the_live_pods_sidecars_published_to_redis(
    shared: tuple[Settings, RedisClient],
) -> None:
    settings, client = shared
    sidecar_store = make_store(client, settings)
    sidecar_store.put_pod_state(PodState(pod="redis-pod", accelerator="H100", model="llama"))
    with TestClient(create_app(settings)) as http:
        response = http.post("/v1/route", json={"input_tokens": 100, "model": "llama"})
        assert response.status_code == 200 and response.json()["pod"] == "redis-pod"
        pod = {"pod": "posted-pod", "accelerator": "A100", "model": "mistral"}
        assert http.post("/v1/pods", json=pod).status_code == 204
    assert [p.pod for p in sidecar_store.live_pods("mistral")] == ["posted-pod"]


@pytest.mark.slow
def test_redis_outage_serves_stale_models_and_buffers_observations(
    tmp_path: Path, redis_kind: str
) -> None:
    with private_server(redis_kind, tmp_path) as server:
        settings = redis_settings(
            unique_prefix(), url=server.url, trainer_checkpoint_interval_s=3600
        )
        redis_client = connect(server.url, 1.0)
        before = generate_stream(1_000, seed=21, id_prefix="before").observations
        during = generate_stream(300, seed=22, id_prefix="during").observations
        probe = before[0].model_dump(mode="json", exclude={"ttft_ms", "tpot_ms"})
        probe.pop("observation_id"), probe.pop("timestamp")
        with TestClient(create_app(settings)) as http:
            body = [o.model_dump(mode="json") for o in before]
            assert http.post("/v1/observations", json=body).json()["accepted"] == 1_000
            pod = {"pod": "live-pod", "accelerator": "H100", "model": "llama"}
            assert http.post("/v1/pods", json=pod).status_code == 204
            route = {"input_tokens": 100, "model": "llama"}
            assert wait_until(lambda: http.post("/v1/route", json=route).status_code == 200, 5)
            trainer = Trainer(settings, redis_client)
            learn_and_checkpoint(trainer, 1_000)
            trainer.shutdown()
            assert wait_until(
                lambda: http.post("/v1/predictions", json=probe).json()["model"]["ttft"] != "prior",
                timeout_s=5,
            )

            server.stop()
            for start in range(0, 300, 100):
                reply = http.post(
                    "/v1/observations",
                    json=[o.model_dump(mode="json") for o in during[start : start + 100]],
                )
                assert reply.status_code == 202 and reply.json()["accepted"] == 100
            for _ in range(20):
                reply = http.post("/v1/predictions", json=probe)
                assert reply.status_code == 200
                assert reply.json()["model"]["ttft"] != "prior"  # last good model, not a fallback
                routed = http.post("/v1/route", json=route)  # on the last known pod states
                assert routed.status_code == 200 and routed.json()["pod"] == "live-pod"
            for failing in ("model sync failing", "pod state sync failing"):
                assert wait_until(
                    lambda failing=failing: any(
                        failing in p for p in http.get("/readyz").json()["problems"]
                    ),
                    timeout_s=10,
                )
            readiness = http.get("/readyz").json()
            assert readiness["status"] == "degraded"
            assert any("300 observations buffered" in p for p in readiness["problems"])
            metrics = http.get("/metrics").text
            assert 'latency_oracle_redis_errors_total{operation="write"}' in metrics
            assert 'latency_oracle_redis_errors_total{operation="pods"}' in metrics
            assert "latency_oracle_outage_buffered_observations 300.0" in metrics

            server.start()
            buffered = {o.observation_id for o in during}
            assert wait_until(
                lambda: buffered <= stream_ids(redis_client, settings, "H100"), timeout_s=10
            )
            assert wait_until(lambda: http.get("/readyz").json()["status"] == "ready", 10)
            retried = http.post("/v1/observations", json=[during[0].model_dump(mode="json")])
            assert retried.json() == {"accepted": 0, "duplicates": 1}


def test_full_outage_buffer_answers_503_with_retry_after() -> None:
    settings = redis_settings(
        unique_prefix(), url=f"redis://127.0.0.1:{free_port()}/0", observation_buffer=50
    )
    observations = [o.model_dump(mode="json") for o in generate_stream(60, seed=31).observations]
    with TestClient(create_app(settings)) as http:
        assert http.post("/v1/observations", json=observations[:40]).status_code == 202
        refused = http.post("/v1/observations", json=observations[40:])
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert http.post("/v1/observations", json=observations[:40]).json()["duplicates"] == 40
        probe = dict(observations[0])
        for field in ("observation_id", "timestamp", "ttft_ms", "tpot_ms"):
            probe.pop(field)
        assert http.post("/v1/predictions", json=probe).json()["model"]["ttft"] == "prior"
        assert http.get("/readyz").json()["status"] == "degraded"


def test_outage_buffer_keeps_a_requests_first_token_and_finish_records() -> None:
    """Buffered by id and labels: both records of one request wait for Redis; a retry of
    either is one."""
    settings = redis_settings(unique_prefix(), url=f"redis://127.0.0.1:{free_port()}/0")
    finish = generate_stream(1, seed=32).observations[0]
    first_token = finish.model_copy(update={"tpot_ms": None, "output_tokens": 1, "finished": False})
    records = [o.model_dump(mode="json") for o in (first_token, finish)]
    with TestClient(create_app(settings)) as http:
        assert http.post("/v1/observations", json=records).json()["accepted"] == 2
        retried = http.post("/v1/observations", json=records[1:])
        assert retried.json() == {"accepted": 0, "duplicates": 1}
        assert "latency_oracle_outage_buffered_observations 2.0" in http.get("/metrics").text
