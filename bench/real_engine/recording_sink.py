"""A tap between the sidecars and the predictor: keeps a copy of every observation.

The sidecars deliver to this tap as if it were the predictor (``/v1/observations``,
``/v1/pods``); it keeps each observation as the sidecar sent it (its state at arrival, its
outcome) and forwards the body unchanged, answering with the predictor's own status, so
retries and dedup work as without it. It runs in a thread of the load generator.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from latency_oracle.sim.processes import free_port


class RecordingSink:
    def __init__(self, predictor_url: str) -> None:
        self.predictor_url = predictor_url
        self.observations: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reported: dict[str, float] = {}  # pod -> monotonic time of its last stored report
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def taken(self) -> list[dict[str, Any]]:
        """The finish records kept: a first-token record is not a whole request."""
        with self._lock:
            return [o for o in self.observations if o.get("finished", True)]

    def wait_reported(self, pod: str, since: float, timeout_s: float = 60.0) -> bool:
        """Wait until the predictor stored a state of ``pod`` reported after ``since``
        (``time.monotonic``): from then on ``/v1/route`` lists it again."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._reported.get(pod, float("-inf")) > since:
                    return True
            time.sleep(0.05)
        return False

    def _app(self) -> Starlette:
        forward = httpx.AsyncClient(base_url=self.predictor_url, timeout=10.0)

        async def relay(request: Request) -> Response:
            body = await request.body()
            if request.url.path == "/v1/observations":
                parsed = json.loads(body)
                received = time.time()
                with self._lock:
                    for record in parsed if isinstance(parsed, list) else [parsed]:
                        self.observations.append({**record, "received": received})
            try:
                answer = await forward.post(
                    request.url.path, content=body, headers={"content-type": "application/json"}
                )
            except httpx.HTTPError:
                return Response(status_code=503)
            if request.url.path == "/v1/pods" and answer.is_success:
                with self._lock:
                    self._reported[str(json.loads(body).get("pod"))] = time.monotonic()
            return Response(answer.content, answer.status_code, media_type="application/json")

        return Starlette(
            routes=[Route(p, relay, methods=["POST"]) for p in ("/v1/observations", "/v1/pods")]
        )

    def __enter__(self) -> RecordingSink:
        config = uvicorn.Config(self._app(), port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
