"""A replica or trainer refuses an unsigned, forged or unusable snapshot, reports it, keeps
its last good models and keeps syncing: one bad snapshot never stops model sync."""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import zlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from polling import wait_until
from redis_support import delete_prefix, make_store, redis_settings, unique_prefix

from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.persistence.redis_checkpoint import CheckpointStore, ShardCheckpoint
from latency_oracle.models.registry import LearnScope, ModelRegistry
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.model_sync import ModelSync
from latency_oracle.sim.synthetic_stream import SyntheticStream
from latency_oracle.trainer.loop import Trainer

SNAPSHOT_KEY = "trainers-only-" + "s" * 32

pytestmark = pytest.mark.slow


def _probe(observation: object) -> dict[str, object]:
    return observation.model_dump(  # type: ignore[attr-defined]
        mode="json", exclude={"ttft_ms", "tpot_ms", "observation_id", "timestamp"}
    )


class _Shard:
    """One shard's checkpoints as a trainer (``good``) or an intruder (``forged``) writes them."""

    def __init__(self, client: RedisClient, prefix: str, registry: ModelRegistry) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self.registry = registry
        quantiles = registry.config.quantiles
        self.trainer = CheckpointStore(client, self.keys, quantiles, SNAPSHOT_KEY.encode())
        self.intruder = CheckpointStore(client, self.keys, quantiles, b"guessed-" + b"k" * 32)
        self.unsigned = CheckpointStore(client, self.keys, quantiles)
        client.set(self.keys.lease("H100"), "token")
        client.sadd(self.keys.shards, "H100")

    def publish(self, store: CheckpointStore) -> None:
        checkpoint = ShardCheckpoint(self.registry.export_state(), "1-0")
        store.write("H100", checkpoint, "token", "t", 1)

    def publish_raw(self, data: bytes) -> None:
        self.client.set(self.keys.snapshot("H100"), data)
        version = self.client.hincrby(self.keys.meta("H100"), "version", 1)
        self.client.hset(self.keys.versions, "H100", version)  # predictors look again


class _Command:
    """Unpickling this runs ``command``: what the old pickle format let a writer do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def _pickle_running(command: str) -> bytes:
    """A format-5 snapshot (header, valid checksum, zlib pickle) whose payload runs ``command``."""
    body = zlib.compress(pickle.dumps({"model_sets": _Command(command)}))
    return struct.pack(">6sH32s", b"LOSNAP", 5, hashlib.sha256(body).digest()) + body


def test_forged_and_unsigned_snapshots_are_refused_and_a_later_good_one_loads(
    stream: SyntheticStream, tmp_path: Path, redis_url: str
) -> None:
    """Also the reported exploit: a format-5 pickle with a valid header and checksum that
    runs a shell command, written with admin credentials, is refused without running it."""
    settings = redis_settings(unique_prefix(), redis_url, snapshot_key=SNAPSHOT_KEY)
    admin = connect(redis_url, 1.0)
    registry = ModelRegistry(ModelConfig.from_settings(settings))
    registry.learn(stream.observations[:1_000], LearnScope.ACCELERATORS)
    shard = _Shard(admin, settings.redis_key_prefix, registry)
    probe = _probe(stream.observations[0])
    try:
        shard.publish(shard.trainer)
        with TestClient(create_app(settings)) as http:
            assert wait_until(
                lambda: not http.post("/v1/predictions", json=probe).json()["cold"], 5
            )
            good = http.post("/v1/predictions", json=probe).json()
            registry.learn(stream.observations[1_000:1_500], LearnScope.ACCELERATORS)
            marker = tmp_path / "pwned"
            writes = [
                (lambda: shard.publish(shard.intruder), "forged"),
                (lambda: shard.publish(shard.unsigned), "unsigned"),
                (lambda: shard.publish_raw(_pickle_running(f"touch {marker}")), "corrupt"),
            ]
            for write, reason in writes:
                write()  # with admin credentials, version bumped
                metric = f'latency_oracle_snapshots_refused_total{{reason="{reason}"}} 1.0'
                assert wait_until(lambda m=metric: m in http.get("/metrics").text, 5)
                readiness = http.get("/readyz").json()
                assert readiness["status"] == "degraded"
                assert any(
                    p.startswith("snapshot_refused:") and "H100" in p and reason in p
                    for p in readiness["problems"]
                ), readiness
                assert http.post("/v1/predictions", json=probe).json() == good

            assert not marker.exists()
            shard.publish(shard.trainer)  # the sync kept running: the next good one loads
            assert wait_until(lambda: http.get("/readyz").json()["status"] == "ready", 5)
            assert http.post("/v1/predictions", json=probe).json() != good
    finally:
        delete_prefix(admin, settings.redis_key_prefix)


def test_model_sync_survives_a_snapshot_that_breaks_loading(
    stream: SyntheticStream, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """Anything a snapshot can make loading raise is refused, not fatal to the sync."""
    settings = redis_settings(unique_prefix(), redis_url, snapshot_key=SNAPSHOT_KEY)
    admin = connect(redis_url, 1.0)
    registry = ModelRegistry(ModelConfig.from_settings(settings))
    registry.learn(stream.observations[:600], LearnScope.ACCELERATORS)
    shard = _Shard(admin, settings.redis_key_prefix, registry)
    replica = ModelRegistry(registry.config)
    sync = ModelSync(shard.trainer, replica)
    try:
        shard.publish(shard.trainer)
        with monkeypatch.context() as patch:
            patch.setattr(replica, "merge_state", lambda _: 1 / 0)
            sync.poll()
        assert sync.last_error is None and "invalid: ZeroDivisionError" in sync.corrupt["H100"]
        shard.publish(shard.trainer)
        sync.poll()
        assert sync.corrupt == {} and replica.model_sets()
    finally:
        delete_prefix(admin, settings.redis_key_prefix)


def test_trainer_refuses_a_forged_checkpoint_and_replaces_it(
    stream: SyntheticStream, redis_url: str
) -> None:
    settings = redis_settings(
        unique_prefix(), redis_url, snapshot_key=SNAPSHOT_KEY, trainer_checkpoint_interval_s=60
    )
    admin = connect(redis_url, 1.0)
    registry = ModelRegistry(ModelConfig.from_settings(settings))
    registry.learn(stream.observations[:600], LearnScope.ACCELERATORS)
    shard = _Shard(admin, settings.redis_key_prefix, registry)
    try:
        shard.publish(shard.intruder)
        admin.delete(shard.keys.lease("H100"))
        make_store(admin, settings).append(stream.observations[600:900])
        trainer = Trainer(settings, admin)
        assert wait_until(lambda: (trainer.step() or True) and "H100" in trainer.workers, 10, 0)
        problems = trainer.readiness().problems
        assert any(p.startswith("snapshot_refused:") and "forged" in p for p in problems)
        assert trainer.snapshots_refused.labels("forged")._value.get() == 1
        trainer.shutdown()  # checkpoints what it learned afresh: signed with the key
        checkpoint = shard.trainer.read("H100")
        assert checkpoint is not None and all(
            m.n_samples == 300 for k, m in checkpoint.model_sets.items()
        )
    finally:
        delete_prefix(admin, settings.redis_key_prefix)
