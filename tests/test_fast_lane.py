"""The hot endpoints: plain JSON routes that answer as FastAPI would, secured or open alike."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.auth import TokenGate
from latency_oracle.predictor.json_routes import RECEIVED_AT, JsonRoute
from latency_oracle.predictor.service import OracleService
from latency_oracle.routing.route_request import Slo
from latency_oracle.settings import Settings

HOT = ("/v1/predictions", "/v1/route", "/predict", "/predict/bulk/strict")


async def _echo(request: Request, slo: Slo) -> Response:
    return Response(slo.model_dump_json(), media_type="application/json")


def _pair() -> tuple[FastAPI, FastAPI]:
    """The same endpoint as a JSON route and as a FastAPI body-parameter route."""
    json_route = JsonRoute("/hot", _echo, Slo, "echo", {200: ("The SLO.", Slo)})
    plain = FastAPI(routes=[json_route.route()])
    framework = FastAPI()

    @framework.post("/hot")
    async def hot(slo: Slo) -> Slo:
        return slo

    return plain, framework


def test_a_json_route_answers_as_fastapi_would() -> None:
    plain, framework = _pair()
    with TestClient(plain) as fast, TestClient(framework) as reference:
        for body in ({"ttft_ms": 200}, {"ttft_ms": -1}, {"bogus": 1}, {"ttft_ms": "x"}):
            answer, expected = fast.post("/hot", json=body), reference.post("/hot", json=body)
            assert answer.status_code == expected.status_code, body
            if answer.status_code == 200:
                assert answer.json() == expected.json()
            else:
                assert [e["loc"] for e in answer.json()["detail"]] == [
                    e["loc"] for e in expected.json()["detail"]
                ]
        unparsable = fast.post("/hot", content=b"{nope")
        assert unparsable.status_code == 422
        assert unparsable.json()["detail"][0]["loc"][0] == "body"
        assert fast.get("/hot").status_code == 405


def test_a_gate_refuses_before_the_body_is_read() -> None:
    gate = TokenGate(SecretStr("s3cret"))
    app = FastAPI(routes=[JsonRoute("/hot", _echo, Slo, "echo", {}, gate).route()])
    with TestClient(app) as client:
        refused = client.post("/hot", content=b"{nope")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        for scheme in ("Bearer", "bearer"):
            headers = {"authorization": f"{scheme} s3cret"}
            assert client.post("/hot", json={"ttft_ms": 1}, headers=headers).status_code == 200


def test_secured_and_open_deployments_take_the_same_path(settings: Settings) -> None:
    secured = settings.model_copy(
        update={"read_token": SecretStr("r"), "api_token": SecretStr("w")}
    )
    for tuned in (settings, secured):
        app = create_app(tuned, OracleService(tuned))
        routes = {getattr(r, "path", ""): r for r in app.routes}
        for path in HOT:
            assert type(routes[path]) is Route, (path, type(routes[path]))
    with TestClient(create_app(secured, OracleService(secured))) as client:
        document = client.get("/openapi.json").json()
    assert document["paths"]["/v1/route"]["post"]["security"] == [{"HTTPBearer": []}]


def test_the_document_describes_every_json_route(settings: Settings) -> None:
    app = create_app(settings, OracleService(settings))
    with TestClient(app) as client:
        document = client.get("/openapi.json").json()
    assert client.get("/docs").status_code == 200
    schemas = document["components"]["schemas"]
    for path in HOT:
        operation = document["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert _refs(body) <= set(schemas), path
        assert {"200", "422"} <= set(operation["responses"]), path


def _refs(schema: Any) -> set[str]:
    """The component names a schema refers to, at any depth."""
    if isinstance(schema, dict):
        found = {schema["$ref"].rsplit("/", 1)[1]} if "$ref" in schema else set()
        return found.union(*(_refs(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema))
    return set()


class _ArrivedEarlier:
    """A server layer that noted the call's arrival half a second before the app saw it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[RECEIVED_AT] = time.perf_counter() - 0.5
        await self.app(scope, receive, send)


def test_processing_time_counts_from_the_calls_arrival(settings: Settings) -> None:
    app = create_app(settings, OracleService(settings))
    row = {
        "kv_cache_percentage": 0.1,
        "input_token_length": 10,
        "num_request_waiting": 0,
        "num_request_running": 1,
        "num_tokens_generated": 1,
        "prefix_cache_score": 0.0,
    }
    with TestClient(_ArrivedEarlier(app)) as client:
        body = client.post("/predict/bulk/strict", json={"requests": [row]}).json()
    assert body["processing_time_ms"] >= 500


def test_the_predictor_times_json_route_requests_under_their_route(settings: Settings) -> None:
    with TestClient(create_app(settings, OracleService(settings))) as client:
        pods = [{"pod": "a", "accelerator": "H100"}]
        assert client.post("/v1/route", json={"input_tokens": 10, "pods": pods}).status_code == 200
        assert client.post("/v1/route", json={"input_tokens": -1}).status_code == 422
        metrics = client.get("/metrics").text
    for status in ("200", "422"):
        labels = f'method="POST",route="/v1/route",status="{status}"'
        assert f"latency_oracle_http_request_duration_seconds_count{{{labels}}} 1.0" in metrics
