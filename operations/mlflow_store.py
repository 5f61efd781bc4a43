"""The MLflow side of model review: one experiment per deployment, one run per model key.

MLflow is imported here and only when a store is opened: it is heavy, and a predictor
that never logs (or whose tracking server is down) must start and serve without it.
Each registered model version is a model-set snapshot (``models/snapshot.py``) logged as
a run artifact, so rolling back is decoding that artifact, with the same integrity checks
as a restart.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from latency_oracle.models.keys import ModelKey

if TYPE_CHECKING:
    from mlflow import MlflowClient

KEY_TAG = "latency_oracle.model_key"
CHAMPION_ALIAS = "champion"
SNAPSHOT_FILE = "model_set.snapshot"


class VersionNotFound(LookupError):
    """No registered version of that number for that model key."""


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """What gets logged for one model key at one point of its stream."""

    key: ModelKey
    step: int  # samples the model set had seen
    timestamp_ms: int
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class KeyReview:
    """One row of ``latency-oracle review``."""

    key: str
    versions: int
    champion_version: str
    champion: str
    samples: float | None
    headline_loss: float | None
    coverage: float | None
    drift_events: float | None


def registered_model_name(key: ModelKey) -> str:
    """MLflow registered-model names cannot contain '/': one name per key.

    A served model's name is made safe and suffixed with a digest of the exact name, so two
    names that clean up alike (``org/m`` and ``org-m``) still get a registered model each;
    keys naming no served model keep the names they always had.
    """
    name = f"latency-oracle-{key.accelerator}-{key.target.value}"
    if not key.model:
        return name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", key.model).strip("-")[:64]
    digest = hashlib.sha256(key.model.encode()).hexdigest()[:8]
    return f"{name}-{safe}-{digest}"


def configure_http(timeout_s: float, retries: int) -> None:
    """Bound MLflow's REST retries, which default to minutes of backoff per call.

    MLflow reads these only from the environment; they affect nothing but MLflow.
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, round(timeout_s)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"


class KeyNotRegistered(LookupError):
    """No registered model for that accelerator type and target."""


class MlflowStore:
    """Tracking and Model Registry of one deployment, through one ``MlflowClient``."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None) -> None:
        from mlflow import MlflowClient

        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client: MlflowClient = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.experiment_name = experiment
        self.artifact_location = artifact_location
        self._experiment_id: str | None = None
        self._runs: dict[ModelKey, str] = {}

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            self._experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(self.experiment_name, self.artifact_location)
            )
        return self._experiment_id

    def run_id(self, key: ModelKey, params: dict[str, str]) -> str:
        """The key's run, reused across restarts so its metric history stays one line."""
        if key not in self._runs:
            found = self.client.search_runs(
                [self.experiment_id], f"tags.`{KEY_TAG}` = '{key.label()}'", max_results=1
            )
            if found:
                self._runs[key] = found[0].info.run_id
            else:
                run = self.client.create_run(
                    self.experiment_id, run_name=key.label(), tags={KEY_TAG: key.label()}
                )
                self._runs[key] = run.info.run_id
                self.client.log_batch(self._runs[key], params=_params(params))
        return self._runs[key]

    def log(self, record: RunMetrics, params: dict[str, str]) -> None:
        from mlflow.entities import Metric, RunTag

        self.client.log_batch(
            self.run_id(record.key, params),
            metrics=[
                Metric(name, value, record.timestamp_ms, record.step)
                for name, value in record.metrics.items()
            ],
            tags=[RunTag(name, value) for name, value in record.tags.items()],
        )

    def register_version(
        self, key: ModelKey, snapshot: bytes, params: dict[str, str], description: str
    ) -> str:
        """Log a model-set snapshot and register it as the key's new ``champion`` version."""
        run_id = self.run_id(key, params)
        name = registered_model_name(key)
        if not self.is_registered(key):
            self.client.create_registered_model(name, tags={KEY_TAG: key.label()})
        artifact_dir = f"snapshots/{time.time_ns()}"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / SNAPSHOT_FILE
            path.write_bytes(snapshot)
            self.client.log_artifact(run_id, str(path), artifact_dir)
        version = self.client.create_model_version(
            name, f"runs:/{run_id}/{artifact_dir}", run_id=run_id, description=description
        )
        self.client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
        return str(version.version)

    def load_version(self, key: ModelKey, version: int) -> bytes:
        """The snapshot bytes of a registered version; ``VersionNotFound`` if none."""
        from mlflow.exceptions import MlflowException

        name = registered_model_name(key)
        if not self.is_registered(key):
            raise KeyNotRegistered(f"no registered model for {key.label()}")
        try:
            found = self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise VersionNotFound(f"{key.label()} has no registered version {version}") from exc
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(found.run_id, _artifact_dir(found.source), tmp)
            return (Path(local) / SNAPSHOT_FILE).read_bytes()

    def is_registered(self, key: ModelKey) -> bool:
        name = registered_model_name(key)
        return bool(self.client.search_registered_models(f"name = '{name}'", max_results=1))

    def champion_version(self, key: ModelKey) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(
                registered_model_name(key), CHAMPION_ALIAS
            )
        except MlflowException:
            return None
        return int(found.version)

    def set_champion(self, key: ModelKey, version: int) -> None:
        self.client.set_registered_model_alias(
            registered_model_name(key), CHAMPION_ALIAS, str(version)
        )

    def review(self, headline: str) -> list[KeyReview]:
        """Latest metrics and registry state of every model key, for the review table."""
        rows = []
        for run in self.client.search_runs([self.experiment_id], order_by=["tags.mlflow.runName"]):
            label = run.data.tags.get(KEY_TAG)
            if label is None:
                continue
            key = ModelKey.parse(label)
            versions = self.client.search_model_versions(f"name = '{registered_model_name(key)}'")
            champion = self.champion_version(key)
            metrics = run.data.metrics
            rows.append(
                KeyReview(
                    key=label,
                    versions=len(versions),
                    champion_version="-" if champion is None else str(champion),
                    champion=run.data.tags.get("champion", "-"),
                    samples=metrics.get("samples"),
                    headline_loss=metrics.get(f"pinball_{headline}_ms"),
                    coverage=metrics.get(f"coverage_{headline}"),
                    drift_events=metrics.get("drift_events"),
                )
            )
        return rows


def _params(params: dict[str, str]) -> list:
    from mlflow.entities import Param

    return [Param(name, value) for name, value in params.items()]


def _artifact_dir(source: str) -> str:
    """``runs:/<run>/snapshots/17`` -> ``snapshots/17``."""
    return source.split("/", 2)[2] if source.startswith("runs:/") else source
