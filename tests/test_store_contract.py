"""One contract, three back ends: the in-process store and the Redis store, on a real single
Redis and on a real three-master Redis Cluster."""

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

from latency_oracle.features.labels import Label
from latency_oracle.features.pod_state import PodState
from latency_oracle.features.redis.key_layout import shard_of
from latency_oracle.features.redis.observation_store import RedisObservationStore, connect
from latency_oracle.features.store import InProcessObservationStore
from latency_oracle.sim.synthetic_stream import generate_stream

POD_TTL_S = 0.5


@pytest.fixture(params=["in_process", "redis", "redis_cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[object]:
    if request.param == "in_process":
        yield InProcessObservationStore(10_000, 100_000, pod_ttl_s=POD_TTL_S)
        return
    url = (
        request.getfixturevalue("redis_cluster").url
        if request.param == "redis_cluster"
        else SHARED_REDIS_URL
    )
    settings = redis_settings(unique_prefix(), url, pod_ttl_s=POD_TTL_S)
    client = connect(url, 2.0)
    try:
        yield make_store(client, settings)
    finally:
        delete_prefix(client, settings.redis_key_prefix)


def test_retried_writes_are_counted_once(store) -> None:
    observations = generate_stream(300, seed=3).observations
    first = store.append(observations[:200])
    retried = store.append(observations[100:300])
    assert (first.accepted, first.duplicates) == (200, 0)
    assert (retried.accepted, retried.duplicates) == (100, 100)
    assert store.pending() == 300


def test_duplicate_ids_within_one_call_are_one_sample(store) -> None:
    obs = generate_stream(1, seed=4).observations[0]
    result = store.append([obs, obs, obs])
    assert (result.accepted, result.duplicates) == (1, 2)
    assert store.pending() == 1


def _claimed(store) -> list[Label]:
    """The labels each stored record claimed, in order (the stream's field ``t``)."""
    if isinstance(store, InProcessObservationStore):
        return [claimed.labels for claimed in store.read_batch(100, 0.0)]
    assert isinstance(store, RedisObservationStore)
    stream = store.keys.stream(shard_of("H100", ""))
    return [Label(int(fields[b"t"])) for _, fields in store.client.xrange(stream)]


def test_each_target_is_learned_once_per_id_whichever_record_brings_it(store) -> None:
    """A request's first-token record claims TTFT; its finish record then claims only TPOT
    and output length; retries of either, alone or together, claim nothing."""
    finish = generate_stream(1, seed=5).observations[0]
    first_token = finish.model_copy(update={"tpot_ms": None, "output_tokens": 1, "finished": False})
    assert store.append([first_token]).accepted == 1
    assert store.append([first_token]).duplicates == 1
    assert store.append([finish]).accepted == 1
    assert store.append([finish, first_token]).duplicates == 2
    # A finish record first claims all three, and a late first-token record nothing.
    late = finish.model_copy(update={"observation_id": "late"})
    late_first = first_token.model_copy(update={"observation_id": "late"})
    assert (store.append([late, late_first]).accepted, store.pending()) == (1, 3)
    everything = Label.TTFT | Label.TPOT | Label.USAGE
    assert _claimed(store) == [Label.TTFT, Label.TPOT | Label.USAGE, everything]


def test_live_pods_are_listed_by_model_and_expire(store) -> None:
    store.put_pod_state(PodState(pod="a", accelerator="H100", model="llama", running_requests=3))
    store.put_pod_state(PodState(pod="b", accelerator="l4", model="qwen", kv_cache_usage=0.5))
    store.put_pod_state(PodState(pod="a", accelerator="H100", model="llama", running_requests=7))
    pods = store.live_pods()
    assert [p.pod for p in pods] == ["a", "b"]
    assert pods[0].running_requests == 7
    assert pods[1].accelerator == "L4" and pods[1].kv_cache_usage == 0.5
    assert [p.pod for p in store.live_pods("qwen")] == ["b"]
    assert wait_until(lambda: store.live_pods() == [], timeout_s=5)
