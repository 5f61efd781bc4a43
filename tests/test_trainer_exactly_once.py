"""Trainers learn every observation exactly once: across kill -9, and when sharing work, on a
single Redis and on a three-master Redis Cluster."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from polling import wait_until
from redis_support import (
    applied_by,
    delete_prefix,
    group_drained,
    make_store,
    redis_settings,
    shard_observed,
    shard_samples,
    shards,
    start_trainer,
    unique_prefix,
)

from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, TRAINER_GROUP, RedisKeys
from latency_oracle.features.redis.observation_store import connect
from latency_oracle.features.sampling import GLOBAL_SAMPLE, in_sample
from latency_oracle.models.persistence.redis_checkpoint import CheckpointStore
from latency_oracle.predictor.app import create_app
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return redis_settings(unique_prefix(), redis_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[RedisClient]:
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


def _unacked(client: RedisClient, settings: Settings) -> int:
    """Entries delivered to a trainer and not yet acknowledged, over every shard."""
    keys, total = RedisKeys(settings.redis_key_prefix), 0
    for shard in shards(client, settings):
        with contextlib.suppress(redis.ResponseError):  # no group yet
            total += int(client.xpending(keys.stream(shard), TRAINER_GROUP)["pending"])
    return total


def _wait_learned(client: RedisClient, settings: Settings, expected: dict[str, int]) -> None:
    assert wait_until(
        lambda: group_drained(client, settings) and shard_samples(client, settings) == expected,
        timeout_s=120,
        every_s=0.2,
    ), f"learned {shard_samples(client, settings)}, expected {expected}"


def _kill_mid_stream(
    settings: Settings, client: RedisClient, trainers: list[subprocess.Popen[bytes]]
) -> tuple[int, int]:
    """Start a trainer, SIGKILL it once it has checkpointed some entries and holds others
    unacknowledged; the entries then in flight and those already checkpointed."""
    trainers.append(start_trainer(settings, "doomed"))
    assert wait_until(
        lambda: (
            applied_by(client, settings).get("doomed", 0) > 0 and _unacked(client, settings) > 0
        ),
        timeout_s=60,
        every_s=0.01,
    ), "the trainer never had checkpointed and in-flight work at once"
    trainers[-1].send_signal(signal.SIGKILL)
    trainers[-1].wait(timeout=10)
    return _unacked(client, settings), sum(applied_by(client, settings).values())


def test_kill_9_mid_stream_loses_nothing_and_doubles_nothing(
    settings: Settings, client: RedisClient, trainers: list[subprocess.Popen[bytes]]
) -> None:
    """Across a SIGKILLed trainer, every target is learned once per request: requests
    reported at their first token (TTFT) and again at their finish (TTFT again, TPOT and
    output length) teach TTFT once, and retried writes teach nothing."""
    store = make_store(client, settings)
    first = generate_stream(10_000, seed=1, id_prefix="a").observations
    second = generate_stream(10_000, seed=2, id_prefix="b").observations
    first_tokens = [
        o.model_copy(update={"tpot_ms": None, "output_tokens": 1, "finished": False}) for o in first
    ]
    assert store.append(first_tokens).accepted == 10_000

    in_flight, learned_before = _kill_mid_stream(settings, client, trainers)

    assert store.append(first + second).accepted == 20_000
    assert store.append(first[:1_000]).duplicates == 1_000  # a sidecar retrying old writes
    trainers.append(start_trainer(settings, "successor"))

    per_key = dict.fromkeys(["H100/ttft", "H100/tpot", "global/ttft", "global/tpot"], 20_000)
    _wait_learned(client, settings, per_key)
    applied = applied_by(client, settings)
    assert in_flight > 0 and 0 < learned_before < 60_000
    assert sum(applied.values()) == 60_000  # every entry of both shards, once
    assert applied["successor"] > 0
    lengths = CheckpointStore(
        client, RedisKeys(settings.redis_key_prefix), settings.quantiles
    ).read(GLOBAL_SHARD)
    assert lengths is not None and lengths.output_lengths is not None
    assert lengths.output_lengths["fleet"].samples == 20_000  # finish records only


def test_two_trainers_share_the_shards_exactly(
    settings: Settings, client: RedisClient, trainers: list[subprocess.Popen[bytes]]
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
    applied = applied_by(client, settings)
    assert sum(applied.values()) == 40_000
    assert applied.get("left", 0) > 0 and applied.get("right", 0) > 0
    for process in trainers:
        process.terminate()
    assert [process.wait(timeout=30) for process in trainers] == [0, 0]


def test_sampled_keys_count_every_observation_and_learn_their_sample_once(
    redis_url: str, trainers: list[subprocess.Popen[bytes]]
) -> None:
    """The global model learns exactly its sample (chosen by id) and a hot shard a share,
    across a SIGKILLed trainer, with every observation sent twice; both count every one,
    and a predictor says on /v1/models and /metrics what share each key learned."""
    settings = redis_settings(
        unique_prefix(), redis_url, global_sample_rate=0.25, hot_key_max_rate=100
    )
    client = connect(redis_url, 2.0)
    store = make_store(client, settings)
    first = generate_stream(3_000, seed=11, id_prefix="s").observations
    second = generate_stream(3_000, seed=12, id_prefix="t").observations
    sample = sum(in_sample(o.observation_id, 0.25, GLOBAL_SAMPLE) for o in first + second)
    try:
        for batch in (first, first):
            store.append(batch)
        _kill_mid_stream(settings, client, trainers)
        for batch in (second, second):
            store.append(batch)
        trainers.append(start_trainer(settings, "successor"))
        every = {"H100/ttft": 6_000, "H100/tpot": 6_000}
        assert wait_until(
            lambda: (
                group_drained(client, settings)
                and shard_observed(client, settings) == every
                and shard_samples(client, settings).get("global/ttft") == sample
            ),
            timeout_s=120,
            every_s=0.2,
        ), (shard_observed(client, settings), shard_samples(client, settings), sample)
        assert sum(applied_by(client, settings).values()) == 6_000 + sample
        learned = shard_samples(client, settings)
        assert 0 < learned["H100/ttft"] < 6_000 and learned["global/tpot"] == sample

        with TestClient(create_app(settings)) as http:
            models = {m["key"]: m for m in http.get("/v1/models").json()["models"]}
            metrics = http.get("/metrics").text
        for key, observed, samples in (
            ("global/ttft", 6_000, sample),
            ("H100/ttft", 6_000, learned["H100/ttft"]),
        ):
            model = models[key]
            assert (model["observed"], model["samples"]) == (observed, samples)
            assert model["learned_share"] == pytest.approx(samples / observed)
            accelerator, target = key.split("/")
            share = f'latency_oracle_model_learned_share{{accelerator="{accelerator}",'
            assert f'{share}target="{target}"}} {samples / observed}' in metrics
    finally:
        delete_prefix(client, settings.redis_key_prefix)
