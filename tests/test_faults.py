"""Fault injection: after each fault nothing accepted is lost, predictions never fail, and the
health endpoints tell the truth.

Faults covered here: Redis killed (SIGKILL) and restarted, a corrupt checkpoint in Redis,
MLflow down, wall-clock jumps. Covered where the machinery lives: the engine dying
mid-stream (``test_sidecar_proxy.py::test_engine_killed_mid_stream_reaches_the_client_and_
writes_nothing``), a trainer killed with SIGKILL mid-stream
(``test_trainer_exactly_once.py::test_kill_9_mid_stream_loses_nothing_and_doubles_nothing``),
Redis stopped gracefully while serving (``test_redis_replica.py::test_redis_outage_*``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from polling import wait_until
from redis_support import (
    delete_prefix,
    deployed_persistence,
    private_server,
    redis_settings,
    shard_samples,
    unique_prefix,
)

from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, RedisKeys
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.persistence.redis_checkpoint import CheckpointStore, ShardCheckpoint
from latency_oracle.models.registry import LearnScope, ModelRegistry
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.routing.inflight_ledger import WAITING, InFlightLedger
from latency_oracle.settings import Settings
from latency_oracle.sim.processes import free_port
from latency_oracle.sim.synthetic_stream import SyntheticStream, generate_stream
from latency_oracle.trainer.loop import Trainer

pytestmark = pytest.mark.slow


def _probe(observation: object) -> dict[str, object]:
    return observation.model_dump(  # type: ignore[attr-defined]
        mode="json", exclude={"ttft_ms", "tpot_ms", "observation_id", "timestamp"}
    )


def _post(http: TestClient, observations: list) -> None:
    reply = http.post("/v1/observations", json=[o.model_dump(mode="json") for o in observations])
    assert reply.status_code == 202 and reply.json()["accepted"] == len(observations), reply.text


def test_redis_killed_and_restarted_loses_no_accepted_observation(
    tmp_path: Path, redis_kind: str
) -> None:
    """With the persistence the manifests deploy (AOF, fsync every second).

    Redis writes the append-only file before it acknowledges, so a killed Redis process
    (OOM kill, crash, SIGKILL) loses nothing; only a crash of the node's kernel or power
    can lose what was not yet fsynced, about the last second (docs/operations.md says so). On a
    cluster every node is killed at once and restarted.
    """
    with private_server(redis_kind, tmp_path) as server:
        settings = redis_settings(unique_prefix(), url=server.url, redis_timeout_s=0.3)
        client = connect(server.url, 1.0)
        deployed = dict(zip(*[iter(deployed_persistence())] * 2, strict=True))
        assert client.config_get("appendfsync")["appendfsync"] == deployed["--appendfsync"]
        before = generate_stream(400, seed=31, id_prefix="before").observations
        during = generate_stream(300, seed=32, id_prefix="during").observations
        with TestClient(create_app(settings)) as http:
            _post(http, before)
            server.kill()
            for start in range(0, 300, 100):
                _post(http, during[start : start + 100])
            for observation in during[:20]:
                assert http.post("/v1/predictions", json=_probe(observation)).status_code == 200
            readiness = http.get("/readyz")
            assert readiness.status_code == 200 and readiness.json()["status"] == "degraded"
            assert any("300 observations buffered" in p for p in readiness.json()["problems"])

            server.start()
            stream = RedisKeys(settings.redis_key_prefix).stream("H100")
            assert wait_until(lambda: client.xlen(stream) == 700, timeout_s=15)
            assert wait_until(lambda: http.get("/readyz").json()["status"] == "ready", 15)
            trainer = Trainer(settings, client)
            assert wait_until(
                lambda: (
                    (trainer.step() or True)
                    and GLOBAL_SHARD in trainer.workers
                    and all(
                        m.n_samples == 700
                        for m in trainer.workers[GLOBAL_SHARD].registry.model_sets()
                    )
                ),
                timeout_s=60,
                every_s=0,
            )
            trainer.shutdown()
            assert shard_samples(client, settings)["global/ttft"] == 700


def test_corrupt_checkpoint_keeps_the_last_good_model_and_alarms(
    fast_config: ModelConfig, stream: SyntheticStream, redis_url: str
) -> None:
    settings = redis_settings(unique_prefix(), redis_url)
    client = connect(redis_url, 1.0)
    keys = RedisKeys(settings.redis_key_prefix)
    checkpoints = CheckpointStore(client, keys, settings.quantiles)
    registry = ModelRegistry(ModelConfig.from_settings(settings))
    registry.learn(stream.observations[:1_000], LearnScope.ACCELERATORS)
    client.set(keys.lease("H100"), "token")

    def publish(data: bytes | None = None) -> None:
        checkpoints.write("H100", ShardCheckpoint(registry.export_state(), "1-0"), "token", "t", 1)
        client.sadd(keys.shards, "H100")
        if data is not None:
            client.set(keys.snapshot("H100"), data)

    probe = _probe(stream.observations[0])
    try:
        publish()
        with TestClient(create_app(settings)) as http:
            assert wait_until(
                lambda: not http.post("/v1/predictions", json=probe).json()["cold"], 5
            )
            good = http.post("/v1/predictions", json=probe).json()
            corrupt = bytearray(client.get(keys.snapshot("H100")) or b"")
            corrupt[-10] ^= 0xFF
            registry.learn(stream.observations[1_000:1_500], LearnScope.ACCELERATORS)
            publish(bytes(corrupt))
            assert wait_until(lambda: http.get("/readyz").json()["status"] == "degraded", 5)
            readiness = http.get("/readyz")
            assert readiness.status_code == 200
            assert any("H100 unreadable" in p for p in readiness.json()["problems"])
            assert "latency_oracle_corrupt_checkpoints 1.0" in http.get("/metrics").text
            for _ in range(10):
                assert http.post("/v1/predictions", json=probe).json() == good

            publish()  # the trainer's next checkpoint is good again: the alarm clears
            assert wait_until(lambda: http.get("/readyz").json()["status"] == "ready", 5)
            assert http.post("/v1/predictions", json=probe).json() != good
    finally:
        delete_prefix(client, settings.redis_key_prefix)


def test_mlflow_down_costs_tracking_only(settings: Settings, stream: SyntheticStream) -> None:
    down = Settings(
        **{
            **settings.model_dump(),
            "mlflow_enabled": True,
            "mlflow_uri": f"http://127.0.0.1:{free_port()}",
            "mlflow_timeout_s": 0.2,
            "mlflow_retries": 0,
            "tracking_every_observations": 100,
            "tracking_flush_timeout_s": 0.5,
        }
    )
    service = OracleService(down)
    with TestClient(create_app(down, service)) as http:
        for start in range(0, 1_000, 250):
            _post(http, stream.observations[start : start + 250])
        assert service.wait_learned(1_000, timeout_s=30)
        assert wait_until(lambda: service.tracker.errors._value.get() > 0, timeout_s=15)
        reply = http.post("/v1/predictions", json=_probe(stream.observations[0]))
        assert reply.status_code == 200 and reply.json()["cold"] is False
        assert http.get("/readyz").json()["status"] == "ready"  # serving does not need MLflow
        assert "latency_oracle_tracking_errors_total" in http.get("/metrics").text
    assert service.learned_total == 1_000


def test_wall_clock_jumps_neither_expire_pods_nor_pin_placements(
    settings: Settings, stream: SyntheticStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = OracleService(settings)
    real_time = time.time
    with TestClient(create_app(settings, service)) as http:
        pod = {"pod": "p0", "accelerator": "H100", "model": "m", "updated_at": real_time()}
        assert http.post("/v1/pods", json=pod).status_code == 204
        for jump in (+86_400.0, -86_400.0):
            monkeypatch.setattr(time, "time", lambda jump=jump: real_time() + jump)
            assert [p.pod for p in service.store.live_pods()] == ["p0"]  # type: ignore[attr-defined]
            route = http.post("/v1/route", json={"input_tokens": 100, "model": "m"})
            assert route.status_code == 200 and route.json()["pod"] == "p0"
            _post(http, stream.observations[:50] if jump > 0 else stream.observations[50:100])
        assert service.wait_learned(100, timeout_s=20)
        assert http.get("/readyz").json()["status"] == "ready"

    wall, mono = [1_000_000.0], [0.0]
    ledger = InFlightLedger(ttl_s=2.0, clock=lambda: wall[0], monotonic=lambda: mono[0])
    ledger.place("a", np.array([1.0, 0.0, 0.0, 0.0]))
    wall[0] -= 3_600.0  # NTP steps the clock back an hour
    assert ledger.pending(["a"], [None])[0, WAITING] == 1.0
    mono[0] += 2.5
    assert ledger.pending(["a"], [None])[0, WAITING] == 0.0  # the TTL still ends it
