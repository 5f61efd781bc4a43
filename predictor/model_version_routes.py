"""Serving a registered MLflow version: ``POST /v1/models/{accelerator}/{target}/rollback``,
and in Redis mode releasing the fleet-wide pin: ``DELETE /v1/models/{accelerator}/{target}/pin``.

A plain ``def`` endpoint on purpose: loading a version is MLflow I/O, which FastAPI runs
in its thread pool, away from the event loop that answers predictions.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, Strict
from redis.exceptions import RedisError

from latency_oracle.models.keys import Target
from latency_oracle.models.persistence.redis_pins import FleetPins
from latency_oracle.models.persistence.snapshot import SnapshotError
from latency_oracle.operations.mlflow.server_client import KeyNotRegistered, VersionNotFound
from latency_oracle.operations.model_versions import open_store, parse_key, rollback
from latency_oracle.predictor.auth import write_access
from latency_oracle.predictor.service import OracleService


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Strict()] = Field(ge=1, description="Registered version to serve.")


class RollbackResult(BaseModel):
    accelerator: str
    target: str
    served_model: str
    version: int
    champion: str | None
    samples: int
    scope: Literal["fleet", "replica"] = Field(
        description="fleet: pinned in Redis for every replica, trainers learn a challenger; "
        "replica: the embedded default, learning continues from the version."
    )


def model_version_router(service: OracleService) -> APIRouter:
    api = APIRouter()

    @api.post(
        "/v1/models/{accelerator}/{target}/rollback",
        dependencies=write_access(service.settings),
        response_model=RollbackResult,
        responses={
            404: {"description": "No registered model for the key, or no such version."},
            409: {"description": "The version's snapshot cannot be served by this build."},
            503: {"description": "MLflow could not be reached."},
        },
        summary="Serve a registered model version of one key (roll back or forward)",
    )
    def rollback_key(
        accelerator: Annotated[str, Path(min_length=1, max_length=128)],
        target: Target,
        body: RollbackRequest,
        model: Annotated[
            str, Query(max_length=256, description="Served model of the key; none for any.")
        ] = "",
    ) -> JSONResponse:
        key = parse_key(f"{accelerator}/{target.value}")._replace(model=model)
        try:
            rollback(
                service.models,
                open_store(service.settings),
                key,
                body.version,
                _pins(service),
                service.settings.snapshot_signing_key,
            )
        except KeyNotRegistered as exc:
            return _error(status.HTTP_404_NOT_FOUND, ["path", "accelerator"], str(exc))
        except VersionNotFound as exc:
            return _error(status.HTTP_404_NOT_FOUND, ["body", "version"], str(exc))
        except SnapshotError as exc:
            return _error(status.HTTP_409_CONFLICT, ["body", "version"], str(exc))
        except Exception as exc:  # MLflow down or failing: nothing was changed
            return JSONResponse(
                {"detail": f"MLflow unavailable: {exc}"}, status.HTTP_503_SERVICE_UNAVAILABLE
            )
        # Its published status: the learning thread may already be training the set.
        published = next(s for s in service.models.statuses() if s.key == key)
        return JSONResponse(
            {
                "accelerator": key.accelerator,
                "target": key.target.value,
                "served_model": key.model,
                "version": body.version,
                "champion": published.champion,
                "samples": published.samples,
                "scope": "replica" if _pins(service) is None else "fleet",
            }
        )

    @api.delete(
        "/v1/models/{accelerator}/{target}/pin",
        dependencies=write_access(service.settings),
        status_code=status.HTTP_204_NO_CONTENT,
        responses={
            404: {"description": "The key is not pinned, or this is not Redis mode."},
            503: {"description": "Redis could not be reached."},
        },
        summary="Release a fleet-wide pin: the trainers' learned model serves the key again",
    )
    def release_pin(
        accelerator: Annotated[str, Path(min_length=1, max_length=128)],
        target: Target,
    ) -> Response:
        pins = _pins(service)
        if pins is None:
            return _error(
                status.HTTP_404_NOT_FOUND, ["path"], "no fleet pins in the embedded default"
            )
        key = parse_key(f"{accelerator}/{target.value}")
        try:
            released = pins.unpin(key)
        except RedisError as exc:
            return JSONResponse(
                {"detail": f"Redis unavailable: {exc}"}, status.HTTP_503_SERVICE_UNAVAILABLE
            )
        if not released:
            return _error(status.HTTP_404_NOT_FOUND, ["path"], f"{key.label()} is not pinned")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return api


def _pins(service: OracleService) -> FleetPins | None:
    return None if service.replica is None else service.replica.pins


def _error(code: int, loc: list[str], message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": message}]}, code)
