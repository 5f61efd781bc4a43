"""The sidecar process: the measuring proxy plus its scraper and delivery tasks.

The proxy owns every path but ``/sidecar/*`` (the engine's own ``/metrics`` included),
so clients and Prometheus reach the engine through it unchanged. Those requests go to the
proxy straight from the server, not through Starlette's middleware and router: every
layer is a coroutine per request and per message sent, on the path whose budget is 1 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import replace

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from latency_oracle.settings import Settings
from latency_oracle.sidecar.accelerator import pod_identity
from latency_oracle.sidecar.delivery import ObservationWriter, PodStatePublisher, RetryPolicy
from latency_oracle.sidecar.exchange import FirstTokenRecords
from latency_oracle.sidecar.own_metrics import SidecarMetrics
from latency_oracle.sidecar.proxy import MeasuringProxy, Receive, Scope, Send
from latency_oracle.sidecar.scraper import EngineScraper
from latency_oracle.sidecar.sink import ObservationSink, sink_from_settings

DRAIN_TIMEOUT_S = 5.0
OWN_PATHS = "/sidecar/"


def create_sidecar(settings: Settings, sink: ObservationSink | None = None) -> SidecarApp:
    """The sidecar's ASGI app: the measuring proxy, its scraper and its delivery, wired.

    ``sink`` defaults to the one the settings name (``sink_from_settings``); tests pass
    their own.
    """
    metrics = SidecarMetrics()
    sink = sink or sink_from_settings(settings)
    retry = RetryPolicy(
        settings.sidecar_retry_base_s,
        settings.sidecar_retry_cap_s,
        settings.sidecar_outage_log_interval_s,
    )
    writer = ObservationWriter(sink, settings.sidecar_queue_size, metrics, retry)
    state_cap_s = min(settings.sidecar_state_retry_cap_s, settings.sidecar_retry_cap_s)
    publisher = PodStatePublisher(sink, metrics, replace(retry, cap_s=state_cap_s))
    scraper = EngineScraper(
        lambda path: proxy.get_text(path),  # through the proxy's engine pool
        pod_identity(settings),
        settings.scrape_interval_s,
        publisher,
        metrics,
    )
    proxy = MeasuringProxy(
        settings.engine_url,
        settings.engine_timeout_s,
        scraper,
        writer,
        metrics,
        FirstTokenRecords(
            settings.sidecar_first_token_record_s, settings.sidecar_first_token_max_hit_share
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # What exists now (modules, the app) lives as long as the process. Frozen, it is
        # out of the collector's full passes, which otherwise walk ~190k objects (~90 ms
        # measured) in the middle of whatever streams are passing through.
        gc.collect()
        gc.freeze()
        tasks = [asyncio.create_task(t.run()) for t in (writer, publisher, scraper)]
        try:
            yield
        finally:
            tasks[2].cancel()
            await writer.drain(DRAIN_TIMEOUT_S)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            proxy.close()
            await sink.aclose()

    async def sidecar_metrics(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def livez(_: Request) -> JSONResponse:
        """Alive while the process serves: an engine loading its model (minutes) or gone
        is no reason to restart the proxy and cut every stream passing through it."""
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        """Ready when the engine answered a recent scrape (samples get a real load)."""
        if scraper.state_now() is None:
            return JSONResponse({"status": "not_ready", "problems": ["no recent scrape"]}, 503)
        return JSONResponse({"status": "ok", "pod": scraper.identity.model_dump()})

    own = Starlette(
        routes=[
            Route("/sidecar/metrics", sidecar_metrics),
            Route("/sidecar/livez", livez),
            Route("/sidecar/readyz", readyz),
        ],
        lifespan=lifespan,
    )
    return SidecarApp(own, proxy)


class SidecarApp:
    """The ASGI app: ``/sidecar/*`` and the lifespan to Starlette, all else to the proxy."""

    def __init__(self, own: Starlette, proxy: MeasuringProxy) -> None:
        self.own = own
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(OWN_PATHS):
            await self.proxy(scope, receive, send)
        else:
            await self.own(scope, receive, send)


def serve_sidecar(settings: Settings) -> None:
    """Serve until signalled; the engine's Date and Server headers pass through as sent."""
    import uvicorn

    uvicorn.run(
        create_sidecar(settings),
        host=settings.sidecar_host,
        port=settings.sidecar_port,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-* pass through to the engine, unread here
        server_header=False,
        date_header=False,
    )
