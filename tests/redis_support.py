"""Helpers for tests against real Redis: private key prefixes, a private server, trainers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis
from latency_oracle.features.redis_keys import GLOBAL_SHARD, TRAINER_GROUP, RedisKeys
from latency_oracle.features.redis_store import RedisObservationStore, connect
from latency_oracle.models.redis_checkpoint import CheckpointStore
from latency_oracle.sim.processes import free_port
from polling import wait_until

from latency_oracle.settings import Settings

SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"

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


class PrivateRedis:
    """A redis-server of our own (append-only file in a temp dir) that tests may stop."""

    def __init__(self, directory: Path, extra_args: Sequence[str] = ()) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra_args = list(extra_args)
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
                "--appendonly",
                "yes",
                "--save",
                "",
                *self.extra_args,
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
def private_redis(directory: Path, extra_args: Sequence[str] = ()) -> Iterator[PrivateRedis]:
    server = PrivateRedis(directory, extra_args)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
