"""Each role's Redis ACL user, rendered from the deployed ACL, allows its real code paths
and nothing more: a sidecar cannot write (or read) a model, a predictor cannot write one,
and a forged snapshot written with admin credentials is refused by the predictor. On a
single Redis and on a three-master Redis Cluster whose every node loads the same file."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cluster_support import local_cluster
from fastapi.testclient import TestClient
from polling import wait_until
from redis_support import group_drained, private_redis, redis_settings, render_acl

from latency_oracle.features.pod_state import PodState
from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, RedisKeys
from latency_oracle.features.redis.observation_store import connect, connect_as
from latency_oracle.features.schema import Observation
from latency_oracle.models.persistence.redis_checkpoint import CheckpointStore, ShardCheckpoint
from latency_oracle.models.persistence.redis_pins import FleetPins
from latency_oracle.predictor.app import create_app
from latency_oracle.settings import Settings
from latency_oracle.sidecar.sink import ObservationSink, sink_from_settings
from latency_oracle.sim.synthetic_stream import generate_stream
from latency_oracle.trainer.loop import Trainer

pytestmark = pytest.mark.slow

ROLES = ("admin", "trainer", "predictor", "sidecar")
PREFIX = "lo-acl"
SNAPSHOT_KEY = "s" * 40


@pytest.fixture(scope="module", params=["single", "cluster"])
def acl_redis(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[str, dict]]:
    """The URL of a Redis (or of a cluster's first node) loading the rendered ACL file."""
    directory = tmp_path_factory.mktemp("acl-redis")
    passwords = {role: secrets.token_hex(16) for role in ROLES}
    aclfile = directory / "users.acl"
    aclfile.write_text(render_acl(PREFIX, passwords))
    if request.param == "single":
        with private_redis(directory, "--aclfile", str(aclfile)) as server:
            yield server.url, passwords
        return
    # Replicas replicate as admin: the default user may only PING.
    replication = ("--masteruser", "admin", "--masterauth", passwords["admin"])
    with local_cluster(
        Path(directory), "--aclfile", str(aclfile), *replication, auth=("admin", passwords["admin"])
    ) as cluster:
        yield cluster.url, passwords


def _as(url: str, passwords: dict, role: str, **overrides: object) -> Settings:
    return redis_settings(
        PREFIX,
        url=url,
        redis_username=role,
        redis_password=passwords[role],
        snapshot_key=SNAPSHOT_KEY,
        trainer_checkpoint_interval_s=3600,
        **overrides,
    )


def test_unauthenticated_clients_may_only_ping(acl_redis: tuple[str, dict]) -> None:
    url, _ = acl_redis
    anonymous = connect(url, 1.0)
    assert anonymous.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        anonymous.get(f"{PREFIX}:versions")


@pytest.mark.parametrize("role", ["sidecar", "predictor"])
def test_sidecars_and_predictors_cannot_write_a_model(
    acl_redis: tuple[str, dict], role: str
) -> None:
    url, passwords = acl_redis
    client = connect_as(_as(url, passwords, role))
    keys = RedisKeys(PREFIX)
    denied = [
        lambda: client.set(keys.snapshot("H100"), b"LOSNAP"),
        lambda: client.hincrby(keys.versions, "H100", 1),
        lambda: client.set(keys.lease("H100"), "mine"),
        lambda: client.delete(keys.stream("H100")),
        lambda: client.xgroup_create(keys.stream("H100"), "mine", mkstream=True),
        lambda: client.flushall(),
        lambda: client.get("other-app:secret"),
    ]
    if role == "sidecar":
        denied += [
            lambda: client.get(keys.snapshot("H100")),
            lambda: client.get(keys.pod(0, "x")),
            lambda: client.zrangebyscore(keys.pod_index(0), "-inf", "+inf"),
            lambda: client.hset(keys.pins, "H100/ttft", "{}"),
            lambda: client.set(keys.pinned("H100/ttft"), b"LOSNAP"),
        ]
    for call in denied:
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    store = CheckpointStore(client, keys, (0.5, 0.9, 0.99), SNAPSHOT_KEY.encode())
    with pytest.raises(redis.exceptions.NoPermissionError):
        store.write("H100", ShardCheckpoint({}, "1-0"), "token", "x", 1)


def test_every_role_works_with_its_own_credentials(acl_redis: tuple[str, dict]) -> None:
    """Sidecar writes observations and pod state; the predictor accepts observations and
    pods and syncs models and pods; the trainer reads, learns, checkpoints and acks; a
    forged snapshot written as admin is refused, and the trainer's next one loads."""
    url, passwords = acl_redis
    sidecar, predictor, trainer_settings, admin = (
        _as(url, passwords, role) for role in ("sidecar", "predictor", "trainer", "admin")
    )
    observations = generate_stream(900, seed=5).observations
    asyncio.run(_sidecar_delivers(sink_from_settings(sidecar), observations[:600]))

    trainer = Trainer(trainer_settings)
    try:
        with TestClient(create_app(predictor)) as http:
            batch = [o.model_dump(mode="json") for o in observations[600:]]
            assert http.post("/v1/observations", json=batch).status_code == 202
            pod = {"pod": "posted-pod", "accelerator": "A100", "model": "mistral"}
            assert http.post("/v1/pods", json=pod).status_code == 204
            route = {"input_tokens": 9, "model": "llama"}
            assert wait_until(
                lambda: http.post("/v1/route", json=route).json().get("pod") == "acl-pod", 5
            )
            assert wait_until(
                lambda: (trainer.step() or True) and _learned(trainer) == 900, 60, every_s=0
            )
            for worker in trainer.workers.values():
                worker.checkpoint()
            assert group_drained(connect_as(admin), trainer_settings)
            probe = observations[0].model_dump(
                mode="json", exclude={"ttft_ms", "tpot_ms", "observation_id", "timestamp"}
            )
            assert wait_until(
                lambda: not http.post("/v1/predictions", json=probe).json()["cold"], 5
            )
            assert http.get("/readyz").json()["status"] == "ready", http.get("/readyz").text

            # A fleet-wide pin: the predictor writes it, the trainer reads it.
            pins = FleetPins(
                connect_as(predictor), RedisKeys(PREFIX), predictor.quantiles, SNAPSHOT_KEY.encode()
            )
            [global_ttft] = [
                m
                for m in trainer.workers[GLOBAL_SHARD].registry.model_sets()
                if m.key.target.value == "ttft"
            ]
            pins.pin(global_ttft, 1)
            assert trainer.tracker.is_pinned(global_ttft.key)
            assert pins.model_set(global_ttft.key).n_samples == global_ttft.n_samples
            assert pins.unpin(global_ttft.key) and not trainer.tracker.is_pinned(global_ttft.key)

            forged = CheckpointStore(
                connect_as(admin), RedisKeys(PREFIX), predictor.quantiles, b"f" * 40
            )
            checkpoint = ShardCheckpoint(trainer.workers[GLOBAL_SHARD].registry.export_state())
            forged.write(GLOBAL_SHARD, checkpoint, trainer.leases.token, "intruder", 0)
            assert wait_until(lambda: _refused(http), 5), http.get("/readyz").text

            trainer.workers[GLOBAL_SHARD].applied_since_checkpoint = 1
            trainer.workers[GLOBAL_SHARD].checkpoint()  # the trainer's next good one loads
            assert wait_until(lambda: http.get("/readyz").json()["status"] == "ready", 5)
    finally:
        trainer.shutdown()
        connect_as(admin).flushall()


async def _sidecar_delivers(sink: ObservationSink, observations: list[Observation]) -> None:
    """The sidecar's own sink: observations (retried ones included) and its pod's state."""
    try:
        await sink.write(observations)
        await sink.write(observations[:10])  # idempotent by id: no second entry
        await sink.publish(PodState(pod="acl-pod", accelerator="H100", model="llama"))
    finally:
        await sink.aclose()


def _learned(trainer: Trainer) -> int:
    worker = trainer.workers.get(GLOBAL_SHARD)
    return (
        0 if worker is None else max((m.n_samples for m in worker.registry.model_sets()), default=0)
    )


def _refused(http: TestClient) -> bool:
    problems = http.get("/readyz").json()["problems"]
    return any(p.startswith("snapshot_refused:") and "forged" in p for p in problems)


def test_the_acl_source_names_every_role_the_config_uses() -> None:
    """No placeholder is left unfilled in what Redis loads (hash tags' braces stay: the
    rendered prefix, ``lo-acl``, is no placeholder's name)."""
    rendered = render_acl(PREFIX, {role: "pw" for role in ROLES})
    assert re.search(r"\{[a-z_]+\}", rendered) is None
    assert "~{lo-acl}:shards" in rendered and "~{lo-acl:*}:obs" in rendered
    assert {line.split()[1] for line in rendered.splitlines()} == {"default", *ROLES}
