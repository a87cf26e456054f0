"""A forwarding HTTP proxy on loopback that records every S3 request it passes to moto.

Tests point s3sync at it (``--endpoint-url``) to assert on what was *asked*
of S3 — e.g. that an inventory-driven pass never lists the source bucket.
Requests go through unchanged (the ``Host`` header included, so SigV4 still
verifies); answers come back whole. Nothing here imports s3sync.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from support.s3kit import serve_http

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass(frozen=True)
class Seen:
    method: str
    bucket: str
    key: str
    query: dict[str, list[str]]

    @property
    def is_list(self) -> bool:
        return self.method == "GET" and not self.key and "list-type" in self.query


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def lists(self, bucket: str) -> int:
        with self.lock:
            return sum(1 for s in self.seen if s.is_list and s.bucket == bucket)

    def count(self, method: str, bucket: str) -> int:
        with self.lock:
            return sum(1 for s in self.seen if s.method == method and s.bucket == bucket and s.key)


@contextlib.contextmanager
def counting_proxy(upstream: str) -> Iterator[tuple[str, Recorder]]:
    """Yields (proxy URL, recorder) for a proxy in front of ``upstream`` (http://host:port)."""
    target = urlsplit(upstream)
    rec = Recorder()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            url = urlsplit(self.path)
            bucket, _, key = unquote(url.path).lstrip("/").partition("/")
            with rec.lock:
                rec.seen.append(Seen(self.command, bucket, key, parse_qs(url.query, keep_blank_values=True)))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP:
                        conn.putheader(name, value)
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for name, value in resp.getheaders():
                    if name.lower() not in _HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                # a HEAD answer announces the object's length; every other answer is sent whole
                length_header = resp.getheader("Content-Length", "0") if self.command == "HEAD" else len(data)
                self.send_header("Content-Length", str(length_header))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            finally:
                conn.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

    with serve_http(Handler) as url:
        yield url, rec
