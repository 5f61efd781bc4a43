"""llm-d latency predictor compatibility: the EPP can point at Latency Oracle unchanged.

The llm-d Endpoint Picker talks to a prediction server (``/predict``, ``/predict/bulk``,
``/predict/bulk/strict``, ``/status``, probes) and a training server
(``/add_training_data_bulk``). Both are served here with llm-d's field names, bounds,
defaults and status codes, mapped onto the native records: llm-d sends no accelerator
type, so every call is taken to be about ``settings.llmd_accelerator``.

Deviations, each to keep a model safe: counts and latencies also get the native upper
bounds (a 20M-token prompt is a 422 here, not a sample), and a training entry with both
actuals 0 has no label and is skipped (llm-d reads 0 as "no label" per target too).
The probes ``/healthz`` and ``/readyz`` exist at the root already (native bodies, the
same status codes), so llm-d's own probe bodies are served only under a non-empty
``settings.llmd_prefix``.
"""

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from latency_oracle.features.accelerators import normalize_accelerator
from latency_oracle.features.plausibility import ImplausibleObservations
from latency_oracle.features.schema import (
    MAX_REQUESTS,
    MAX_TOKENS,
    MAX_TPOT_MS,
    MAX_TTFT_MS,
    Observation,
    PodRole,
    PredictionRequest,
)
from latency_oracle.features.store import StoreFull
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey, Target
from latency_oracle.predictor.auth import read_access, write_access
from latency_oracle.predictor.http_errors import implausible_response, store_full_response
from latency_oracle.predictor.service import OracleService
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_BULK_REQUESTS = 10_000
MODEL_TYPE = "xgboost"  # tells the EPP to ask over HTTP, not to fetch regression coefficients
OBJECTIVE_TYPE = "quantile"
SERVICE_NAME = "http-based-latency-predictor"
NOT_READY = "Models not ready"
_ROLES = {"": PodRole.BOTH, "prefill": PodRole.PREFILL, "decode": PodRole.DECODE}
_LLMD_FIELDS = {
    "ttft_ms": "actual_ttft_ms",
    "tpot_ms": "actual_tpot_ms",
    "input_tokens": "input_token_length",
}


class LlmdPredictionRequest(BaseModel):
    """llm-d's ``PredictionRequest``: lax numbers, unknown fields ignored, as the original."""

    model_config = ConfigDict(allow_inf_nan=False)

    kv_cache_percentage: float = Field(ge=0.0, le=1.0)
    input_token_length: int = Field(ge=0, le=MAX_TOKENS)
    num_request_waiting: int = Field(ge=0, le=MAX_REQUESTS)
    num_request_running: int = Field(ge=0, le=MAX_REQUESTS)
    num_tokens_generated: int = Field(ge=0, le=MAX_TOKENS)
    prefix_cache_score: float = Field(ge=0.0, le=1.0)
    pod_type: str | None = ""
    prefill_tokens_in_flight: int = Field(0, ge=0, le=MAX_TOKENS)
    decode_tokens_in_flight: int = Field(0, ge=0, le=MAX_TOKENS)
    encoder_matched_size: int = Field(0, ge=0)
    encoder_input_size: int = Field(0, ge=0)

    def native_fields(self, accelerator: str) -> dict[str, object]:
        """The native PredictionRequest fields; unknown pod types count as monolithic."""
        return {
            "accelerator": accelerator,
            "role": _ROLES.get(self.pod_type or "", PodRole.BOTH),
            "input_tokens": self.input_token_length,
            "prefix_cache_score": self.prefix_cache_score,
            "output_tokens": self.num_tokens_generated,
            "running_requests": self.num_request_running,
            "waiting_requests": self.num_request_waiting,
            "kv_cache_usage": self.kv_cache_percentage,
            "prefill_tokens_in_flight": self.prefill_tokens_in_flight,
            "decode_tokens_in_flight": self.decode_tokens_in_flight,
        }


class BulkPredictionRequest(BaseModel):
    requests: list[LlmdPredictionRequest] = Field(min_length=1, max_length=MAX_BULK_REQUESTS)


class TrainingEntry(LlmdPredictionRequest):
    """llm-d's ``TrainingEntry``: a prediction request plus measured latencies (0 = none)."""

    actual_ttft_ms: float = Field(ge=0.0, le=MAX_TTFT_MS)
    actual_tpot_ms: float = Field(ge=0.0, le=MAX_TPOT_MS)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    predicted_ttft_ms: float | None = Field(None, ge=0.0)
    predicted_tpot_ms: float | None = Field(None, ge=0.0)

    def observation(self, accelerator: str) -> Observation | None:
        """The native observation, or None when the entry carries no label at all."""
        tpot = self.actual_tpot_ms if self.num_tokens_generated >= 2 else 0.0
        if self.actual_ttft_ms <= 0 and tpot <= 0:
            return None
        return Observation(
            **self.native_fields(accelerator),
            timestamp=self.timestamp.timestamp(),
            ttft_ms=self.actual_ttft_ms or None,
            tpot_ms=tpot or None,
        )


class BulkTrainingRequest(BaseModel):
    entries: list[TrainingEntry]


