"""The one raw HTTP server of the tests: a loopback socket that sends exactly the bytes a test scripts.

Framing bugs hide behind kind servers. Each accepted connection runs a
test-written script (:data:`Script`) that reads request heads and writes exactly
the bytes it wants: partial heads, stray bytes, chunk by chunk, interim 1xx
answers, a close instead of a length, a reset (RST, SO_LINGER 0) in the middle
of a body. The server records which request heads arrived on which connection,
so a test sees reuse, pipelining and hang-ups from the outside.
:meth:`RawServer.answering` builds the script from a per-request list of steps
instead (``answer_for(n, head)``: bytes, :data:`CLOSE`, :data:`RESET` or an
event to wait for).

``async with RawServer(script)`` serves on the test's loop; ``with
RawServer(script)`` serves from a loop of its own in a thread, for tests that
run a CLI or daemon subprocess against a stand-in S3. The helpers at the end
drive the lean path's :class:`~s3sync.s3.http.HttpPool` against it through its
public surface only, so the tests hold for any parser.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from s3sync.s3.http import HttpPool, Response

DEADLINE = 10.0
LAST_CHUNK = b"0\r\n\r\n"

CLOSE = object()  # close the connection cleanly (FIN)
RESET = object()  # abort with SO_LINGER 0 (RST)

Step = bytes | object | asyncio.Event  # bytes to write, CLOSE, RESET, or an event to wait for
Answer = Sequence[Step]


# --------------------------------------------------------------------------- answers as bytes


def head(path: str = "/", method: str = "GET") -> bytes:
    """A complete request head as the signed paths build it."""
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def ok(body: bytes, *extra: str) -> bytes:
    """A 200 with a Content-Length body and optional extra header lines."""
    lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response(status: int = 200, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """A Content-Length framed answer."""
    reason = {
        200: "OK",
        206: "Partial Content",
        304: "Not Modified",
        400: "Bad Request",
        404: "Not Found",
        503: "Service Unavailable",
    }.get(status, "X")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(parts: Sequence[bytes], trailers: Sequence[tuple[str, str]] = (), status: int = 200) -> bytes:
    """A Transfer-Encoding: chunked answer with ``parts`` as its chunks (empty parts left out)."""
    head = f"HTTP/1.1 {status} OK\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    tail = "".join(f"{k}: {v}\r\n" for k, v in trailers).encode()
    return head + body + b"0\r\n" + tail + b"\r\n"


def chunked_ext(pieces: list[bytes], trailer: str = "") -> bytes:
    """A chunked 200 carrying ``pieces`` as chunks, an extension on each size line, ``trailer`` raw."""
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for p in pieces:
        out += f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n"
    return out + b"0\r\n" + trailer.encode() + b"\r\n"


# --------------------------------------------------------------------------- the server


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


class RawServer:
    """A loopback server running ``script`` once per accepted connection (see the module docstring)."""

    def __init__(self, script: Script, host: str = "127.0.0.1") -> None:
        self.script = script
        self.host = host
        self.conns: list[ServerConn] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def answering(cls, answer_for: Callable[[int, bytes], Answer], host: str = "127.0.0.1") -> RawServer:
        """A server whose request ``n`` (counted over all connections) gets ``answer_for(n, head)``."""
        numbers = itertools.count()

        async def script(conn: ServerConn) -> None:
            while (req := await conn.read_request()) is not None:
                for step in answer_for(next(numbers), req):
                    if isinstance(step, bytes):
                        await conn.send(step)
                    elif isinstance(step, asyncio.Event):
                        await step.wait()
                    elif step is CLOSE:
                        return
                    elif step is RESET:
                        conn.reset()
                        return

        return cls(script, host)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[tuple[int, bytes]]:
        """Every request head seen, as (connection index, head), in arrival order per connection."""
        return [(c.index, r) for c in self.conns for r in c.requests]

    # -- on the caller's loop -------------------------------------------------
    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        return self

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

    async def __aenter__(self) -> RawServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- on a loop of its own (for subprocess tests) ----------------------------
    def __enter__(self) -> RawServer:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="rawserver", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("raw server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

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
            if not writer.is_closing():
                writer.close()


# --------------------------------------------------------------------------- the pool against it


def echo_path(req: bytes) -> bytes:
    """The request path, which the echoing servers send back as the body."""
    return req.split(b" ", 2)[1]


async def serve_echo(conn: ServerConn) -> None:
    """Answer every request on the connection with its own path, keep-alive."""
    while (req := await conn.read_request()) is not None:
        await conn.send(ok(echo_path(req)))


class Envs:
    """Makes (raw server, pool) pairs for one test and closes them all at the end."""

    def __init__(self) -> None:
        self._made: list[tuple[RawServer, HttpPool]] = []

    async def __call__(self, script: Script = serve_echo, **pool_kw: Any) -> tuple[RawServer, HttpPool]:
        server = await RawServer(script).start()
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

    server = await RawServer(script).start()
    pool = HttpPool("127.0.0.1", server.port, read_timeout=5)
    try:
        first = await get(pool, "/1")
        second = await get(pool, "/2")
        return first[1], second[1], len(server.conns)
    finally:
        await pool.close()
        await server.close()
