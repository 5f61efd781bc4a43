"""End-to-end ingest throughput: observations/s from XADD until applied in checkpointed models.

Runs real ``latency-oracle train`` processes against the Redis at LATENCY_ORACLE_REDIS_URL
(default redis://127.0.0.1:6379/0) under a private key prefix, once with one trainer and
once with two, on a two-accelerator stream (three shards: H100, A100, global). The
baseline is in-process learning of the same observations in this process.

    python bench/ingest_throughput.py [--observations 40000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid

import redis
from latency_oracle.features.redis_keys import TRAINER_GROUP, RedisKeys
from latency_oracle.features.redis_store import RedisObservationStore, connect
from latency_oracle.features.schema import Observation
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.sim.synthetic_stream import generate_stream

from latency_oracle.settings import Settings

ACCELERATORS = ("H100", "A100")
WRITE_BATCH = 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observations", type=int, default=40_000)
    args = parser.parse_args()
    url = os.environ.get("LATENCY_ORACLE_REDIS_URL", "redis://127.0.0.1:6379/0")
    per_accelerator = args.observations // len(ACCELERATORS)
    streams = {
        acc: generate_stream(per_accelerator + 100, seed=i, accelerator=acc).observations
        for i, acc in enumerate(ACCELERATORS)
    }
    warmup = [o for acc in ACCELERATORS for o in streams[acc][:100]]
    load = _interleave([streams[acc][100:] for acc in ACCELERATORS])

    baseline = _in_process_rate(load)
    print(f"in-process learning baseline: {baseline:,.0f} obs/s (all keys, one thread)")
    for trainers in (1, 2):
        rate, per_trainer = _redis_rate(url, trainers, warmup, load)
        shares = ", ".join(f"{name}: {n:,.0f} entries/s" for name, n in per_trainer.items())
        print(
            f"{trainers} trainer(s): {rate:,.0f} obs/s end to end "
            f"({rate / baseline:.2f}x in-process); per trainer: {shares}"
        )


def _interleave(parts: list[list[Observation]]) -> list[Observation]:
    return [o for group in zip(*parts, strict=True) for o in group]


def _in_process_rate(observations: list[Observation]) -> float:
    registry = ModelRegistry(ModelConfig.from_settings(Settings()))
    started = time.perf_counter()
    for start in range(0, len(observations), WRITE_BATCH):
        registry.learn(observations[start : start + WRITE_BATCH])
    return len(observations) / (time.perf_counter() - started)


def _redis_rate(
    url: str, trainers: int, warmup: list[Observation], load: list[Observation]
) -> tuple[float, dict[str, float]]:
    """Warm the trainers up (processes started, shards taken), then time the load."""
    prefix = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=url, redis_key_prefix=prefix)
    keys = RedisKeys(prefix)
    client = connect(url, 5.0)
    store = RedisObservationStore(
        client, keys, stream_maxlen=1_000_000, id_ttl_s=3_600, pod_ttl_s=30
    )
    env = {
        **os.environ,
        "LATENCY_ORACLE_REDIS_URL": url,
        "LATENCY_ORACLE_REDIS_KEY_PREFIX": prefix,
        "LATENCY_ORACLE_TRAINER_CHECKPOINT_INTERVAL_S": "0.5",
        "LATENCY_ORACLE_LOG_LEVEL": "warning",
        # Ingest alone: MLflow logging is a separate worker with its own (bounded) cost.
        "LATENCY_ORACLE_MLFLOW_ENABLED": "false",
        "LATENCY_ORACLE_TRAINER_METRICS_PORT": "0",  # several trainers on this one host
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "latency_oracle.cli", "train"],
            env={**env, "LATENCY_ORACLE_TRAINER_NAME": f"trainer-{i}"},
        )
        for i in range(trainers)
    ]
    try:
        store.append(warmup)
        _wait_drained(client, settings, len(warmup))
        before = _applied(client, keys)
        started = time.perf_counter()
        for start in range(0, len(load), WRITE_BATCH):
            store.append(load[start : start + WRITE_BATCH])
        _wait_drained(client, settings, len(warmup) + len(load))
        elapsed = time.perf_counter() - started
        after = _applied(client, keys)
        per_trainer = {name: (n - before.get(name, 0)) / elapsed for name, n in after.items()}
        return len(load) / elapsed, per_trainer
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        for key in client.scan_iter(f"{prefix}:*", count=1_000):
            client.delete(key)


def _applied(client: redis.Redis, keys: RedisKeys) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(keys.applied).items()}


def _wait_drained(client: redis.Redis, settings: Settings, observations: int) -> None:
    """Every shard has checkpointed all its entries: the global shard holds every one."""
    keys = RedisKeys(settings.redis_key_prefix)
    expected = observations * 2  # each observation is one entry in two shards
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        shards = [m.decode() for m in client.smembers(keys.shards)]
        groups = [g for s in shards for g in _groups(client, keys.stream(s))]
        applied = sum(_applied(client, keys).values())
        if applied >= expected and groups and not any(g["pending"] or g["lag"] for g in groups):
            return
        time.sleep(0.02)
    raise TimeoutError("trainers did not drain the streams")


def _groups(client: redis.Redis, stream: str) -> list[dict[str, object]]:
    try:
        return [g for g in client.xinfo_groups(stream) if g["name"].decode() == TRAINER_GROUP]
    except redis.ResponseError:
        return []


if __name__ == "__main__":
    main()
