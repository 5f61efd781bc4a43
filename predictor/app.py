"""The FastAPI application: predictions, observations, model state, health and metrics."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latency_oracle.features.plausibility import ImplausibleObservations
from latency_oracle.features.schema import Observation, PredictionQuery, PredictionRequest
from latency_oracle.features.store import StoreFull
from latency_oracle.models.evaluation import WindowScores
from latency_oracle.models.output_length import LengthForecast
from latency_oracle.models.registry import PredictionBatch
from latency_oracle.models.status import KeyStatus
from latency_oracle.operations.metrics import ServiceMetrics, quantile_label
from latency_oracle.predictor.api_models import (
    Health,
    ModelList,
    ObservationReceipt,
    Prediction,
    PredictionList,
    Ready,
    one_or_many,
)
from latency_oracle.predictor.auth import read_gate, write_gate
from latency_oracle.predictor.http_errors import (
    implausible_response,
    name_unparsable_bodies,
    store_full_response,
)
from latency_oracle.predictor.json_routes import (
    RECEIVED_AT,
    Handler,
    JsonRoute,
    openapi_document,
)
from latency_oracle.predictor.llmd.routes import llmd_routes
from latency_oracle.predictor.model_version_routes import model_version_router
from latency_oracle.predictor.pod_routes import pod_route
from latency_oracle.predictor.routing_routes import routing_route
from latency_oracle.predictor.service import OracleService
from latency_oracle.predictor.ui import ui_router
from latency_oracle.settings import Settings

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

    predictions = JsonRoute(
        "/v1/predictions",
        _predictor(service, labels),
        one_or_many(PredictionQuery, settings.max_batch_items),
        "p50/p90/p99 TTFT and TPOT for one request, or a list of candidates",
        {200: ("The prediction, or one per candidate in order.", Prediction | PredictionList)},
        read_gate(settings),
    )
    observations = JsonRoute(
        "/v1/observations",
        _observer(service),
        one_or_many(Observation, settings.max_batch_items),
        "Report finished requests (one or many); learned in the background",
        {
            202: ("Accepted.", ObservationReceipt),
            503: ("Buffer full; retry after Retry-After seconds.", None),
        },
        write_gate(settings),
        on_rejected=service.metrics.observations.labels("rejected").inc,
    )
    json_routes = [
        predictions,
        routing_route(service),
        observations,
        pod_route(service),
        *llmd_routes(service),
    ]
    app = FastAPI(
        title="Latency Oracle",
        version="0.1.0",
        summary="Online-learned p50/p90/p99 TTFT and TPOT for LLM inference pods.",
        lifespan=lifespan,
        telemetry=None if settings.opentelemetry else _NO_TELEMETRY,
        routes=[r.route() for r in json_routes],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    name_unparsable_bodies(app)

    @app.exception_handler(RequestValidationError)
    async def _rejected(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"detail": _jsonable_errors(exc.errors())}, status.HTTP_422_UNPROCESSABLE_CONTENT
        )

    document: list[dict[str, object]] = []  # built on first request, when all routes exist

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        if not document:
            document.append(openapi_document(app, json_routes))
        return JSONResponse(document[0])

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - API")

    @app.get("/v1/models", response_model=ModelList, summary="State and accuracy per model key")
    async def models() -> ModelList:
        statuses = service.models.statuses()  # published copies: never the live model sets
        return ModelList.model_validate({"models": [_describe(s, labels) for s in statuses]})

    @app.get("/healthz", response_model=Health, summary="Liveness: the process answers")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Ready,
        responses={503: {"model": Ready}},
        summary="ready, degraded (serving, with problems listed) or not_ready (503)",
    )
    async def readyz() -> JSONResponse:
        readiness = service.readiness()
        return JSONResponse(readiness.body(), readiness.http_status)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(model_version_router(service))
    app.include_router(ui_router(service))
    # Outermost: it notes when a call arrived, which answers count their time from.
    app.add_middleware(_TimingMiddleware, metrics=service.metrics)
    return app


def _predictor(service: OracleService, labels: list[str]) -> Handler:
    async def predict(request: Request, body: PredictionQuery | list[PredictionQuery]) -> Response:
        queries = body if isinstance(body, list) else [body]
        items = [service.in_tokens(q, q.prefix_cache_hit_tokens or 0) for q in queries]
        lengths = service.predict_output_tokens(items)
        rendered = _render(items, service.predict(items), lengths, labels)
        payload = {"predictions": rendered} if isinstance(body, list) else rendered[0]
        return Response(to_json(payload), media_type="application/json")

    return predict


def _observer(service: OracleService) -> Handler:
    async def observe(request: Request, body: Observation | list[Observation]) -> Response:
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

    return observe


def _render(
    items: Sequence[PredictionRequest],
    batch: PredictionBatch,
    lengths: LengthForecast,
    labels: list[str],
) -> list[dict[str, object]]:
    ttft, tpot = batch.ttft_ms.tolist(), batch.tpot_ms.tolist()
    cold = batch.cold.tolist()
    p50, p90 = lengths.p50.tolist(), lengths.p90.tolist()
    return [
        {
            "pod": item.pod,
            "accelerator": item.accelerator,
            "ttft_ms": dict(zip(labels, ttft[i], strict=True)),
            "tpot_ms": dict(zip(labels, tpot[i], strict=True)),
            "model": {"ttft": batch.ttft_model[i], "tpot": batch.tpot_model[i]},
            "key": {"ttft": batch.ttft_key[i], "tpot": batch.tpot_key[i]},
            "cold": cold[i],
            "output_tokens": {"p50": p50[i], "p90": p90[i]},
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
        "observed": status.samples if status.observed is None else status.observed,
        "learned_share": status.learned_share,
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
        start = scope.setdefault(RECEIVED_AT, time.perf_counter())
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
