"""What one HTTP client may hold of the API: connections, and time to send a request.

aiohttp bounds the *size* of a request head (``api.max_header_bytes``) and body
(``api.max_body_bytes``) but not the *time* they take: a client trickling one byte
every few seconds (slowloris) held its socket for as long as it liked, and a few
hundred such clients held every file descriptor the daemon had. So the daemon
(:func:`s3sync.daemon.serve.serve`) puts every accepted connection behind
:class:`ClientLimits`:

* ``api.max_connections``: a connection beyond the cap is answered ``503`` with
  ``Retry-After: 1`` and closed at once, before any parsing;
* ``api.header_timeout_seconds``: a request head must be complete this long after
  its first byte — or after the connection opened, for a client that sends
  nothing at all; otherwise ``408`` and the connection is closed;
* ``api.body_timeout_seconds``: the whole body must have arrived this long after
  its head (whether or not the handler has read it yet); otherwise ``408`` and
  close. A handler that is merely slow is not affected.

An idle keep-alive connection (between requests, nothing sent) is closed by
aiohttp after :data:`KEEPALIVE_SECONDS`. Over TLS the handshake gets
``header_timeout_seconds`` too (asyncio's ``ssl_handshake_timeout``).

How the pieces meet: a thin protocol wraps aiohttp's own per connection (it
sees the connection open, bytes arrive and the connection end), and an outermost
middleware tells it when a head is complete (aiohttp calls middlewares as soon as
it has parsed one) and when its request is done.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from s3sync.config.sections import ApiSettings

log = structlog.get_logger(__name__)

#: Seconds an idle keep-alive connection (a request answered, nothing new sent) stays open.
KEEPALIVE_SECONDS = 75.0


def _answer(status: str, code: str, message: str, *extra: str) -> bytes:
    """A complete JSON error answer that closes the connection (written before aiohttp sees any byte)."""
    body = json.dumps({"error": code, "message": message}).encode()
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *extra, "Connection: close"]
    return ("\r\n".join([*head, f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode() + body


_BUSY = _answer(
    "503 Service Unavailable", "too_many_connections", "too many open connections", "Retry-After: 1"
)
_SLOW = _answer("408 Request Timeout", "request_timeout", "the request did not arrive in time")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ClientLimits:
    """The limits of one listening socket; see the module docstring. ``open`` counts connections."""

    def __init__(self, api: ApiSettings) -> None:
        self.max_connections = api.max_connections
        self.header_timeout = api.header_timeout_seconds
        self.body_timeout = api.body_timeout_seconds
        self.open = 0
        self.refused = 0
        self.timed_out = 0

    def protocol_factory(self, inner: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        """For ``loop.create_server``: aiohttp's protocol factory (``runner.server``), guarded."""
        return lambda: _Guarded(self, inner)

    @property
    def middleware(self) -> Any:
        @web.middleware
        async def client_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
            guard = request.transport.get_protocol() if request.transport is not None else None
            if not isinstance(guard, _Guarded):
                return await handler(request)  # an in-process test client: no socket of ours
            guard.head_received(request)
            try:
                return await handler(request)
            finally:
                guard.request_done()

        return client_limits


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the limits' timers around it."""

    def __init__(self, limits: ClientLimits, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self.limits = limits
        self.factory = factory
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.busy = False  # a head has arrived and its request is not done yet
        self.request: web.Request | None = None  # the request whose body the timer waits for

    # -- the transport's callbacks, passed on ---------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        limits = self.limits
        if limits.open >= limits.max_connections:
            limits.refused += 1
            log.debug("api connection refused: too many open", open=limits.open)
            transport.write(_BUSY)  # type: ignore[attr-defined]
            transport.close()
            return
        limits.open += 1
        inner = self.factory()
        assert isinstance(inner, asyncio.Protocol)
        self.inner = inner
        inner.connection_made(transport)
        self._arm(limits.header_timeout, "header")  # a client that sends nothing at all

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if not self.busy and self.timer is None:
            self._arm(self.limits.header_timeout, "header")  # the first byte of the next head
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.request = None
        inner, self.inner = self.inner, None
        if inner is not None:
            self.limits.open -= 1
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- what the middleware reports ------------------------------------------
    def head_received(self, request: web.Request) -> None:
        self._disarm()
        self.busy = True
        if request.body_exists and not request.content.is_eof():
            self.request = request
            self._arm(self.limits.body_timeout, "body")

    def request_done(self) -> None:
        self._disarm()
        self.busy = False
        self.request = None  # the next head's timer starts with its first byte

    # -- timers ----------------------------------------------------------------
    def _arm(self, seconds: float, stage: str) -> None:
        self._disarm()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._expired, stage)

    def _disarm(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    def _expired(self, stage: str) -> None:
        self.timer = None
        request = self.request
        if stage == "body" and request is not None and request.content.is_eof():
            return  # every byte arrived in time; the handler is only slow
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.limits.timed_out += 1
        peer = transport.get_extra_info("peername")
        log.debug("api client too slow: connection closed", stage=stage, peer=str(peer))
        transport.write(_SLOW)
        transport.close()


__all__ = ["KEEPALIVE_SECONDS", "ClientLimits"]
