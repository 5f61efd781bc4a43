"""The hot endpoints, served without the router walk and the per-call dependency solving.

Routers call ``/v1/route`` and the prediction endpoints on every request they place, so
the framework's own cost is paid millions of times. For a FastAPI route whose endpoint
takes only the ``Request`` (no dependencies, no parameters FastAPI would inject), what
the framework does per call is match the path against every route, open an exit stack,
solve an empty dependency graph and wrap the call in its exception middleware: ~0.1 ms
here, as much as a whole prediction. ``FastLane`` looks such routes up by exact method
and path and awaits their endpoint directly, handing the validation and HTTP errors they
raise to the app's own exception handlers, so answers are byte-identical.

What it does not skip: the middlewares outside it (body-size limit, request timing, error
handling), and any route that needs dependency solving (a configured read token adds
one): those go the framework's way.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class FastLane:
    """ASGI middleware that awaits the endpoints of ``routes`` itself on exact matches."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Iterable[BaseRoute],
        exception_handlers: Mapping[Any, ErrorHandler],
    ) -> None:
        self.app = app
        self._routes = {
            (method, route.path): route
            for route in routes
            if isinstance(route, APIRoute) and _takes_only_request(route)
            for method in route.methods
        }
        self._handlers = {
            kind: exception_handlers[kind] for kind in (RequestValidationError, HTTPException)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self._routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # what the timing middleware labels the request with
        request = Request(scope, receive)
        endpoint: Endpoint = route.endpoint
        try:
            response = await endpoint(request)
        except (RequestValidationError, HTTPException) as exc:
            handler = self._handlers[
                RequestValidationError if isinstance(exc, RequestValidationError) else HTTPException
            ]
            response = await handler(request, exc)
        await response(scope, receive, send)


def _takes_only_request(route: APIRoute) -> bool:
    """Whether awaiting ``route.endpoint(request)`` is all the framework would do."""
    dependant = route.dependant
    takes_one = len(inspect.signature(route.endpoint).parameters) == 1
    return takes_one and dependant.request_param_name is not None and not dependant.dependencies
