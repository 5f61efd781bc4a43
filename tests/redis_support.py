"""Helpers for tests against real Redis: private key prefixes, a private server, trainers.

Redis-backed tests run twice, against the shared single Redis and against a local
three-master Redis Cluster (``cluster_support``); the ``redis_url`` fixture (conftest)
names which. Every helper here works on both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import redis
import yaml
from polling import wait_until

from latency_oracle.features.redis.client import RedisClient
from latency_oracle.features.redis.key_layout import GLOBAL_SHARD, TRAINER_GROUP, RedisKeys
from latency_oracle.features.redis.observation_store import (
    RedisObservationStore,
    connect,
    store_for,
)
from latency_oracle.models.persistence.redis_checkpoint import CheckpointStore
from latency_oracle.settings import Settings
from latency_oracle.sim.local_redis import RedisNode

if TYPE_CHECKING:  # the trainer loads the ML stack; helpers that do not use it stay light
    from latency_oracle.sim.local_redis import LocalCluster
    from latency_oracle.trainer.loop import Trainer

SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"
DEPLOYED_REDIS = Path(__file__).resolve().parents[1] / "deploy" / "base" / "redis.yaml"
PERSISTENCE_FLAGS = ("--appendonly", "--appendfsync")

# Small windows and a short lease: fast learning, quick takeover of a killed trainer.
FAST_ENV = {
    "min_samples": 100,
    "mlflow_enabled": False,
    "eval_window": 500,
    "xgb_boost_every": 256,
    "xgb_window": 512,
    "trainer_lease_s": 1.5,
    "trainer_checkpoint_interval_s": 0.3,
    "model_sync_interval_s": 0.1,
    "trainer_metrics_port": 0,  # several trainers share this host; a test that probes one sets it
}


def unique_prefix() -> str:
    return f"test-lo-{uuid.uuid4().hex[:10]}"


def redis_settings(prefix: str, url: str = SHARED_REDIS_URL, **overrides: object) -> Settings:
    return Settings(redis_url=url, redis_key_prefix=prefix, **{**FAST_ENV, **overrides})


def make_store(client: RedisClient, settings: Settings) -> RedisObservationStore:
    return store_for(settings, client)


def delete_prefix(client: RedisClient, prefix: str) -> None:
    """Every key of ``prefix``: its global slot's and every shard's and pod bucket's."""
    for pattern in RedisKeys(prefix).patterns:
        keys = list(client.scan_iter(pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])


def shards(client: RedisClient, settings: Settings) -> list[str]:
    return sorted(m.decode() for m in client.smembers(RedisKeys(settings.redis_key_prefix).shards))


def shard_samples(client: RedisClient, settings: Settings) -> dict[str, int]:
    """Samples per model key in the shards' checkpoints, e.g. {"H100/ttft": 20000}."""
    checkpoints = CheckpointStore(client, RedisKeys(settings.redis_key_prefix), settings.quantiles)
    samples = {}
    for shard in shards(client, settings):
        checkpoint = checkpoints.read(shard)
        if checkpoint is not None:
            samples |= {k.label(): m.n_samples for k, m in checkpoint.model_sets.items()}
    return samples


def shard_observed(client: RedisClient, settings: Settings) -> dict[str, int]:
    """Observations counted per model key in the shards' checkpoints (learned or not)."""
    checkpoints = CheckpointStore(client, RedisKeys(settings.redis_key_prefix), settings.quantiles)
    return {
        label: n
        for counts in checkpoints.observed(shards(client, settings)).values()
        for label, n in counts.items()
    }


def stream_ids(client: RedisClient, settings: Settings, shard: str) -> set[str]:
    """Observation ids in a shard's stream (checkpoints trim what they already hold)."""
    entries = client.xrange(RedisKeys(settings.redis_key_prefix).stream(shard))
    return {fields[b"i"].decode() for _, fields in entries}


def applied_by(client: RedisClient, settings: Settings) -> dict[str, int]:
    """Stream entries each trainer has checkpointed, over every shard."""
    checkpoints = CheckpointStore(client, RedisKeys(settings.redis_key_prefix), settings.quantiles)
    totals: dict[str, int] = {}
    for shard in shards(client, settings):
        for trainer, n in checkpoints.applied(shard).items():
            totals[trainer] = totals.get(trainer, 0) + n
    return totals


def group_drained(client: RedisClient, settings: Settings) -> bool:
    """Every shard's group has read and acknowledged everything (nothing in flight)."""
    keys = RedisKeys(settings.redis_key_prefix)
    for shard in shards(client, settings) or [GLOBAL_SHARD]:
        try:
            groups = client.xinfo_groups(keys.stream(shard))
        except redis.ResponseError:
            return False
        group = next((g for g in groups if g["name"].decode() == TRAINER_GROUP), None)
        if group is None or group["pending"] or group.get("lag"):
            return False
    return True


