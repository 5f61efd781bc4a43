"""Keeps the engine's current load in memory for the proxy and publishes it as pod state.

Each request is observed together with the state the engine was in when it arrived, which
is the latest scrape. The engine exports no tokens in flight: those come from the
sidecar's own count of the requests it proxies (``sidecar/inflight.py``), published with
every scrape's pod state. A scrape older than a few intervals describes an engine that is
gone or hung, so the proxy gets no state then (and writes no sample with a made-up load),
and the pod state stops being refreshed, letting it expire from routers' candidate lists.

Scrapes share the proxy's event loop, so they go through the proxy's own engine pool
(``sidecar/upstream.py``) and a parser that keeps only the samples it needs: with httpx and
a general exposition parser, each scrape cost enough loop time to show in the proxy's
p99 added latency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from latency_oracle.features.pod_state import PodState
from latency_oracle.features.schema import MAX_TOKENS, PodIdentity, ServerState
from latency_oracle.sidecar.delivery import PodStatePublisher
from latency_oracle.sidecar.inflight import InflightCounter
from latency_oracle.sidecar.metrics_parser import PrefixHitRate, parse_engine_metrics
from latency_oracle.sidecar.own_metrics import SidecarMetrics
from latency_oracle.sidecar.upstream import UpstreamError

log = logging.getLogger(__name__)

STALE_AFTER_INTERVALS = 10


EngineGet = Callable[[str], Awaitable[str]]  # GET a path of the engine; its text, or raise


class EngineScraper:
    def __init__(
        self,
        get: EngineGet,
        identity: PodIdentity,
        interval_s: float,
        publisher: PodStatePublisher,
        metrics: SidecarMetrics,
        inflight: InflightCounter | None = None,
    ) -> None:
        self.get = get
        self.identity = identity
        self.interval_s = interval_s
        self.publisher = publisher
        self.metrics = metrics
        self.inflight = inflight or InflightCounter()
        self.prefix_hit_rate = PrefixHitRate()
        self._latest: ServerState | None = None
        self._scraped_at = -float("inf")
        metrics.scrape_age.set_function(lambda: time.monotonic() - self._scraped_at)
        metrics.prefill_tokens_in_flight.set_function(lambda: self.inflight.prefill_tokens)
        metrics.decode_tokens_in_flight.set_function(lambda: self.inflight.decode_tokens)

    def state_now(self) -> ServerState | None:
        """The latest scrape, or None when there is no recent one to trust."""
        if time.monotonic() - self._scraped_at > STALE_AFTER_INTERVALS * self.interval_s:
            return None
        return self._latest

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await self.scrape_once()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def scrape_once(self) -> bool:
        try:
            if not self.identity.model:
                await self._resolve_model()
            sample = parse_engine_metrics(await self.get("/metrics"))
        except (UpstreamError, TimeoutError, ValueError) as exc:
            self.metrics.scrape_errors.inc()
            log.debug("engine scrape failed: %r", exc)
            return False
        state = sample.server_state()
        self._latest, self._scraped_at = state, time.monotonic()
        hit_rate = self.prefix_hit_rate.update(sample)
        if hit_rate is not None:
            self.metrics.prefix_cache_hit_rate.set(hit_rate)
        published = state.model_dump()
        published["prefill_tokens_in_flight"] = min(self.inflight.prefill_tokens, MAX_TOKENS)
        published["decode_tokens_in_flight"] = min(self.inflight.decode_tokens, MAX_TOKENS)
        self.publisher.offer(PodState(**self.identity.model_dump(), **published))
        return True

    async def _resolve_model(self) -> None:
        """The served model's name, asked once the engine is up (it may start after us)."""
        models = json.loads(await self.get("/v1/models")).get("data") or []
        if models and isinstance(models[0].get("id"), str):
            self.identity = self.identity.model_copy(update={"model": models[0]["id"]})
