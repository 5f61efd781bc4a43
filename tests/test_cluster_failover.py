"""A Redis Cluster master fails over: predictions never stop, and what is lost is exactly what
``docs/redis-cluster.md`` says a failover may lose.

One local cluster (three masters, each with a replica), a predictor (its outage buffer in
front of Redis) and a trainer running its loop, while a probe asks for predictions all
along. First a graceful ``CLUSTER FAILOVER`` of the master holding the H100 shard: the
replica catches up before it takes over, so nothing is lost. Then that shard's new
master is killed (SIGKILL) while its replica is paused (SIGSTOP), so writes the master
acknowledged never reach the replica (paused with SIGSTOP, its link cut, as a lagging or
briefly partitioned replica would be); the replica is resumed and the cluster promotes it.
Replication is asynchronous: exactly those acknowledged writes are lost, and nothing else.
Writes made while no master served the shard are buffered by the predictor and land once
the replica took over, and every observation the shard's stream holds is learned exactly
once (the trainer resumes each shard from what the new master holds).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from cluster_support import LocalCluster, local_cluster
from fastapi.testclient import TestClient
from polling import wait_until
from redis_support import redis_settings, running, shard_samples, unique_prefix

from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, RedisKeys
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.features.schema import Observation
from latency_oracle.predictor.app import create_app
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream
from latency_oracle.trainer.loop import Trainer

pytestmark = pytest.mark.slow

BATCHES = {"before": 600, "graceful": 200, "unreplicated": 150, "during": 200, "after": 200}


class Probe:
    """Asks for a prediction every few milliseconds on a thread; counts what went wrong."""

    def __init__(self, http: TestClient, request: dict[str, object]) -> None:
        self.http, self.request = http, request
        self.answered = self.failed = self.from_prior = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-probe")

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            reply = self.http.post("/v1/predictions", json=self.request)
            if reply.status_code != 200:
                self.failed += 1
            elif reply.json()["model"]["ttft"] == "prior":
                self.from_prior += 1
            self.answered += 1

    @contextmanager
    def running(self) -> Iterator[Probe]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=30)


def _post(http: TestClient, observations: list[Observation]) -> None:
    for start in range(0, len(observations), 50):
        body = [o.model_dump(mode="json") for o in observations[start : start + 50]]
        reply = http.post("/v1/observations", json=body)
        assert reply.status_code == 202 and reply.json()["accepted"] == len(body), reply.text


def _kept(settings: Settings, shard: str, ids: list[str]) -> set[str]:
    """The observations whose append the shard kept (its idempotency key is there)."""
    keys = RedisKeys(settings.redis_key_prefix)
    pipe = connect(settings.redis_url or "", 2.0).pipeline(transaction=False)
    for observation_id in ids:
        pipe.exists(keys.seen(shard, observation_id))
    return {i for i, kept in zip(ids, pipe.execute(), strict=True) if kept}


def _learned(settings: Settings) -> dict[str, int]:
    """Samples per key in the checkpoints; {} while the client meets the failover itself."""
    try:
        return shard_samples(connect(settings.redis_url or "", 1.0), settings)
    except redis.RedisError:
        return {}


def _promoted(cluster: LocalCluster, node: object) -> bool:
    return cluster.ok() and cluster.role(node) == "master"  # type: ignore[arg-type]


def test_a_failover_loses_exactly_the_writes_the_replica_had_not_received(tmp_path: Path) -> None:
    batches = {
        name: generate_stream(n, seed=i, id_prefix=name).observations
        for i, (name, n) in enumerate(BATCHES.items())
    }
    request = batches["before"][0].model_dump(
        mode="json", exclude={"ttft_ms", "tpot_ms", "observation_id", "timestamp"}
    )
    # A short node timeout: the killed master is failed over within seconds.
    with local_cluster(tmp_path, node_timeout_ms=1_000) as cluster:
        settings = redis_settings(unique_prefix(), cluster.url, redis_timeout_s=0.3)
        keys = RedisKeys(settings.redis_key_prefix)
        trainer = Trainer(settings, connect(cluster.url, 1.0))
        with TestClient(create_app(settings)) as http, running(trainer):
            _post(http, batches["before"])
            assert wait_until(
                lambda: (
                    _learned(settings).get("H100/ttft") == BATCHES["before"]
                    and http.post("/v1/predictions", json=request).json()["model"]["ttft"]
                    != "prior"
                ),
                timeout_s=60,
            )
            with Probe(http, request).running() as probe:
                # Graceful: the replica takes every write before it takes over.
                master = cluster.master_of(keys.stream("H100"))
                replica = cluster.replica_of(master)
                cluster.node_client(replica).execute_command("CLUSTER", "FAILOVER")
                _post(http, batches["graceful"])
                assert wait_until(lambda: cluster.healthy() and _promoted(cluster, replica), 30)

                # A crash: writes the new master acknowledged never reached its replica.
                master, replica = replica, master
                assert wait_until(lambda: cluster.replicated(master), 10)
                global_lost = cluster.master_of(keys.stream(GLOBAL_SHARD)) == master
                replica.pause()  # it cannot reconnect: what the master writes from now is its own
                cluster.node_client(master).client_kill_filter(_type="replica")
                _post(http, batches["unreplicated"])  # acknowledged by the master alone
                master.kill()
                replica.resume()
                _post(http, batches["during"])  # no master serves H100: the predictor buffers
                assert wait_until(lambda: _promoted(cluster, replica), 30), "no failover"
                _post(http, batches["after"])

                kept = [n for name, n in BATCHES.items() if name != "unreplicated"]
                expected = {"H100/ttft": sum(kept), "H100/tpot": sum(kept)}
                on_global = sum(kept) + (0 if global_lost else BATCHES["unreplicated"])
                expected |= {"global/ttft": on_global, "global/tpot": on_global}
                assert wait_until(
                    lambda: _learned(settings) == expected, timeout_s=120, every_s=0.2
                ), f"learned {_learned(settings)}, expected {expected}"
            assert probe.failed == 0 and probe.from_prior == 0 and probe.answered > 100, vars(probe)

        every = [o.observation_id for b in batches.values() for o in b]
        lost = {o.observation_id for o in batches["unreplicated"]}
        assert _kept(settings, "H100", every) == set(every) - lost
