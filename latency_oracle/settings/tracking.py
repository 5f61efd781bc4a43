"""MLflow tracking, and the registered model versions served at start."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


def check_model_version(label: str, version: int) -> None:
    """A pinned registered version must name ``<accelerator>/<ttft|tpot>[/<served model>]``
    and be >= 1."""
    accelerator, _, rest = label.partition("/")
    target = rest.partition("/")[0]
    if not accelerator or target not in ("ttft", "tpot") or version < 1:
        raise ValueError(
            f"{label}={version}: expected <accelerator>/<ttft|tpot>[/<model>]=<n >= 1>"
        )


class TrackingSettings(BaseModel):
    """MLflow tracking, and the registered model versions served at start."""

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

    @field_validator("model_versions")
    @classmethod
    def _check_model_versions(cls, value: dict[str, int]) -> dict[str, int]:
        for label, version in value.items():
            check_model_version(label, version)
        return value
