"""The one HTTP proxy tests put between s3sync and moto: a relay that records, with pluggable behaviours.

s3sync is pointed at :attr:`Proxy.url` (``s3.endpoint_url``); the proxy forwards
every request unchanged (method, path with the client's exact percent-encoding,
query, headers including the SigV4 ``Authorization`` and ``Host``) and streams
the answer back. On the way it

* **records** every request (:class:`Seen`: method, operation, bucket, key,
  query, lower-cased headers, the status it got) so a test asserts on what
  s3sync *asked* (:meth:`Proxy.requests`, :meth:`Proxy.count`), how many object
  requests for one key overlapped (:attr:`Proxy.max_active`) and how many body
  bytes went out (:attr:`Proxy.bytes_out`);
* lets **behaviours** change the exchange. :class:`Faults` (always plugged,
  transparent until a rule is added) misbehaves the way S3 and networks do:
  error statuses with S3's XML body, a reset or a cut in the middle of a body,
  a flipped byte, latency, a throttled body, a dropped connection, or a request
  held at a :class:`Gate` until the test opens it. :class:`support.aws.Aws`
  makes moto answer the way AWS does (opaque KMS ETags, checksums, storage
  classes, requester pays, SSE-C ...). A behaviour is any object with the
  :class:`Behaviour` hooks.

It runs its own event loop in a daemon thread, so the same proxy serves
in-process tests (the app on the test's loop), CLI runs and subprocess daemons
alike; rules are changed at runtime from any thread. ``with Proxy(moto) as p``
or ``async with Proxy(moto) as p``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from support.awsrules import Seen, classify
from yarl import URL

HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
)
OBJECT_OPS = frozenset({"GET", "RANGE", "HEAD"})


@dataclass
class Call:
    """One request on its way through the relay, as the behaviours see and change it."""

    request: web.Request
    seen: Seen
    bucket: str
    headers: dict[str, str]  # what goes to moto (lower-cased names); behaviours may edit
    body: bytes
    out: dict[str, str] = field(default_factory=dict)  # the answer's headers; behaviours may edit
    status: int = 0  # the answer's status; behaviours may change it
    state: dict[str, Any] = field(default_factory=dict)  # a behaviour's notes for its later hooks


class Behaviour:
    """The hooks a behaviour may implement; each does nothing here."""

    def attach(self, proxy: Proxy) -> None:
        """Called once when plugged into ``proxy``."""

    async def before(self, call: Call) -> web.StreamResponse | None:
        """Before moto is asked: answer instead (return a response) or edit ``call.headers``."""
        return None

    async def after(self, call: Call, up: aiohttp.ClientResponse) -> web.StreamResponse | None:
        """moto answered (headers only): answer instead, or edit ``call.out`` / ``call.status``."""
        return None

    async def chunk(self, call: Call, resp: web.StreamResponse, sent: int, data: bytes) -> bytes:
        """A body chunk about to be relayed (``sent`` bytes already were): give the bytes to send."""
        return data

    async def wrote(self, call: Call, sent: int, started: float) -> None:
        """A chunk was relayed; ``sent`` bytes in all since ``started`` (monotonic)."""


# --------------------------------------------------------------------------- faults

Action = Literal["status", "reset", "truncate", "corrupt", "latency", "throttle", "drop", "hold"]
# OBJECT: GET, RANGE and HEAD of a key; GET also matches RANGE
Op = Literal["GET", "RANGE", "HEAD", "LIST", "HEAD_BUCKET", "PUT", "OTHER", "OBJECT", "*"]


class Gate(threading.Event):
    """A door a ``hold`` rule keeps requests behind until a test (any thread) calls :meth:`set`."""

    async def passed(self) -> None:
        # polled: the gate is set from another thread (and loop) than the one that waits
        while not self.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


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
    body is reset / cut / corrupted; a ``hold`` waits at ``gate``.
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
    gate: Gate | None = None
    fired: int = 0
    _rx: re.Pattern[str] | None = field(default=None, repr=False)

    def matches(self, op: str, key: str, rng: random.Random) -> bool:
        if self.op == "OBJECT":
            if op not in OBJECT_OPS:
                return False
        elif self.op != "*" and self.op != op and not (self.op == "GET" and op == "RANGE"):
            return False
        if self.key_re is not None:
            if self._rx is None:
                self._rx = re.compile(self.key_re)
            if not self._rx.search(key):
                return False
        if self.times is not None and self.fired >= self.times:
            return False
        return not (self.probability < 1.0 and rng.random() >= self.probability)


class Faults(Behaviour):
    """Fault rules (see :class:`Rule`); with no rule the relay is transparent."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.fired: Counter[str] = Counter()  # action -> times fired
        self._rules: list[Rule] = []
        self._lock = threading.Lock()

    def __getitem__(self, action: str) -> int:
        """How often rules of ``action`` fired (``proxy.faults["reset"]``)."""
        return self.fired[action]

    def add(self, action: Action, **kw: Any) -> Rule:
        rule = Rule(action, **kw)
        with self._lock:
            self._rules.append(rule)
        return rule

    def hold(self, op: Op = "OBJECT", key_re: str | None = None) -> Gate:
        """Hold matching requests until the returned gate is set."""
        gate = Gate()
        self.add("hold", op=op, key_re=key_re, gate=gate)
        return gate

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _pick(self, op: str, key: str) -> list[Rule]:
        with self._lock:
            chosen = []
            for r in self._rules:
                if r.matches(op, key, self.rng):
                    r.fired += 1
                    self.fired[r.action] += 1
                    chosen.append(r)
            return chosen

    async def before(self, call: Call) -> web.StreamResponse | None:
        rules = self._pick(call.seen.op, call.seen.key)
        if not rules:
            return None
        for r in rules:
            if r.action == "hold" and r.gate is not None:
                await r.gate.passed()
        for r in rules:
            if r.action == "latency":
                await asyncio.sleep(r.seconds)
        for r in rules:
            if r.action == "drop":
                assert call.request.transport is not None
                call.request.transport.abort()
                raise ConnectionResetError("faultproxy: dropped")
            if r.action == "status":
                xml = s3_error_xml(r.code, f"injected by faultproxy ({r.status})")
                return web.Response(
                    status=r.status,
                    body=b"" if call.request.method == "HEAD" else xml,
                    headers={"Content-Type": "application/xml", "x-amz-request-id": "faultproxy"},
                )
        call.state["body_rule"] = next(
            (r for r in rules if r.action in ("reset", "truncate", "corrupt")), None
        )
        call.state["throttle"] = next((r for r in rules if r.action == "throttle"), None)
        return None

    async def chunk(self, call: Call, resp: web.StreamResponse, sent: int, data: bytes) -> bytes:
        rule: Rule | None = call.state.get("body_rule")
        if rule is None or call.status not in (200, 206):
            return data
        cut = rule.after_bytes
        if rule.action in ("reset", "truncate") and sent + len(data) > cut:
            await resp.write(data[: max(0, cut - sent)])
            transport = call.request.transport
            assert transport is not None
            if rule.action == "reset":
                _rst(transport)
            else:
                transport.close()
            raise ConnectionResetError(f"faultproxy: {rule.action}")
        if rule.action == "corrupt" and sent <= cut < sent + len(data):
            b = bytearray(data)
            b[cut - sent] ^= 0xFF
            return bytes(b)
        return data

    async def wrote(self, call: Call, sent: int, started: float) -> None:
        rule: Rule | None = call.state.get("throttle")
        if rule is not None and rule.bytes_per_second:
            ahead = sent / rule.bytes_per_second - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)


