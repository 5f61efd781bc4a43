"""Bearer tokens on the endpoints that change models (writes) and, optionally, on reads.

Model poisoning is the attack that matters for a learning service: anyone who can post
observations can drag the quantiles routers act on. With ``api_token`` set, every write
needs it; predictions and routing stay open unless ``read_token`` is set too (the write
token also reads). Tokens are compared in constant time. Unset tokens add no dependency
at all, so the open default pays nothing on the hot path.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, HTTPException, status
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from latency_oracle.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="LATENCY_ORACLE_API_TOKEN (or READ_TOKEN)")
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"description": "Missing or wrong bearer token."}
}


def write_access(settings: Settings) -> list[DependsParam]:
    """Dependencies of a write endpoint: the api token, when one is configured."""
    return _require(settings.api_token)


def read_access(settings: Settings) -> list[DependsParam]:
    """Dependencies of a prediction or routing endpoint: either token, when a read one is set."""
    if settings.read_token is None:
        return []
    return _require(settings.read_token, settings.api_token)


def _require(*tokens: SecretStr | None) -> list[DependsParam]:
    accepted = [t.get_secret_value().encode() for t in tokens if t is not None]
    if not accepted:
        return []

    async def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if credentials is None or not _matches(credentials.credentials.encode(), accepted):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail=[
                    {
                        "type": "unauthorized",
                        "loc": ["header", "authorization"],
                        "msg": "a valid 'Authorization: Bearer <token>' header is required",
                    }
                ],
                headers={"WWW-Authenticate": "Bearer"},
            )

    return [Depends(check)]


def _matches(given: bytes, accepted: Sequence[bytes]) -> bool:
    """Constant time in the token's content: every accepted token is compared."""
    results = [hmac.compare_digest(given, token) for token in accepted]
    return any(results)
