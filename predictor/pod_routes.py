"""``POST /v1/pods``: where sidecars without Redis publish their pod's live state.

With Redis, sidecars write pod state to Redis themselves; the embedded predictor keeps it
in its own store instead, so ``/v1/route`` finds live pods either way.
"""

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from features.pod_state import PodState
from predictor.auth import write_access
from predictor.json_body import JsonBody
from predictor.service import OracleService


def pod_router(service: OracleService) -> APIRouter:
    api = APIRouter()
    pod_body = JsonBody(PodState)

    @api.post(
        "/v1/pods",
        status_code=status.HTTP_204_NO_CONTENT,
        dependencies=write_access(service.settings),
        responses={409: {"description": "This predictor's store keeps no pod states."}},
        summary="Replace one pod's live state (sidecars call this every scrape)",
        openapi_extra=pod_body.openapi_extra,
    )
    async def put_pod(request: Request) -> Response:
        state: PodState = await pod_body.parse(request)
        put_pod_state = getattr(service.store, "put_pod_state", None)
        if put_pod_state is None:
            return JSONResponse(
                {"detail": "pod states live in Redis here: sidecars publish there"},
                status.HTTP_409_CONFLICT,
            )
        put_pod_state(state)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return api
