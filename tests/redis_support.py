"""Helpers for tests against real Redis: private key prefixes, a private server, trainers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import redis
import yaml
from latency_oracle.features.redis_keys import GLOBAL_SHARD, TRAINER_GROUP, RedisKeys
from latency_oracle.features.redis_store import RedisObservationStore, connect
from latency_oracle.models.redis_checkpoint import CheckpointStore
from latency_oracle.sim.processes import free_port
from polling import wait_until

from latency_oracle.settings import Settings

if TYPE_CHECKING:  # the trainer loads the ML stack; helpers that do not use it stay light
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


def make_store(client: redis.Redis, settings: Settings) -> RedisObservationStore:
    return RedisObservationStore(
        client,
        RedisKeys(settings.redis_key_prefix),
        stream_maxlen=settings.stream_maxlen,
        id_ttl_s=settings.observation_id_ttl_s,
        pod_ttl_s=settings.pod_ttl_s,
    )


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def shard_samples(client: redis.Redis, settings: Settings) -> dict[str, int]:
    """Samples per model key in the shards' checkpoints, e.g. {"H100/ttft": 20000}."""
    checkpoints = CheckpointStore(client, RedisKeys(settings.redis_key_prefix), settings.quantiles)
    samples = {}
    for member in client.smembers(RedisKeys(settings.redis_key_prefix).shards):
        checkpoint = checkpoints.read(member.decode())
        if checkpoint is not None:
            samples |= {k.label(): m.n_samples for k, m in checkpoint.model_sets.items()}
    return samples


def group_drained(client: redis.Redis, settings: Settings) -> bool:
    """Every shard's group has read and acknowledged everything (nothing in flight)."""
    keys = RedisKeys(settings.redis_key_prefix)
    shards = [m.decode() for m in client.smembers(keys.shards)] or [GLOBAL_SHARD]
    for shard in shards:
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
    for field, value in {**FAST_ENV, "trainer_name": name}.items():
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


class PrivateRedis:
    """A redis-server of our own (append-only file in a temp dir, persistence as deployed)
    that tests may stop; ``extra`` flags are appended (e.g. ``--replicaof``)."""

    def __init__(self, directory: Path, *extra: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.extra = extra
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                *deployed_persistence(),
                "--save",
                "",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
        )
        client = connect(self.url, 0.5)
        assert wait_until(lambda: _pings(client), 10), "private redis did not start"

    def stop(self) -> None:
        """Graceful shutdown: the append-only file keeps what was written."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _pings(client: redis.Redis) -> bool:
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
