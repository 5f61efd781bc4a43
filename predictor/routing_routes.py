"""``POST /v1/route``: what endpoint pickers and gateways call to place, shed or queue.

A shed is a 200 with ``decision: shed`` and ``retry_after_ms``, not an HTTP error: the
caller decides to answer 429, and the body says why and when to retry.
"""

from typing import get_args

from fastapi import status
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from latency_oracle.predictor.api_models import Detail
from latency_oracle.predictor.auth import read_gate
from latency_oracle.predictor.json_routes import JsonRoute, rejected
from latency_oracle.predictor.service import OracleService
from latency_oracle.routing.live_candidates import LiveCandidates
from latency_oracle.routing.route_request import RouteRequest
from latency_oracle.routing.router import Decision, NoCandidates, RouteDecision, Router

DECISION_JSON = TypeAdapter(RouteDecision)


def routing_route(service: OracleService) -> JsonRoute:
    router = Router(service.models, service.settings)
    max_pods = service.settings.max_batch_items
    live_candidates = LiveCandidates(service.store, service.settings.max_live_pods)
    # One counter child per decision, looked up once: ``labels()`` costs microseconds a call.
    decisions = {d: service.metrics.route_decisions.labels(d) for d in get_args(Decision)}

    async def route(request: Request, body: RouteRequest) -> Response:
        if body.pods is not None and len(body.pods) > max_pods:
            return rejected(
                [{"type": "too_long", "loc": ["pods"], "msg": f"at most {max_pods} candidates"}],
                ("body",),
            )
        hits = [p.prefix_cache_hit_tokens or 0 for p in body.pods or []]
        body = service.in_tokens(body, max(hits, default=0))
        try:
            pods = body.pods if body.pods is not None else live_candidates(body.model or None)
            decision = router.route(body, pods)
            decisions[decision.decision].inc()
            service.activity.record_route(decision)
            return Response(DECISION_JSON.dump_json(decision), media_type="application/json")
        except NoCandidates as exc:
            return JSONResponse(
                {"detail": f"{exc} (model {body.model!r})"}, status.HTTP_409_CONFLICT
            )

    return JsonRoute(
        "/v1/route",
        route,
        RouteRequest,
        "Place a request on a pod against its SLOs, or shed / queue it",
        {
            200: ("The decision: place, shed (with retry_after_ms) or queue.", RouteDecision),
            409: ("No candidate pods: none given and none live.", Detail),
        },
        read_gate(service.settings),
    )
