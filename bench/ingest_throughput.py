"""Trainer throughput: observations/s from the stream until applied in checkpointed models,
with and without sampling.

Runs real ``latency-oracle train`` processes against the Redis (or Redis Cluster) at
LATENCY_ORACLE_REDIS_URL (default redis://127.0.0.1:6379/0) under a private key prefix, on
a two-accelerator stream (three shards: H100, A100, global): one trainer and two with
every observation learned by the global model (the default), then one trainer with the
global model learning a 5% sample (``global_sample_rate``) and with, besides, each
accelerator shard learning at most ``--hot-key-rate`` a second (``hot_key_max_rate``). The
baseline is in-process learning of the same observations in this process.

    python bench/ingest_throughput.py [--observations 40000] [--hot-key-rate 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid

from latency_oracle.features.redis.key_layout import RedisKeys
from latency_oracle.features.redis.observation_store import (
    RedisObservationStore,
    connect,
    store_for,
)
from latency_oracle.features.sampling import GLOBAL_SAMPLE, in_sample
from latency_oracle.features.schema import Observation
from latency_oracle.models.config import ModelConfig
from latency_oracle.models.persistence.redis_checkpoint import CheckpointStore
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.settings import Settings
from latency_oracle.sim.synthetic_stream import generate_stream
from latency_oracle.trainer.shard_worker import ShardWorker

ACCELERATORS = ("H100", "A100")
WRITE_BATCH = 1_000
GLOBAL_SAMPLE_RATE = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observations", type=int, default=40_000)
    parser.add_argument("--hot-key-rate", type=float, default=2_000.0)
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
    runs = [
        (1, "every observation learned", {}),
        (2, "every observation learned", {}),
        (1, f"global model learns {GLOBAL_SAMPLE_RATE:.0%}", {"global_sample_rate": 0.05}),
        (
            1,
            f"global {GLOBAL_SAMPLE_RATE:.0%}, shards at most {args.hot_key_rate:,.0f}/s",
            {"global_sample_rate": GLOBAL_SAMPLE_RATE, "hot_key_max_rate": args.hot_key_rate},
        ),
    ]
    for trainers, what, sampling in runs:
        rate, per_trainer = _redis_rate(url, trainers, warmup, load, sampling)
        shares = ", ".join(f"{name}: {n:,.0f} entries/s" for name, n in per_trainer.items())
        print(
            f"{trainers} trainer(s), {what}: {rate:,.0f} obs/s end to end "
            f"({rate / baseline:.2f}x in-process); per trainer: {shares}"
        )
    read, counted = _unsampled_entry_rates(url, load)
    print(
        f"a hot shard's entries outside its sample, one process: read from Redis "
        f"{read:,.0f}/s, counted {counted:,.0f}/s (learning none of them)"
    )


def _unsampled_entry_rates(url: str, load: list[Observation]) -> tuple[float, float]:
    """Entries/s a trainer reads (XRANGE of one shard's stream, parsed by redis-py) and
    counts without learning (``ShardWorker.apply`` with a ceiling no entry gets under)."""
    settings = Settings(redis_url=url, redis_key_prefix=f"bench-count-{uuid.uuid4().hex[:8]}")
    client = connect(url, 5.0)
    store = store_for(settings, client)
    for start in range(0, len(load), WRITE_BATCH):
        store.append(load[start : start + WRITE_BATCH])
    stream = RedisKeys(settings.redis_key_prefix).stream(ACCELERATORS[0])
    try:
        started = time.perf_counter()
        entries = client.xrange(stream)
        read = len(entries) / (time.perf_counter() - started)
    finally:
        for pattern in RedisKeys(settings.redis_key_prefix).patterns:
            for key in client.scan_iter(pattern, count=1_000):
                client.delete(key)
    config = ModelConfig.from_settings(settings)
    worker = ShardWorker(
        ACCELERATORS[0],
        client,
        store.keys,
        None,  # type: ignore[arg-type]  # apply() writes no checkpoint
        config,
        "bench",
        "token",
        lambda *_: None,
        hot_key_max_rate=1e-9,
    )
    started = time.perf_counter()
    for start in range(0, len(entries), WRITE_BATCH):
        worker.apply(entries[start : start + WRITE_BATCH])
    return read, len(entries) / (time.perf_counter() - started)


def _interleave(parts: list[list[Observation]]) -> list[Observation]:
    return [o for group in zip(*parts, strict=True) for o in group]


def _in_process_rate(observations: list[Observation]) -> float:
    registry = ModelRegistry(ModelConfig.from_settings(Settings()))
    started = time.perf_counter()
    for start in range(0, len(observations), WRITE_BATCH):
        registry.learn(observations[start : start + WRITE_BATCH])
    return len(observations) / (time.perf_counter() - started)


def _redis_rate(
    url: str,
    trainers: int,
    warmup: list[Observation],
    load: list[Observation],
    sampling: dict[str, float],
) -> tuple[float, dict[str, float]]:
    """Warm the trainers up (processes started, shards taken), then time the load."""
    prefix = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=url, redis_key_prefix=prefix, **sampling)
    client = connect(url, 5.0)
    store = store_for(settings, client)
    env = {
        **os.environ,
        "LATENCY_ORACLE_REDIS_URL": url,
        "LATENCY_ORACLE_REDIS_KEY_PREFIX": prefix,
        "LATENCY_ORACLE_TRAINER_CHECKPOINT_INTERVAL_S": "0.5",
        "LATENCY_ORACLE_LOG_LEVEL": "warning",
        # Ingest alone: MLflow logging is a separate worker with its own (bounded) cost.
        "LATENCY_ORACLE_MLFLOW_ENABLED": "false",
        "LATENCY_ORACLE_TRAINER_METRICS_PORT": "0",  # several trainers on this one host
    } | {f"LATENCY_ORACLE_{name.upper()}": str(value) for name, value in sampling.items()}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "latency_oracle.cli", "train"],
            env={**env, "LATENCY_ORACLE_TRAINER_NAME": f"trainer-{i}"},
        )
        for i in range(trainers)
    ]
    rate = settings.global_sample_rate
    checkpoints = CheckpointStore(client, RedisKeys(prefix), settings.quantiles)
    try:
        store.append(warmup)
        _wait_drained(store, checkpoints, _entries(warmup, rate))
        before = _applied(checkpoints)
        started = time.perf_counter()
        for start in range(0, len(load), WRITE_BATCH):
            store.append(load[start : start + WRITE_BATCH])
        _wait_drained(store, checkpoints, _entries(warmup + load, rate))
        elapsed = time.perf_counter() - started
        after = _applied(checkpoints)
        per_trainer = {name: (n - before.get(name, 0)) / elapsed for name, n in after.items()}
        return len(load) / elapsed, per_trainer
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        for pattern in RedisKeys(prefix).patterns:
            for key in client.scan_iter(pattern, count=1_000):
                client.delete(key)


def _entries(observations: list[Observation], global_sample_rate: float) -> int:
    """Stream entries the observations make: one in their shard, plus the global sample's."""
    sampled = sum(
        in_sample(o.observation_id, global_sample_rate, GLOBAL_SAMPLE) for o in observations
    )
    return len(observations) + sampled


def _applied(checkpoints: CheckpointStore) -> dict[str, int]:
    """Entries each trainer has checkpointed, over every shard."""
    totals: dict[str, int] = {}
    for member in checkpoints.client.smembers(checkpoints.keys.shards):
        for name, n in checkpoints.applied(member.decode()).items():
            totals[name] = totals.get(name, 0) + n
    return totals


def _wait_drained(store: RedisObservationStore, checkpoints: CheckpointStore, entries: int) -> None:
    """Every shard has checkpointed all its entries and holds none unacknowledged."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        backlogs = store.backlogs()
        applied = sum(_applied(checkpoints).values())
        if applied >= entries and backlogs and not any(backlogs.values()):
            return
        time.sleep(0.02)
    raise TimeoutError("trainers did not drain the streams")


if __name__ == "__main__":
    main()