def _rst(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than a FIN: a real "connection reset by peer"."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# --------------------------------------------------------------------------- the relay


class Proxy:
    """See the module docstring. ``Proxy(upstream, *behaviours, seed=0)``; faults are always plugged."""

    def __init__(self, upstream: str, *behaviours: Behaviour, seed: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = next((b for b in behaviours if isinstance(b, Faults)), None) or Faults(seed)
        self.behaviours: list[Behaviour] = [*(b for b in behaviours if b is not self.faults), self.faults]
        self.seen: list[Seen] = []
        self.active: Counter[str] = Counter()  # key -> object requests in flight now
        self.max_active: Counter[str] = Counter()  # key -> most object requests in flight at once
        self.bytes_out = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self.port = 0
        for b in self.behaviours:
            b.attach(self)

    def behaviour(self, kind: type[Any]) -> Any:
        """The plugged behaviour of class ``kind``."""
        found = next((b for b in self.behaviours if isinstance(b, kind)), None)
        if found is None:
            raise LookupError(f"no {kind.__name__} plugged into this proxy")
        return found

    @property
    def aws(self) -> Any:
        """The plugged :class:`support.aws.Aws` behaviour."""
        from support.aws import Aws

        return self.behaviour(Aws)

    # -- what was seen (any thread) ------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(
        self, op: str | None = None, key: str | None = None, *, bucket: str | None = None
    ) -> list[Seen]:
        """What was seen, optionally of one operation (``GET`` includes ranged GETs), key or bucket."""
        with self._lock:
            out = list(self.seen)
        if op is not None:
            out = [s for s in out if s.op == op or (op == "GET" and s.op == "RANGE")]
        if key is not None:
            out = [s for s in out if s.key == key]
        if bucket is not None:
            out = [s for s in out if s.bucket == bucket]
        return out

    def count(self, op: str, key: str | None = None) -> int:
        """Requests of exactly ``op`` (``GET`` here excludes ranged GETs), optionally for one key."""
        with self._lock:
            return sum(1 for s in self.seen if s.op == op and (key is None or s.key == key))

    def reset_counters(self) -> None:
        with self._lock:
            self.seen.clear()
            self.bytes_out = 0
            self.faults.fired.clear()

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Proxy:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("proxy did not start")
        if self._startup_error is not None:
            raise RuntimeError(f"proxy failed: {self._startup_error!r}")
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

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Proxy:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

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
        # short: requests held by latency rules must not hold up the test's teardown
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- the relay -------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in HOP}
        query = dict(parse_qsl(request.query_string, keep_blank_values=True))
        op = classify(request.method, request.path, query, headers)
        bucket, _, key = request.path.lstrip("/").partition("/")  # request.path is percent-decoded
        seen = Seen(request.method, op, key, query, dict(headers), bucket=bucket)
        is_object = op in OBJECT_OPS
        with self._lock:
            self.seen.append(seen)
            if is_object:
                self.active[key] += 1
                self.max_active[key] = max(self.max_active[key], self.active[key])
        try:
            call = Call(request, seen, bucket, headers, await request.read())
            resp = await self._exchange(call)
            seen.status = resp.status
            return resp
        finally:
            if is_object:
                with self._lock:
                    self.active[key] -= 1

    async def _exchange(self, call: Call) -> web.StreamResponse:
        for b in self.behaviours:
            early = await b.before(call)
            if early is not None:
                return early
        assert self._session is not None
        # raw_path keeps the client's exact percent-encoding (it is what SigV4 signed)
        url = URL(self.upstream + call.request.raw_path, encoded=True)
        async with self._session.request(
            call.request.method, url, headers=call.headers, data=call.body or None, allow_redirects=False
        ) as up:
            call.out = {k: v for k, v in up.headers.items() if k.lower() not in HOP}
            call.status = up.status
            for b in self.behaviours:
                answer = await b.after(call, up)
                if answer is not None:
                    return answer
            call.seen.status = call.status  # before the body: the client may look as soon as it has it
            return await self._relay(call, up)

    async def _relay(self, call: Call, up: aiohttp.ClientResponse) -> web.StreamResponse:
        request = call.request
        reason = up.reason if call.status == up.status else None
        resp = web.StreamResponse(status=call.status, reason=reason, headers=call.out)
        if up.content_length is not None:
            resp.content_length = up.content_length
        await resp.prepare(request)
        if request.method != "HEAD" and up.status not in (204, 304):
            sent = 0
            started = time.monotonic()
            async for data in up.content.iter_chunked(64 * 1024):
                for b in self.behaviours:
                    data = await b.chunk(call, resp, sent, data)
                await resp.write(data)
                sent += len(data)
                with self._lock:
                    self.bytes_out += len(data)
                for b in self.behaviours:
                    await b.wrote(call, sent, started)
        await resp.write_eof()
        return resp
