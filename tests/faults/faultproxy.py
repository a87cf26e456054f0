"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the moto server.

The daemon is pointed at the proxy (``s3.endpoint_url``); the proxy forwards
every request unchanged (method, path, query, headers including the SigV4
``Authorization`` and ``Host``) and, when a rule matches, misbehaves the way
S3 and networks do: error statuses (500/503/``SlowDown`` with S3's XML body,
403 for bad credentials), a connection reset in the middle of a body, a body
cut short while the headers promise the full ``Content-Length``, bytes
flipped in place (same length), latency before answering, a throttled body,
or no answer at all (connection dropped: "S3 is down").

It runs its own event loop in a daemon thread, so the same proxy serves
in-process tests (the app in the test's loop) and subprocess daemons alike;
rules are changed at runtime from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from aiohttp import web
from yarl import URL

Action = Literal["status", "reset", "truncate", "corrupt", "latency", "throttle", "drop"]
Op = Literal["GET", "RANGE", "HEAD", "LIST", "HEAD_BUCKET", "OTHER", "*"]

_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
)


def classify(method: str, path: str, query: str, headers: dict[str, str] | None = None) -> str:
    """Which S3 operation a path-style request is: GET, RANGE, HEAD, LIST, HEAD_BUCKET or OTHER."""
    parts = [p for p in path.split("/") if p]
    has_key = len(parts) >= 2
    if method == "GET" and not has_key:
        return "LIST" if "list-type" in query or not query or "prefix" in query else "OTHER"
    if method == "HEAD" and not has_key:
        return "HEAD_BUCKET"
    if method == "HEAD":
        return "HEAD"
    if method == "GET" and has_key:
        if headers and any(k.lower() == "range" for k in headers):
            return "RANGE"
        return "GET"
    return "OTHER"


def s3_error_xml(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>faultproxy</RequestId></Error>"
    ).encode()


@dataclass
class Rule:
    """One kind of misbehaviour for requests that match ``op`` and ``key_re``.

    ``times`` bounds how often it fires (None: forever); ``probability`` makes
    it fire at random (seeded by the proxy's rng); ``after_bytes`` is where a
    body is reset / cut / corrupted.
    """

    action: Action
    op: Op = "*"
    key_re: str | None = None
    times: int | None = None
    probability: float = 1.0
    status: int = 503
    code: str = "ServiceUnavailable"
    after_bytes: int = 0
    seconds: float = 0.0
    bytes_per_second: int = 0
    fired: int = 0
    _rx: re.Pattern[str] | None = field(default=None, repr=False)

    def matches(self, op: str, key: str, rng: random.Random) -> bool:
        if self.op != "*" and self.op != op and not (self.op == "GET" and op == "RANGE"):
            return False
        if self.key_re is not None:
            if self._rx is None:
                self._rx = re.compile(self.key_re)
            if not self._rx.search(key):
                return False
        if self.times is not None and self.fired >= self.times:
            return False
        return not (self.probability < 1.0 and rng.random() >= self.probability)


class FaultProxy:
    """See the module docstring. ``with FaultProxy(upstream) as p: p.url``."""

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.rng = random.Random(seed)
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # op -> count (forwarded or not)
        self.by_key: Counter[tuple[str, str]] = Counter()  # (op, key) -> count
        self.faults: Counter[str] = Counter()  # action -> times fired
        self.bytes_out = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self.port = 0

    # -- control (any thread) ---------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, action: Action, **kw: object) -> Rule:
        rule = Rule(action, **kw)  # type: ignore[arg-type]
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.by_key.clear()
            self.faults.clear()
            self.bytes_out = 0

    def count(self, op: str, key: str | None = None) -> int:
        with self._lock:
            if key is None:
                return self.requests[op]
            return self.by_key[(op, key)]

    def _pick(self, op: str, key: str) -> list[Rule]:
        with self._lock:
            chosen = []
            for r in self._rules:
                if r.matches(op, key, self.rng):
                    r.fired += 1
                    self.faults[r.action] += 1
                    chosen.append(r)
            return chosen

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> FaultProxy:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="faultproxy", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fault proxy did not start")
        if self._startup_error is not None:
            raise RuntimeError(f"fault proxy failed: {self._startup_error!r}")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            fut.result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup(sock))
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _startup(self, sock: socket.socket) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
            connector=aiohttp.TCPConnector(limit=256),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- the proxy ------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        op = classify(request.method, request.path, request.query_string, headers)
        parts = request.path.split("/", 2)  # request.path is already percent-decoded
        key = parts[2] if len(parts) == 3 else ""
        with self._lock:
            self.requests[op] += 1
            self.by_key[(op, key)] += 1
        rules = self._pick(op, key)
        body = await request.read()
        for r in rules:
            if r.action == "latency":
                await asyncio.sleep(r.seconds)
        for r in rules:
            if r.action == "drop":
                assert request.transport is not None
                request.transport.abort()
                raise ConnectionResetError("faultproxy: dropped")
            if r.action == "status":
                xml = s3_error_xml(r.code, f"injected by faultproxy ({r.status})")
                return web.Response(
                    status=r.status,
                    body=b"" if request.method == "HEAD" else xml,
                    headers={"Content-Type": "application/xml", "x-amz-request-id": "faultproxy"},
                )
        body_rule = next((r for r in rules if r.action in ("reset", "truncate", "corrupt")), None)
        throttle = next((r for r in rules if r.action == "throttle"), None)
        assert self._session is not None
        # raw_path keeps the client's exact percent-encoding (it is what SigV4 signed)
        url = URL(self.upstream + request.raw_path, encoded=True)
        async with self._session.request(
            request.method,
            url,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
        ) as up:
            out_headers = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
            resp = web.StreamResponse(status=up.status, reason=up.reason, headers=out_headers)
            length = up.content_length
            if request.method == "HEAD" or up.status in (204, 304):
                if length is not None:
                    resp.content_length = length
                await resp.prepare(request)
                return resp
            if length is not None:
                resp.content_length = length
            await resp.prepare(request)
            sent = 0
            started = time.monotonic()
            async for chunk in up.content.iter_chunked(64 * 1024):
                if body_rule is not None and up.status in (200, 206):
                    cut = body_rule.after_bytes
                    if body_rule.action in ("reset", "truncate") and sent + len(chunk) > cut:
                        await resp.write(chunk[: max(0, cut - sent)])
                        assert request.transport is not None
                        if body_rule.action == "reset":
                            _rst(request.transport)
                        else:
                            request.transport.close()
                        raise ConnectionResetError(f"faultproxy: {body_rule.action}")
                    if body_rule.action == "corrupt" and sent <= cut < sent + len(chunk):
                        b = bytearray(chunk)
                        b[cut - sent] ^= 0xFF
                        chunk = bytes(b)
                await resp.write(chunk)
                sent += len(chunk)
                with self._lock:
                    self.bytes_out += len(chunk)
                if throttle is not None and throttle.bytes_per_second:
                    ahead = sent / throttle.bytes_per_second - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            await resp.write_eof()
            return resp


def _rst(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than a FIN: a real "connection reset by peer"."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        import struct

        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
