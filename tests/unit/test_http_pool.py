"""The lean path's keep-alive HTTP pool: reuse, pipelining, limits, cancellation, timeouts, close.

Every test talks to a real asyncio server on 127.0.0.1 (``support.rawserver``) that
writes exactly the bytes the test scripts and records what arrived on which
connection; only the pool's public surface is used, so the tests survive a
change of parser underneath.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from support.rawserver import (
    DEADLINE,
    Envs,
    ServerConn,
    echo_path,
    get,
    head,
    ok,
    serve_echo,
)
from support.wait import wait_for

from s3sync.s3.http_parse import HttpError


@pytest.fixture
async def env() -> AsyncIterator[Envs]:
    """Factory of (stub server, pool) pairs, all closed after the test."""
    envs = Envs()
    yield envs
    await envs.aclose()


class TestReuse:
    """A connection is reused only when the previous exchange ended cleanly and it stayed silent."""

    async def test_sequential_requests_share_one_connection(self, env: Envs) -> None:
        """Keep-alive: three requests in a row travel on one connection."""
        server, pool = await env()
        for i in range(3):
            resp, body = await get(pool, f"/{i}")
            assert (resp.status, body) == (200, f"/{i}".encode())
        assert [c for c, _ in server.requests] == [0, 0, 0]

    async def test_connection_that_spoke_while_idle_is_never_reused(self, env: Envs) -> None:
        """Bytes on an idle connection (a server's 408 before closing) make the client drop it."""

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            await conn.send(ok(b"first"))
            if conn.index == 0:
                await conn.send(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")
                await conn.wait_client_close()  # do not close: only the client may hang up
            else:
                await serve_echo(conn)

        server, pool = await env(script)
        assert (await get(pool))[1] == b"first"
        await wait_for(
            lambda: server.conns[0].closed_by_peer.is_set(),
            within=DEADLINE,
            interval=0.005,
            what="client drops the chatty connection",
        )
        resp, body = await get(pool, "/second")
        assert (resp.status, body) == (200, b"first")  # a fresh connection's first answer
        assert [c for c, _ in server.requests] == [0, 1]

    async def test_bytes_after_the_body_in_the_same_write_prevent_reuse(self, env: Envs) -> None:
        """Extra bytes glued after a Content-Length body mean the stream is out of sync: drop it."""

        async def script(conn: ServerConn) -> None:
            while (req := await conn.read_request()) is not None:
                await conn.send(ok(echo_path(req)) + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")

        server, pool = await env(script)
        assert (await get(pool, "/a"))[1] == b"/a"
        assert (await get(pool, "/b"))[1] == b"/b"
        assert [c for c, _ in server.requests] == [0, 1]

    async def test_bytes_after_an_empty_body_prevent_reuse(self, env: Envs) -> None:
        """Stray bytes after a zero-length response are detected too; the next request is fresh."""

        async def script(conn: ServerConn) -> None:
            while (req := await conn.read_request()) is not None:
                if req.startswith(b"GET /empty"):
                    await conn.send(b"HTTP/1.1 204 No Content\r\n\r\ngarbage")
                else:
                    await conn.send(ok(echo_path(req)))

        server, pool = await env(script)
        resp, body = await get(pool, "/empty")
        assert (resp.status, body) == (204, b"")
        assert (await get(pool, "/next"))[1] == b"/next"
        assert [c for c, _ in server.requests] == [0, 1]

    async def test_connection_close_header_prevents_reuse(self, env: Envs) -> None:
        """``Connection: close`` from the server means a new connection for the next request."""

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            await conn.send(ok(echo_path(req), "Connection: close"))
            await conn.wait_client_close()

        server, pool = await env(script)
        assert (await get(pool, "/a"))[1] == b"/a"
        assert (await get(pool, "/b"))[1] == b"/b"
        assert [c for c, _ in server.requests] == [0, 1]

    async def test_closed_body_prevents_reuse(self, env: Envs) -> None:
        """Closing a body before its end aborts the connection rather than reusing a half-read stream."""

        async def script(conn: ServerConn) -> None:
            while (req := await conn.read_request()) is not None:
                if req.startswith(b"GET /big"):
                    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
                    continue
                await conn.send(ok(echo_path(req)))

        server, pool = await env(script)
        async with asyncio.timeout(DEADLINE):
            resp = await pool.request(head("/big"))
        resp.body.close()
        await wait_for(
            lambda: server.conns[0].closed_by_peer.is_set(),
            within=DEADLINE,
            interval=0.005,
            what="client aborts the half-read one",
        )
        assert (await get(pool, "/next"))[1] == b"/next"
        assert [c for c, _ in server.requests] == [0, 1]

    async def test_server_closing_an_idle_connection_is_survived(self, env: Envs) -> None:
        """A server's idle timeout (FIN while idle) costs nothing: the next request just works."""

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            await conn.send(ok(echo_path(req)))
            if conn.index == 0:
                return  # the handler closes the connection: an idle keep-alive expiry
            await serve_echo(conn)

        server, pool = await env(script)
        assert (await get(pool, "/a"))[1] == b"/a"
        assert (await get(pool, "/b"))[1] == b"/b"
        assert [c for c, _ in server.requests][-1] == 1

    async def test_stale_reused_connection_is_retried_once_on_a_fresh_one(self, env: Envs) -> None:
        """If a reused connection dies before a single response byte, the request is resent fresh."""

        async def script(conn: ServerConn) -> None:
            if conn.index == 0:
                req = await conn.read_request()
                assert req is not None
                await conn.send(ok(b"first"))
                await conn.read_request()  # the race: the server closes as the request arrives
                return
            await serve_echo(conn)

        server, pool = await env(script)
        assert (await get(pool, "/a"))[1] == b"first"
        resp, body = await get(pool, "/b")
        assert (resp.status, body) == (200, b"/b")
        assert [(c, echo_path(r)) for c, r in server.requests] == [(0, b"/a"), (0, b"/b"), (1, b"/b")]

    async def test_fresh_connection_closed_without_answer_is_not_retried(self, env: Envs) -> None:
        """A brand-new connection that closes without a response is an error, not a silent resend."""

        async def script(conn: ServerConn) -> None:
            await conn.read_request()

        server, pool = await env(script)
        with pytest.raises(HttpError):
            await get(pool)
        assert len(server.requests) == 1

    async def test_reused_connection_that_answered_partly_is_not_retried(self, env: Envs) -> None:
        """Once response bytes arrived the server acted on the request: no automatic resend."""

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            await conn.send(ok(b"first"))
            await conn.read_request()
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-")

        server, pool = await env(script)
        await get(pool)
        with pytest.raises(HttpError):
            await get(pool, "/b")
        assert len(server.requests) == 2

    async def test_both_attempts_failing_raises(self, env: Envs) -> None:
        """The stale-connection retry happens once; a second silent close is reported."""

        async def script(conn: ServerConn) -> None:
            if conn.index == 0:
                req = await conn.read_request()
                assert req is not None
                await conn.send(ok(b"first"))
            await conn.read_request()

        server, pool = await env(script)
        await get(pool)
        with pytest.raises(HttpError):
            await get(pool, "/b")
        assert [c for c, _ in server.requests] == [0, 0, 1]


class TestPipeliningNever:
    """A connection carries one request at a time: never a second request before the first ended."""

    async def test_concurrent_requests_use_separate_connections(self, env: Envs) -> None:
        """Three requests in flight at once travel on three connections, one request each."""
        seen = asyncio.Event()
        heads: list[bytes] = []

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            heads.append(req)
            if len(heads) == 3:
                seen.set()
            await seen.wait()  # a pipelining client would never get here: its 2nd head sits unread
            await conn.send(ok(echo_path(req)))
            await serve_echo(conn)

        server, pool = await env(script, limit=8)
        results = await asyncio.gather(*(get(pool, f"/{i}") for i in range(3)))
        assert sorted(b for _, b in results) == [b"/0", b"/1", b"/2"]
        assert sorted(c for c, _ in server.requests) == [0, 1, 2]

    async def test_streaming_body_keeps_its_connection_busy(self, env: Envs) -> None:
        """While a body is still arriving, the next request opens another connection."""
        finish = asyncio.Event()

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            if conn.index == 0:
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
                await finish.wait()
                await conn.send(b"def")
            else:
                await conn.send(ok(echo_path(req)))
            await serve_echo(conn)

        server, pool = await env(script)
        async with asyncio.timeout(DEADLINE):
            first = await pool.request(head("/slow"))
        assert (await get(pool, "/quick"))[1] == b"/quick"
        finish.set()
        async with asyncio.timeout(DEADLINE):
            assert await first.body.read() == b"abcdef"
        assert [(c, echo_path(r)) for c, r in server.requests] == [(0, b"/slow"), (1, b"/quick")]
        assert server.conns[0].requests == [server.requests[0][1]]  # nothing was written behind it


class TestLimits:
    """``limit`` bounds how many requests (and connections) are in flight to the host."""

    async def test_request_beyond_the_limit_waits_for_a_connection(self, env: Envs) -> None:
        """With limit=2 the third request waits, then reuses a released connection."""
        release = {0: asyncio.Event(), 1: asyncio.Event()}

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            if conn.index in release:
                await release[conn.index].wait()
            await conn.send(ok(echo_path(req)))
            await serve_echo(conn)

        server, pool = await env(script, limit=2)
        tasks = [asyncio.create_task(get(pool, f"/{i}")) for i in range(3)]
        await wait_for(
            lambda: len(server.requests) == 2,
            within=DEADLINE,
            interval=0.005,
            what="two requests reach the server",
        )
        release[0].set()
        await wait_for(
            lambda: len(server.requests) == 3,
            within=DEADLINE,
            interval=0.005,
            what="the waiting request is sent",
        )
        release[1].set()
        await asyncio.gather(*tasks)
        assert len(server.conns) == 2
        assert len(server.conns[0].requests) == 2  # the third request went on the released connection

    async def test_limit_bounds_open_connections_while_bodies_stream(self, env: Envs) -> None:
        """With limit=1, a second request waits until the first body is fully received."""
        finish = asyncio.Event()

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            await finish.wait()
            await conn.send(b"cd")
            await serve_echo(conn)

        server, pool = await env(script, limit=1)
        async with asyncio.timeout(DEADLINE):
            first = await pool.request(head("/a"))
        second = asyncio.create_task(get(pool, "/b"))
        for _ in range(5):
            await asyncio.sleep(0)  # let the second request pass the pool's gate, if it is open
        finish.set()
        async with asyncio.timeout(DEADLINE):
            assert await first.body.read() == b"abcd"
        await second
        assert len(server.conns) == 1  # it waited, then reused the one connection

    async def test_cancelled_waiter_does_not_leak_a_slot(self, env: Envs) -> None:
        """Cancelling a request that waits for a free connection gives nothing away and sends nothing."""
        release = asyncio.Event()

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            await release.wait()
            await conn.send(ok(echo_path(req)))
            await serve_echo(conn)

        server, pool = await env(script, limit=1)
        busy = asyncio.create_task(get(pool, "/busy"))
        await wait_for(
            lambda: len(server.requests) == 1,
            within=DEADLINE,
            interval=0.005,
            what="the first request is in flight",
        )
        waiting = asyncio.create_task(get(pool, "/cancelled"))
        for _ in range(5):
            await asyncio.sleep(0)  # let it block on the pool
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await busy
        assert (await get(pool, "/after"))[1] == b"/after"
        assert [echo_path(r) for _, r in server.requests] == [b"/busy", b"/after"]
        assert len(server.conns) == 1

    async def test_cancelled_request_never_hands_its_response_to_the_next(self, env: Envs) -> None:
        """A request cancelled while awaiting its head cannot leak its late answer into another request."""
        answer = asyncio.Event()

        async def script(conn: ServerConn) -> None:
            while (req := await conn.read_request()) is not None:
                if req.startswith(b"GET /late"):
                    await answer.wait()
                await conn.send(ok(echo_path(req)))

        server, pool = await env(script, limit=4)
        late = asyncio.create_task(get(pool, "/late"))
        await wait_for(
            lambda: len(server.requests) == 1,
            within=DEADLINE,
            interval=0.005,
            what="the request reaches the server",
        )
        late.cancel()
        with pytest.raises(asyncio.CancelledError):
            await late
        answer.set()
        for i in range(3):
            assert (await get(pool, f"/n{i}"))[1] == f"/n{i}".encode()


class TestClose:
    """Closing the pool closes what it holds."""

    async def test_close_closes_idle_connections(self, env: Envs) -> None:
        """After ``close()`` the server sees every idle keep-alive connection hang up.

        The server answers only once three requests are in, so the pool must open
        three connections (none is free for reuse) and holds three idle ones when
        it closes: the check runs over a known, non-empty set.
        """
        arrived = 0
        all_in = asyncio.Event()

        async def script(conn: ServerConn) -> None:
            nonlocal arrived
            req = await conn.read_request()
            arrived += 1
            if arrived == 3:
                all_in.set()
            await all_in.wait()
            await conn.send(ok(echo_path(req)))
            await conn.wait_client_close()

        server, pool = await env(script, limit=4)
        bodies = await asyncio.gather(*(get(pool, f"/{i}") for i in range(3)))
        assert sorted(b for _, b in bodies) == [b"/0", b"/1", b"/2"]
        assert len(server.conns) == 3
        assert not any(c.closed_by_peer.is_set() for c in server.conns)  # idle, kept alive
        await pool.close()
        await wait_for(
            lambda: all(c.closed_by_peer.is_set() for c in server.conns),
            within=DEADLINE,
            interval=0.005,
            what="every idle connection closes",
        )

    async def test_connection_finishing_after_close_is_closed(self, env: Envs) -> None:
        """A response still streaming at ``close()`` has its connection closed once it ends."""
        finish = asyncio.Event()

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            await finish.wait()
            await conn.send(b"cd")
            await conn.wait_client_close()

        server, pool = await env(script)
        async with asyncio.timeout(DEADLINE):
            resp = await pool.request(head())
        await pool.close()
        finish.set()
        assert await resp.body.read() == b"abcd"
        await wait_for(
            lambda: server.conns[0].closed_by_peer.is_set(),
            within=3,
            interval=0.005,
            what="the finished connection closes",
        )
