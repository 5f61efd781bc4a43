"""The measuring reverse proxy in front of the engine's OpenAI API.

Everything passes through as the engine sent it (status, headers minus hop-by-hop ones,
body bytes, streaming); only streamed completions are also measured. A sample is written
only for a stream that finished normally with a 2xx status, usage and the engine's load
at arrival known: an engine error, a broken or timed-out stream, or a client that hung up
ends with no observation at all, because a truncated request's timings would teach the
models latencies that never happened. The write itself is queued, never awaited here.

The upstream client is aiohttp, not httpx: on this path it costs ~0.7 ms less per
streamed completion at p50 and ~1.2 ms less at p99 (bench/proxy_overhead.py), and the
proxy's whole budget is 1 ms.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from pydantic import ValidationError

from features.schema import Observation, ServerState
from sidecar.completion_request import CompletionRequest, read_completion_request
from sidecar.delivery import ObservationWriter
from sidecar.metrics import SidecarMetrics
from sidecar.scraper import EngineScraper
from sidecar.sse import StreamMeter

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
SCRAPE_TIMEOUT_S = 2.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MEASURED_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Recomputed by the client for the (possibly rewritten) body and the engine's address.
_NOT_FORWARDED_UP = _HOP_BY_HOP | {b"host", b"content-length", b"expect"}


@dataclass
class _Exchange:
    """One request's measurements, filled in as its response passes through."""

    arrived: float
    state: ServerState | None
    plan: CompletionRequest | None
    status: int = 0
    meter: StreamMeter | None = None
    body: list[bytes] = field(default_factory=list)
    completed_at: float = 0.0

    @property
    def kind(self) -> str:
        if self.plan is None:
            return "passthrough"
        return "streamed" if self.plan.streamed else "unstreamed"


