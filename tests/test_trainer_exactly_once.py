"""Trainers learn every observation exactly once: across kill -9, and when sharing work."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest
import redis
from latency_oracle.features.redis_keys import GLOBAL_SHARD, TRAINER_GROUP, RedisKeys
from latency_oracle.features.redis_store import connect
from latency_oracle.sim.synthetic_stream import generate_stream
from polling import wait_until
from redis_support import (
    delete_prefix,
    group_drained,
    make_store,
    redis_settings,
    shard_samples,
    start_trainer,
    unique_prefix,
)

from latency_oracle.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def settings() -> Settings:
    return redis_settings(unique_prefix())


@pytest.fixture
def client(settings: Settings) -> Iterator[redis.Redis]:
    client = connect(settings.redis_url or "", 2.0)
    yield client
    delete_prefix(client, settings.redis_key_prefix)


@pytest.fixture
def trainers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _applied_by(client: redis.Redis, settings: Settings) -> dict[str, int]:
    raw = client.hgetall(RedisKeys(settings.redis_key_prefix).applied)
    return {k.decode(): int(v) for k, v in raw.items()}


def _unacked(client: redis.Redis, settings: Settings) -> int:
    stream = RedisKeys(settings.redis_key_prefix).stream(GLOBAL_SHARD)
    try:
        return int(client.xpending(stream, TRAINER_GROUP)["pending"])
    except redis.ResponseError:
        return 0


def _wait_learned(client: redis.Redis, settings: Settings, expected: dict[str, int]) -> None:
    assert wait_until(
        lambda: group_drained(client, settings) and shard_samples(client, settings) == expected,
        timeout_s=120,
        every_s=0.2,
    ), f"learned {shard_samples(client, settings)}, expected {expected}"


def test_kill_9_mid_stream_loses_nothing_and_doubles_nothing(
    settings: Settings, client: redis.Redis, trainers: list[subprocess.Popen[bytes]]
) -> None:
    store = make_store(client, settings)
    first = generate_stream(10_000, seed=1, id_prefix="a").observations
    second = generate_stream(10_000, seed=2, id_prefix="b").observations
    assert store.append(first).accepted == 10_000

    trainers.append(start_trainer(settings, "doomed"))
    assert wait_until(
        lambda: (
            _applied_by(client, settings).get("doomed", 0) > 0 and _unacked(client, settings) > 0
        ),
        timeout_s=60,
        every_s=0.01,
    ), "the trainer never had checkpointed and in-flight work at once"
    trainers[0].send_signal(signal.SIGKILL)
    trainers[0].wait(timeout=10)
    in_flight = _unacked(client, settings)
    learned_before = sum(_applied_by(client, settings).values())

    assert store.append(second).accepted == 10_000
    assert store.append(first[:1_000]).duplicates == 1_000  # a sidecar retrying old writes
    trainers.append(start_trainer(settings, "successor"))

    per_key = dict.fromkeys(["H100/ttft", "H100/tpot", "global/ttft", "global/tpot"], 20_000)
    _wait_learned(client, settings, per_key)
    applied = _applied_by(client, settings)
    assert in_flight > 0 and 0 < learned_before < 40_000
    assert sum(applied.values()) == 40_000  # every entry of both shards, once
    assert applied["successor"] > 0


def test_two_trainers_share_the_shards_exactly(
    settings: Settings, client: redis.Redis, trainers: list[subprocess.Popen[bytes]]
) -> None:
    store = make_store(client, settings)
    trainers += [start_trainer(settings, "left"), start_trainer(settings, "right")]
    trainers_key = RedisKeys(settings.redis_key_prefix).trainers
    assert wait_until(lambda: client.zcard(trainers_key) == 2, timeout_s=30)

    h100 = generate_stream(10_000, seed=5, accelerator="H100", id_prefix="h").observations
    a100 = generate_stream(10_000, seed=6, accelerator="A100", id_prefix="a").observations
    for start in range(0, 10_000, 1_000):
        store.append(h100[start : start + 1_000] + a100[start : start + 1_000])

    per_key = {"H100/ttft": 10_000, "H100/tpot": 10_000, "A100/ttft": 10_000}
    per_key |= {"A100/tpot": 10_000, "global/ttft": 20_000, "global/tpot": 20_000}
    _wait_learned(client, settings, per_key)
    applied = _applied_by(client, settings)
    assert sum(applied.values()) == 40_000
    assert applied.get("left", 0) > 0 and applied.get("right", 0) > 0
    for process in trainers:
        process.terminate()
    assert [process.wait(timeout=30) for process in trainers] == [0, 0]
