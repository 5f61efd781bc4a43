"""The endpoints that take a JSON body: plain Starlette routes, documented explicitly.

Routers and llm-d's endpoint picker call these on every request they place, so what a
framework adds per call is paid millions of times. FastAPI would parse the body into
Python objects, validate them a second time and solve a dependency graph per call; here
a route is a Starlette ``Route`` whose endpoint checks the bearer token (when one is
configured: secured and open deployments take the same path), validates the raw bytes in
one pass (pydantic-core's ``validate_json``) and hands the value to its handler. A body
that does not validate is a 422 in FastAPI's shape, each error's ``loc`` starting with
``"body"``, so clients see one error format across the API.

Because FastAPI does not document Starlette routes, each ``JsonRoute`` carries its own
OpenAPI operation (body and response schemas from the same types that validate them),
and ``openapi_document`` merges those into the document FastAPI builds for its own
routes, with FastAPI's public ``get_openapi``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, status
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from latency_oracle.predictor.auth import TokenGate

Handler = Callable[[Request, Any], Awaitable[Response]]
RECEIVED_AT = "latency_oracle.received_at"  # scope key: perf_counter() when the call arrived
_REF_TEMPLATE = "#/components/schemas/{model}"
PATH_PARAMETER = re.compile(r"{(\w+)}")
_PATH_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 128}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "loc", "msg"],
                "properties": {
                    "type": {"type": "string"},
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        }
    },
}


def received_at(request: Request) -> float:
    """When the call reached the app (``perf_counter``), as the timing middleware noted it."""
    return float(request.scope.get(RECEIVED_AT, time.perf_counter()))


def rejected(errors: Iterable[Mapping[str, Any]], prefix: Sequence[str | int] = ()) -> JSONResponse:
    """422 in FastAPI's shape: one ``{type, loc, msg}`` per error, ``loc`` under ``prefix``."""
    return JSONResponse(
        {
            "detail": [
                {"type": e["type"], "loc": [*prefix, *e["loc"]], "msg": e["msg"]} for e in errors
            ]
        },
        status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@dataclass(frozen=True)
class JsonRoute:
    """One endpoint taking a JSON body: what it accepts, answers and who may call it."""

    path: str
    handler: Handler
    body: Any  # the body type, validated from the raw bytes; None: a GET without one
    summary: str
    responses: Mapping[int, tuple[str, Any]]  # status -> (description, schema type or None)
    gate: TokenGate = field(default_factory=TokenGate)
    tags: tuple[str, ...] = ()
    on_rejected: Callable[[], object] | None = None  # called for each body rejected (422)

    @property
    def method(self) -> str:
        return "GET" if self.body is None else "POST"

    def route(self) -> Route:
        adapter: TypeAdapter[Any] | None = None if self.body is None else TypeAdapter(self.body)
        gate, handler, on_rejected = self.gate, self.handler, self.on_rejected

        async def endpoint(request: Request) -> Response:
            # What the timing middleware labels the call with; FastAPI's router notes
            # only its own routes there.
            request.scope["route"] = route
            refusal = gate.refusal(request)
            if refusal is not None:
                return refusal
            if adapter is None:
                return await handler(request, None)
            try:
                value = adapter.validate_json(await request.body())
            except ValidationError as exc:
                if on_rejected is not None:
                    on_rejected()
                return rejected(
                    exc.errors(include_url=False, include_context=False, include_input=False),
                    ("body",),
                )
            return await handler(request, value)

        route = Route(self.path, endpoint, methods=[self.method])
        return route

    def operation(self, components: dict[str, Any]) -> dict[str, Any]:
        """This endpoint's OpenAPI operation; the models it names go into ``components``."""
        responses: dict[str, Any] = {}
        for code, (description, schema_type) in sorted(self.responses.items()):
            answer: dict[str, Any] = {"description": description}
            if schema_type is not None:
                answer["content"] = {
                    "application/json": {
                        "schema": _schema(schema_type, components, "serialization")
                    }
                }
            responses[str(code)] = answer
        responses.setdefault(
            "422",
            {
                "description": "A field is missing, of the wrong type or out of range.",
                "content": {"application/json": {"schema": _ERROR_SCHEMA}},
            },
        )
        operation: dict[str, Any] = {
            "summary": self.summary,
            "operationId": re.sub(r"\W+", "_", f"{self.method}{self.path}").lower(),
            "responses": responses,
        }
        if self.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema(self.body, components, "validation")}
                },
            }
        names = PATH_PARAMETER.findall(self.path)
        if self.body is None and not names:
            responses.pop("422")
        if names:
            operation["parameters"] = [
                {"name": n, "in": "path", "required": True, "schema": _PATH_SCHEMA} for n in names
            ]
        if self.tags:
            operation["tags"] = list(self.tags)
        if self.gate.secured:
            operation["security"] = [{"HTTPBearer": []}]
            responses["401"] = {"description": "Missing or wrong bearer token."}
        return operation


def _schema(schema_type: Any, components: dict[str, Any], mode: str) -> dict[str, Any]:
    schema = TypeAdapter(schema_type).json_schema(ref_template=_REF_TEMPLATE, mode=mode)  # type: ignore[arg-type]
    components.update(schema.pop("$defs", {}))
    return schema


def openapi_document(app: FastAPI, json_routes: Sequence[JsonRoute]) -> dict[str, Any]:
    """FastAPI's document of its own routes plus the explicit operations of ``json_routes``."""
    document = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for json_route in json_routes:
        item = document.setdefault("paths", {}).setdefault(json_route.path, {})
        item[json_route.method.lower()] = json_route.operation(schemas)
    if any(r.gate.secured for r in json_routes):
        components.setdefault("securitySchemes", {})["HTTPBearer"] = {
            "type": "http",
            "scheme": "bearer",
        }
    return document