def llmd_router(service: OracleService) -> APIRouter:
    api = APIRouter(tags=["llm-d compatibility"])
    accelerator = normalize_accelerator(service.settings.llmd_accelerator)
    prefix = service.settings.llmd_prefix
    quantile = service.config.quantiles[service.config.headline_index]
    reads, writes = read_access(service.settings), write_access(service.settings)

    def ready() -> bool:
        return service.readiness().serving and all(models_exist().values())

    def models_exist() -> dict[str, bool]:
        return {
            f"{target.value}_model": any(
                service.models.serving(ModelKey(acc, target)) is not None
                for acc in (accelerator, GLOBAL_ACCELERATOR)
            )
            for target in Target
        }

    def last_model_load() -> str | None:
        stamp = service.models.last_update()
        return None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat()

    def predict(items: Sequence[LlmdPredictionRequest]) -> list[dict[str, object]]:
        native = [PredictionRequest(**item.native_fields(accelerator)) for item in items]
        batch = service.predict(native)
        q = service.config.headline_index
        ttft, tpot = batch.ttft_ms[:, q].tolist(), batch.tpot_ms[:, q].tolist()
        stamp = {
            "predicted_at": datetime.now(UTC).isoformat(),
            "model_type": MODEL_TYPE,
            "objective_type": OBJECTIVE_TYPE,
            "quantile": quantile,
            "last_model_load": last_model_load(),
        }
        return [{"ttft_ms": a, "tpot_ms": b, **stamp} for a, b in zip(ttft, tpot, strict=True)]

    def bulk_body(started: float, **fields: object) -> dict[str, object]:
        return {**fields, "processing_time_ms": (time.perf_counter() - started) * 1e3}

    @api.post(
        "/predict", dependencies=reads, summary="llm-d: p-quantile TTFT and TPOT of one request"
    )
    async def predict_one(body: LlmdPredictionRequest) -> JSONResponse:
        if not ready():
            return _detail(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_READY)
        return JSONResponse(predict([body])[0])

    @api.post(
        "/predict/bulk/strict", dependencies=reads, summary="llm-d: predictions, all or nothing"
    )
    async def predict_strict(body: BulkPredictionRequest) -> JSONResponse:
        started = time.perf_counter()
        if not ready():
            return _detail(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_READY)
        n = len(body.requests)
        return JSONResponse(
            bulk_body(
                started,
                predictions=predict(body.requests),
                total_requests=n,
                successful_predictions=n,
                failed_predictions=0,
            )
        )

    @api.post(
        "/predict/bulk", dependencies=reads, summary="llm-d: predictions with per-item errors"
    )
    async def predict_bulk(body: BulkPredictionRequest) -> JSONResponse:
        started = time.perf_counter()
        n = len(body.requests)
        if ready():
            predictions: list[dict[str, object] | None] = list(predict(body.requests))
            errors: list[dict[str, object]] = []
        else:
            predictions = [None] * n
            errors = [
                {
                    "index": i,
                    "error": f"Batch prediction error: 503: {NOT_READY}",
                    "request": item.model_dump(),
                }
                for i, item in enumerate(body.requests)
            ]
        return JSONResponse(
            bulk_body(
                started,
                predictions=predictions,
                errors=errors,
                total_requests=n,
                successful_predictions=n - len(errors),
                failed_predictions=len(errors),
            )
        )

    @api.post(
        "/add_training_data_bulk",
        status_code=status.HTTP_202_ACCEPTED,
        dependencies=writes,
        summary="llm-d: training samples, learned in the background",
    )
    async def add_training_data(body: BulkTrainingRequest) -> JSONResponse:
        observations: list[Observation] = []
        entry_index: list[int] = []
        for i, entry in enumerate(body.entries):
            try:
                observation = entry.observation(accelerator)
            except ValidationError as exc:
                return _invalid_entry(i, exc)
            if observation is not None:
                observations.append(observation)
                entry_index.append(i)
        try:
            service.ingest(observations)
        except StoreFull as exc:
            return store_full_response(exc)
        except ImplausibleObservations as exc:
            return implausible_response(
                exc, lambda i, field: ("body", "entries", entry_index[i], _LLMD_FIELDS[field])
            )
        return JSONResponse(
            {"message": f"Accepted {len(body.entries)} training samples."},
            status.HTTP_202_ACCEPTED,
        )

    @api.get("/status", summary="llm-d: model type, quantile and readiness")
    async def model_status(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "is_ready": ready(),
                "model_type": MODEL_TYPE,
                "objective_type": OBJECTIVE_TYPE,
                "quantile": quantile,
                "last_model_load": last_model_load(),
                "training_server_url": f"{request.base_url}".rstrip("/") + prefix,
                "models_exist": models_exist(),
                "ensemble_active": False,
            }
        )

    if prefix:

        @api.get("/healthz", summary="llm-d: liveness")
        async def healthz() -> JSONResponse:
            return JSONResponse({"status": "ok", "service": SERVICE_NAME})

        @api.get("/readyz", summary="llm-d: 503 until models are trained")
        async def readyz() -> JSONResponse:
            if not ready():
                return _detail(status.HTTP_503_SERVICE_UNAVAILABLE, "Models are not ready")
            return JSONResponse(
                {
                    "status": "ready",
                    "model_type": MODEL_TYPE,
                    "objective_type": OBJECTIVE_TYPE,
                    "quantile": quantile,
                }
            )

    return api


def _detail(code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, code)


def _invalid_entry(index: int, exc: ValidationError) -> JSONResponse:
    """A mapped entry the native record rejects: 422 naming the entry, like a schema error."""
    return JSONResponse(
        {
            "detail": [
                {"type": e["type"], "loc": ["body", "entries", index, *e["loc"]], "msg": e["msg"]}
                for e in exc.errors()
            ]
        },
        status.HTTP_422_UNPROCESSABLE_CONTENT,
    )
