"""Rollback in Redis mode is a fleet decision: two replicas and a trainer honour one pin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from polling import wait_until
from redis_support import delete_prefix, make_store, redis_settings, unique_prefix
from redis_support import learn_and_checkpoint as _learn_and_checkpoint

from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.models.persistence.snapshot import encode_snapshot
from latency_oracle.operations.model_versions import open_store
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.service import OracleService
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream
from latency_oracle.trainer.loop import Trainer

H100_TTFT = ModelKey("H100", Target.TTFT)
H100_TPOT = ModelKey("H100", Target.TPOT)
ROLLBACK = f"/v1/models/{H100_TTFT.accelerator}/{H100_TTFT.target.value}/rollback"
PIN = f"/v1/models/{H100_TTFT.accelerator}/{H100_TTFT.target.value}/pin"
SYNC_S = 2.0  # a generous multiple of the test settings' sync interval


@pytest.fixture
def fleet(tmp_path: Path, redis_url: str) -> Iterator[tuple[Settings, RedisClient, Trainer]]:
    settings = redis_settings(
        unique_prefix(),
        redis_url,
        trainer_checkpoint_interval_s=3600,
        state_dir=tmp_path / "state",
        mlflow_enabled=False,  # the test registers the version it rolls back to itself
    )
    client = connect(redis_url, 2.0)
    trainer = Trainer(settings, client)
    yield settings, client, trainer
    trainer.shutdown()
    delete_prefix(client, settings.redis_key_prefix)


def samples(service: OracleService, key: ModelKey) -> int:
    serving = service.models.serving(key)
    return 0 if serving is None else serving.n_samples


def test_a_rollback_pins_every_replica_and_trainers_never_overwrite_it(
    fleet: tuple[Settings, RedisClient, Trainer],
) -> None:
    settings, client, trainer = fleet
    store = make_store(client, settings)
    store.append(generate_stream(1_000, seed=21, id_prefix="a").observations)
    _learn_and_checkpoint(trainer, 1_000)
    learned = trainer.workers["H100"].registry.export_state()[H100_TTFT]
    version = open_store(settings).register_version(
        H100_TTFT,
        encode_snapshot({H100_TTFT: learned}, settings.quantiles),
        settings.quantiles,
        {},
        "the version to roll back to",
    )
    store.append(generate_stream(500, seed=22, id_prefix="b").observations)
    _learn_and_checkpoint(trainer, 1_500)

    with (
        TestClient(create_app(settings, OracleService(settings))) as first,
        TestClient(create_app(settings, OracleService(settings))) as second,
    ):
        replicas = [first.app.state.service, second.app.state.service]
        assert all(samples(r, H100_TTFT) == 1_500 for r in replicas)

        response = first.post(ROLLBACK, json={"version": int(version)})
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "fleet" and response.json()["samples"] == 1_000
        assert wait_until(
            lambda: all(samples(r, H100_TTFT) == 1_000 for r in replicas), timeout_s=SYNC_S
        )

        # The trainer keeps learning the key (a challenger), but its checkpoints never
        # replace the pinned champion; the key it did not pin moves on.
        store.append(generate_stream(500, seed=23, id_prefix="c").observations)
        _learn_and_checkpoint(trainer, 2_000)
        assert trainer.workers["H100"].registry.serving(H100_TTFT).n_samples == 2_000
        assert trainer.tracker.is_pinned(H100_TTFT) and not trainer.tracker.is_pinned(H100_TPOT)
        assert wait_until(
            lambda: all(samples(r, H100_TPOT) == 2_000 for r in replicas), timeout_s=SYNC_S
        )
        assert all(samples(r, H100_TTFT) == 1_000 for r in replicas)

        # A replica started now serves the pin from its first sync.
        late = OracleService(settings)
        late.start()
        try:
            assert samples(late, H100_TTFT) == 1_000
        finally:
            late.stop()

        # Releasing the pin, on either replica, hands the key back to the trainers.
        assert second.delete(PIN).status_code == 204
        assert wait_until(
            lambda: all(samples(r, H100_TTFT) == 2_000 for r in replicas), timeout_s=SYNC_S
        )
        assert second.delete(PIN).status_code == 404
        assert not trainer.tracker.is_pinned(H100_TTFT)


def test_embedded_default_has_no_fleet_pin(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, mlflow_enabled=False)
    with TestClient(create_app(settings)) as http:
        response = http.delete(PIN)
    assert response.status_code == 404
    assert "embedded" in response.json()["detail"][0]["msg"]


def test_an_unreadable_pin_is_refused_once_and_reported(
    fleet: tuple[Settings, RedisClient, Trainer],
) -> None:
    settings, client, _ = fleet
    keys = RedisKeys(settings.redis_key_prefix)
    client.hset(keys.pins, H100_TTFT.label(), '{"version": 3, "at": 0}')
    client.set(keys.pinned(H100_TTFT.label()), b"not a snapshot")
    service = OracleService(settings)
    refused: list[str] = []
    service.replica.sync.on_refused = refused.append
    for _ in range(3):
        service.replica.sync.poll()
    assert len(refused) == 1 and H100_TTFT not in service.replica.sync.pinned
    assert f"pin {H100_TTFT.label()}" in service.replica.sync.corrupt
