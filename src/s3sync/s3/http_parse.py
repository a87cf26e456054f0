"""HTTP/1.1 response framing for the lean S3 path, done by llhttp (through ``httptools``).

Why a library: framing is where hand-written clients go wrong — a chunked body
with trailers, an interim ``100 Continue`` / ``103 Early Hints`` before the
answer, a body delimited by the server closing the connection, a length that
lies. llhttp is the parser Node.js ships, in C, and ``httptools`` (the uvloop
authors') exposes it with one Python call per header and per body piece.

This module is sans-IO: :class:`ResponseParser` is fed the bytes one
connection receives and reports the answer to a :class:`ResponseSink` (the
keep-alive pool's connection, which owns flow control and timeouts). One
request at a time: :meth:`ResponseParser.start` is called before each request
is written, so a byte that arrives when no answer is due — a pipelined or
unsolicited response, a server's 408 on an idle connection — is an error and
the connection is never reused.
"""

from __future__ import annotations

import enum
from typing import Protocol

import httptools


class HttpError(ConnectionError):
    """Transport-level failure (reset, truncated body, malformed response): retryable."""


class ResponseSink(Protocol):
    """Who hears about the answer: called synchronously from :meth:`ResponseParser.feed`."""

    def on_response(self, status: int, headers: dict[str, str]) -> None:
        """The final (non-1xx) status line and headers; names are lower-case."""

    def on_body(self, data: bytes) -> None:
        """A piece of the (de-chunked) body."""

    def on_complete(self, trailers: dict[str, str]) -> None:
        """The whole body arrived; ``trailers`` holds chunked trailer fields, if any."""


class Framing(enum.Enum):
    """How the body of the current answer ends."""

    NONE = "none"  # HEAD, 204, 304: no body whatever the headers say
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding: chunked
    CLOSE = "close"  # neither: the body ends when the server closes the connection


class _State(enum.Enum):
    IDLE = 0  # no request outstanding: any byte is unexpected
    HEAD = 1  # waiting for the status line and headers (interim 1xx are skipped here)
    BODY = 2  # final headers seen, body arriving
    DONE = 3  # answer complete; more bytes are unexpected
    DONE_EARLY = 4  # HEAD answered at its headers; llhttp would wait for a body that never comes
    FAILED = 5


_SECOND_ANSWER = "unexpected bytes after the response (a second answer, never asked for)"


class _Unexpected(Exception):
    """Raised inside an llhttp callback to stop parsing; turned into an :class:`HttpError`."""


