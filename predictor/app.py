"""The FastAPI application: predictions, observations, model state, health and metrics."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from latency_oracle.features.plausibility import ImplausibleObservations
from latency_oracle.features.schema import Observation, PredictionRequest
from latency_oracle.features.store import StoreFull
from latency_oracle.models.evaluation import WindowScores
from latency_oracle.models.registry import PredictionBatch
from latency_oracle.models.status import KeyStatus
from latency_oracle.operations.metrics import ServiceMetrics, quantile_label
from latency_oracle.predictor.api_models import (
    Health,
    ModelList,
    ObservationReceipt,
    Prediction,
    PredictionList,
    one_or_many,
)
from latency_oracle.predictor.auth import read_access, write_access
from latency_oracle.predictor.fast_lane import FastLane
from latency_oracle.predictor.http_errors import (
    implausible_response,
    name_unparsable_bodies,
    store_full_response,
)
from latency_oracle.predictor.json_body import JsonBody, publish_body_schemas
from latency_oracle.predictor.llmd_routes import llmd_router
from latency_oracle.predictor.model_version_routes import model_version_router
from latency_oracle.predictor.pod_routes import pod_router
from latency_oracle.predictor.routing_routes import routing_router
from latency_oracle.predictor.service import OracleService
from latency_oracle.predictor.ui import ui_router
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latency_oracle.settings import Settings

# Called by routers on every request they place: served by the fast lane.
HOT_PATHS = ("/v1/route", "/v1/predictions")
_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings | None = None, service: OracleService | None = None) -> FastAPI:
    """The predictor app; it starts the service's learning loop for its lifetime."""
    settings = settings or Settings()
    service = service or OracleService(settings)
    labels = [quantile_label(q) for q in settings.quantiles]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        # Modules, the app and the restored models live as long as the process: frozen,
        # they are out of the collector's full passes, which would walk them all in the
        # middle of a request (as in the sidecar).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="Latency Oracle",
        version="0.1.0",
        summary="Online-learned p50/p90/p99 TTFT and TPOT for LLM inference pods.",
        lifespan=lifespan,
        telemetry=None if settings.opentelemetry else _NO_TELEMETRY,
    )
    app.state.service = service
    predictions_body = JsonBody(one_or_many(PredictionRequest, settings.max_batch_items))
    observations_body = JsonBody(one_or_many(Observation, settings.max_batch_items))
    publish_body_schemas(app)
    name_unparsable_bodies(app)

    @app.exception_handler(RequestValidationError)
    async def _rejected(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path == "/v1/observations":
            service.metrics.observations.labels("rejected").inc()
        return JSONResponse(
            {"detail": _jsonable_errors(exc.errors())}, status.HTTP_422_UNPROCESSABLE_CONTENT
        )

    @app.post(
        "/v1/predictions",
        response_model=Prediction | PredictionList,
        dependencies=read_access(settings),
        summary="p50/p90/p99 TTFT and TPOT for one request, or a list of candidates",
        openapi_extra=predictions_body.openapi_extra,
    )
    async def predict(request: Request) -> Response:
        body = await predictions_body.parse(request)
        items: Sequence[PredictionRequest] = body if isinstance(body, list) else [body]
        rendered = _render(items, service.predict(items), labels)
        payload = {"predictions": rendered} if isinstance(body, list) else rendered[0]
        return Response(to_json(payload), media_type="application/json")

    @app.post(
        "/v1/observations",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=ObservationReceipt,
        dependencies=write_access(settings),
        responses={503: {"description": "Buffer full; retry after Retry-After seconds."}},
        summary="Report finished requests (one or many); learned in the background",
        openapi_extra=observations_body.openapi_extra,
    )
    async def observe(request: Request) -> Response:
        body = await observations_body.parse(request)
        items: Sequence[Observation] = body if isinstance(body, list) else [body]
        try:
            result = service.ingest(items)
        except StoreFull as exc:
            return store_full_response(exc)
        except ImplausibleObservations as exc:
            many = isinstance(body, list)
            return implausible_response(
                exc, lambda i, field: ("body", "many", i, field) if many else ("body", "one", field)
            )
        return JSONResponse(
            {"accepted": result.accepted, "duplicates": result.duplicates},
            status.HTTP_202_ACCEPTED,
        )

    @app.get("/v1/models", response_model=ModelList, summary="State and accuracy per model key")
    async def models() -> ModelList:
        statuses = service.models.statuses()  # published copies: never the live model sets
        return ModelList.model_validate({"models": [_describe(s, labels) for s in statuses]})

    @app.get("/healthz", response_model=Health, summary="Liveness: the process answers")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": Health}},
        summary="ready, degraded (serving, with problems listed) or not_ready (503)",
    )
    async def readyz() -> JSONResponse:
        readiness = service.readiness()
        return JSONResponse(readiness.body(), readiness.http_status)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routing_api = routing_router(service)
    app.include_router(routing_api)
    app.include_router(pod_router(service))
    app.include_router(model_version_router(service))
    app.include_router(ui_router(service))
    app.include_router(llmd_router(service), prefix=settings.llmd_prefix)
    hot = [r for r in (*app.routes, *routing_api.routes) if getattr(r, "path", "") in HOT_PATHS]
    app.add_middleware(FastLane, routes=hot, exception_handlers=app.exception_handlers)
    # Added last, so outermost: it times the fast lane's requests too.
    app.add_middleware(_TimingMiddleware, metrics=service.metrics)
    return app


