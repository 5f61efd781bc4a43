"""A trainer tells the truth on /readyz and /metrics: failed learners, Redis, its leases."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from guarded_learners import ExplodingLearner, guarded_config
from polling import wait_until
from redis_support import (
    delete_prefix,
    make_store,
    private_server,
    redis_settings,
    running,
    start_trainer,
    unique_prefix,
)

from latency_oracle.features.redis.observation_store import connect
from latency_oracle.features.sampling import GLOBAL_SAMPLE, in_sample
from latency_oracle.models.config import ModelConfig
from latency_oracle.sim.processes import answers, free_port
from latency_oracle.sim.synthetic_stream import SyntheticStream
from latency_oracle.trainer.loop import Trainer

pytestmark = pytest.mark.slow

# Each observation is appended to its accelerator's shard and (at the default global sample
# rate of 1) to the global shard.
SHARDS_PER_OBSERVATION = 2
EXPLODING = 'accelerator="H100",learner="exploding",target="ttft"'


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = unique_prefix()
    yield name
    delete_prefix(connect(redis_url, 2.0), name)


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
    prefix: str, stream: SyntheticStream, redis_url: str
) -> None:
    port = free_port()
    settings = redis_settings(prefix, redis_url, trainer_metrics_port=port)
    client = connect(redis_url, 2.0)
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


def test_a_trainer_reports_the_share_each_key_learned(
    prefix: str, stream: SyntheticStream, redis_url: str
) -> None:
    """The global model learns half the observations and counts them all: the trainer that
    owns it says so on /metrics, from every shard's checkpointed count."""
    port = free_port()
    settings = redis_settings(prefix, redis_url, trainer_metrics_port=port, global_sample_rate=0.5)
    base = f"http://127.0.0.1:{port}"
    observations = stream.observations[:1_000]
    sample = sum(in_sample(o.observation_id, 0.5, GLOBAL_SAMPLE) for o in observations)
    global_ttft = 'accelerator="global",target="ttft"'
    with running(Trainer(settings, connect(redis_url, 2.0))):
        make_store(connect(redis_url, 2.0), settings).append(observations)
        assert wait_until(
            lambda: metric(base, "latency_oracle_model_observations", global_ttft) == 1_000, 30
        ), httpx.get(f"{base}/metrics", timeout=5).text
        assert metric(base, "latency_oracle_model_samples", global_ttft) == sample
        share = metric(base, "latency_oracle_model_learned_share", global_ttft)
        assert share == pytest.approx(sample / 1_000)
        h100 = 'accelerator="H100",target="ttft"'
        assert metric(base, "latency_oracle_model_learned_share", h100) == 1.0


def test_cli_trainer_is_not_ready_while_redis_is_down_and_recovers(
    tmp_path: Path, stream: SyntheticStream, redis_kind: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with private_server(redis_kind, tmp_path) as server:
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
