"""The one typed settings object of the service.

Every knob is an environment variable with the prefix ``LATENCY_ORACLE_`` (for example
``LATENCY_ORACLE_PORT=9000``); the README's settings table is generated from this class,
so a setting that is not here does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "LATENCY_ORACLE_"
RoutePolicyName = Literal["headroom", "least-latency", "heuristic"]
HeadroomMode = Literal["pack", "spread"]
PodRoleName = Literal["both", "prefill", "decode"]


class Settings(BaseSettings):
    """Service configuration, read once from the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    host: str = Field(
        "127.0.0.1",
        description="Address the predictor, and a trainer's metrics and probe endpoint, listen on.",
    )
    port: int = Field(8080, ge=1, le=65535, description="Port the predictor listens on.")
    log_level: str = Field("info", description="Python logging level.")
    opentelemetry: bool = Field(
        False,
        description="FastAPI's own OpenTelemetry spans and metrics for every HTTP request, "
        "sent to the OpenTelemetry SDK the process configures. Off by default: the service's "
        "metrics are Prometheus, and when on FastAPI looks its providers up on every request "
        "(~7 us here), SDK or not.",
    )

    quantiles: Annotated[tuple[float, ...], NoDecode] = Field(
        (0.5, 0.9, 0.99), description="Quantiles served, comma-separated, ascending."
    )
    headline_quantile: float = Field(
        0.9, description="Quantile whose pinball loss picks the champion learner."
    )
    min_samples: int = Field(
        300,
        ge=1,
        description="Own samples a model key needs before it serves; until then the "
        "global model (or the physics prior) answers and the answer says cold.",
    )
    max_batch_items: int = Field(
        10_000, ge=1, description="Most items in one bulk prediction or observation call."
    )
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token writes need (observations, training data, pod state, "
        "rollback); unset: writes are open.",
    )
    read_token: SecretStr | None = Field(
        None,
        description="Bearer token predictions and routing need (the api_token also works); "
        "unset: they are open.",
    )
    max_ttft_ms: float = Field(
        600_000.0,
        gt=0,
        description="Implausible above: observations with a longer TTFT are rejected (422) "
        "and, if they reach a trainer another way, skipped and counted.",
    )
    min_tpot_ms: float = Field(
        0.05, ge=0, description="Implausible below: TPOT faster than this is rejected."
    )
    max_tpot_ms: float = Field(
        10_000.0, gt=0, description="Implausible above: TPOT slower than this is rejected."
    )
    max_context_tokens: int = Field(
        2_097_152,
        ge=1,
        description="Implausible above: prompt plus output tokens beyond any model's context.",
    )
    max_accelerators: int = Field(
        256,
        ge=1,
        description="Accelerator types with their own models (and metric labels); beyond "
        "it the least recently seen one's models are evicted (the global ones never).",
    )
    max_live_pods: int = Field(
        10_000, ge=1, description="Live pod states kept; beyond it the stalest are evicted."
    )

    learn_batch_size: int = Field(256, ge=1, description="Observations learned per cycle.")
    observation_buffer: int = Field(
        100_000,
        ge=1,
        description="Observations accepted but not yet learned; beyond it writes get 503.",
    )
    dedup_window: int = Field(
        1_000_000, ge=1, description="Recent observation ids remembered for idempotency."
    )
    eval_window: int = Field(
        2_000, ge=50, description="Samples in the sliding prequential evaluation window."
    )
    champion_margin: float = Field(
        0.02, ge=0, le=0.5, description="Relative loss gain a challenger needs to take over."
    )
    calibration_window: int = Field(
        1_000, ge=50, description="Recent residuals the conformal layer calibrates on."
    )
    calibration_step: float = Field(
        0.005, gt=0, le=0.1, description="Adaptive conformal step size (per sample)."
    )
    pod_calibration_window: int = Field(
        32,
        ge=8,
        le=4_096,
        description="Recent outcomes per pod its own conformal correction is taken from "
        "(a slowed or hot pod gets covered again within a few dozen of them).",
    )
    pod_calibration_min_samples: int = Field(
        16, ge=1, description="Outcomes a pod needs before its own correction applies."
    )
    pod_calibration_max_pods: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Pods with their own correction per model key (least recently seen "
        "evicted); each costs ~0.7 KB per learner.",
    )
    calibration_history: int = Field(
        16,
        ge=0,
        le=4_096,
        description="Recent model versions kept per learner so calibration scores each "
        "outcome against the version that served its request (0: against the newest); "
        "each costs ~0.1-0.4 MB per model key.",
    )
    river_learning_rate: float = Field(
        0.02, gt=0, description="SGD learning rate of the River quantile regressors."
    )
    xgb_window: int = Field(
        1_024, ge=64, description="Recent samples each XGBoost boosting step fits on."
    )
    xgb_boost_every: int = Field(
        512, ge=16, description="New samples between XGBoost continued-boosting steps."
    )
    xgb_rounds_per_boost: int = Field(2, ge=1, description="Trees added per boosting step.")
    xgb_max_rounds: int = Field(
        40, ge=4, description="Rounds after which XGBoost refits from its window."
    )
    xgb_refit_rounds: int = Field(16, ge=1, description="Rounds of a refit from the window.")
    xgb_max_depth: int = Field(5, ge=1, le=10, description="XGBoost tree depth.")
    drift_delta: float = Field(
        0.002,
        gt=0,
        lt=1,
        description="ADWIN confidence on the champion's residuals: lower, fewer false drifts.",
    )
    challenger_window: int = Field(
        500,
        ge=50,
        description="Post-drift samples on which a challenger must beat the champion.",
    )
    challenger_max_samples: int = Field(
        10_000, ge=50, description="Samples after which a challenger that never won is dropped."
    )

    mlflow_enabled: bool = Field(
        True, description="Log model quality, drift and versions to MLflow (off the hot path)."
    )
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking and registry URI (http://mlflow:5000, sqlite:///...). "
        "Unset: the embedded default, a SQLite file in state_dir.",
    )
    mlflow_experiment: str = Field(
        "latency-oracle", min_length=1, description="MLflow experiment of this deployment."
    )
    mlflow_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of one MLflow REST call, seconds."
    )
    mlflow_retries: int = Field(1, ge=0, le=10, description="Retries of a failed MLflow call.")
    tracking_every_observations: int = Field(
        5_000, ge=1, description="Samples of a model key between two metric logs to MLflow."
    )
    tracking_interval_s: float = Field(
        60.0, gt=0, description="Seconds after which a model key's metrics are logged anyway."
    )
    tracking_queue_size: int = Field(
        256, ge=1, description="MLflow log items queued; beyond it they are dropped, counted."
    )
    tracking_flush_timeout_s: float = Field(
        10.0, ge=0, description="Seconds shutdown waits for queued MLflow logs."
    )
    model_versions: dict[str, int] = Field(
        default_factory=dict,
        description='Registered versions to serve at start, JSON: {"H100/ttft": 3}; '
        "the CLI's --model-version H100/ttft=3 sets it.",
    )

    state_dir: Path = Field(
        Path("latency-oracle-state"),
        description="Where the embedded default keeps model snapshots.",
    )
    snapshot_interval_s: float = Field(
        30.0, gt=0, description="Seconds between model snapshots to disk."
    )

    route_policy: RoutePolicyName = Field(
        "headroom", description="Default routing policy: headroom, least-latency or heuristic."
    )
    route_headroom_mode: HeadroomMode = Field(
        "spread",
        description="headroom policy: pack (least positive headroom) or spread (most).",
    )
    route_tie_tolerance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Pods within this fraction of the best score are near-ties; one is "
        "picked at random so concurrent routers do not herd onto the same pod.",
    )
    route_inflight_ttl_s: float = Field(
        2.0,
        gt=0,
        description="Seconds a placement counts against its pod when no newer pod-state "
        "scrape has arrived (optimistic in-flight accounting).",
    )
    llmd_accelerator: str = Field(
        "unknown",
        min_length=1,
        max_length=128,
        description="Accelerator type assumed for llm-d API calls (they carry none).",
    )
    llmd_prefix: str = Field(
        "",
        pattern=r"^(/[A-Za-z0-9._-]+)*$",
        description="Path prefix of the llm-d compatible endpoints ('' serves them at the root).",
    )
    shared_data_dir: Path | None = Field(
        None,
        description="Reference measurements (GPU profiles, traces) the simulated engine "
        "reads; unset: <repo>/../shared/data.",
    )

    redis_url: str | None = Field(
        None,
        description="Redis URL (redis://host:6379/0). Set: observations go to Redis streams, "
        "trainers learn, predictors sync models. Unset: the embedded in-process default.",
    )
    redis_key_prefix: str = Field(
        "latency-oracle", min_length=1, description="Prefix of every Redis key this service uses."
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

    engine_url: str = Field(
        "http://127.0.0.1:8000",
        description="Sidecar: base URL of the engine (OpenAI API and /metrics) it fronts.",
    )
    sidecar_host: str = Field(
        "0.0.0.0", description="Sidecar: listen address (all interfaces: clients are off-pod)."
    )
    sidecar_port: int = Field(8001, ge=1, le=65535, description="Sidecar: listen port.")
    scrape_interval_s: float = Field(
        0.2, gt=0, description="Sidecar: seconds between scrapes of the engine's /metrics."
    )
    accelerator: str | None = Field(
        None,
        max_length=128,
        description="Sidecar: accelerator type of this pod; unset: nvidia-smi, else unknown.",
    )
    pod_role: PodRoleName = Field("both", description="Sidecar: both, prefill or decode.")
    pod_name: str = Field(
        "", max_length=253, description="Sidecar: pod name; empty: the host name."
    )
    served_model: str = Field(
        "", max_length=256, description="Sidecar: model name; empty: asked from /v1/models."
    )
    predictor_url: str | None = Field(
        None,
        description="Sidecar without Redis: predictor base URL its observations and pod "
        "state are posted to (http://predictor:8080).",
    )
    sidecar_queue_size: int = Field(
        10_000,
        ge=1,
        description="Sidecar: observations waiting to be written; beyond it new ones are "
        "dropped (counted) rather than slowing requests down.",
    )
    engine_timeout_s: float = Field(
        600.0, gt=0, description="Sidecar: longest wait for the engine's next bytes, seconds."
    )

    @field_validator("quantiles", mode="before")
    @classmethod
    def _parse_quantiles(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("quantiles")
    @classmethod
    def _check_quantiles(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 < q < 1 for q in value) or list(value) != sorted(set(value)):
            raise ValueError("quantiles must be distinct, ascending and inside (0, 1)")
        return value

    @field_validator("headline_quantile")
    @classmethod
    def _check_headline(cls, value: float, info: object) -> float:
        quantiles = getattr(info, "data", {}).get("quantiles", ())
        if quantiles and value not in quantiles:
            raise ValueError("headline_quantile must be one of the served quantiles")
        return value

    @field_validator("model_versions")
    @classmethod
    def _check_model_versions(cls, value: dict[str, int]) -> dict[str, int]:
        for label, version in value.items():
            check_model_version(label, version)
        return value

    @property
    def snapshot_path(self) -> Path:
        return self.state_dir / "models.snapshot"

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow_uri or f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifact_location(self) -> str | None:
        """Embedded store only: next to its database, not in the working directory."""
        if self.mlflow_uri is not None:
            return None
        return (self.state_dir / "mlflow-artifacts").resolve().as_uri()


def check_model_version(label: str, version: int) -> None:
    """A pinned registered version must name ``<accelerator>/<ttft|tpot>`` and be >= 1."""
    accelerator, _, target = label.rpartition("/")
    if not accelerator or target not in ("ttft", "tpot") or version < 1:
        raise ValueError(f"{label}={version}: expected <accelerator>/<ttft|tpot>=<n >= 1>")


def settings_table() -> str:
    """The README's settings table, generated so documentation cannot drift from code."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
