"""The fleet: embedded state or Redis, trainers, model and pod sync, the /ui page."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr


class FleetSettings(BaseModel):
    """The fleet: embedded state or Redis, trainers, model and pod sync, the /ui page."""

    state_dir: Path = Field(
        Path("latency-oracle-state"),
        description="Where the embedded default keeps model snapshots.",
    )
    snapshot_interval_s: float = Field(
        30.0, gt=0, description="Seconds between model snapshots to disk."
    )

    redis_url: str | None = Field(
        None,
        description="Redis URL (redis://host:6379/0). Set: observations go to Redis streams, "
        "trainers learn, predictors sync models. Unset: the embedded in-process default.",
    )
    redis_username: str | None = Field(
        None,
        description="Redis ACL user of this process's role (sidecar, predictor or trainer); "
        "unset: the default user.",
    )
    redis_password: SecretStr | None = Field(
        None,
        description="Password of the Redis ACL user (from a Kubernetes Secret, kept out of "
        "the Redis URL and the settings ConfigMap).",
    )
    snapshot_key: SecretStr | None = Field(
        None,
        min_length=32,
        description="Secret (32+ characters, from a Kubernetes Secret) that trainers sign model "
        "snapshots with (HMAC-SHA256) and predictors verify them with: set, an unsigned or "
        "forged snapshot is refused. Unset: snapshots are unsigned (checksum only).",
    )
    redis_key_prefix: str = Field(
        "latency-oracle",
        min_length=1,
        pattern=r"^[^{}]+$",
        description="Prefix of every Redis key this service uses (no braces: it goes inside "
        "the keys' Redis Cluster hash tags).",
    )
    redis_timeout_s: float = Field(
        1.0, gt=0, description="Redis connect and socket timeout, seconds."
    )
    stream_maxlen: int = Field(
        1_000_000, ge=1_000, description="Approximate entries kept per observation stream."
    )
    observation_id_ttl_s: int = Field(
        86_400, ge=1, description="Seconds Redis remembers an observation id for idempotency."
    )
    pod_ttl_s: float = Field(
        30.0, gt=0, description="Seconds a pod's state stays live without a fresh report."
    )
    global_sample_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Redis mode: share of every shard's observations (chosen by observation "
        "id) the global model learns; it still counts them all. Below 1 the global stream "
        "and its one trainer stop carrying the whole fleet's load (docs/capacity.md).",
    )
    hot_key_max_rate: float = Field(
        0.0,
        ge=0,
        description="Redis mode: observations/s a shard's (accelerator, served model) models "
        "learn in full; past it, by stream time, they learn a sample of about this many a "
        "second and count the rest (0: no ceiling). The global model's load is set by "
        "global_sample_rate instead.",
    )
    trainer_name: str = Field(
        "", description="Consumer name of this trainer; empty: host name and process id."
    )
    trainer_batch_size: int = Field(
        1_000, ge=1, description="Stream entries a trainer reads and learns per step."
    )
    trainer_checkpoint_interval_s: float = Field(
        1.0, gt=0, description="Seconds between a trainer's snapshot checkpoints per shard."
    )
    trainer_lease_s: float = Field(
        10.0,
        gt=0,
        description="Shard lease; a dead trainer's shards and pending entries are taken "
        "over by another trainer after this idle time.",
    )
    trainer_metrics_port: int = Field(
        9102,
        ge=0,
        le=65535,
        description="Port of a trainer's /metrics, /healthz and /readyz (0: none; trainers "
        "sharing a host each need their own).",
    )
    model_sync_interval_s: float = Field(
        0.25, gt=0, description="Seconds between a predictor's checks for new model snapshots."
    )
    pod_sync_interval_s: float = Field(
        0.2,
        gt=0,
        description="Redis mode: seconds between a predictor's reads of the live pod states "
        "it routes on (routing never reads Redis per request).",
    )
    ui_sample_interval_s: float = Field(
        10.0, gt=0, description="Seconds between the /ui page's samples of coverage and loss."
    )
    ui_history_s: float = Field(
        3_600.0, gt=0, description="Seconds of coverage and loss history /ui keeps and charts."
    )
    ui_recent_items: int = Field(
        200,
        ge=1,
        le=10_000,
        description="Recent requests per model key (predicted vs actual) and route "
        "decisions /ui keeps.",
    )
    ui_refresh_s: int = Field(10, ge=1, description="Seconds between /ui's automatic reloads.")

    @property
    def snapshot_signing_key(self) -> bytes | None:
        """The snapshot key as HMAC key bytes, or None when snapshots are unsigned."""
        return None if self.snapshot_key is None else self.snapshot_key.get_secret_value().encode()
