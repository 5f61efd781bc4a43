"""llm-d's read-only endpoints: ``/status``, the model-download pair and llm-d's probes.

The EPP's client reads ``/status`` at start and every minute (model type, quantile,
readiness) and, on the same tick, ``/model/download/info``; with its native XGBoost mode
on (the default) it then fetches ``/model/ttft/xgb/json`` and ``/model/tpot/xgb/json``.
It caches those trees but predicts over HTTP all the same (its ``Predict`` never reads
them for ``xgboost``), and Latency Oracle's models are not trees alone (TTFT learners
predict a residual over a physics prior, the champion may be a linear model, served
quantiles carry calibration offsets), so no tree export could reproduce its answers.
``/model/download/info`` says so in ``native_prediction``, and the tree endpoints answer
an empty list with a ``Warning`` header: a well-formed "nothing to run locally" that the
client accepts without logging an error every minute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import status
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from latency_oracle.models.keys import Target
from latency_oracle.predictor.api_models import Detail
from latency_oracle.predictor.json_routes import JsonRoute
from latency_oracle.predictor.llmd.bodies import MODEL_TYPE, OBJECTIVE_TYPE

if TYPE_CHECKING:
    from latency_oracle.predictor.llmd.routes import LlmdAdapter

SERVICE_NAME = "http-based-latency-predictor"
NATIVE_PREDICTION = (
    "not offered: Latency Oracle's models (a residual over a physics prior, calibrated "
    "quantiles, a linear or tree champion) are not expressible as XGBoost trees or "
    "Bayesian-ridge coefficients over llm-d's features; predict over HTTP "
    "(LATENCY_USE_NATIVE_XGBOOST=false)"
)
NO_TREES_WARNING = f'299 latency-oracle "no trees exported; native prediction {NATIVE_PREDICTION}"'


class ModelsExist(BaseModel):
    ttft_model: bool
    tpot_model: bool


class LlmdStatus(BaseModel):
    """llm-d's ``/status`` plus which model answers (a learner, or the physics prior)."""

    is_ready: bool = Field(description="Predictions are answered (always, unless strict).")
    model_type: str
    objective_type: str
    quantile: float = Field(description="The quantile served: predictions are p90, not means.")
    last_model_load: str | None
    training_server_url: str
    models_exist: ModelsExist = Field(description="A trained model (own or global) exists.")
    ensemble_active: bool
    accelerator: str
    model_source: dict[str, str] = Field(description="Per target: learner@accelerator or prior.")
    strict_readiness: bool
    health: str = Field(description="The service's readiness: ready, degraded or not_ready.")


class LlmdModelInfo(BaseModel):
    model_type: str
    objective_type: str
    quantile: float
    model_status: ModelsExist
    native_prediction: str


def status_routes(
    base: str, adapter: LlmdAdapter, tags: tuple[str, ...], probes: bool
) -> list[JsonRoute]:
    """``/status`` and the download endpoints under ``base``; llm-d's probes if ``probes``."""

    async def model_status(request: Request, _: None) -> Response:
        accelerator = adapter.accelerator(request)
        sources = adapter.sources(accelerator)
        path = request.url.path.removesuffix("/status")
        return JSONResponse(
            {
                "is_ready": adapter.answerable(sources),
                "model_type": MODEL_TYPE,
                "objective_type": OBJECTIVE_TYPE,
                "quantile": adapter.quantile,
                "last_model_load": adapter.stamp(sources)["last_model_load"],
                "training_server_url": f"{request.base_url}".rstrip("/") + path,
                "models_exist": adapter.models_exist(sources),
                "ensemble_active": False,
                "accelerator": accelerator,
                "model_source": adapter.model_source(sources),
                "strict_readiness": adapter.strict,
                "health": adapter.service.readiness().status,
            }
        )

    async def model_info(request: Request, _: None) -> Response:
        sources = adapter.sources(adapter.accelerator(request))
        return JSONResponse(
            {
                "model_type": MODEL_TYPE,
                "objective_type": OBJECTIVE_TYPE,
                "quantile": adapter.quantile,
                "model_status": adapter.models_exist(sources),
                "native_prediction": NATIVE_PREDICTION,
            }
        )

    async def no_trees(request: Request, _: None) -> Response:
        return JSONResponse([], headers={"Warning": NO_TREES_WARNING})

    routes = [
        JsonRoute(
            f"{base}/status",
            model_status,
            None,
            "llm-d: model type, quantile, readiness and which model answers",
            {200: ("Status.", LlmdStatus)},
            tags=tags,
        ),
        JsonRoute(
            f"{base}/model/download/info",
            model_info,
            None,
            "llm-d: model info; native (in-client) prediction is not offered",
            {200: ("Model info.", LlmdModelInfo)},
            tags=tags,
        ),
        *(
            JsonRoute(
                f"{base}/model/{target.value}/xgb/json",
                no_trees,
                None,
                f"llm-d: {target.value.upper()} trees for native prediction: none exported",
                {200: ("An empty tree list, with a Warning header saying why.", list[dict])},
                tags=tags,
            )
            for target in Target
        ),
    ]
    if probes:
        routes += _probes(base, adapter, tags)
    return routes


def _probes(base: str, adapter: LlmdAdapter, tags: tuple[str, ...]) -> list[JsonRoute]:
    """llm-d's own probe bodies, for deployments that mount the adapter under a prefix."""

    async def healthz(request: Request, _: None) -> Response:
        return JSONResponse({"status": "ok", "service": SERVICE_NAME})

    async def readyz(request: Request, _: None) -> Response:
        sources = adapter.sources(adapter.default_accelerator)
        if not adapter.answerable(sources) or not adapter.service.readiness().serving:
            return JSONResponse(
                {"detail": "Models are not ready"}, status.HTTP_503_SERVICE_UNAVAILABLE
            )
        return JSONResponse(
            {
                "status": "ready",
                "model_type": MODEL_TYPE,
                "objective_type": OBJECTIVE_TYPE,
                "quantile": adapter.quantile,
            }
        )

    return [
        JsonRoute(
            f"{base}/healthz", healthz, None, "llm-d: liveness", {200: ("Alive.", None)}, tags=tags
        ),
        JsonRoute(
            f"{base}/readyz",
            readyz,
            None,
            "llm-d: ready unless strict readiness and untrained, or the service is not serving",
            {200: ("Ready.", None), 503: ("Not ready.", Detail)},
            tags=tags,
        ),
    ]
