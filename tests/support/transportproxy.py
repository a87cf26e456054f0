"""A raw-socket HTTP proxy in front of moto that frames and routes answers the way AWS may.

moto always answers with a Content-Length, never redirects, never sends an
interim response and does not check signatures or clocks. This proxy sits on
loopback between s3sync and moto, forwards each request as sent (path, query,
SigV4 headers) and writes the answer back *byte by byte as the test asks*:

* ``chunked`` — bodies re-encoded as ``Transfer-Encoding: chunked`` (pieces of
  ``chunk_size``, optional ``trailers``), no Content-Length;
* ``close_delimited`` — no Content-Length, ``Connection: close``, end of body =
  end of connection;
* ``interim`` — ``100 Continue`` / ``103 Early Hints`` before every answer;
* ``redirect(key)`` — GET/HEAD of ``key`` answered ``307 Temporary Redirect``
  with a ``Location`` on the proxy's *second listener* (another port, so another
  ``Host``: a request that is not re-signed for it fails the signature check);
* ``truncate_listing`` — ListObjectsV2 pages say ``IsTruncated=true`` and carry
  no ``NextContinuationToken``;
* ``skew`` — the proxy's clock runs ``skew`` seconds off: every answer's
  ``Date`` is that clock, and a request whose ``X-Amz-Date`` is more than
  15 minutes away from it gets AWS's 403 ``RequestTimeTooSkewed``;
* ``bad_last_modified`` — GET/HEAD answers carry an unparsable ``Last-Modified``, and so do the
  listing's ``<LastModified>`` elements.

Every request's SigV4 signature is checked against the test credentials (a
bad one is AWS's 403 ``SignatureDoesNotMatch``) and recorded in :attr:`seen`
with the listener it arrived on. A request in absolute form (``GET
http://host:port/...``) is what a client sends to a *forward proxy*: the proxy
records it (``forwarded=True``) and forwards it to the origin it names — so
``TransportProxy(None)`` is a plain HTTP forward proxy for ``HTTP_PROXY``; a
``CONNECT host:port`` (``HTTPS_PROXY``) is recorded and tunnelled.

Like the other proxies it runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import hmac
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import aiohttp
from support.s3kit import AWS_ENV
from yarl import URL

_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "content-length",
        "date",
    }
)
MAX_SKEW = 15 * 60
_REASONS = {
    200: "OK",
    206: "Partial Content",
    304: "Not Modified",
    307: "Temporary Redirect",
    403: "Forbidden",
    404: "Not Found",
    412: "Precondition Failed",
}


@dataclass
class Seen:
    """One request as it arrived: the listener (``main``/``second``), its parts, and the outcome."""

    listener: str
    method: str
    target: str  # as on the request line
    path: str  # percent-decoded path
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    forwarded: bool  # absolute-form target: sent to us as a forward proxy
    signature_ok: bool | None = None  # None: the request was not signed
    status: int = 0

    @property
    def key(self) -> str:
        return self.path.lstrip("/").partition("/")[2]

    @property
    def op(self) -> str:
        if self.method == "CONNECT":
            return "CONNECT"
        if self.method == "GET" and "list-type" in self.query:
            return "LIST"
        if not self.key:
            return "HEAD_BUCKET" if self.method == "HEAD" else "OTHER"
        return self.method


@dataclass
class _Listener:
    name: str
    server: asyncio.Server
    port: int


@dataclass
class Hooks:
    """What to do to answers; change them from any thread."""

    chunked: bool = False
    chunk_size: int = 1000
    trailers: list[tuple[str, str]] = field(default_factory=list)
    close_delimited: bool = False
    interim: list[int] = field(default_factory=list)
    redirect_keys: set[str] = field(default_factory=set)
    truncate_listing: bool = False
    skew: float = 0.0
    bad_last_modified: bool = False


class TransportProxy:
    """``with TransportProxy(moto_endpoint) as p: p.url``; ``TransportProxy(None)`` is a forward proxy."""

    def __init__(
        self, upstream: str | None, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.host = host
        self.tls = tls  # serve HTTPS on both listeners (see self_signed())
        self.hooks = Hooks()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._listeners: dict[str, _Listener] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- addresses ---------------------------------------------------------------
    def _origin(self, listener: str) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{shown}:{self._listeners[listener].port}"

    def port_of(self, listener: str) -> int:
        return self._listeners[listener].port

    @property
    def url(self) -> str:
        return self._origin("main")

    @property
    def second_url(self) -> str:
        return self._origin("second")

    def requests(self, op: str | None = None, listener: str | None = None) -> list[Seen]:
        with self._lock:
            out = list(self.seen)
        return [s for s in out if (op is None or s.op == op) and (listener is None or s.listener == listener)]

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> TransportProxy:
        self._thread = threading.Thread(target=self._run, name="transportproxy", daemon=True)
        self._thread.start()
        if not self._started.wait(10) or self._error is not None:
            raise RuntimeError(f"transport proxy did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    def __enter__(self) -> TransportProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _startup(self) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
            connector=aiohttp.TCPConnector(limit=256),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        for name in ("main", "second"):
            server = await asyncio.start_server(
                lambda r, w, n=name: self._conn(n, r, w), self.host, 0, limit=1 << 20, ssl=self.tls
            )
            self._listeners[name] = _Listener(name, server, server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        for lst in self._listeners.values():
            lst.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for lst in self._listeners.values():
            await lst.server.wait_closed()
        if self._session is not None:
            await self._session.close()

    # -- one client connection ---------------------------------------------------
    async def _conn(self, listener: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, target, headers = _parse_head(head)
                if method == "CONNECT":
                    await self._tunnel(listener, target, headers, reader, writer)
                    return
                body = b""
                if headers.get("content-length"):
                    body = await reader.readexactly(int(headers["content-length"]))
                keep = await self._exchange(listener, method, target, headers, body, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _tunnel(
        self,
        listener: str,
        target: str,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """``CONNECT host:port`` (what HTTPS_PROXY clients send): recorded, then bytes piped both ways."""
        seen = Seen(listener, "CONNECT", target, "", {}, dict(headers), True)
        with self._lock:
            self.seen.append(seen)
        host, _, port = target.rpartition(":")
        if host.strip("[]") not in ("127.0.0.1", "::1", "localhost"):
            seen.status = 403
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        seen.status = 200
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                if not dst.is_closing():
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _exchange(
        self,
        listener: str,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        hooks = self.hooks
        forwarded = "://" in target.split("?", 1)[0]
        origin = self.upstream
        raw_path = target
        if forwarded:
            parts = urlsplit(target)
            origin = f"{parts.scheme}://{parts.netloc}"
            raw_path = parts.path + (f"?{parts.query}" if parts.query else "")
        path, _, raw_query = raw_path.partition("?")
        seen = Seen(
            listener,
            method,
            target,
            unquote(path),
            dict(parse_qsl(raw_query, keep_blank_values=True)),
            dict(headers),
            forwarded,
        )
        if "authorization" in headers:
            seen.signature_ok = sigv4_ok(method, path, raw_query, headers)
        with self._lock:
            self.seen.append(seen)
        now = time.time() + hooks.skew
        date = email.utils.formatdate(now, usegmt=True)
        status, out, payload = await self._answer(seen, origin, raw_path, headers, body, now)
        seen.status = status
        for code in hooks.interim:
            extra = "Link: </style.css>; rel=preload\r\n" if code == 103 else ""
            writer.write(
                f"HTTP/1.1 {code} {'Continue' if code == 100 else 'Early Hints'}\r\n{extra}\r\n".encode()
            )
        out["Date"] = date
        if hooks.bad_last_modified and seen.op in ("GET", "HEAD") and "Last-Modified" in out:
            out["Last-Modified"] = "sometime last week"
        no_body = method == "HEAD" or status in (204, 304)
        keep = not hooks.close_delimited
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Whatever')}"]
        if no_body:
            pass  # HEAD keeps moto's Content-Length (added back in _answer); 304 has none
        elif hooks.close_delimited:
            out["Connection"] = "close"
            out.pop("Content-Length", None)
        elif hooks.chunked:
            out.pop("Content-Length", None)
            out["Transfer-Encoding"] = "chunked"
        else:
            out["Content-Length"] = str(len(payload))
        lines.extend(f"{k}: {v}" for k, v in out.items())
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not no_body:
            if hooks.chunked and not hooks.close_delimited:
                size = max(1, hooks.chunk_size)
                for i in range(0, len(payload), size):
                    piece = payload[i : i + size]
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                trailer = "".join(f"{k}: {v}\r\n" for k, v in hooks.trailers).encode()
                writer.write(b"0\r\n" + trailer + b"\r\n")
            else:
                writer.write(payload)
        await writer.drain()
        return keep

    async def _answer(
        self, seen: Seen, origin: str | None, raw_path: str, headers: dict[str, str], body: bytes, now: float
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one request: a refusal of ours, or moto's answer rewritten."""
        hooks = self.hooks
        if seen.signature_ok is False:
            return _error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        amz_date = headers.get("x-amz-date")
        if amz_date and abs(_amz_time(amz_date) - now) > MAX_SKEW:
            server_time = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return _error(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
                RequestTime=amz_date,
                ServerTime=server_time,
                MaxAllowedSkewMilliseconds="900000",
            )
        if seen.listener == "main" and seen.op in ("GET", "HEAD") and seen.key in hooks.redirect_keys:
            location = self.second_url + raw_path
            status, out, payload = _error(
                307,
                "TemporaryRedirect",
                "Please re-send this request to the "
                "specified temporary endpoint. Continue to use the original "
                "request endpoint for future requests.",
                Endpoint=urlsplit(self.second_url).netloc,
            )
            out.update({"Location": location, "x-amz-bucket-region": "us-east-1"})
            return status, out, b"" if seen.method == "HEAD" else payload
        if origin is None or urlsplit(origin).hostname not in ("127.0.0.1", "::1", "localhost"):
            return _error(502, "BadGateway", f"not forwarding to {origin!r}")
        assert self._session is not None
        fwd = {k: v for k, v in headers.items() if k not in _HOP}
        async with self._session.request(
            seen.method,
            URL(origin + raw_path, encoded=True),
            headers=fwd,
            data=body or None,
            allow_redirects=False,
        ) as up:
            payload = await up.read()
            out = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
            if seen.method == "HEAD" and up.content_length is not None:
                out["Content-Length"] = str(up.content_length)
            if seen.op == "LIST" and up.status == 200 and hooks.bad_last_modified:
                payload = re.sub(
                    rb"<LastModified>[^<]*</LastModified>", b"<LastModified>last week</LastModified>", payload
                )
            if seen.op == "LIST" and up.status == 200 and hooks.truncate_listing:
                payload = re.sub(rb"<NextContinuationToken>.*?</NextContinuationToken>", b"", payload)
                payload = re.sub(
                    rb"<IsTruncated>\w+</IsTruncated>", b"<IsTruncated>true</IsTruncated>", payload
                )
            return up.status, out, payload


