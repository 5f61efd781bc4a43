"""``POST /v1/pods``: where sidecars without Redis publish their pod's live state.

With Redis, sidecars usually write pod state to Redis themselves; this endpoint writes to
the predictor's store in either mode (its own memory, or Redis), which is the store
``/v1/route`` lists live pods from.
"""

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from latency_oracle.features.pod_state import PodState
from latency_oracle.predictor.auth import write_access
from latency_oracle.predictor.json_body import JsonBody
from latency_oracle.predictor.service import OracleService
from redis import RedisError


def pod_router(service: OracleService) -> APIRouter:
    api = APIRouter()
    pod_body = JsonBody(PodState)

    @api.post(
        "/v1/pods",
        status_code=status.HTTP_204_NO_CONTENT,
        dependencies=write_access(service.settings),
        responses={503: {"description": "The pod state store (Redis) is unreachable."}},
        summary="Replace one pod's live state (sidecars call this every scrape)",
        openapi_extra=pod_body.openapi_extra,
    )
    async def put_pod(request: Request) -> Response:
        state: PodState = await pod_body.parse(request)
        try:
            service.store.put_pod_state(state)
        except RedisError as exc:
            return JSONResponse(
                {"detail": f"pod state store: {exc}"}, status.HTTP_503_SERVICE_UNAVAILABLE
            )
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return api
