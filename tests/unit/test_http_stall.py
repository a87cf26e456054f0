"""The lean client's body stall: silence mid-body is given up after ``stall_timeout``, not read_timeout.

One 512 MiB ranged GET against ``rclone serve s3`` once took 25 s instead of 0.5 s:
0.2 s * (2**7 - 1), TCP's doubling retransmission / zero-window probe timer, while
the client waited with ``read_timeout`` at 300 s. These tests pin what the pool
does about any such silence: a reader waiting for body bytes that do not come
gets a TimeoutError after ``stall_timeout`` (the caller retries; a ranged part
resumes), the stalled connection is never reused, and flow control (pause while
the reader is slow, resume when it drains) is not mistaken for a stall.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from support.rawserver import DEADLINE, Envs, ServerConn, echo_path, get, head, ok, serve_echo

from s3sync.s3.http import BODY_STALL_SECONDS, HttpPool


@pytest.fixture
async def env() -> AsyncIterator[Envs]:
    envs = Envs()
    yield envs
    await envs.aclose()


class TestBodyStall:
    """A body that stops arriving fails fast; a slow reader does not."""

    async def test_default_stall_timeout_is_far_below_read_timeout(self) -> None:
        pool = HttpPool("127.0.0.1", 9, read_timeout=300.0)
        try:
            assert pool.stall_timeout == BODY_STALL_SECONDS < 25.0 < pool.read_timeout
        finally:
            await pool.close()

    async def test_silence_mid_body_raises_after_the_stall_timeout_not_read_timeout(self, env: Envs) -> None:
        """read_timeout is 300 s here: only the stall timeout can end this within the deadline."""

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            if conn.index == 0:
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n" + b"x" * 300_000)
                await conn.wait_client_close()  # silent, socket open: like a TCP back-off
                return
            assert req is not None
            await conn.send(ok(echo_path(req)))
            await serve_echo(conn)

        server, pool = await env(script, read_timeout=300.0, stall_timeout=0.3)
        got = 0
        async with asyncio.timeout(DEADLINE):
            resp = await pool.request(head("/big"))
            with pytest.raises(TimeoutError):
                async for chunk in resp.body.iter_chunks(65536):
                    got += len(chunk)
        assert 0 < got < 4194304
        assert (await get(pool, "/next"))[1] == b"/next"  # a fresh connection, never the stalled one
        assert [c for c, _ in server.requests] == [0, 1]

    async def test_a_slow_reader_is_paused_and_resumed_not_timed_out(self, env: Envs) -> None:
        """The reader sleeps longer than the stall timeout with the connection paused: no error."""
        size = 8 * 1024 * 1024

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"y" * size)
            await serve_echo(conn)

        _server, pool = await env(script, read_timeout=300.0, stall_timeout=0.2)
        got = 0
        async with asyncio.timeout(DEADLINE * 3):
            resp = await pool.request(head("/slow-reader"))
            async for chunk in resp.body.iter_chunks(65536):
                if got == 0:
                    await asyncio.sleep(0.5)  # > stall_timeout, while the pool has paused reading
                got += len(chunk)
        assert got == size
