"""Error responses shared by the native and the llm-d write endpoints."""

from collections.abc import Callable, Sequence

from fastapi import FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from latency_oracle.features.plausibility import ImplausibleObservations
from latency_oracle.features.store import StoreFull


def store_full_response(exc: StoreFull) -> JSONResponse:
    """503 with Retry-After: nothing of the call was accepted, so a retry is safe."""
    return JSONResponse(
        {"detail": str(exc)},
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(max(1, round(exc.retry_after_s)))},
    )


def implausible_response(
    exc: ImplausibleObservations, loc: Callable[[int, str], Sequence[str | int]]
) -> JSONResponse:
    """422 naming each implausible item's field; ``loc`` maps (index, field) to its place."""
    return JSONResponse(
        {
            "detail": [
                {"type": "implausible", "loc": list(loc(p.index, p.field)), "msg": p.message}
                for p in exc.problems
            ]
        },
        status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def _unparsable_body(request: Request, exc: Exception) -> Response:
    """FastAPI's 400 for a body it cannot decode, in the 422 shape: the field is the body."""
    if isinstance(exc, HTTPException) and exc.status_code == status.HTTP_400_BAD_REQUEST:
        return JSONResponse(
            {"detail": [{"type": "body_unparsable", "loc": ["body"], "msg": str(exc.detail)}]},
            status.HTTP_400_BAD_REQUEST,
        )
    return await http_exception_handler(request, exc)  # type: ignore[arg-type]


def name_unparsable_bodies(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _unparsable_body)