class MeasuringProxy:
    """An ASGI app forwarding every request to ``engine_url`` through a pooled client."""

    def __init__(
        self,
        engine_url: str,
        timeout_s: float,
        scraper: EngineScraper,
        writer: ObservationWriter,
        metrics: SidecarMetrics,
    ) -> None:
        self.engine_url = engine_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=timeout_s
        )
        self.scraper = scraper
        self.writer = writer
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the upstream connection pool (inside the server's event loop)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=self.timeout,
            auto_decompress=False,  # bytes pass through exactly as the engine sent them
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get_text(self, path: str) -> str:
        """GET ``path`` of the engine through the pool (for scrapes); raises on non-2xx."""
        assert self._session is not None, "MeasuringProxy.start() was not awaited"
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
        async with self._session.get(self.engine_url + path, timeout=timeout) as response:
            response.raise_for_status()
            return await response.text()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.perf_counter()
        state = self.scraper.state_now()
        body = await _read_body(receive)
        if body is None:
            return
        plan = None
        if scope["method"] == "POST" and scope["path"] in MEASURED_PATHS:
            plan = read_completion_request(body)
        exchange = _Exchange(arrived, state, plan)
        assert self._session is not None, "MeasuringProxy.start() was not awaited"
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in _NOT_FORWARDED_UP
        ]
        try:
            response = await self._session.request(
                scope["method"],
                self._upstream_url(scope),
                headers=headers,
                data=plan.upstream_body if plan is not None else body,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            await _send_gateway_error(send, exc)
            self._count(exchange, "failed")
            return
        try:
            outcome = await _unless_disconnected(receive, self._relay(exchange, response, send))
        finally:
            response.release()
        if outcome == "completed":
            outcome = self._finish(exchange)
        self._count(exchange, outcome)

    def _upstream_url(self, scope: Scope) -> str:
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        return self.engine_url + (path + b"?" + query if query else path).decode("latin-1")

    async def _relay(
        self, exchange: _Exchange, response: aiohttp.ClientResponse, send: Send
    ) -> str:
        """Forward the response; 'completed', or 'failed' when the engine's stream broke."""
        exchange.status = response.status
        plan = exchange.plan
        ok = 200 <= response.status < 300
        if ok and plan is not None and plan.streamed and "content-encoding" not in response.headers:
            exchange.meter = StreamMeter(plan.strip_usage_chunk)
        strip_length = exchange.meter is not None and plan is not None and plan.strip_usage_chunk
        headers = [
            (k, v)
            for k, v in response.raw_headers
            if k.lower() not in _HOP_BY_HOP
            and not (strip_length and k.lower() == b"content-length")
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        collect = ok and plan is not None and not plan.streamed
        try:
            async for chunk in response.content.iter_any():
                out = exchange.meter.feed(chunk) if exchange.meter is not None else chunk
                if collect:
                    exchange.body.append(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("engine stream broke after %d: %r", response.status, exc)
            return "failed"  # returning unfinished makes the server drop the connection
        tail = exchange.meter.tail() if exchange.meter is not None else b""
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        exchange.completed_at = time.perf_counter()
        return "completed"

    def _finish(self, exchange: _Exchange) -> str:
        if not 200 <= exchange.status < 300:
            return "engine_error"
        if exchange.plan is None:
            return "completed"
        if not exchange.plan.streamed:
            self._record_unstreamed(exchange)
            return "completed"
        observation = self._observation(exchange)
        if observation is None:
            return "unobserved"
        self.writer.submit(observation)
        return "observed"

    def _observation(self, exchange: _Exchange) -> Observation | None:
        meter, plan = exchange.meter, exchange.plan
        if meter is None or plan is None or exchange.state is None or not plan.single_choice:
            return None
        usage = meter.usage or {}
        prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if meter.first_token_at is None or meter.last_token_at is None:
            return None
        if type(prompt) is not int or type(output) is not int:
            return None
        tpot_ms = None
        if output >= 2:
            tpot_ms = (meter.last_token_at - meter.first_token_at) * 1e3 / (output - 1)
        try:
            return Observation(
                **self.scraper.identity.model_dump(),
                **exchange.state.model_dump(),
                input_tokens=prompt,
                output_tokens=output,
                max_tokens=plan.max_tokens,
                prefix_cache_hit_tokens=_cached_tokens(usage, prompt),
                ttft_ms=(meter.first_token_at - exchange.arrived) * 1e3,
                tpot_ms=tpot_ms or None,
            )
        except ValidationError as exc:
            log.warning("measured request is no valid observation: %s", exc)
            return None

    def _record_unstreamed(self, exchange: _Exchange) -> None:
        """Latency and tokens for the sidecar's own metrics: no TTFT, so never a sample."""
        self.metrics.unstreamed_latency.observe(exchange.completed_at - exchange.arrived)
        try:
            response = json.loads(b"".join(exchange.body))
        except ValueError:
            return
        usage = response.get("usage") if isinstance(response, dict) else None
        if isinstance(usage, dict):
            for direction, key in (("input", "prompt_tokens"), ("output", "completion_tokens")):
                if type(usage.get(key)) is int:
                    self.metrics.unstreamed_tokens.labels(direction).inc(usage[key])

    def _count(self, exchange: _Exchange, outcome: str) -> None:
        self.metrics.requests.labels(exchange.kind, outcome).inc()


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away while sending it."""
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _unless_disconnected(receive: Receive, relay: Awaitable[str]) -> str:
    """Run the relay, cancelling it when the client disconnects (the engine then sees its
    upstream connection close and can abort the request)."""
    relaying = asyncio.ensure_future(relay)
    watching = asyncio.ensure_future(_disconnect(receive))
    done, _ = await asyncio.wait((relaying, watching), return_when=asyncio.FIRST_COMPLETED)
    if relaying in done:
        watching.cancel()
        return relaying.result()
    relaying.cancel()
    await asyncio.gather(relaying, return_exceptions=True)
    return "disconnected"


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_gateway_error(send: Send, exc: Exception) -> None:
    status = 504 if isinstance(exc, TimeoutError) else 502
    body = f'{{"error":{{"message":"engine unreachable: {type(exc).__name__}"}}}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _cached_tokens(usage: dict[str, Any], prompt_tokens: int) -> int | None:
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if type(cached) is int and 0 <= cached <= prompt_tokens else None
