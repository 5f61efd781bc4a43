"""The one typed settings object of the service.

Every knob is an environment variable with the prefix ``LATENCY_ORACLE_`` (for example
``LATENCY_ORACLE_PORT=9000``); the table of ``docs/settings.md`` is generated from this
class, so a setting that is not here does not exist. The fields live in one module per concern
(service, learning, tracking, routing, fleet, sidecar) and are composed here into the one
object every process reads.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from latency_oracle.settings.fleet import FleetSettings
from latency_oracle.settings.learning import LearningSettings
from latency_oracle.settings.routing import HeadroomMode, RoutePolicyName, RoutingSettings
from latency_oracle.settings.service import ServiceSettings
from latency_oracle.settings.sidecar import PodRoleName, SidecarSettings
from latency_oracle.settings.table import render_settings_table, replace_settings_table
from latency_oracle.settings.tracking import TrackingSettings, check_model_version

ENV_PREFIX = "LATENCY_ORACLE_"

__all__ = [
    "ENV_PREFIX",
    "HeadroomMode",
    "PodRoleName",
    "RoutePolicyName",
    "Settings",
    "check_model_version",
    "settings_table",
    "update_settings_table",
]


class Settings(
    SidecarSettings,
    FleetSettings,
    RoutingSettings,
    TrackingSettings,
    LearningSettings,
    ServiceSettings,
    BaseSettings,
):
    """Service configuration, read once from the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

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


def settings_table() -> str:
    """The settings table of ``docs/settings.md``, generated so the docs cannot drift from code."""
    return render_settings_table(Settings, ENV_PREFIX)


def update_settings_table(markdown: Path) -> None:
    """Rewrite the settings table in ``markdown`` from the code."""
    replace_settings_table(markdown, settings_table())
