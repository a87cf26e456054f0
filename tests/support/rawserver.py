"""A loopback TCP server that answers HTTP requests with scripted raw bytes.

Framing bugs hide behind kind servers; this one sends exactly the bytes a test
gives it — chunk by chunk, with interim 1xx answers, a close instead of a
length, a reset (RST) in the middle of a body — and records what arrived on
each connection, so a test can see pipelining, reuse and what was sent.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

CLOSE = object()  # close the connection cleanly (FIN)
RESET = object()  # abort with SO_LINGER 0 (RST)

Step = bytes | object | asyncio.Event  # bytes to write, CLOSE, RESET, or an event to wait for
Answer = Sequence[Step]


@dataclass
class Conn:
    """What one connection saw: the request heads, in order."""

    requests: list[bytes] = field(default_factory=list)


def response(status: int = 200, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """A Content-Length framed answer."""
    reason = {200: "OK", 206: "Partial Content", 304: "Not Modified", 404: "Not Found"}.get(status, "X")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(parts: Sequence[bytes], trailers: Sequence[tuple[str, str]] = (), status: int = 200) -> bytes:
    """A Transfer-Encoding: chunked answer with ``parts`` as its chunks."""
    head = f"HTTP/1.1 {status} OK\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    tail = "".join(f"{k}: {v}\r\n" for k, v in trailers).encode()
    return head + body + b"0\r\n" + tail + b"\r\n"


class RawServer:
    """``async with RawServer(answer_for) as srv``: ``answer_for(n, head)`` scripts request ``n``."""

    def __init__(self, answer_for: Callable[[int, bytes], Answer], host: str = "127.0.0.1") -> None:
        self._answer_for = answer_for
        self._host = host
        self._server: asyncio.Server | None = None
        self.conns: list[Conn] = []
        self.count = 0
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, self._host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn()
        self.conns.append(conn)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                conn.requests.append(head)
                n = self.count
                self.count += 1
                for step in self._answer_for(n, head):
                    if isinstance(step, bytes):
                        writer.write(step)
                        await writer.drain()
                    elif isinstance(step, asyncio.Event):
                        await step.wait()
                    elif step is CLOSE:
                        writer.close()
                        return
                    elif step is RESET:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
        finally:
            if not writer.is_closing():
                writer.close()
