"""The proxy's engine client against a real HTTP/1.1 server that frames its answers in
every way an engine may: content-length, chunked, until-close, cut off, stalled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from latency_oracle.sidecar.upstream import PAUSE_READING_AT, EnginePool, UpstreamError
from latency_oracle.sim.processes import free_port

BIG = bytes(range(256)) * (4 * PAUSE_READING_AT // 256)  # past the point reading pauses at


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


class Engine:
    """Answers by path; counts connections and keeps the raw requests it received."""

    def __init__(self) -> None:
        self.address = ""
        self.connections = 0
        self.requests: list[bytes] = []
        self.hung_up = asyncio.Event()  # a client left a stalled response

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line[15:])
                        for line in head.split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                route = head.split(b" ")[1].split(b"?")[0].rsplit(b"/", 1)[1]
                if head.startswith(b"HEAD "):  # the length of a body not sent
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
                elif not await self._answer(route, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def _answer(
        self, route: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Write the answer for the path's last segment; False when the connection ends."""
        ok = b"HTTP/1.1 200 OK\r\n"
        if route == b"length":
            writer.write(ok + b"content-length: 5\r\n\r\nhello")
        elif route == b"chunked":
            writer.write(ok + b"transfer-encoding: chunked\r\n\r\n" + _chunked(b"a", b"bc"))
        elif route == b"big":
            parts = [BIG[i : i + 65536] for i in range(0, len(BIG), 65536)]
            writer.write(ok + b"transfer-encoding: chunked\r\n\r\n" + _chunked(*parts))
        elif route == b"until-close":
            writer.write(ok + b"connection: close\r\n\r\nall of it")
            return False
        elif route == b"cut":
            writer.write(ok + b"transfer-encoding: chunked\r\n\r\n5\r\nhel")
            return False
        elif route == b"then-close":  # keep-alive by default, closed anyway
            writer.write(ok + b"content-length: 2\r\n\r\nok")
            return False
        elif route == b"stall":
            writer.write(ok + b"transfer-encoding: chunked\r\n\r\n")
            await writer.drain()
            await reader.read()  # until the client hangs up
            self.hung_up.set()
            return False
        await writer.drain()
        return True


def _run(
    test: Callable[[Engine, EnginePool], Awaitable[None]],
    prefix: str = "",
    read_timeout_s: float = 5.0,
) -> None:
    """``test`` with a pool for a fresh engine (at ``prefix``), on the sidecar's loop."""

    async def main() -> None:
        engine = Engine()
        server = await asyncio.start_server(engine.serve, "127.0.0.1", 0)
        engine.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        pool = EnginePool(f"http://{engine.address}{prefix}", 5.0, read_timeout_s)
        async with server:
            try:
                await test(engine, pool)
            finally:
                pool.close()

    uvloop.run(main())


async def _get(pool: EnginePool, path: bytes) -> bytes:
    response = await pool.request("GET", path, [], b"")
    try:
        assert response.status == 200
        return await response.body()
    finally:
        response.release()


def test_keep_alive_carries_sequential_requests_on_one_connection() -> None:
    async def test(engine: Engine, pool: EnginePool) -> None:
        for path in (b"/length", b"/chunked", b"/big", b"/length"):
            assert await _get(pool, path) == {b"/length": b"hello", b"/chunked": b"abc"}.get(
                path, BIG
            )
        assert engine.connections == 1

    _run(test)


def test_request_is_sent_with_host_prefix_length_and_the_given_headers() -> None:
    async def test(engine: Engine, pool: EnginePool) -> None:
        headers = [(b"authorization", b"Bearer x"), (b"content-type", b"application/json")]
        response = await pool.request("POST", b"/v1/length?q=1", headers, b'{"a":1}')
        assert await response.body() == b"hello"
        response.release()
        assert engine.requests == [
            b"POST /engine/v1/length?q=1 HTTP/1.1\r\nhost: " + engine.address.encode() + b"\r\n"
            b"authorization: Bearer x\r\ncontent-type: application/json\r\n"
            b'content-length: 7\r\n\r\n{"a":1}'
        ]

    _run(test, prefix="/engine/")


def test_head_returns_at_the_head_and_a_body_may_end_with_the_connection() -> None:
    async def test(engine: Engine, pool: EnginePool) -> None:
        response = await pool.request("HEAD", b"/length", [], b"")
        assert (response.status, await response.body()) == (200, b"")
        response.release()
        assert await _get(pool, b"/until-close") == b"all of it"
        assert await _get(pool, b"/length") == b"hello"
        assert engine.connections == 3  # neither a HEAD's nor a closed connection is reused

    _run(test)


def test_a_response_cut_off_mid_body_fails_and_its_connection_is_dropped() -> None:
    async def test(engine: Engine, pool: EnginePool) -> None:
        response = await pool.request("GET", b"/cut", [], b"")
        assert await response.read() == b"hel"
        with pytest.raises(UpstreamError):
            await response.read()
        response.release()
        assert await _get(pool, b"/length") == b"hello"
        assert engine.connections == 2

    _run(test)


def test_a_get_is_resent_when_the_engine_closed_its_kept_alive_connection() -> None:
    async def test(engine: Engine, pool: EnginePool) -> None:
        assert await _get(pool, b"/then-close") == b"ok"
        assert await _get(pool, b"/then-close") == b"ok"
        assert engine.connections == 2

    _run(test)


def test_an_engine_that_goes_quiet_times_out_and_is_hung_up_on() -> None:
    async def test(engine: Engine, pool: EnginePool) -> None:
        response = await pool.request("GET", b"/stall", [], b"")
        with pytest.raises(TimeoutError):
            await response.read()
        response.release()
        await asyncio.wait_for(engine.hung_up.wait(), 10)

    _run(test, read_timeout_s=0.2)


def test_an_unreachable_engine_is_an_upstream_error() -> None:
    pool = EnginePool(f"http://127.0.0.1:{free_port()}", 5.0, 5.0)
    with pytest.raises(UpstreamError):
        uvloop.run(pool.request("GET", b"/length", [], b""))
