"""``latency-oracle redis-migrate``: a layout-1 deployment's checkpoints and pins move to
layout 2's shards, the new trainers carry on from them, and nothing unlearned is dropped
unless asked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from polling import wait_until
from redis_support import (
    SHARED_REDIS_URL,
    delete_prefix,
    make_store,
    redis_settings,
    unique_prefix,
)

from latency_oracle.cli import main
from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.persistence.redis_checkpoint import CheckpointStore
from latency_oracle.models.persistence.snapshot import encode_snapshot
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream
from latency_oracle.trainer.layout_migration import MigrationRefused, migrate
from latency_oracle.trainer.loop import Trainer

SNAPSHOT_KEY = "migrate-" + "k" * 32
LLAMA_TTFT = ModelKey("H100", Target.TTFT, "llama")


@pytest.fixture
def layout1() -> Iterator[tuple[Settings, RedisClient]]:
    """A layout-1 deployment as the previous version left it: an H100 shard holding two
    served models' keys, an A100 shard, the global shard, a pin; streams drained."""
    settings = redis_settings(unique_prefix(), snapshot_key=SNAPSHOT_KEY)
    client, old = connect(SHARED_REDIS_URL, 2.0), settings.redis_key_prefix
    registry = ModelRegistry(ModelConfig.from_settings(settings))
    for seed, (accelerator, model) in enumerate(
        [("H100", "llama"), ("H100", "qwen"), ("A100", "")]
    ):
        stream = generate_stream(400, seed=seed, accelerator=accelerator).observations
        registry.learn([o.model_copy(update={"model": model}) for o in stream])
    state = registry.export_state()
    for shard in ("H100", "A100", "global"):
        sets = {k: m for k, m in state.items() if k.accelerator == shard}
        data = encode_snapshot(
            sets, settings.quantiles, {"applied_id": "9-0"}, SNAPSHOT_KEY.encode()
        )
        client.set(f"{old}:snapshot:{shard}", data)
        client.sadd(f"{old}:shards", shard)
        client.hincrby(f"{old}:versions", shard, 3)
    pinned = encode_snapshot(
        {LLAMA_TTFT: state[LLAMA_TTFT]}, settings.quantiles, {"version": 2}, SNAPSHOT_KEY.encode()
    )
    client.set(f"{old}:pinned:{LLAMA_TTFT.label()}", pinned)
    client.hset(f"{old}:pins", LLAMA_TTFT.label(), '{"version": 2, "at": 1.0}')
    yield settings, client
    delete_prefix(client, old)
    for key in client.scan_iter(f"{old}:*"):
        client.delete(key)


def test_checkpoints_and_pins_move_and_new_trainers_carry_on(
    layout1: tuple[Settings, RedisClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, client = layout1
    old = settings.redis_key_prefix
    client.xadd(f"{old}:obs:H100", {"o": "{}"})  # an observation no old trainer learned
    with pytest.raises(MigrationRefused, match="not yet learned"):
        migrate(settings, drop_unlearned=False, delete_old=False)

    report = migrate(settings, drop_unlearned=True, delete_old=False)
    assert sorted(report.shards) == ["A100", "H100/llama", "H100/qwen", "global"]
    assert report.pins == [LLAMA_TTFT.label()]
    checkpoints = CheckpointStore(client, RedisKeys(old), settings.quantiles, SNAPSHOT_KEY.encode())
    llama = checkpoints.read("H100/llama")
    assert llama is not None and set(llama.model_sets) == {
        LLAMA_TTFT,
        ModelKey("H100", Target.TPOT, "llama"),
    }
    assert llama.observed == {LLAMA_TTFT.label(): 400, "H100/tpot/llama": 400}
    assert checkpoints.versions() == dict.fromkeys(report.shards, 1)
    assert migrate(settings, drop_unlearned=True, delete_old=False).skipped == report.shards

    # The new trainer resumes the migrated models: their samples go on from 400.
    more = generate_stream(300, seed=9, accelerator="H100", id_prefix="new").observations
    make_store(client, settings).append([o.model_copy(update={"model": "llama"}) for o in more])
    trainer = Trainer(settings, client)
    try:
        assert wait_until(
            lambda: (
                (trainer.step() or True)
                and "H100/llama" in trainer.workers
                and trainer.workers["H100/llama"].registry.serving(LLAMA_TTFT) is not None
                and trainer.workers["H100/llama"].registry.serving(LLAMA_TTFT).n_samples == 700
            ),
            timeout_s=60,
            every_s=0,
        )
    finally:
        trainer.shutdown()

    for name, value in (
        ("REDIS_URL", SHARED_REDIS_URL),
        ("REDIS_KEY_PREFIX", old),
        ("SNAPSHOT_KEY", SNAPSHOT_KEY),
    ):
        monkeypatch.setenv(f"LATENCY_ORACLE_{name}", value)
    main(["redis-migrate", "--drop-unlearned", "--delete-old"])  # as an operator runs it
    assert not list(client.scan_iter(f"{old}:*"))


def test_a_cluster_has_nothing_to_migrate(redis_cluster: object) -> None:
    settings = redis_settings(unique_prefix(), redis_cluster.url)  # type: ignore[attr-defined]
    with pytest.raises(MigrationRefused, match="never ran on a Redis Cluster"):
        migrate(settings, drop_unlearned=False, delete_old=False)
