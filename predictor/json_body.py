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
# Carries a body's model definitions from its operation to the document's components.
_DEFINITIONS_KEY = "x-latency-oracle-definitions"


class JsonBody:
    """A request body type, validated straight from the raw bytes."""

    def __init__(self, body_type: Any) -> None:
        self.adapter: TypeAdapter[Any] = TypeAdapter(body_type)
        schema = self.adapter.json_schema(ref_template=_REF_TEMPLATE)
        self.openapi_extra = {
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            _DEFINITIONS_KEY: schema.pop("$defs", {}),
        }

    async def parse(self, request: Request) -> Any:
        try:
            return self.adapter.validate_json(await request.body())
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])} for error in errors]
            ) from None


def publish_body_schemas(app: FastAPI) -> None:
    """Move every ``JsonBody``'s model definitions into the OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    components.update(operation.pop(_DEFINITIONS_KEY, {}))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
