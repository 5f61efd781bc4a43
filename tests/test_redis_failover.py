"""Redis failover to a promoted replica: predictors keep serving, then sync and ingest again.

Two real redis-servers, the second a replica (``--replicaof``) of the first, behind one
address as a Kubernetes Service would put them. The master is killed, the replica is
promoted (``REPLICAOF NO ONE``, what Sentinel or an operator does) and the address follows
it. Predictions never fail meanwhile, observations accepted during the switch are
written to the new master, the trainer resumes from the checkpoints the replica holds,
and the predictor syncs the models it writes there.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from polling import wait_until
from redis_support import (
    learn_and_checkpoint,
    private_redis,
    redis_settings,
    unique_prefix,
)
from service_address import ServiceAddress

from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, RedisKeys
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.sim.synthetic_stream import generate_stream
from latency_oracle.trainer.loop import Trainer

pytestmark = pytest.mark.slow


def _link_up(replica: redis.Redis) -> bool:
    return replica.info("replication").get("master_link_status") == "up"


def _global_samples(service: OracleService) -> set[int]:
    return {m.n_samples for m in service.models.model_sets() if m.key.accelerator == "global"}


def test_failover_to_a_promoted_replica_keeps_serving_then_syncs_and_ingests(
    tmp_path: Path,
) -> None:
    with (
        private_redis(tmp_path / "master") as master,
        private_redis(
            tmp_path / "replica", "--replicaof", "127.0.0.1", str(master.port)
        ) as replica,
        ServiceAddress(master.port) as address,
    ):
        replica_client = connect(replica.url, 1.0)
        assert wait_until(lambda: _link_up(replica_client), 10), "replica never synced"
        url = f"redis://127.0.0.1:{address.port}/0"
        settings = redis_settings(
            unique_prefix(), url=url, redis_timeout_s=0.3, trainer_checkpoint_interval_s=3600
        )
        before = generate_stream(600, seed=41, id_prefix="before").observations
        during = generate_stream(400, seed=42, id_prefix="during").observations
        probe = before[0].model_dump(
            mode="json", exclude={"ttft_ms", "tpot_ms", "observation_id", "timestamp"}
        )
        service = OracleService(settings)
        trainer = Trainer(settings, connect(url, 1.0))
        try:
            with TestClient(create_app(settings, service)) as http:
                body = [o.model_dump(mode="json") for o in before]
                assert http.post("/v1/observations", json=body).json()["accepted"] == 600
                learn_and_checkpoint(trainer, 600)
                assert wait_until(lambda: _global_samples(service) == {600}, 10)
                # acknowledged by the replica too: asynchronous replication lags by a little
                assert connect(master.url, 1.0).wait(1, 5_000) == 1

                assert master.process is not None
                master.process.send_signal(signal.SIGKILL)
                master.process.wait(timeout=10)
                master.process = None
                for start in range(0, 200, 100):  # accepted while no master answers
                    chunk = [o.model_dump(mode="json") for o in during[start : start + 100]]
                    assert http.post("/v1/observations", json=chunk).status_code == 202
                replica_client.replicaof("NO", "ONE")
                address.switch(replica.port)
                for start in range(200, 400, 100):
                    chunk = [o.model_dump(mode="json") for o in during[start : start + 100]]
                    assert http.post("/v1/observations", json=chunk).status_code == 202
                for _ in range(20):
                    reply = http.post("/v1/predictions", json=probe)
                    assert reply.status_code == 200 and reply.json()["model"]["ttft"] != "prior"

                # Every observation accepted during the switch is in the new master's stream
                # (the checkpoint trimmed the stream of those it already holds).
                stream = RedisKeys(settings.redis_key_prefix).stream(GLOBAL_SHARD)
                written = {o.observation_id for o in during}
                assert wait_until(
                    lambda: written <= {f[b"i"].decode() for _, f in replica_client.xrange(stream)},
                    15,
                )
                learn_and_checkpoint(trainer, 1_000)  # resumes from the replica's checkpoint
                assert wait_until(lambda: _global_samples(service) == {1_000}, 10)
                assert wait_until(lambda: http.get("/readyz").json()["status"] == "ready", 15)
        finally:
            trainer.shutdown()
