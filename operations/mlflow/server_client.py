"""The MLflow side of model review: one experiment per deployment, one run per model key.

MLflow is imported here and only when a store is opened: it is heavy, and a predictor
that never logs (or whose tracking server is down) must start and serve without it.
Each registered model version is a model-set snapshot (``models/persistence/snapshot.py``) logged as
a run artifact, so rolling back is decoding that artifact, with the same integrity checks
as a restart.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from latency_oracle.models.keys import ModelKey

if TYPE_CHECKING:
    from mlflow import MlflowClient

KEY_TAG = "latency_oracle.model_key"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
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
class LearnerWindow:
    """One learner's headline scores over one logged evaluation window."""

    learner: str
    loss: float
    coverage: float | None


@dataclass(frozen=True, slots=True)
class WindowReview:
    """Champion against its best challenger over one logged window (ending at ``samples``)."""

    samples: int
    champion: LearnerWindow | None
    challenger: LearnerWindow | None


@dataclass(frozen=True, slots=True)
class KeyReview:
    """What ``latency-oracle review`` shows of one model key."""

    key: str
    versions: int
    champion_version: str
    challenger_version: str
    drift_events: float | None
    windows: list[WindowReview]


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
        self.uri = uri
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
        self,
        key: ModelKey,
        snapshot: bytes,
        quantiles: tuple[float, ...],
        params: dict[str, str],
        description: str,
        alias: str = CHAMPION_ALIAS,
    ) -> str:
        """Log a model-set snapshot as MLflow models and register it under ``alias``.

        ``champion`` normally; ``challenger`` while the fleet serves a pinned version, so
        the registry keeps naming what serves.
        """
        import mlflow

        from latency_oracle.operations.mlflow.pyfunc import log_version_models

        run_id = self.run_id(key, params)
        name = registered_model_name(key)
        if not self.is_registered(key):
            self.client.create_registered_model(name, tags={KEY_TAG: key.label()})
        # Logging a model is MLflow's fluent API, which reads the process-wide URIs; this
        # process talks to one store only, so setting them is idempotent.
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
            path = Path(tmp) / SNAPSHOT_FILE
            path.write_bytes(snapshot)
            model = log_version_models(path, quantiles)
        version = self.client.create_model_version(
            name, model.model_uri, run_id=run_id, description=description, model_id=model.model_id
        )
        self.client.set_registered_model_alias(name, alias, version.version)
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
        import mlflow.artifacts

        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{found.version}", dst_path=tmp, tracking_uri=self.uri
            )
            return (Path(local) / "artifacts" / SNAPSHOT_FILE).read_bytes()

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

    def review(self, headline: str, windows: int = 2) -> list[KeyReview]:
        """Every model key's registry state, and champion vs challenger over its last windows."""
        rows = []
        for run in self.client.search_runs([self.experiment_id], order_by=["tags.mlflow.runName"]):
            label = run.data.tags.get(KEY_TAG)
            if label is None:
                continue
            key = ModelKey.parse(label)
            versions = self.client.search_model_versions(f"name = '{registered_model_name(key)}'")
            rows.append(
                KeyReview(
                    key=label,
                    versions=len(versions),
                    champion_version=self._alias(key, CHAMPION_ALIAS),
                    challenger_version=self._alias(key, CHALLENGER_ALIAS),
                    drift_events=run.data.metrics.get("drift_events"),
                    windows=self._windows(run.info.run_id, run.data.metrics, headline, windows),
                )
            )
        return rows

    def _alias(self, key: ModelKey, alias: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(registered_model_name(key), alias)
        except MlflowException:
            return "-"
        return str(found.version)

    def _windows(
        self, run_id: str, latest: dict[str, float], headline: str, count: int
    ) -> list[WindowReview]:
        """The last ``count`` logged windows, champion against its best challenger.

        The champion of a window is the learner whose loss was logged as the key's own
        headline loss at that step (the key's metrics are its champion's).
        """
        loss_suffix, coverage_suffix = f".pinball_{headline}_ms", f".coverage_{headline}"
        learners = [name.removesuffix(loss_suffix) for name in latest if name.endswith(loss_suffix)]
        key_loss = self._history(run_id, f"pinball_{headline}_ms")
        by_step: dict[int, list[LearnerWindow]] = {}
        for learner in learners:
            coverage = self._history(run_id, learner + coverage_suffix)
            for step, loss in self._history(run_id, learner + loss_suffix).items():
                by_step.setdefault(step, []).append(
                    LearnerWindow(learner, loss, coverage.get(step))
                )
        reviews = []
        for step in sorted(by_step)[-count:]:
            scores = sorted(by_step[step], key=lambda w: w.loss)
            champion = next((w for w in scores if w.loss == key_loss.get(step)), None)
            challengers = [w for w in scores if w is not champion]
            reviews.append(WindowReview(step, champion, challengers[0] if challengers else None))
        return reviews

    def _history(self, run_id: str, metric: str) -> dict[int, float]:
        return {m.step: m.value for m in self.client.get_metric_history(run_id, metric)}


def _params(params: dict[str, str]) -> list:
    from mlflow.entities import Param

    return [Param(name, value) for name, value in params.items()]