class ResponseParser:
    """Frames the answers arriving on one connection, one request at a time."""

    __slots__ = (
        "_headers",
        "_interim",
        "_llhttp_clean",
        "_no_body",
        "_parser",
        "_raw",
        "_raw_trailers",
        "_sink",
        "_state",
        "_trailers",
        "content_length",
        "framing",
        "keep_alive",
        "received",
        "status",
    )

    def __init__(self, sink: ResponseSink) -> None:
        self._sink = sink
        self._parser: httptools.HttpResponseParser | None = None
        self._state = _State.IDLE
        self._no_body = False
        self._interim = False
        self._llhttp_clean = False  # llhttp itself completed the last answer: it can parse the next
        self._headers: dict[str, str] = {}
        self._trailers: dict[str, str] = {}
        self._raw: list[tuple[bytes, bytes]] = []
        self._raw_trailers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.framing = Framing.NONE
        self.keep_alive = False
        self.content_length: int | None = None
        self.received = 0  # body bytes delivered so far (after de-chunking)

    @property
    def busy(self) -> bool:
        """True while an answer is due or arriving."""
        return self._state in (_State.HEAD, _State.BODY)

    @property
    def complete(self) -> bool:
        """True once the answer to the last request has fully arrived."""
        return self._state in (_State.DONE, _State.DONE_EARLY)

    def start(self, *, no_body: bool = False) -> None:
        """Expect the answer to a request about to be written (``no_body`` for HEAD).

        llhttp resets itself after an answer it completed on a keep-alive connection;
        after one we completed for it (a HEAD, a Content-Length body passed through)
        a fresh parser is made, so no state from an earlier answer leaks into this one.
        """
        if self.busy:
            raise HttpError("a request is already outstanding on this connection (no pipelining)")
        if not (self._llhttp_clean and self.keep_alive and self._parser is not None):
            self._parser = httptools.HttpResponseParser(self)
        self._llhttp_clean = False
        self._state = _State.HEAD
        self._no_body = no_body
        self._interim = False
        self._headers = {}
        self._trailers = {}
        self._raw = []
        self._raw_trailers = []
        self.status = 0
        self.framing = Framing.NONE
        self.keep_alive = False
        self.content_length = None
        self.received = 0

    def feed(self, data: bytes) -> None:
        """Parse bytes from the connection; raises :class:`HttpError` on anything malformed.

        Once the head of a Content-Length answer is parsed, its body bypasses llhttp:
        httptools copies every body piece into a new ``bytes``, which for a large
        object costs more CPU than the whole rest of the path. The pieces are passed
        on as they came, counted against the length (bytes beyond it are an error).
        """
        if self._state is _State.BODY and self.framing is Framing.LENGTH:
            assert self.content_length is not None
            left = self.content_length - self.received
            if len(data) < left:
                self.received += len(data)
                self._sink.on_body(data)
                return
            if left:
                self.received += left
                self._sink.on_body(data if len(data) == left else data[:left])
            self._state = _State.DONE
            self._sink.on_complete(self._trailers)
            if len(data) > left:
                self._state = _State.FAILED
                raise HttpError(_SECOND_ANSWER)
            return
        parser = self._parser
        if parser is None or self._state in (_State.IDLE, _State.DONE, _State.DONE_EARLY):
            self._state = _State.FAILED
            raise HttpError("unexpected bytes on a connection with no answer due")
        if self._state is _State.FAILED:
            raise HttpError("connection already failed")
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._state = _State.FAILED
            raise HttpError("server switched protocols, which was never asked for") from exc
        except httptools.HttpParserCallbackError as exc:
            self._state = _State.FAILED
            cause = exc.__context__
            if isinstance(cause, _Unexpected):
                raise HttpError(str(cause)) from exc
            if isinstance(cause, BaseException):
                raise cause from exc  # a bug in the sink: let it surface as itself
            raise HttpError(f"malformed response: {exc}") from exc
        except httptools.HttpParserError as exc:
            self._state = _State.FAILED
            raise HttpError(f"malformed response: {exc}") from exc

    def eof(self) -> None:
        """The server closed the connection: completes a close-delimited body, else reports truncation."""
        state = self._state
        if state is _State.BODY and self.framing is Framing.CLOSE:
            self._state = _State.DONE
            self._sink.on_complete(_fields(self._raw_trailers))
            return
        if state is _State.HEAD:
            self._state = _State.FAILED
            raise HttpError("connection closed before a response")
        if state is _State.BODY:
            self._state = _State.FAILED
            if self.framing is Framing.CHUNKED:
                raise HttpError(f"connection closed inside a chunked body after {self.received} bytes")
            raise HttpError(
                f"connection closed after {self.received} of {self.content_length} body bytes (truncated)"
            )

    # -- llhttp callbacks (names fixed by httptools; no on_message_begin: a call saved per answer,
    # a second answer is caught at its first header or at its head's end) -------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        # raw pairs only: one dict is built when the head is complete (a call per header is the cost)
        state = self._state
        if state is _State.HEAD:
            self._raw.append((name, value))
        elif state is _State.BODY:
            self._raw_trailers.append((name, value))
        else:
            raise _Unexpected(_SECOND_ANSWER)

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        if self._state is not _State.HEAD:
            raise _Unexpected(_SECOND_ANSWER)
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # 100 Continue, 102, 103 Early Hints: not the answer; llhttp completes it next.
            self._interim = True
            return
        headers = self._headers = _fields(self._raw)
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        te = headers.get("transfer-encoding", "").lower()
        if self._no_body or status in (204, 304):
            self.framing = Framing.NONE
        elif "chunked" in te:
            self.framing = Framing.CHUNKED
        elif "content-length" in headers:
            self.framing = Framing.LENGTH
            self.content_length = int(headers["content-length"])  # llhttp has validated it
        else:
            self.framing = Framing.CLOSE
            self.keep_alive = False
        self._state = _State.BODY
        self._sink.on_response(status, headers)
        if self._no_body and self._state is _State.BODY:
            # llhttp does not know this answers a HEAD and would wait for Content-Length bytes.
            self._state = _State.DONE_EARLY
            self._sink.on_complete(self._trailers)

    def on_body(self, body: bytes) -> None:
        if self._state is not _State.BODY:
            raise _Unexpected("unexpected body bytes after the response")
        self.received += len(body)
        self._sink.on_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self._raw = []
            return
        if self._state is _State.DONE_EARLY:
            return
        if self._state is not _State.BODY:
            raise _Unexpected("response completed twice")
        self._state = _State.DONE
        self._llhttp_clean = True
        self._sink.on_complete(_fields(self._raw_trailers) if self._raw_trailers else self._trailers)


def _fields(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header (or trailer) fields: lower-case names, values stripped, repeats joined with ", "."""
    # one decode for the whole head (llhttp refuses NUL in names and values, so it can separate them)
    flat = iter(b"\0".join([part for pair in raw for part in pair]).decode("latin-1").split("\0"))
    out = {k.lower(): v.strip() for k, v in zip(flat, flat, strict=False)} if raw else {}
    if len(out) != len(raw):  # a repeated field: join its values in order
        out = {}
        for n, v in raw:
            k, val = n.decode("latin-1").lower(), v.decode("latin-1").strip()
            old = out.get(k)
            out[k] = val if old is None else f"{old}, {val}"
    return out
