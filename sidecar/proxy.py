"""The measuring reverse proxy in front of the engine's OpenAI API.

Everything passes through as the engine sent it (status, headers minus hop-by-hop ones,
body bytes, streaming); only streamed completions are also measured. A finish record is
written only for a stream that finished normally with a 2xx status, usage and the
engine's load at arrival known: an engine error, a broken or timed-out stream, or a
client that hung up ends with no finish record, because a truncated request's timings
would teach the models latencies that never happened. Its first token did happen: a
stream still running a while after it sends a first-token record then
(``sidecar/exchange.py``). Writes are queued, never awaited here.

Every completion request is also counted in flight (``sidecar/inflight.py``) from its
arrival until it ends, however it ends: prefill backlog until its first generated token
passes, then decode work. Its observation carries the counts it found on arrival.

The proxy's whole budget is 1 ms of added p99 (bench/proxy_overhead.py), so the
upstream client is the lean one in ``sidecar/upstream.py``, the relay runs in the request's
own task, and everything about the observation happens after the client's last byte.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from latency_oracle.sidecar.completion_request import read_completion_request
from latency_oracle.sidecar.delivery import ObservationWriter
from latency_oracle.sidecar.exchange import (
    Exchange,
    FirstTokenRecords,
    cached_tokens,
    finish_record,
    first_token_record,
)
from latency_oracle.sidecar.own_metrics import SidecarMetrics
from latency_oracle.sidecar.prompt_tokens import PromptTokenEstimate
from latency_oracle.sidecar.scraper import EngineScraper
from latency_oracle.sidecar.sse import StreamMeter
from latency_oracle.sidecar.upstream import EnginePool, UpstreamError, UpstreamResponse

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
SCRAPE_TIMEOUT_S = 2.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHAT_PATH = "/v1/chat/completions"
MEASURED_PATHS = frozenset({"/v1/completions", CHAT_PATH})
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


class MeasuringProxy:
    """An ASGI app forwarding every request to ``engine_url`` through a pooled client."""

    def __init__(
        self,
        engine_url: str,
        timeout_s: float,
        scraper: EngineScraper,
        writer: ObservationWriter,
        metrics: SidecarMetrics,
        first_token_records: FirstTokenRecords | None = None,
    ) -> None:
        self.engine = EnginePool(engine_url, CONNECT_TIMEOUT_S, timeout_s)
        self.first_token_records = first_token_records or FirstTokenRecords()
        self.scraper = scraper
        self.writer = writer
        self.metrics = metrics
        self.inflight = scraper.inflight
        self.prompts = PromptTokenEstimate()
        self._ids = itertools.count()

    def close(self) -> None:
        """Close the idle upstream connections (busy ones close as their exchanges end)."""
        self.engine.close()

    async def get_text(self, path: str) -> str:
        """GET ``path`` of the engine through the pool (for scrapes); raises on non-2xx."""
        async with asyncio.timeout(SCRAPE_TIMEOUT_S):
            response = await self.engine.request("GET", path.encode(), [], b"")
            try:
                if not 200 <= response.status < 300:
                    raise UpstreamError(f"GET {path}: HTTP {response.status}")
                body = await response.body()
            finally:
                response.release()
        return body.decode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.perf_counter()
        state = self.scraper.state_now()
        body = await _read_body(receive)
        if body is None:
            return
        plan = None
        if scope["method"] == "POST" and scope["path"] in MEASURED_PATHS:
            plan = read_completion_request(body, chat=scope["path"] == CHAT_PATH)
        exchange = Exchange(arrived, state, plan)
        if plan is None:
            await self._forward(scope, receive, send, exchange, body)
            return
        exchange.request_id = str(next(self._ids))
        exchange.prompt_estimate = self.prompts.estimate(plan)
        exchange.inflight = self.inflight.arrive(exchange.request_id, exchange.prompt_estimate)
        try:
            await self._forward(scope, receive, send, exchange, plan.upstream_body)
        finally:
            self._settle(exchange)

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, exchange: Exchange, body: bytes
    ) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k not in _NOT_FORWARDED_UP]
        self.metrics.proxy_overhead.observe(time.perf_counter() - exchange.arrived)
        try:
            response = await self.engine.request(scope["method"], _target(scope), headers, body)
        except (UpstreamError, TimeoutError) as exc:
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

    async def _relay(self, exchange: Exchange, response: UpstreamResponse, send: Send) -> str:
        """Forward the response; 'completed', or 'failed' when the engine's stream broke."""
        exchange.status = response.status
        plan = exchange.plan
        ok = 200 <= response.status < 300
        names = [k.lower() for k, _ in response.headers]
        if ok and plan is not None and plan.streamed and b"content-encoding" not in names:
            exchange.meter = StreamMeter(plan.strip_usage_chunk)
        meter = exchange.meter
        strip_length = meter is not None and meter.strip_usage_chunk
        headers = [
            header
            for name, header in zip(names, response.headers, strict=True)
            if name not in _HOP_BY_HOP and not (strip_length and name == b"content-length")
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        collect = ok and plan is not None and not plan.streamed
        if plan is not None and meter is None:  # no tokens to watch: the answer has begun
            self.inflight.first_token(exchange.request_id)
        counted = 0
        last = False
        wanted = self.first_token_records.wanted(self.inflight.hit_share)
        early = self.first_token_records.after_s if wanted else None
        try:
            while not last:
                chunk = await response.read()
                # The engine's last bytes go out with the end of the response: one write.
                last = response.finished
                if collect:
                    exchange.body.append(chunk)
                if meter is None:
                    out = chunk
                else:
                    out = meter.feed(chunk)
                    if meter.tokens != counted:
                        self._count_tokens(exchange.request_id, counted, meter.tokens)
                        counted = meter.tokens
                if last and meter is not None:
                    out += meter.tail()
                if out or last:
                    await send({"type": "http.response.body", "body": out, "more_body": not last})
                if early is not None and counted and not last:  # after the client's bytes
                    early = self._first_token_due(exchange, early)
        except (UpstreamError, TimeoutError) as exc:
            log.warning("engine stream broke after %d: %r", response.status, exc)
            return "failed"  # returning unfinished makes the server drop the connection
        exchange.completed_at = time.perf_counter()
        return "completed"

    def _first_token_due(self, exchange: Exchange, after_s: float) -> float | None:
        """Send the first-token record once the stream has run ``after_s`` past its first
        token; what to wait for next (None: sent, or nothing to send)."""
        meter = exchange.meter
        assert meter is not None and meter.first_token_at is not None
        if time.perf_counter() - meter.first_token_at < after_s:
            return after_s
        record = first_token_record(exchange, self.scraper.identity, self.inflight.hit_share)
        if record is not None:
            self.writer.submit(record)
        return None

    def _count_tokens(self, request_id: str, before: int, now: int) -> None:
        if before == 0:
            self.inflight.first_token(request_id)
            before = 1
        if now > before:
            self.inflight.tokens(request_id, now - before)

    def _settle(self, exchange: Exchange) -> None:
        """The request leaves the in-flight counts, however it ended; the engine's usage
        report, when one came, teaches the prompt estimate and the cache-hit share."""
        usage = exchange.usage
        if usage is None and exchange.meter is not None:
            usage = exchange.meter.usage
        prompt = usage.get("prompt_tokens") if usage is not None else None
        cached = None
        if type(prompt) is int and exchange.plan is not None:
            self.prompts.learn(exchange.plan, prompt)
            cached = cached_tokens(usage or {}, prompt)
        self.inflight.finish(exchange.request_id, cached)

    def _finish(self, exchange: Exchange) -> str:
        if not 200 <= exchange.status < 300:
            return "engine_error"
        if exchange.plan is None:
            return "completed"
        if not exchange.plan.streamed:
            self._record_unstreamed(exchange)
            return "completed"
        observation = finish_record(exchange, self.scraper.identity)
        if observation is None:
            return "unobserved"
        self.writer.submit(observation)
        return "observed"

    def _record_unstreamed(self, exchange: Exchange) -> None:
        """Latency and tokens for the sidecar's own metrics: no TTFT, so never a sample."""
        self.metrics.unstreamed_latency.observe(exchange.completed_at - exchange.arrived)
        try:
            response = json.loads(b"".join(exchange.body))
        except ValueError:
            return
        usage = response.get("usage") if isinstance(response, dict) else None
        if isinstance(usage, dict):
            exchange.usage = usage
            for direction, key in (("input", "prompt_tokens"), ("output", "completion_tokens")):
                if type(usage.get(key)) is int:
                    self.metrics.unstreamed_tokens.labels(direction).inc(usage[key])

    def _count(self, exchange: Exchange, outcome: str) -> None:
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
    upstream connection close and can abort the request).

    The relay runs in the request's own task and only the watcher gets one: a task of
    its own for the relay would cost a task, a wait and a loop turn on every request.
    """
    relaying = asyncio.current_task()
    assert relaying is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        relaying.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await relay
    except asyncio.CancelledError:
        if not disconnected:
            raise
        relaying.uncancel()
        return "disconnected"
    finally:
        # The relay returns straight after its last send, before the watcher can see the
        # response's end as a disconnect.
        watcher.cancel()


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


def _target(scope: Scope) -> bytes:
    """The request target as the client sent it: raw path and query string."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string")
    return path + b"?" + query if query else path
