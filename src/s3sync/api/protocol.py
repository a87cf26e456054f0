"""Client junk at the HTTP layer: a JSON 400 and one WARNING line, never a traceback.

aiohttp answers what it cannot parse (a malformed request line, ``Content-Length: abc``, a
bad chunk size, a request line or header over the limit, a body that does not decode as its
``Content-Encoding`` says) before any handler runs, in ``text/plain``, and logs each with a
traceback at ERROR; a body left unread after our own 400 is logged the same way once more.
None of that is the daemon's fault, and the README promises ``{"error", "message"}`` for
every error. :class:`JsonErrorRunner` is ``web.AppRunner`` with a request handler that
answers those in JSON and logs one WARNING line naming the client and the reason.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    ContentEncodingError,
    HttpProcessingError,
    LineTooLong,
    PayloadEncodingError,
)
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest

from s3sync.api.errors import error_body

log = structlog.get_logger(__name__)


def describe(exc: BaseException | None, fallback: str = "malformed request") -> str:
    """One line about what the client got wrong, without echoing what it sent."""
    if isinstance(exc, LineTooLong):
        return f"request line or a header field is longer than {exc.args[1]} bytes"
    if isinstance(exc, ContentEncodingError):
        return "request body does not decode as its Content-Encoding says"
    if isinstance(exc, HttpProcessingError):
        text = exc.message if isinstance(exc.message, str) else str(exc.message)
        first = (text.strip().splitlines() or [fallback])[0]
        return first.split(": ", 1)[0].rstrip(":. ") or fallback  # the rest quotes the client's bytes
    if exc is not None:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0] or type(exc).__name__
    return fallback


class _JsonErrorHandler(RequestHandler):
    """aiohttp's per-connection protocol, with our answer and our log line for client errors."""

    body_error_logged = False  # set by the error middleware when it has answered a bad body

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        reason = describe(exc, message or "malformed request")
        if self._request_count == 1 and isinstance(exc, BadHttpMethod):
            # not HTTP at all (TLS to a plain port, a scanner): as aiohttp does, not worth a warning
            log.debug("not an HTTP request", client=request.remote, reason=reason)
        else:
            log.warning("bad request from a client", client=request.remote, status=status, reason=reason)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started, cannot send the error")
        code = "bad_request" if status < 500 else "internal"
        resp = web.json_response(error_body(code, reason), status=status)
        resp.force_close()
        return resp

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's other ERROR lines: the unread rest of a body the client got wrong, mostly."""
        exc = kw.get("exc_info")
        what = (args[0] % args[1:]) if args else "error"
        if self.body_error_logged and isinstance(exc, RequestPayloadError | PayloadEncodingError):
            # the rest of a body the application already refused and logged: not a second line
            self.body_error_logged = False
            log.debug("unread request body dropped", error=describe(exc))
            return
        log.warning(
            "client connection failed",
            what=what,
            error=describe(exc if isinstance(exc, BaseException) else None, "unknown"),
        )


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer protocol errors in JSON (module docstring)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _JsonErrorServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


def note_body_error_logged(request: web.Request) -> None:
    """The application answered (and logged) a body it could not read: aiohttp, draining the
    rest of it, must not log the same failure again."""
    if isinstance(request.protocol, _JsonErrorHandler):
        request.protocol.body_error_logged = True


__all__ = ["JsonErrorRunner", "describe", "note_body_error_logged"]
