"""The sidecar process: the measuring proxy plus its scraper and delivery tasks.

The proxy owns every path but ``/sidecar/*`` (the engine's own ``/metrics`` included),
so clients and Prometheus reach the engine through it unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from latency_oracle.settings import Settings
from sidecar.accelerator import pod_identity
from sidecar.delivery import ObservationWriter, PodStatePublisher
from sidecar.metrics import SidecarMetrics
from sidecar.proxy import MeasuringProxy
from sidecar.scraper import EngineScraper
from sidecar.sink import ObservationSink, sink_from_settings

DRAIN_TIMEOUT_S = 5.0


def create_sidecar(settings: Settings, sink: ObservationSink | None = None) -> Starlette:
    metrics = SidecarMetrics()
    sink = sink or sink_from_settings(settings)
    writer = ObservationWriter(sink, settings.sidecar_queue_size, metrics)
    publisher = PodStatePublisher(sink, metrics)
    scraper = EngineScraper(
        lambda path: proxy.get_text(path),  # the proxy's pool, opened in the lifespan
        pod_identity(settings),
        settings.scrape_interval_s,
        publisher,
        metrics,
    )
    proxy = MeasuringProxy(settings.engine_url, settings.engine_timeout_s, scraper, writer, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await proxy.start()
        tasks = [asyncio.create_task(t.run()) for t in (writer, publisher, scraper)]
        try:
            yield
        finally:
            tasks[2].cancel()
            await writer.drain(DRAIN_TIMEOUT_S)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await proxy.aclose()
            await sink.aclose()

    async def sidecar_metrics(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> JSONResponse:
        """Ready when the engine answered a recent scrape (samples get a real load)."""
        if scraper.state_now() is None:
            return JSONResponse({"status": "not_ready", "problems": ["no recent scrape"]}, 503)
        return JSONResponse({"status": "ok", "pod": scraper.identity.model_dump()})

    app = Starlette(
        routes=[
            Route("/sidecar/metrics", sidecar_metrics),
            Route("/sidecar/healthz", healthz),
            Mount("/", app=proxy),
        ],
        lifespan=lifespan,
    )
    app.state.scraper = scraper
    app.state.metrics = metrics
    return app


def serve_sidecar(settings: Settings) -> None:
    """Serve until signalled; the engine's Date and Server headers pass through as sent."""
    import uvicorn

    uvicorn.run(
        create_sidecar(settings),
        host=settings.sidecar_host,
        port=settings.sidecar_port,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        date_header=False,
    )
