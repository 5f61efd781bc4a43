"""Rolling a model key back to a registered MLflow version.

A registered version is a model-set snapshot, so a rollback installs the whole model set
as it was (learners, calibration, drift state) and learning continues from there. The
``champion`` alias moves with it, so the registry always names what serves.
"""

from __future__ import annotations

import logging

from latency_oracle.features.accelerators import normalize_accelerator
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey, Target
from latency_oracle.models.model_set import ModelSet
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.models.snapshot import SnapshotError, decode_snapshot
from latency_oracle.operations.mlflow_store import MlflowStore, configure_http

from latency_oracle.settings import Settings

log = logging.getLogger(__name__)


def parse_key(label: str) -> ModelKey:
    """``H100/ttft`` -> the model key, with the accelerator named as observations name it."""
    accelerator, _, target = label.rpartition("/")
    if accelerator != GLOBAL_ACCELERATOR:
        accelerator = normalize_accelerator(accelerator)
    return ModelKey(accelerator, Target(target))


def open_store(settings: Settings) -> MlflowStore:
    configure_http(settings.mlflow_timeout_s, settings.mlflow_retries)
    return MlflowStore(
        settings.mlflow_tracking_uri, settings.mlflow_experiment, settings.mlflow_artifact_location
    )


def rollback(
    models: ModelRegistry,
    store: MlflowStore,
    key: ModelKey,
    version: int,
    signing_key: bytes | None = None,
) -> ModelSet:
    """Serve registered ``version`` of ``key`` from now on; raises if it cannot be loaded
    (or, given the snapshot key, is not signed with it)."""
    data = store.load_version(key, version)
    payload = decode_snapshot(data, models.config.quantiles, signing_key)
    model_set = payload["model_sets"].get(key)
    if model_set is None:
        raise SnapshotError(f"version {version} of {key.label()} holds no model set for it")
    models.merge_state({key: model_set})
    store.set_champion(key, version)
    log.info("rolled %s back to registered version %d", key.label(), version)
    return model_set


def apply_pinned_versions(models: ModelRegistry, settings: Settings) -> list[str]:
    """Install ``settings.model_versions`` at start; the problems, so start never fails."""
    if not settings.model_versions:
        return []
    problems = []
    try:
        store = open_store(settings)
        for label, version in settings.model_versions.items():
            try:
                rollback(models, store, parse_key(label), version, settings.snapshot_signing_key)
            except (LookupError, SnapshotError) as exc:
                problems.append(f"model version {label}={version}: {exc}")
    except Exception as exc:  # MLflow down: serve what the snapshot had, and say so
        problems.append(f"model versions not loaded, MLflow unavailable: {exc}")
    for problem in problems:
        log.error("%s", problem)
    return problems
