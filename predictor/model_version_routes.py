"""``POST /v1/models/{accelerator}/{target}/rollback``: serve a registered MLflow version.

A plain ``def`` endpoint on purpose: loading a version is MLflow I/O, which FastAPI runs
in its thread pool, away from the event loop that answers predictions.
"""

from typing import Annotated

from fastapi import APIRouter, Path, status
from fastapi.responses import JSONResponse
from latency_oracle.models.keys import Target
from latency_oracle.models.snapshot import SnapshotError
from latency_oracle.operations.mlflow_store import KeyNotRegistered, VersionNotFound
from latency_oracle.operations.model_versions import open_store, parse_key, rollback
from latency_oracle.predictor.auth import write_access
from latency_oracle.predictor.service import OracleService
from pydantic import BaseModel, ConfigDict, Field, Strict


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Strict()] = Field(ge=1, description="Registered version to serve.")


class RollbackResult(BaseModel):
    accelerator: str
    target: str
    version: int
    champion: str | None
    samples: int


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
    ) -> JSONResponse:
        key = parse_key(f"{accelerator}/{target.value}")
        try:
            model_set = rollback(
                service.models,
                open_store(service.settings),
                key,
                body.version,
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
        return JSONResponse(
            {
                "accelerator": key.accelerator,
                "target": key.target.value,
                "version": body.version,
                "champion": model_set.champion,
                "samples": model_set.n_samples,
            }
        )

    return api


def _error(code: int, loc: list[str], message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": message}]}, code)
