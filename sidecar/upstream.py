"""The proxy's HTTP/1.1 client for the one engine behind it: pooled, lean, streaming.

The proxy's whole budget is 1 ms of added p99 per streamed completion, and a general
client spends a large part of it: aiohttp cost ~0.5 ms per streamed call at p50 next to a
bare protocol on the same loop (the CPU time of its request objects, header multidicts,
stream readers and per-read timer rescheduling). The proxy needs little of that: one
origin, the whole request body already in hand, keep-alive connections, response bytes
handed on as they arrive with backpressure, a connect timeout and an idle-read timeout.
Parsing is httptools' (llhttp, in C), the parser uvicorn already serves the client with.

Bodies arrive decoded from chunked framing; content encodings are left alone, so bytes
reach the client as the engine compressed them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

Headers = list[tuple[bytes, bytes]]

# Buffered response bytes at which the engine's connection stops being read (a slow client
# must slow the engine down, not grow the sidecar's memory).
PAUSE_READING_AT = 256 * 1024
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class UpstreamError(Exception):
    """The engine could not be reached, or its response was malformed or broke off."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time, parsed as it arrives."""

    def __init__(self, read_timeout_s: float, forget: Callable[[_Connection], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._read_timeout_s = read_timeout_s
        self._forget = forget
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.busy = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._begin(head_only=False)

    def _begin(self, head_only: bool) -> None:
        """Fresh per-exchange state: a new parser, no head, no body, no error."""
        self._parser = httptools.HttpResponseParser(self)
        self.head_only = head_only
        self.status = 0
        self.headers: Headers = []
        self.head_received = self.complete = self._framed = self._keep_alive = False
        self.error: Exception | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._last_read = self._loop.time()

    async def exchange(self, request: bytes, head_only: bool) -> None:
        """Send ``request`` and wait for the response's status and headers."""
        assert self.transport is not None and not self.busy
        if self.closed or self.transport.is_closing():
            raise UpstreamError("the engine closed the connection")
        self._begin(head_only)
        self.busy = True
        self._timer = self._loop.call_at(self._last_read + self._read_timeout_s, self._check_idle)
        self.transport.write(request)
        while not self.head_received:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def read(self) -> bytes:
        """The body bytes received since the last read; b"" once the body is complete."""
        while not self._chunks:
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            await self._wait()
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @property
    def finished(self) -> bool:
        return self.complete and not self._chunks

    def finish(self) -> bool:
        """End the exchange; True when the connection can carry another one."""
        self.busy = False
        self._stop_timer()
        reusable = (
            self.complete
            and self.error is None
            and not self.head_only
            and not self.closed
            and self._keep_alive
        )
        self._chunks, self._buffered = [], 0  # what a gone client left unread
        if not reusable:
            self.close()
        elif self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return reusable

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self._stop_timer()
        self._wake()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_idle(self) -> None:
        """Fires once per read timeout, not once per read: rearms when bytes came since."""
        quiet_until = self._last_read + self._read_timeout_s
        if self._loop.time() < quiet_until:
            self._timer = self._loop.call_at(quiet_until, self._check_idle)
            return
        self._timer = None
        self._fail(TimeoutError(f"the engine sent nothing for {self._read_timeout_s:g} s"))
        self.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: the connection is out of step
            self.closed = True
            self.close()
            return
        self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed response from the engine: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._forget(self)
        if self.busy and self.head_received and not self._framed and not self.complete:
            self.on_message_complete()  # a body without length ends with the connection
        self._fail(UpstreamError(f"the engine closed the connection: {exc or 'EOF'}"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if name.lower() in _FRAMING:
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational: the real head follows
            self.headers, self._framed = [], False
            return
        self.status, self.head_received = status, True
        self._keep_alive = self._parser.should_keep_alive()  # llhttp forgets it at the end
        if self.head_only or status in (204, 304):
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > PAUSE_READING_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head_received:
            self.complete = True
            self._stop_timer()
            self._wake()


class UpstreamResponse:
    """An engine response whose body is read as it arrives; ``release`` it when done."""

    __slots__ = ("_connection", "_pool", "headers", "status")

    def __init__(self, connection: _Connection, pool: EnginePool) -> None:
        self._connection = connection
        self._pool = pool
        self.status = connection.status
        self.headers = connection.headers

    async def read(self) -> bytes:
        """The next body bytes, b"" at the end; raises UpstreamError or TimeoutError."""
        return await self._connection.read()

    @property
    def finished(self) -> bool:
        """Whether the whole body has been read (the next read would return b"")."""
        return self._connection.finished

    async def body(self) -> bytes:
        parts = []
        while part := await self.read():
            parts.append(part)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back for reuse, or close it when the body was not complete."""
        self._pool.put_back(self._connection)


class EnginePool:
    """Keep-alive connections to ``engine_url``; one request per connection at a time."""

    def __init__(self, engine_url: str, connect_timeout_s: float, read_timeout_s: float) -> None:
        url = urlsplit(engine_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"engine URL must be http(s)://host[:port][/prefix]: {engine_url}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if url.scheme == "https" else None
        self._host_header = url.netloc.encode("idna")
        self._prefix = url.path.rstrip("/").encode()
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._idle: list[_Connection] = []

    async def request(
        self, method: str, target: bytes, headers: Headers, body: bytes
    ) -> UpstreamResponse:
        """Send a request (``target``: path and query) and return once its head arrived.

        An idempotent request that finds a kept-alive connection closed under it is sent
        once more on a fresh one, as browsers do; others fail as the engine failed them.
        """
        request = self._serialise(method, target, headers, body)
        head_only = method == "HEAD"
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            try:
                return await self._exchange(connection, request, head_only)
            except UpstreamError:
                if method not in _IDEMPOTENT:
                    raise
                break
        return await self._exchange(await self._connect(), request, head_only)

    def put_back(self, connection: _Connection) -> None:
        if connection.finish():
            self._idle.append(connection)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def _exchange(
        self, connection: _Connection, request: bytes, head_only: bool
    ) -> UpstreamResponse:
        try:
            await connection.exchange(request, head_only)
        except BaseException:
            connection.finish()  # closes it: the exchange did not complete
            raise
        return UpstreamResponse(connection, self)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._read_timeout_s, self._forget),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                )
        except OSError as exc:
            raise UpstreamError(f"cannot connect to the engine: {exc}") from exc
        return connection

    def _forget(self, connection: _Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)

    def _serialise(self, method: str, target: bytes, headers: Headers, body: bytes) -> bytes:
        parts = [method.encode(), b" ", self._prefix, target, b" HTTP/1.1\r\nhost: "]
        parts.append(self._host_header)
        for name, value in headers:
            parts += (b"\r\n", name, b": ", value)
        if body or method in _WITH_BODY:
            parts.append(b"\r\ncontent-length: %d" % len(body))
        parts += (b"\r\n\r\n", body)
        return b"".join(parts)
