"""A minimal HTTP/1.1 keep-alive client for the GET hot path.

Why not aiohttp's client here: on loopback the per-request CPU of
``ClientSession.request`` (request/response objects, tracing hooks, timers,
cookie handling) is ~3x what the whole job needs; for thousands of small GETs
that CPU *is* the transfer time. This client does exactly one thing — send a
pre-signed request on a pooled connection and read the answer — with flow
control for large bodies. Framing (Content-Length, chunked with trailers,
interim 1xx, close-delimited, truncation) is llhttp's job, through
:mod:`s3sync.s3.http_parse`; this module keeps the pool, flow control and timeouts. Everything
else (listing, HEAD, SQS) stays on aioboto3; the aiohttp-free path is only
used for S3 GETs and ListObjectsV2 pages.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from s3sync.s3.http_parse import HttpError, ResponseParser

_T = TypeVar("_T")
_HIGH_WATER = 2 * 1024 * 1024
_LOW_WATER = 512 * 1024
_MAX_HEAD = 64 * 1024  # llhttp has no limit of its own: a head longer than this is refused
#: Body silence (reader waiting, connection not paused) after which the body is given up:
#: the caller's retry (a ranged part resumes from what it has) beats waiting out TCP's
#: doubling retransmission / zero-window probe timers (0.2 s * (2**7 - 1) = 25.4 s seen
#: once here) or ``read_timeout`` (300 s). Real S3 does not go silent mid-body for this long.
BODY_STALL_SECONDS = 10.0


class Body:
    """Body bytes as they arrive; ``read()`` for all, ``iter_chunks()`` to stream."""

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._unlimited = False
        self.received = 0  # body bytes that arrived (a chunked answer has no Content-Length)
        self.trailers: dict[str, str] = {}

    # producer side (protocol)
    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self.received += len(data)
        if not self._unlimited and self._buffered > _HIGH_WATER:
            self._conn.pause()
        self._wake()

    def _finish(self, exc: BaseException | None = None) -> None:
        self._done = True
        self._exc = exc
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        # Only called with nothing buffered, so the connection is reading (never paused
        # here): silence now is the network's, bounded by the pool's stall timeout.
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._conn.with_timeout(self._waiter, self._conn.pool.stall_timeout)
        finally:
            self._waiter = None

    # consumer side
    async def read(self) -> bytes:
        self._unlimited = True
        self._conn.resume()
        while not self._done:
            await self._wait()
        if self._exc is not None:
            raise self._exc
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        return data

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < _LOW_WATER:
                    self._conn.resume()
                yield chunk
                continue
            if self._done:
                if self._exc is not None:
                    raise self._exc
                return
            await self._wait()

    def close(self) -> None:
        if not self._done:
            self._conn.abort()


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: Body) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time; the answer framed by llhttp."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser(self)
        self.fut: asyncio.Future[Response] | None = None
        self.body: Body | None = None
        self.closed = False
        self.got_bytes = False
        self.paused = False
        self.head_bytes = 0
        self.slot: asyncio.Semaphore | None = None  # the pool slot a streaming body holds

    def _free_slot(self) -> None:
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.release()

    # -- protocol callbacks ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed, self.closed = self.closed, True
        if exc is None and not was_closed and self.parser.busy:
            # a clean close: the end of a close-delimited body, or a truncation llhttp cannot see
            try:
                self.parser.eof()
            except HttpError as truncated:
                self._fail(truncated)
            return
        lost = HttpError(f"connection lost: {exc}" if exc else "connection closed by server")
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(lost)
        if self.body is not None:
            self.body._finish(lost)
            self.body = None
        self._free_slot()

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed(data)
        except HttpError as exc:
            # also bytes on an idle connection (a server's 408 before closing): never reuse it
            self._fail(exc)
            return
        if self.fut is not None:  # still no final head: bound what it may cost
            self.head_bytes += len(data)
            if self.head_bytes > _MAX_HEAD:
                self._fail(HttpError("response header too large"))

    # -- what the parser reports (s3sync.s3.http_parse.ResponseSink) ------------
    def on_response(self, status: int, headers: dict[str, str]) -> None:
        body = Body(self)
        self.body = body
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_result(Response(status, headers, body))

    def on_body(self, data: bytes) -> None:
        if self.body is not None:
            self.body._feed(data)

    def on_complete(self, trailers: dict[str, str]) -> None:
        body, self.body = self.body, None
        self.resume()
        if body is not None:
            body.trailers = trailers
            body._finish()
        if self.parser.keep_alive and not self.closed:
            self.pool._release(self)
        else:
            self.abort()
        self._free_slot()

    def _fail(self, exc: BaseException) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(exc)
        if self.body is not None:
            self.body._finish(exc)
            self.body = None
        self.abort()
        self._free_slot()

    # -- control ---------------------------------------------------------------
    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self._free_slot()

    async def with_timeout(self, fut: asyncio.Future[_T], seconds: float | None = None) -> _T:
        loop = asyncio.get_running_loop()
        limit = self.pool.read_timeout if seconds is None else seconds
        handle = loop.call_later(limit, self._timeout, fut, limit)
        try:
            return await fut
        finally:
            handle.cancel()

    def _timeout(self, fut: asyncio.Future[Any], limit: float) -> None:
        if not fut.done():
            fut.set_exception(TimeoutError(f"no data for {limit:g}s"))
        self.abort()

    def send(self, data: bytes, no_body: bool) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.parser.start(no_body=no_body)
        self.fut = asyncio.get_running_loop().create_future()
        self.got_bytes = False
        self.head_bytes = 0
        self.transport.write(data)
        return self.fut


def _abort_if_connected(task: asyncio.Task[tuple[asyncio.Transport, _Conn]]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result()[0].abort()


class HttpPool:
    """A LIFO pool of keep-alive connections to one host:port."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limit: int = 128,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        stall_timeout: float = BODY_STALL_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl_context
        self.read_timeout = read_timeout
        # silence mid-body while the reader waits (see BODY_STALL_SECONDS); never above read_timeout
        self.stall_timeout = min(stall_timeout, read_timeout)
        self.connect_timeout = connect_timeout
        self._idle: list[_Conn] = []
        self._sem = asyncio.Semaphore(limit)
        self._closed = False

    def _release(self, conn: _Conn) -> None:
        if conn.closed:
            return
        if self._closed:
            conn.abort()  # finished after close(): nothing will reuse it
            return
        self._idle.append(conn)

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        connecting = asyncio.ensure_future(
            loop.create_connection(
                lambda: _Conn(self),
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.host if self.ssl else None,
            )
        )
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await asyncio.shield(connecting)
        except BaseException as exc:
            # cancelled or timed out: a connection that completes anyway is closed, never leaked
            connecting.cancel()
            connecting.add_done_callback(_abort_if_connected)
            if isinstance(exc, OSError | TimeoutError):
                raise HttpError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
            raise
        return proto

    async def request(self, head: bytes, *, no_body: bool = False) -> Response:
        """Send a complete request head (no request body) and return the response.

        ``limit`` bounds open exchanges, not just heads in flight: a response whose
        body is still arriving keeps its slot until the body ends or is closed, and a
        request that ends before its head (cancelled, timed out, failed) aborts its
        connection, so no socket outlives its slot.
        """
        await self._sem.acquire()
        handed = False
        try:
            for attempt in (0, 1):
                while self._idle and self._idle[-1].closed:
                    self._idle.pop()
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else await self._connect()
                fut = conn.send(head, no_body)
                try:
                    resp = await conn.with_timeout(fut)
                except HttpError:
                    # a keep-alive connection the server closed while idle: retry once, fresh
                    if reused and not conn.got_bytes and attempt == 0:
                        continue
                    conn.abort()
                    raise
                except BaseException:
                    # Cancelled (or timed out) before the head: the exchange is half done and
                    # nobody will read its answer. Pooled, it would hand that answer to the next
                    # request; left alone, a body past the read-ahead pauses it forever, so the
                    # socket would outlive the slot the semaphore gives back below.
                    conn.abort()
                    raise
                if conn.body is not None and not conn.closed:
                    conn.slot = self._sem  # the body is still arriving: its end frees the slot
                    handed = True
                return resp
            raise HttpError("connection closed before a response")
        finally:
            if not handed:
                self._sem.release()

    async def close(self) -> None:
        self._closed = True
        for c in self._idle:
            c.abort()
        self._idle.clear()
