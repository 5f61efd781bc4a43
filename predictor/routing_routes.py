"""``POST /v1/route``: what endpoint pickers and gateways call to place, shed or queue.

A shed is a 200 with ``decision: shed`` and ``retry_after_ms``, not an HTTP error: the
caller decides to answer 429, and the body says why and when to retry.
"""

from typing import get_args

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from latency_oracle.predictor.auth import read_access
from latency_oracle.predictor.json_body import JsonBody
from latency_oracle.predictor.service import OracleService
from latency_oracle.routing.live_candidates import LiveCandidates
from latency_oracle.routing.router import Decision, NoCandidates, RouteDecision, Router
from latency_oracle.routing.schema import RouteRequest
from pydantic import TypeAdapter

DECISION_JSON = TypeAdapter(RouteDecision)


def routing_router(service: OracleService) -> APIRouter:
    router = Router(service.models, service.settings)
    api = APIRouter()
    max_pods = service.settings.max_batch_items
    route_body = JsonBody(RouteRequest)
    live_candidates = LiveCandidates(service.store, service.settings.max_live_pods)
    # One counter child per decision, looked up once: ``labels()`` costs microseconds a call.
    decisions = {d: service.metrics.route_decisions.labels(d) for d in get_args(Decision)}

    @api.post(
        "/v1/route",
        response_model=RouteDecision,
        dependencies=read_access(service.settings),
        responses={409: {"description": "No candidate pods: none given and none live."}},
        summary="Place a request on a pod against its SLOs, or shed / queue it",
        openapi_extra=route_body.openapi_extra,
    )
    async def route(request: Request) -> Response:
        body: RouteRequest = await route_body.parse(request)
        if body.pods is not None and len(body.pods) > max_pods:
            return _error(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"pods: at most {max_pods} candidates"
            )
        try:
            pods = body.pods if body.pods is not None else live_candidates(body.model or None)
            decision = router.route(body, pods)
            decisions[decision.decision].inc()
            service.activity.record_route(decision)
            return Response(DECISION_JSON.dump_json(decision), media_type="application/json")
        except NoCandidates as exc:
            return _error(status.HTTP_409_CONFLICT, f"{exc} (model {body.model!r})")

    return api


def _error(code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, code)
