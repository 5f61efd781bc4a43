"""Rolling a model key back to a registered MLflow version.

A registered version is a model-set snapshot, so a rollback installs the whole model set
as it was (learners, calibration, drift state). The ``champion`` alias moves with it, so
the registry always names what serves. In the embedded default learning continues from
the installed version. In Redis mode the rollback is a fleet-wide pin (``FleetPins``):
every replica serves the version within its sync interval, and the trainers' learning
becomes a challenger until the pin is released.
"""

from __future__ import annotations

import logging

from latency_oracle.features.accelerators import normalize_accelerator
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey
from latency_oracle.models.model_set import ModelSet
from latency_oracle.models.persistence.redis_pins import FleetPins
from latency_oracle.models.persistence.snapshot import SnapshotError, decode_snapshot
from latency_oracle.models.registry import ModelRegistry
from latency_oracle.operations.mlflow.server_client import MlflowStore, configure_http
from latency_oracle.settings import Settings

log = logging.getLogger(__name__)


def parse_key(label: str) -> ModelKey:
    """``H100/ttft`` (or ``H100/ttft/<served model>``) -> the model key, with the
    accelerator named as observations name it."""
    key = ModelKey.parse(label)
    if key.accelerator == GLOBAL_ACCELERATOR:
        return key
    return key._replace(accelerator=normalize_accelerator(key.accelerator))


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
    pins: FleetPins | None = None,
    signing_key: bytes | None = None,
) -> ModelSet:
    """Serve registered ``version`` of ``key`` from now on (fleet-wide with ``pins``);
    raises if it cannot be loaded (or, given the snapshot key, is not signed with it)."""
    data = store.load_version(key, version)
    payload = decode_snapshot(data, models.config.quantiles, signing_key)
    model_set = payload["model_sets"].get(key)
    if model_set is None:
        raise SnapshotError(f"version {version} of {key.label()} holds no model set for it")
    if pins is not None:
        pins.pin(model_set, version)
    models.merge_state({key: model_set})
    store.set_champion(key, version)
    log.info("rolled %s back to registered version %d", key.label(), version)
    return model_set


def apply_pinned_versions(
    models: ModelRegistry, settings: Settings, pins: FleetPins | None = None
) -> list[str]:
    """Install ``settings.model_versions`` at start; the problems, so start never fails.

    In Redis mode (``pins``) a version the fleet already pins is left as it is, so
    restarting a replica never reloads MLflow nor undoes a later fleet decision for
    other keys.
    """
    if not settings.model_versions:
        return []
    problems = []
    try:
        pinned = {} if pins is None else pins.pins()
        store = open_store(settings)
        for label, version in settings.model_versions.items():
            key = parse_key(label)
            if key in pinned and pinned[key].version == version:
                continue
            try:
                rollback(models, store, key, version, pins, settings.snapshot_signing_key)
            except (LookupError, SnapshotError) as exc:
                problems.append(f"model version {label}={version}: {exc}")
    except Exception as exc:  # MLflow or Redis down: serve what there is, and say so
        problems.append(f"model versions not loaded, MLflow or Redis unavailable: {exc}")
    for problem in problems:
        log.error("%s", problem)
    return problems
