"""The fast lane answers hot endpoints exactly as the framework would, and only those."""

from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.testclient import TestClient
from latency_oracle.predictor.app import create_app
from latency_oracle.predictor.fast_lane import FastLane
from latency_oracle.predictor.json_body import JsonBody
from latency_oracle.predictor.service import OracleService
from latency_oracle.routing.schema import Slo
from starlette.types import Receive, Scope, Send

from latency_oracle.settings import Settings


def _api() -> FastAPI:
    api = FastAPI()
    slo_body = JsonBody(Slo)

    @api.post("/hot")
    async def hot(request: Request) -> Response:
        slo: Slo = await slo_body.parse(request)
        if slo.ttft_ms == 13:
            raise HTTPException(418, detail="unlucky")
        return Response(slo.model_dump_json(), media_type="application/json")

    async def guard() -> None:
        return None

    @api.post("/guarded", dependencies=[Depends(guard)])
    async def guarded(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    return api


class _Spy:
    """The app behind the lane: records what the lane passed on, then lets FastAPI answer."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.api(scope, receive, send)


def test_hot_routes_skip_the_framework_and_answer_the_same() -> None:
    api = _api()
    spy = _Spy(api)
    lane = FastLane(spy, api.routes, api.exception_handlers)
    with TestClient(lane) as fast, TestClient(api) as framework:
        for body in ({"ttft_ms": 200}, {"ttft_ms": -1}, {"ttft_ms": 13}, {"bogus": 1}):
            answer, reference = fast.post("/hot", json=body), framework.post("/hot", json=body)
            assert (answer.status_code, answer.json()) == (
                reference.status_code,
                reference.json(),
            ), body
        unparsable = fast.post("/hot", content=b"{nope")
        assert unparsable.status_code == 422
        assert unparsable.json()["detail"][0]["loc"][0] == "body"
        assert spy.paths == []
        assert fast.get("/hot").status_code == 405  # a method it does not serve: passed on
        assert fast.post("/guarded").status_code == 200  # has a dependency: passed on
    assert spy.paths == ["/hot", "/guarded"]


def test_the_predictor_times_fast_lane_requests_under_their_route(settings: Settings) -> None:
    with TestClient(create_app(settings, OracleService(settings))) as client:
        pods = [{"pod": "a", "accelerator": "H100"}]
        assert client.post("/v1/route", json={"input_tokens": 10, "pods": pods}).status_code == 200
        assert client.post("/v1/route", json={"input_tokens": -1}).status_code == 422
        metrics = client.get("/metrics").text
    for status in ("200", "422"):
        labels = f'method="POST",route="/v1/route",status="{status}"'
        assert f"latency_oracle_http_request_duration_seconds_count{{{labels}}} 1.0" in metrics
