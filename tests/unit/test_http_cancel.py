"""Issue 20, defect 5: a request cancelled before its response head aborts its connection.

Against a real loopback server that accepts, reads the request and never answers
(or answers only after the client gave up, with a body larger than the pool's
2 MiB read-ahead). Before the fix each cancelled request left its socket open,
neither aborted nor back in the pool — 7 cancelled ranged parts, 7 sockets — so the
pool's ``limit`` stopped bounding the sockets it held.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from support.rawserver import DEADLINE, Envs, ServerConn, get, ok
from support.wait import wait_for

LIMIT = 3


@pytest.fixture
async def env() -> AsyncIterator[Envs]:
    envs = Envs()
    yield envs
    await envs.aclose()


def client_sockets() -> int:
    """Sockets this process holds (both ends of loopback connections count: compare deltas)."""
    n = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def still_open(conns: list[ServerConn]) -> int:
    return sum(not c.closed_by_peer.is_set() for c in conns)


async def test_cancelled_before_head_aborts_the_connection(env: Envs) -> None:
    """Seven requests cancelled while the server is silent: seven connections closed, none held."""

    async def silent(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.wait_client_close()  # never answers; returns when the client hangs up

    server, pool = await env(silent, limit=LIMIT)
    for i in range(7):
        task = asyncio.create_task(get(pool, f"/part{i}"))
        await wait_for(
            lambda i=i: len(server.requests) == i + 1,
            within=DEADLINE,
            interval=0.005,
            what=f"request {i} reaches the server",
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the pool's limit bounds the sockets it holds, cancelled requests included
        await wait_for(
            lambda: still_open(server.conns) <= LIMIT,
            within=DEADLINE,
            interval=0.005,
            what="at most `limit` connections open",
        )
    await wait_for(
        lambda: still_open(server.conns) == 0,
        within=DEADLINE,
        interval=0.005,
        what="every cancelled request's connection closed",
    )
    assert len(server.conns) == 7


async def test_late_large_answer_after_cancel_does_not_pin_the_connection(env: Envs) -> None:
    """The answer arrives after the cancel, 4 MiB long: the client has hung up, nothing is paused open."""
    answer = asyncio.Event()
    written: list[BaseException | None] = []

    async def late(conn: ServerConn) -> None:
        req = await conn.read_request()
        if req is None:
            return
        if req.startswith(b"GET /late"):
            await answer.wait()
            try:
                await conn.send(ok(b"x" * (4 * 1024 * 1024)))
                written.append(None)
            except ConnectionError as exc:
                written.append(exc)
            await conn.wait_client_close()
            return
        await conn.send(ok(b"fine"))
        await conn.wait_client_close()

    server, pool = await env(late, limit=1)
    base = client_sockets()
    task = asyncio.create_task(get(pool, "/late"))
    await wait_for(
        lambda: len(server.requests) == 1,
        within=DEADLINE,
        interval=0.005,
        what="the request reaches the server",
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    answer.set()
    first = server.conns[0]
    await wait_for(
        lambda: first.closed_by_peer.is_set(),
        within=DEADLINE,
        interval=0.005,
        what="the cancelled request's connection closed",
    )
    # the one slot is free again and serves a fresh request
    async with asyncio.timeout(5):
        resp, body = await get(pool, "/next")
    assert (resp.status, body) == (200, b"fine")
    await pool.close()
    await wait_for(
        lambda: client_sockets() <= base, within=DEADLINE, interval=0.005, what="no socket left behind"
    )
