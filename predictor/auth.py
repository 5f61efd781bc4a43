"""Bearer tokens on the endpoints that change models (writes) and, optionally, on reads.

Model poisoning is the attack that matters for a learning service: anyone who can post
observations can drag the quantiles routers act on. With ``api_token`` set, every write
needs it; predictions and routing stay open unless ``read_token`` is set too (the write
token also reads). Tokens are compared in constant time.

One ``TokenGate`` per access level does the check: the JSON routes call it themselves
(one header lookup, the same path whether a token is configured or not), and FastAPI
routes take it as a dependency.

llm-d's endpoint picker cannot send a token (its client sets no header but the content
type), so ``llmd_open`` opens the llm-d endpoints while the native API keeps needing one.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.params import Depends as DependsParam
from pydantic import SecretStr
from starlette.responses import JSONResponse

from latency_oracle.settings import Settings

UNAUTHORIZED_DETAIL = [
    {
        "type": "unauthorized",
        "loc": ["header", "authorization"],
        "msg": "a valid 'Authorization: Bearer <token>' header is required",
    }
]
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"description": "Missing or wrong bearer token."}
}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_SCHEME = b"bearer "


class TokenGate:
    """Accepts a call that bears one of ``tokens``; with none configured, every call."""

    def __init__(self, *tokens: SecretStr | None) -> None:
        self._accepted = [t.get_secret_value().encode() for t in tokens if t is not None]

    @property
    def secured(self) -> bool:
        return bool(self._accepted)

    def refusal(self, request: Request) -> JSONResponse | None:
        """The 401 to answer, or None when the call may go on."""
        if not self._accepted:
            return None
        header = request.headers.get("authorization", "").encode()
        if header[: len(_SCHEME)].lower() == _SCHEME and _matches(
            header[len(_SCHEME) :].strip(), self._accepted
        ):
            return None
        return JSONResponse(
            {"detail": UNAUTHORIZED_DETAIL}, status.HTTP_401_UNAUTHORIZED, headers=_CHALLENGE
        )

    def dependencies(self) -> list[DependsParam]:
        """The gate as FastAPI route dependencies (none when open)."""
        if not self._accepted:
            return []

        async def check(request: Request) -> None:
            if self.refusal(request) is not None:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED, detail=UNAUTHORIZED_DETAIL, headers=_CHALLENGE
                )

        return [Depends(check)]


def write_gate(settings: Settings) -> TokenGate:
    """Writes: the api token, when one is configured."""
    return TokenGate(settings.api_token)


def read_gate(settings: Settings) -> TokenGate:
    """Predictions and routing: either token, when a read one is set."""
    if settings.read_token is None:
        return TokenGate()
    return TokenGate(settings.read_token, settings.api_token)


def write_access(settings: Settings) -> list[DependsParam]:
    """Dependencies of a FastAPI write endpoint."""
    return write_gate(settings).dependencies()


def _matches(given: bytes, accepted: Sequence[bytes]) -> bool:
    """Constant time in the token's content: every accepted token is compared."""
    results = [hmac.compare_digest(given, token) for token in accepted]
    return any(results)
