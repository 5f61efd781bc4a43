"""A trainer tells the truth on /readyz and /metrics: failed learners, Redis, its leases."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from guarded_learners import ExplodingLearner, guarded_config
from latency_oracle.features.redis_store import connect
from latency_oracle.models.config import ModelConfig
from latency_oracle.sim.processes import answers, free_port
from latency_oracle.sim.synthetic_stream import SyntheticStream
from latency_oracle.trainer.loop import Trainer
from polling import wait_until
from redis_support import (
    SHARED_REDIS_URL,
    delete_prefix,
    make_store,
    private_redis,
    redis_settings,
    start_trainer,
    unique_prefix,
)

pytestmark = pytest.mark.slow

# Each observation is appended to its accelerator's shard and to the global shard.
SHARDS_PER_OBSERVATION = 2
EXPLODING = 'accelerator="H100",learner="exploding",target="ttft"'


@pytest.fixture
def prefix() -> Iterator[str]:
    name = unique_prefix()
    yield name
    delete_prefix(redis.Redis.from_url(SHARED_REDIS_URL), name)


@contextmanager
def running(trainer: Trainer) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=trainer.run, args=(stop,), name="test-trainer")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def metric(base: str, name: str, labels: str = "") -> float:
    """One sample of the trainer's /metrics, 0 while absent."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    sample = f"{name}{{{labels}}}" if labels else name
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def learned(base: str) -> float:
    return metric(base, "latency_oracle_observations_learned_total")


def readyz(base: str) -> httpx.Response:
    return httpx.get(f"{base}/readyz", timeout=5)


def test_a_failing_learner_shows_on_readyz_and_metrics_within_one_cycle(
    prefix: str, stream: SyntheticStream
) -> None:
    port = free_port()
    settings = redis_settings(prefix, trainer_metrics_port=port)
    client = connect(SHARED_REDIS_URL, 2.0)
    store = make_store(client, settings)
    base = f"http://127.0.0.1:{port}"
    ExplodingLearner.explode = False
    trainer = Trainer(settings, client, guarded_config(ModelConfig.from_settings(settings)))
    with running(trainer):
        assert wait_until(lambda: answers(f"{base}/healthz"), 10)
        store.append(stream.observations[:300])
        assert wait_until(lambda: learned(base) >= SHARDS_PER_OBSERVATION * 300, 30)
        assert readyz(base).json()["status"] == "ready", readyz(base).text
        assert metric(base, "latency_oracle_learner_failed", EXPLODING) == 0.0
        ExplodingLearner.explode = True
        try:
            store.append(stream.observations[300:310])
            assert wait_until(lambda: learned(base) >= SHARDS_PER_OBSERVATION * 310, 30)
        finally:
            ExplodingLearner.explode = False
        # The cycle that learned the batch is the one that shows the failure: no later scrape.
        ready = readyz(base)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert any(
            "H100/ttft exploding failed: RuntimeError: boom" in p for p in ready.json()["problems"]
        )
        assert metric(base, "latency_oracle_learner_failed", EXPLODING) == 1.0
        assert metric(base, "latency_oracle_learner_failures_total", EXPLODING) == 1.0
        assert metric(base, "latency_oracle_trainer_shards") == 2.0


def test_cli_trainer_is_not_ready_while_redis_is_down_and_recovers(
    tmp_path: Path, stream: SyntheticStream
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with private_redis(tmp_path) as server:
        settings = redis_settings(unique_prefix(), server.url, trainer_metrics_port=port)
        trainer = start_trainer(settings, "probed")
        try:
            assert wait_until(lambda: answers(f"{base}/healthz"), 30)
            idle = readyz(base).json()
            assert idle["status"] == "degraded", idle
            assert any("holds no shard lease" in p for p in idle["problems"])
            make_store(connect(server.url, 2.0), settings).append(stream.observations[:300])
            assert wait_until(lambda: readyz(base).json()["status"] == "ready", 30)
            server.stop()
            assert wait_until(lambda: readyz(base).status_code == 503, 15), readyz(base).text
            assert any("redis unreachable" in p for p in readyz(base).json()["problems"])
            assert metric(base, "latency_oracle_redis_errors_total", 'operation="train"') >= 1
            server.start()
            assert wait_until(lambda: readyz(base).json()["status"] == "ready", 30)
        finally:
            stop(trainer)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
