"""A scriptable raw-socket HTTP server on 127.0.0.1 for the lean path's pool tests.

Each accepted connection runs a test-written script that reads request heads
and writes exactly the bytes it wants (partial heads, stray bytes, resets with
SO_LINGER 0), while the server records which requests arrived on which
connection, so tests can see reuse, pipelining and hang-ups from the outside.
Only the pool's public surface is used, so the tests hold for any parser.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from s3sync.s3.http import HttpPool, Response

DEADLINE = 10.0
LAST_CHUNK = b"0\r\n\r\n"


def head(path: str = "/", method: str = "GET") -> bytes:
    """A complete request head as the signed paths build it."""
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def ok(body: bytes, *extra: str) -> bytes:
    """A 200 with a Content-Length body and optional extra header lines."""
    lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(pieces: list[bytes], trailer: str = "") -> bytes:
    """A chunked 200 carrying ``pieces`` as chunks (with an extension on each size line)."""
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for p in pieces:
        out += f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n"
    return out + b"0\r\n" + trailer.encode() + b"\r\n"


@dataclass
class ServerConn:
    """One accepted connection: what arrived on it, and a way to answer."""

    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: list[bytes] = field(default_factory=list)
    closed_by_peer: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_request(self) -> bytes | None:
        """The next request head, or None when the client closed the connection."""
        try:
            data = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_peer.set()
            return None
        self.requests.append(data)
        return data

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_client_close(self) -> None:
        """Read until the client closes its end (anything it sends meanwhile is recorded)."""
        while await self.read_request() is not None:
            pass

    def reset(self) -> None:
        """Abort with SO_LINGER 0 so the client sees a TCP RST, not a clean FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Script = Callable[[ServerConn], Awaitable[None]]


class StubServer:
    """A loopback server running ``script`` once per accepted connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.conns: list[ServerConn] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> StubServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def requests(self) -> list[tuple[int, bytes]]:
        """Every request head seen, as (connection index, head), in arrival order per connection."""
        return [(c.index, r) for c in self.conns for r in c.requests]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ServerConn(len(self.conns), reader, writer)
        self.conns.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.script(conn)
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            pass  # only close() cancels a handler: end quietly instead of logging a cancelled callback
        finally:
            self._tasks.discard(task)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in self.conns:
            c.writer.close()
        if self._server is not None:
            await self._server.wait_closed()


async def eventually(pred: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Poll ``pred`` until it holds; fail with ``what`` after a generous deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)


def echo_path(req: bytes) -> bytes:
    """The request path, which the echoing servers send back as the body."""
    return req.split(b" ", 2)[1]


async def serve_echo(conn: ServerConn) -> None:
    """Answer every request on the connection with its own path, keep-alive."""
    while (req := await conn.read_request()) is not None:
        await conn.send(ok(echo_path(req)))


class Envs:
    """Makes (stub server, pool) pairs for one test and closes them all at the end."""

    def __init__(self) -> None:
        self._made: list[tuple[StubServer, HttpPool]] = []

    async def __call__(self, script: Script = serve_echo, **pool_kw: Any) -> tuple[StubServer, HttpPool]:
        server = await StubServer(script).start()
        pool = HttpPool("127.0.0.1", server.port, **pool_kw)
        self._made.append((server, pool))
        return server, pool

    async def aclose(self) -> None:
        for server, pool in self._made:
            await pool.close()
            await server.close()


async def get(pool: HttpPool, path: str = "/", **kw: bool) -> tuple[Response, bytes]:
    """One request through the pool, its whole body read, within the deadline."""
    async with asyncio.timeout(DEADLINE):
        resp = await pool.request(head(path), **kw)
        return resp, await resp.body.read()


def splits(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``data`` cut at ``cuts`` (taken modulo its length), in order and without gaps."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in itertools.pairwise(points):
        yield data[a:b]


async def serve_pieces(pieces: list[bytes], then: bytes) -> tuple[bytes, bytes, int]:
    """Send ``pieces`` (one write each) as the first answer, ``then`` as the second; return bodies."""

    async def script(conn: ServerConn) -> None:
        await conn.read_request()
        for p in pieces:
            await conn.send(p)
            for _ in range(3):  # loop turns, not time: the client reads this write on its own
                await asyncio.sleep(0)
        if conn.index == 0:
            await conn.read_request()
            await conn.send(then)
            await conn.wait_client_close()

    server = await StubServer(script).start()
    pool = HttpPool("127.0.0.1", server.port, read_timeout=5)
    try:
        first = await get(pool, "/1")
        second = await get(pool, "/2")
        return first[1], second[1], len(server.conns)
    finally:
        await pool.close()
        await server.close()
