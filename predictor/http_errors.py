"""Error responses shared by the native and the llm-d write endpoints."""

from fastapi import status
from fastapi.responses import JSONResponse

from features.store import StoreFull


def store_full_response(exc: StoreFull) -> JSONResponse:
    """503 with Retry-After: nothing of the call was accepted, so a retry is safe."""
    return JSONResponse(
        {"detail": str(exc)},
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(max(1, round(exc.retry_after_s)))},
    )