def trainer_env(settings: Settings, name: str) -> dict[str, str]:
    env = dict(os.environ)
    sampling = {k: getattr(settings, k) for k in ("global_sample_rate", "hot_key_max_rate")}
    for field, value in {**FAST_ENV, **sampling, "trainer_name": name}.items():
        env[f"LATENCY_ORACLE_{field.upper()}"] = str(value)
    env["LATENCY_ORACLE_REDIS_URL"] = settings.redis_url or ""
    env["LATENCY_ORACLE_REDIS_KEY_PREFIX"] = settings.redis_key_prefix
    env["LATENCY_ORACLE_TRAINER_METRICS_PORT"] = str(settings.trainer_metrics_port)
    env["LATENCY_ORACLE_LOG_LEVEL"] = "warning"
    secrets = {
        "SNAPSHOT_KEY": settings.snapshot_key,
        "REDIS_PASSWORD": settings.redis_password,
    }
    env |= {f"LATENCY_ORACLE_{k}": v.get_secret_value() for k, v in secrets.items() if v}
    if settings.redis_username:
        env["LATENCY_ORACLE_REDIS_USERNAME"] = settings.redis_username
    return env


def start_trainer(settings: Settings, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "latency_oracle.cli", "train"], env=trainer_env(settings, name)
    )


def deployed_persistence() -> list[str]:
    """The persistence flags the manifests run Redis with: the private servers use them, so
    the fault tests prove what is deployed rather than a safer setting."""
    docs = yaml.safe_load_all(DEPLOYED_REDIS.read_text())
    [server] = [d for d in docs if d and d["kind"] == "StatefulSet"]
    args = next(
        c for c in server["spec"]["template"]["spec"]["containers"] if c["name"] == "redis"
    )["args"]
    return [item for flag in PERSISTENCE_FLAGS for item in (flag, args[args.index(flag) + 1])]


class PrivateRedis(RedisNode):
    """A redis-server of our own (append-only file in a temp dir, persistence as deployed)
    that tests may stop; ``extra`` flags are appended (e.g. ``--replicaof``)."""

    def __init__(self, directory: Path, *extra: str) -> None:
        super().__init__(directory, (*deployed_persistence(), *extra))

    def start(self) -> None:
        super().start()
        client = connect(self.url, 0.5)
        assert wait_until(lambda: _pings(client), 10), "private redis did not start"


def _pings(client: RedisClient) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@contextmanager
def private_redis(directory: Path, *extra: str) -> Iterator[PrivateRedis]:
    server = PrivateRedis(directory, *extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def private_server(kind: str, directory: Path) -> Iterator[PrivateRedis | LocalCluster]:
    """A Redis of our own that a test may stop and start: one server (``single``) or a
    three-master cluster (``cluster``); both have ``url``, ``start()`` and ``stop()``."""
    from cluster_support import local_cluster  # it builds on this module's helpers

    if kind == "single":
        with private_redis(directory) as server:
            yield server
    else:
        with local_cluster(directory) as cluster:
            yield cluster


@contextmanager
def running(trainer: Trainer) -> Iterator[None]:
    """The trainer's own loop on a thread (Redis errors paused, not raised) for the block."""
    stop = threading.Event()
    thread = threading.Thread(target=trainer.run, args=(stop,), name="test-trainer")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def learn_and_checkpoint(trainer: Trainer, samples: int) -> float:
    """Step an in-process trainer until its global model has ``samples``, then checkpoint.

    The test settings checkpoint only on demand, so the returned time is when the new
    snapshots were written.
    """
    assert wait_until(
        lambda: (
            (trainer.step() or True)
            and len(trainer.workers) == 2
            and all(
                m.n_samples == samples for m in trainer.workers[GLOBAL_SHARD].registry.model_sets()
            )
        ),
        timeout_s=60,
        every_s=0,
    )
    for worker in trainer.workers.values():
        worker.checkpoint()
    return time.monotonic()


ACL_TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "base" / "redis-users.acl"


def render_acl(prefix: str, passwords: Mapping[str, str]) -> str:
    """The deployed ACL users (``deploy/base/redis-users.acl``) for ``prefix``, rendered as
    the Redis StatefulSet's start script does: comments dropped, placeholders filled."""
    lines = []
    for line in ACL_TEMPLATE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            line = line.replace("{prefix}", prefix)
            for role, password in passwords.items():
                line = line.replace("{" + role + "}", password)
            lines.append(line)
    return "\n".join(lines) + "\n"
