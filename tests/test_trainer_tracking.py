"""In the distributed shape, the Redis trainer (not the predictor) logs models to MLflow."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import wait_until
from redis_support import (
    delete_prefix,
    make_store,
    redis_settings,
    unique_prefix,
)

from latency_oracle.features.redis.observation_store import connect
from latency_oracle.models.keys import ModelKey, Target
from latency_oracle.operations.mlflow.server_client import registered_model_name
from latency_oracle.operations.model_versions import open_store
from latency_oracle.sim.synthetic_stream import generate_stream
from latency_oracle.trainer.loop import Trainer


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = unique_prefix()
    yield name
    delete_prefix(connect(redis_url, 2.0), name)


def test_trainer_registers_versions_and_logs_metrics(
    tmp_path: Path, prefix: str, redis_url: str
) -> None:
    settings = redis_settings(
        prefix,
        redis_url,
        state_dir=tmp_path,
        mlflow_enabled=True,
        tracking_every_observations=300,
        tracking_flush_timeout_s=60,
    )
    client = connect(redis_url, 2.0)
    make_store(client, settings).append(generate_stream(1_500, seed=5).observations)
    stop = threading.Event()
    trainer = Trainer(settings, client)
    thread = threading.Thread(target=trainer.run, args=(stop,))
    thread.start()
    key = ModelKey("H100", Target.TTFT)
    try:
        assert wait_until(lambda: counter(trainer, "logged", kind="version") >= 1, 90, 0.2)
    finally:
        stop.set()
        thread.join(timeout=90)
    store = open_store(settings)
    assert store.is_registered(key)
    assert store.champion_version(key) == 1
    assert store.client.get_registered_model(registered_model_name(key)) is not None
    assert counter(trainer, "errors") == 0


def counter(trainer: Trainer, name: str, **labels: str) -> float:
    value = trainer.metrics.registry.get_sample_value(
        f"latency_oracle_tracking_{name}_total", labels
    )
    return value or 0.0