def self_signed(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 / ::1 / localhost: (PEM path for AWS_CA_BUNDLE, server ctx)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3sync test CA")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
            x509.DNSName("localhost"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return cert_path, ctx


def sigv4_ok(method: str, path: str, raw_query: str, headers: dict[str, str]) -> bool:
    """Recompute the SigV4 signature of a request as received (the test secret is known)."""
    m = re.match(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?"
        r"SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)",
        headers.get("authorization", ""),
    )
    if m is None:
        return False
    _, day, region, service, signed, signature = m.groups()
    names = signed.split(";")
    if "host" not in names or any(n not in headers for n in names):
        return False
    pairs = sorted(tuple(p.partition("=")[::2]) for p in raw_query.split("&") if p)
    canonical = "\n".join(
        [
            method,
            path,
            "&".join(f"{k}={v}" for k, v in pairs),
            "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names),
            signed,
            headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            headers.get("x-amz-date", ""),
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + AWS_ENV["AWS_SECRET_ACCESS_KEY"]).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature)


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return method, target, headers


def _amz_time(value: str) -> float:
    try:
        return dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return 0.0


def _error(status: int, code: str, message: str, **extra: str) -> tuple[int, dict[str, str], bytes]:
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"{fields}<RequestId>transportproxy</RequestId><HostId>transportproxy</HostId></Error>"
    ).encode()
    return status, {"Content-Type": "application/xml", "x-amz-request-id": "transportproxy"}, body


__all__ = ["Hooks", "Seen", "TransportProxy", "self_signed", "sigv4_ok"]
