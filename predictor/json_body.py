"""One-pass JSON request bodies for the hot endpoints.

FastAPI validates a body by parsing JSON into Python objects and then validating them; for
the prediction endpoint that overhead is larger than the prediction itself. pydantic-core's
``validate_json`` parses and validates in one pass in Rust. Errors keep FastAPI's 422 shape
(``loc`` starts with ``"body"``) and the OpenAPI document still describes the body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

_REF_TEMPLATE = "#/components/schemas/{model}"


class JsonBody:
    """A request body type, validated straight from the raw bytes."""

    def __init__(self, body_type: Any) -> None:
        self.adapter: TypeAdapter[Any] = TypeAdapter(body_type)
        schema = self.adapter.json_schema(ref_template=_REF_TEMPLATE)
        self.definitions: dict[str, Any] = schema.pop("$defs", {})
        self.openapi_extra = {
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}
        }

    async def parse(self, request: Request) -> Any:
        try:
            return self.adapter.validate_json(await request.body())
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])} for error in errors]
            ) from None


def publish_body_schemas(app: FastAPI, *bodies: JsonBody) -> None:
    """Add the bodies' model definitions to the app's OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for body in bodies:
                components.update(body.definitions)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