def _render(
    items: Sequence[PredictionRequest], batch: PredictionBatch, labels: list[str]
) -> list[dict[str, object]]:
    ttft, tpot = batch.ttft_ms.tolist(), batch.tpot_ms.tolist()
    cold = batch.cold.tolist()
    return [
        {
            "pod": item.pod,
            "accelerator": item.accelerator,
            "ttft_ms": dict(zip(labels, ttft[i], strict=True)),
            "tpot_ms": dict(zip(labels, tpot[i], strict=True)),
            "model": {"ttft": batch.ttft_model[i], "tpot": batch.tpot_model[i]},
            "key": {"ttft": batch.ttft_key[i], "tpot": batch.tpot_key[i]},
            "cold": cold[i],
        }
        for i, item in enumerate(items)
    ]


def _describe(status: KeyStatus, labels: list[str]) -> dict[str, object]:
    return {
        "key": status.key.label(),
        "accelerator": status.key.accelerator,
        "target": status.key.target.value,
        "served_model": status.key.model,
        "samples": status.samples,
        "champion": status.champion,
        "last_update": status.last_update,
        "serving": status.serving,
        "scaled_models": list(status.served_models),
        "learners": [
            {
                "name": learner.name,
                "state": learner.state,
                "samples": learner.samples,
                "failures": learner.failures,
                "last_error": learner.last_error,
                "window": _scores(learner.scores, labels),
            }
            for learner in status.learners
        ],
    }


def _scores(scores: WindowScores, labels: list[str]) -> dict[str, object]:
    def finite(values: tuple[float, ...]) -> dict[str, float | None]:
        return {k: (v if v == v else None) for k, v in zip(labels, values, strict=True)}

    return {
        "samples": scores.samples,
        "pinball_ms": finite(scores.pinball),
        "coverage": finite(scores.coverage),
        "mae_ms": scores.mae if scores.mae == scores.mae else None,
    }


def _jsonable_errors(errors: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """Validation errors without the raw input/context objects (which may not be JSON)."""
    return [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in errors]


class _TimingMiddleware:
    """Request latency histogram by route template (bounded label cardinality)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = 500

        async def send_with_status(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            self._histogram(getattr(route, "path", "unmatched"), scope["method"], code).observe(
                time.perf_counter() - start
            )

    def _histogram(self, path: str, method: str, code: int) -> Histogram:
        """The labelled child, looked up once per label set: prometheus-client's ``labels``
        costs several microseconds a call. Paths are route templates, so this stays small."""
        key = (path, method, code)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.metrics.http_duration.labels(path, method, str(code))
        return child
