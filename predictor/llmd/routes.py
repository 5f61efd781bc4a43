"""llm-d's latency predictor API, so its endpoint picker (EPP) can point at Latency Oracle.

The EPP's client (``latencypredictorclient``) calls a prediction server (``/predict``,
``/predict/bulk/strict``, ``/status``) and a training server (``/add_training_data_bulk``,
``/model/download/info``, in native mode ``/model/{ttft,tpot}/xgb/json``); all are served
here with llm-d's field names and status codes, as explicit JSON routes (the strict bulk
call is made for every request the EPP schedules).

Where it differs from llm-d's own server, on purpose:

- **Answers from the first call.** llm-d's server answers 503 until its models are
  trained; the EPP then schedules blind. Here predictions come from the accelerator's
  model, else the global one, else the physics prior, and ``/status`` says which
  (``model_source``). ``llmd_strict_readiness`` restores llm-d's 503s.
- **Identity.** The EPP sends no pod name and no accelerator type. Its calls at the llm-d
  prefix are about ``llmd_accelerator``; under ``<prefix>/accelerators/<type>`` about
  that type (one EPP per InferencePool, so its URL names the pool's hardware).
  ``pod_type`` (the EPP's role label) is the pod's role; an optional ``pod`` field
  (not sent by the stock client) reaches per-pod calibration.
- **Training** skips implausible entries instead of failing the flush (``llmd.training``).
- **No model download.** The client never predicts locally from XGBoost trees (its
  ``Predict`` asks over HTTP for ``xgboost``), and Latency Oracle's models are not plain
  trees or linear coefficients over llm-d's features, so none are exported; the endpoints
  answer that, instead of a 404 the client would log every minute.

The probes ``/healthz`` and ``/readyz`` exist at the root already (native bodies, the
same status codes); llm-d's own bodies are served under a non-empty ``llmd_prefix``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fastapi import status
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from latency_oracle.features.accelerators import normalize_accelerator
from latency_oracle.features.store import StoreFull
from latency_oracle.models.keys import GLOBAL_ACCELERATOR, ModelKey, Target
from latency_oracle.models.model_set import ServingModel
from latency_oracle.models.registry import PRIOR_MODEL
from latency_oracle.predictor.api_models import Detail
from latency_oracle.predictor.auth import TokenGate, read_gate, write_gate
from latency_oracle.predictor.http_errors import store_full_response
from latency_oracle.predictor.json_routes import JsonRoute, received_at
from latency_oracle.predictor.llmd.bodies import (
    MODEL_TYPE,
    OBJECTIVE_TYPE,
    LlmdBulkRequest,
    LlmdBulkResponse,
    LlmdBulkResponseWithErrors,
    LlmdPrediction,
    LlmdRequest,
    LlmdTrainingBatch,
    TrainingReceipt,
    render_predictions,
    request_columns,
)
from latency_oracle.predictor.llmd.status_routes import status_routes
from latency_oracle.predictor.llmd.training import SkipLog, observations, out_of_bounds
from latency_oracle.predictor.service import OracleService

log = logging.getLogger(__name__)
NOT_READY = "Models not ready"
TAGS = ("llm-d compatibility",)
ACCELERATOR_PATH = "/accelerators/{accelerator}"
_NOT_READY_ANSWER = (f"{NOT_READY} (llmd_strict_readiness)", Detail)
_ERRORS_DEFAULTS = {"pod_type": "", "prefill_tokens_in_flight": 0, "decode_tokens_in_flight": 0}


@lru_cache(maxsize=256)
def _canonical(accelerator: str) -> str:
    return normalize_accelerator(accelerator)


class LlmdAdapter:
    """What every llm-d endpoint needs: which accelerator a call is about, which models
    answer for it (read lock-free from the published ones) and the fields every answer
    carries."""

    def __init__(self, service: OracleService) -> None:
        self.service = service
        self.default_accelerator = _canonical(service.settings.llmd_accelerator)
        self.quantile = service.config.quantiles[service.config.headline_index]
        self.headline = service.config.headline_index
        self.strict = service.settings.llmd_strict_readiness

    def accelerator(self, request: Request) -> str:
        given = request.path_params.get("accelerator")
        return self.default_accelerator if given is None else _canonical(given[:128])

    def sources(self, accelerator: str) -> dict[Target, ServingModel | None]:
        """Per target, the model that answers: the accelerator's own, else the global one."""
        models = self.service.models
        return {
            target: models.serving(ModelKey(accelerator, target))
            or models.serving(ModelKey(GLOBAL_ACCELERATOR, target))
            for target in Target
        }

    def answerable(self, sources: dict[Target, ServingModel | None]) -> bool:
        return not self.strict or all(s is not None for s in sources.values())

    def stamp(self, sources: dict[Target, ServingModel | None]) -> dict[str, Any]:
        updated = [s.updated_at for s in sources.values() if s is not None]
        return {
            "predicted_at": datetime.now(UTC).isoformat(),
            "model_type": MODEL_TYPE,
            "objective_type": OBJECTIVE_TYPE,
            "quantile": self.quantile,
            "last_model_load": (
                datetime.fromtimestamp(max(updated), UTC).isoformat() if updated else None
            ),
        }

    def models_exist(self, sources: dict[Target, ServingModel | None]) -> dict[str, bool]:
        return {f"{t.value}_model": s is not None for t, s in sources.items()}

    def model_source(self, sources: dict[Target, ServingModel | None]) -> dict[str, str]:
        return {t.value: PRIOR_MODEL if s is None else s.label for t, s in sources.items()}


