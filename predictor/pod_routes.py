"""``POST /v1/pods``: where sidecars without Redis publish their pod's live state.

With Redis, sidecars usually write pod state to Redis themselves; this endpoint writes to
the predictor's store in either mode (its own memory, or Redis), which is the store
``/v1/route`` lists live pods from.
"""

from fastapi import status
from redis import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from latency_oracle.features.pod_state import PodState
from latency_oracle.predictor.api_models import Detail
from latency_oracle.predictor.auth import write_gate
from latency_oracle.predictor.json_routes import JsonRoute
from latency_oracle.predictor.service import OracleService


def pod_route(service: OracleService) -> JsonRoute:
    async def put_pod(request: Request, state: PodState) -> Response:
        try:
            service.store.put_pod_state(state)
        except RedisError as exc:
            return JSONResponse(
                {"detail": f"pod state store: {exc}"}, status.HTTP_503_SERVICE_UNAVAILABLE
            )
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return JsonRoute(
        "/v1/pods",
        put_pod,
        PodState,
        "Replace one pod's live state (sidecars call this every scrape)",
        {
            204: ("Stored.", None),
            503: ("The pod state store (Redis) is unreachable.", Detail),
        },
        write_gate(service.settings),
    )
