"""Redis memory per observation, per pod and per model key, for the capacity plan.

A redis-server of its own (started here) takes ``--observations`` appends (the sidecars'
write path, global sample rate as given) and ``--pods`` pod reports; ``INFO memory``
before and after gives the bytes each costs, idempotency keys and the global sample's
copies included. A shard's checkpoint is sized by learning ``--learn`` observations of one
(accelerator, served model) pair with the default settings and encoding the snapshot a
trainer would write (both of the pair's keys, TTFT and TPOT), and the global shard's.

    python bench/redis_memory.py [--observations 100000] [--pods 10000] [--learn 5000]
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

import redis

from latency_oracle.features.pod_state import PodState
from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.features.redis.observation_store import RedisObservationStore, connect
from latency_oracle.features.redis.pods import RedisPodStates
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.keys import GLOBAL_ACCELERATOR
from latency_oracle.models.persistence.snapshot import encode_snapshot
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.settings import Settings
from latency_oracle.sim.local_redis import local_redis
from latency_oracle.sim.synthetic_stream import generate_stream


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=100_000)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--learn", type=int, default=5_000)
    parser.add_argument("--global-sample-rate", type=float, default=0.05)
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory() as folder, local_redis(Path(folder)) as server:
        raw = redis.Redis(port=server.port)
        keys = RedisKeys(f"bench-memory-{uuid.uuid4().hex[:8]}")
        store = RedisObservationStore(
            connect(server.url, 10.0),
            keys,
            stream_maxlen=settings.stream_maxlen,
            id_ttl_s=settings.observation_id_ttl_s,
            pod_ttl_s=600,
            global_sample_rate=args.global_sample_rate,
        )
        template = generate_stream(1_000, seed=3).observations
        before = _used(raw)
        for start in range(0, args.observations, 1_000):
            store.append(
                [
                    o.model_copy(update={"observation_id": f"m-{start}-{i}", "model": "m"})
                    for i, o in enumerate(template)
                ]
            )
        per_observation = (_used(raw) - before) / args.observations
        stream = keys.stream("H100/m")
        entry = int(raw.memory_usage(stream) or 0) / int(raw.xlen(stream))
        seen = int(raw.memory_usage(keys.seen("H100/m", "m-0-0")) or 0)
        pods = RedisPodStates(store.client, keys, pod_ttl_s=600, max_pods=args.pods)
        before = _used(raw)
        for i in range(args.pods):
            pods.put(PodState(pod=f"pod-{i:06d}", accelerator="H100", model="m"))
        per_pod = (_used(raw) - before) / args.pods
    print(
        f"per observation: {per_observation:,.0f} bytes in Redis (stream entry ~{entry:,.0f}, "
        f"idempotency key ~{seen:,.0f} for observation_id_ttl_s="
        f"{settings.observation_id_ttl_s:,} s, global sample {args.global_sample_rate:.0%})"
    )
    print(f"per live pod: {per_pod:,.0f} bytes in Redis (state key and index entry)")
    registry = ModelRegistry(ModelConfig.from_settings(settings))
    registry.learn(
        [
            o.model_copy(update={"model": "m"})
            for o in generate_stream(args.learn, seed=4).observations
        ]
    )
    state = registry.export_state()
    for name, chosen in (
        ("a shard's checkpoint (its 2 keys)", {k: m for k, m in state.items() if k.model}),
        (
            "the global shard's checkpoint",
            {k: m for k, m in state.items() if k.accelerator == GLOBAL_ACCELERATOR},
        ),
    ):
        size = len(encode_snapshot(chosen, settings.quantiles, {"applied_id": "1-0"}))
        print(f"{name}, after {args.learn:,} observations: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