def llmd_routes(service: OracleService) -> list[JsonRoute]:
    """The llm-d endpoints at the llm-d prefix and under ``/accelerators/<type>`` there."""
    settings = service.settings
    adapter = LlmdAdapter(service)
    open_gate = TokenGate()
    reads = open_gate if settings.llmd_open else read_gate(settings)
    writes = open_gate if settings.llmd_open else write_gate(settings)
    if reads.secured or writes.secured:
        log.warning(
            "the llm-d endpoints need a bearer token, which llm-d's endpoint picker cannot "
            "send: it will get 401s. Set LATENCY_ORACLE_LLMD_OPEN=true to serve them open."
        )
    skip_log = SkipLog()
    skipped_metric = service.metrics.llmd_entries_skipped

    async def predict_one(request: Request, body: LlmdRequest) -> Response:
        accelerator = adapter.accelerator(request)
        sources = adapter.sources(accelerator)
        if not adapter.answerable(sources):
            return _detail(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_READY)
        batch = service.predict_columns(
            request_columns([body], accelerator, service.tokens_per_word())
        )
        q = adapter.headline
        return JSONResponse(
            {
                "ttft_ms": float(batch.ttft_ms[0, q]),
                "tpot_ms": float(batch.tpot_ms[0, q]),
                **adapter.stamp(sources),
            }
        )

    def predictions_json(request: Request, rows: list[LlmdRequest], with_errors: bool) -> Response:
        accelerator = adapter.accelerator(request)
        sources = adapter.sources(accelerator)
        n = len(rows)
        if not adapter.answerable(sources):
            if not with_errors:
                return _detail(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_READY)
            return _all_failed(request, rows)
        batch = service.predict_columns(
            request_columns(rows, accelerator, service.tokens_per_word())
        )
        q = adapter.headline
        predictions = render_predictions(
            batch.ttft_ms[:, q], batch.tpot_ms[:, q], adapter.stamp(sources)
        )
        errors = ',"errors":[]' if with_errors else ""
        elapsed_ms = (time.perf_counter() - received_at(request)) * 1e3
        return Response(
            f'{{"predictions":{predictions}{errors},"total_requests":{n},'
            f'"successful_predictions":{n},"failed_predictions":0,'
            f'"processing_time_ms":{elapsed_ms:.4f}}}',
            media_type="application/json",
        )

    async def predict_strict(request: Request, body: LlmdBulkRequest) -> Response:
        return predictions_json(request, body["requests"], with_errors=False)

    async def predict_bulk(request: Request, body: LlmdBulkRequest) -> Response:
        return predictions_json(request, body["requests"], with_errors=True)

    async def add_training_data(request: Request, body: LlmdTrainingBatch) -> Response:
        kept, skipped = observations(
            body["entries"], adapter.accelerator(request), service.tokens_per_word()
        )
        try:
            _, problems = service.ingest_plausible(kept)
        except StoreFull as exc:
            return store_full_response(exc)
        skipped.update(out_of_bounds(p.field) for p in problems)
        for reason, count in skipped.items():
            skipped_metric.labels(reason).inc(count)
        skip_log.note(skipped)
        accepted = len(kept) - len(problems)
        return JSONResponse(
            {
                "message": f"Accepted {accepted} training samples.",
                "accepted": accepted,
                "skipped": dict(skipped),
            },
            status.HTTP_202_ACCEPTED,
        )

    prefix = settings.llmd_prefix
    routes: list[JsonRoute] = []
    for base in (prefix, prefix + ACCELERATOR_PATH):
        routes += [
            JsonRoute(
                f"{base}/predict/bulk/strict",
                predict_strict,
                LlmdBulkRequest,
                "llm-d: p90 TTFT and TPOT of every candidate, all or nothing",
                {200: ("Predictions in request order.", LlmdBulkResponse), 503: _NOT_READY_ANSWER},
                reads,
                TAGS,
            ),
            JsonRoute(
                f"{base}/predict",
                predict_one,
                LlmdRequest,
                "llm-d: p90 TTFT and TPOT of one request",
                {200: ("The prediction.", LlmdPrediction), 503: _NOT_READY_ANSWER},
                reads,
                TAGS,
            ),
            JsonRoute(
                f"{base}/predict/bulk",
                predict_bulk,
                LlmdBulkRequest,
                "llm-d: predictions, with per-item errors",
                {200: ("Predictions, or per-item errors.", LlmdBulkResponseWithErrors)},
                reads,
                TAGS,
            ),
            JsonRoute(
                f"{base}/add_training_data_bulk",
                add_training_data,
                LlmdTrainingBatch,
                "llm-d: training entries, learned in the background; implausible ones skipped",
                {
                    202: (
                        "Accepted, minus the entries skipped (counted by reason).",
                        TrainingReceipt,
                    ),
                    503: ("Buffer full; retry after Retry-After seconds.", Detail),
                },
                writes,
                TAGS,
            ),
            *status_routes(base, adapter, TAGS, probes=base == prefix != ""),
        ]
    return routes


def _detail(code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, code)


def _all_failed(request: Request, rows: list[LlmdRequest]) -> JSONResponse:
    """``/predict/bulk`` under strict readiness: a 200 whose every item failed, as llm-d."""
    n = len(rows)
    return JSONResponse(
        {
            "predictions": [None] * n,
            "errors": [
                {
                    "index": i,
                    "error": f"Batch prediction error: 503: {NOT_READY}",
                    "request": {**_ERRORS_DEFAULTS, **row},
                }
                for i, row in enumerate(rows)
            ],
            "total_requests": n,
            "successful_predictions": 0,
            "failed_predictions": n,
            "processing_time_ms": (time.perf_counter() - received_at(request)) * 1e3,
        }
    )
