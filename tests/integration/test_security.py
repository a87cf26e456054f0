"""API security, attacked through real HTTP: the real app on loopback, and real ``serve`` processes.

Every attack in docs/security.md's table is a test here. In-process tests use
``create_app`` behind pytest-aiohttp's test server; what only the server layer
does (header limits, TLS, log files) is tested against ``python -m s3sync serve``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import http.client
import ipaddress
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.daemon import Daemon, free_port
from support.s3kit import clean_environ, seed
from support.wait import wait_for
from yarl import URL

TOKEN = "tok-3f9a7c1e5b2d4a60"
SECRET = "hmac-9d8c7b6a5f4e3d2c"
AWS_SECRET = "aws-secret-Zq8Xw2Vb6Nm4"
AWS_SESSION = "aws-session-Lk5Jh7Gf3Ds1"
NOTIFY = "/api/v1/s3-notification"
EQUALITY = (ast.Eq, ast.NotEq)
SRC = Path(__file__).resolve().parents[2] / "src" / "s3sync"

StartApi = Callable[..., Awaitable[Any]]


# --------------------------------------------------------------------------- helpers


def noop_event(bucket: str = "b") -> dict[str, Any]:
    """The s3:TestEvent: a valid notification that changes nothing."""
    return {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-01-15T10:30:00.000Z",
            "Bucket": bucket, "RequestId": "R", "HostId": "H"}


def created_event(bucket: str, key: str, size: int) -> dict[str, Any]:
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2024-01-15T10:30:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": {"key": key, "size": size}},
    }]}


def signed(body: bytes, *, ts: int | str | None = None, secret: str = SECRET) -> dict[str, str]:
    """Headers for the contract's HMAC: ``sha256=hex(HMAC(secret, ts + "." + body))``."""
    stamp = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-S3Sync-Timestamp": stamp,
            "X-S3Sync-Signature": f"sha256={mac}"}


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def error_of(resp: Any, *statuses: int) -> dict[str, Any]:
    """The JSON error body ``{"error", "message"}``, asserting one of ``statuses``."""
    text = await resp.text()
    assert resp.status in statuses, (resp.status, text)
    assert "Traceback" not in text
    data = json.loads(text)
    assert set(data) >= {"error", "message"}, data
    return dict(data)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate (and key) for 127.0.0.1 that only this test trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def raw_request(port: int, head: bytes, *, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """Send ``head`` (request line + headers, no final CRLF) byte for byte; return status and body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(url: str, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
          context: ssl.SSLContext | None = None) -> Reply:
    """One stdlib request to a ``serve`` subprocess; 4xx/5xx are replies, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return Reply(r.status, dict(r.headers.items()), r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, dict(e.headers.items()), e.read())


class Serve(Daemon):
    """A real ``python -m s3sync serve`` whose replies to :meth:`request` are kept (no secret in one)."""

    def __init__(self, env: dict[str, str], output: Path, context: ssl.SSLContext | None) -> None:
        super().__init__(env, output, context=context)
        self.replies: list[Reply] = []

    @property
    def base(self) -> str:
        return self.url

    @property
    def output(self) -> Path:
        """stdout and stderr."""
        return self.log_path

    def request(self, path: str, **kw: Any) -> Reply:
        reply = fetch(self.base + path, **kw)
        self.replies.append(reply)
        return reply


@pytest.fixture
def serve(moto_endpoint: str, tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    """``serve(bucket, mirror, env={...}, context=ssl_ctx)`` → a started daemon (killed at teardown)."""
    started: list[Serve] = []

    def _start(bucket: str, mirror: Path, *, env: dict[str, str] | None = None,
               context: ssl.SSLContext | None = None) -> Serve:
        port = free_port()
        full = clean_environ() | {
            "S3SYNC_S3__BUCKET": bucket, "S3SYNC_S3__ENDPOINT_URL": moto_endpoint,
            "S3SYNC_SYNC__LOCAL_DIR": str(mirror), "S3SYNC_SYNC__PERIODIC": "false",
            "S3SYNC_API__HOST": "127.0.0.1", "S3SYNC_API__PORT": str(port),
        } | (env or {})
        srv = Serve(full, tmp_path / f"serve-{port}.out", context)
        started.append(srv)
        srv.start()
        return srv

    yield _start
    for srv in started:
        srv.close()


@pytest.fixture
async def start_api(aiohttp_client: Any) -> StartApi:
    """``await start_api(settings)`` → a test client for the real app, services started."""
    from s3sync.daemon.app import create_app

    async def _start(settings: Any) -> Any:
        return await aiohttp_client(create_app(settings))

    return _start


@pytest.fixture
def api(start_api: StartApi, make_settings: Any, bucket: str, mirror: Path) -> StartApi:
    """``await api(token=..., notification_secret=..., <other api.* keys>)`` → a client."""

    async def _api(**api_keys: Any) -> Any:
        api_keys.setdefault("auth_failures_per_minute", 1000)
        return await start_api(make_settings(bucket, mirror, api=api_keys))

    return _api


# --------------------------------------------------------------------------- bearer token

# (method, path, status with the right token): every route of the contract table and then some.
ROUTES = [
    ("GET", "/", 200),
    ("GET", "/api/v1/config", 200),
    ("GET", "/api/v1/stats", 200),
    ("GET", "/metrics", 200),
    ("POST", "/api/v1/sync", 200),
    ("GET", "/api/v1/sync/no-such-job", 404),
    ("POST", NOTIFY, 202),
    ("GET", "/api/v1/files?source=local", 200),
    ("GET", "/api/v1/download/present.txt", 200),
    ("HEAD", "/api/v1/download/present.txt", 200),
    ("GET", "/docs/static/no-such-asset.js", 404),
    ("GET", "/api/v1/openapi.json", 200),
    ("GET", "/no/such/route", 404),
]

BAD_AUTHORIZATION = {
    "absent": None,
    "wrong token": "Bearer wrong-token-000000",
    "other scheme": f"Basic {TOKEN}",
    "no scheme": TOKEN,
    "empty": "Bearer",
    "empty after space": "Bearer ",
    "prefix of token": f"Bearer {TOKEN[:-1]}",
    "token plus a char": f"Bearer {TOKEN}0",
    "whitespace inside": f"Bearer {TOKEN[:6]} {TOKEN[6:]}",
    "token twice": f"Bearer {TOKEN} {TOKEN}",
    "tab separator": f"Bearer\t{TOKEN}",
    "case changed": f"Bearer {TOKEN.upper()}",
    "notification secret": f"Bearer {SECRET}",
}


class TestBearerToken:
    """With api.token set, everything but /ping and /api/v1/health needs exactly ``Bearer <token>``."""

    async def test_every_route_refuses_bad_credentials(self, api: StartApi, mirror: Path) -> None:
        """Each malformed or wrong Authorization is a JSON 401 with WWW-Authenticate; the token works."""
        (mirror / "present.txt").write_bytes(b"present")
        client = await api(token=TOKEN)
        for method, path, ok_status in ROUTES:
            body = json.dumps(noop_event()).encode() if method == "POST" else None
            for name, value in BAD_AUTHORIZATION.items():
                headers = {} if value is None else {"Authorization": value}
                resp = await client.request(method, path, data=body, headers=headers)
                assert resp.status == 401, (method, path, name, resp.status)
                assert resp.headers["WWW-Authenticate"].startswith("Bearer"), (path, name)
                if method != "HEAD":
                    err = await error_of(resp, 401)
                    assert err["error"] == "unauthorized"
                    assert TOKEN not in json.dumps(err)
            resp = await client.request(method, path, data=body, headers=bearer())
            assert resp.status == ok_status, (method, path, resp.status, await resp.text())

    async def test_rfc_spellings_and_open_endpoints(self, api: StartApi) -> None:
        """The scheme is case-insensitive and may be followed by several spaces (RFC 7235);
        /ping, /api/v1/health and the /docs page need no credential at all."""
        client = await api(token=TOKEN)
        for value in (f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer   {TOKEN}"):
            assert (await client.get("/api/v1/stats", headers={"Authorization": value})).status == 200, value
        assert (await client.get("/ping")).status == 200
        assert (await client.get("/api/v1/health")).status == 200
        # the /docs page and its two assets open in a browser (the calls it makes need the token)
        for path in ("/docs", "/docs/", "/docs/static/swagger-ui.css", "/docs/static/swagger-ui-bundle.js"):
            assert (await client.get(path)).status == 200, path

    async def test_invalid_utf8_is_401_not_500(self, api: StartApi) -> None:
        """Header bytes that are not UTF-8 are a plain 401 (they used to crash the comparison: 500)."""
        client = await api(token=TOKEN)
        for raw in (b"Bearer \xff\xfe\xfd", b"Bearer " + TOKEN.encode() + b"\xc3", b"\xff " + TOKEN.encode()):
            status, body = await raw_request(
                client.port, b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: " + raw)
            assert status == 401, (raw, body)
            assert json.loads(body)["error"] == "unauthorized"


# --------------------------------------------------------------------------- HMAC


class TestHmacSignature:
    """The notification endpoint's HMAC: fresh, over this exact body, with this secret, or 401."""

    @pytest.fixture
    async def client(self, api: StartApi) -> Any:
        return await api(token=TOKEN, notification_secret=SECRET)

    async def test_valid_signature_delivers(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        """A correct signature is accepted (202) and the object appears in the mirror."""
        seed(s3, bucket, {"signed/a.txt": b"signed!"})
        body = json.dumps(created_event(bucket, "signed/a.txt", 7)).encode()
        resp = await client.post(NOTIFY, data=body, headers=signed(body))
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["accepted"] == 1
        await wait_for(lambda: (mirror / "signed" / "a.txt").is_file(), what="signed event applied")
        assert (mirror / "signed" / "a.txt").read_bytes() == b"signed!"

    async def test_replay_window(self, client: Any) -> None:
        """Timestamps within 300 s of now pass; stale or future ones are refused as replays."""
        body = json.dumps(noop_event()).encode()
        for offset, status in ((-299, 202), (299, 202), (-301, 401), (301, 401), (-86400, 401), (10**9, 401)):
            resp = await client.post(NOTIFY, data=body, headers=signed(body, ts=int(time.time()) + offset))
            if status == 401:
                assert "300 s window" in (await error_of(resp, 401))["message"], offset
            else:
                assert resp.status == 202, (offset, await resp.text())

    async def test_captured_signature_with_another_body(self, client: Any, bucket: str) -> None:
        """A captured (timestamp, signature) pair cannot carry a different body."""
        original = json.dumps(noop_event()).encode()
        headers = signed(original)
        forged = json.dumps(created_event(bucket, "evil.txt", 1)).encode()
        err = await error_of(await client.post(NOTIFY, data=forged, headers=headers), 401)
        assert err["message"] == "signature does not match"
        # the untouched original inside the window is accepted again: events are idempotent
        assert (await client.post(NOTIFY, data=original, headers=headers)).status == 202

    async def test_signature_over_another_body(self, client: Any, bucket: str) -> None:
        """A signature computed over different bytes (even whitespace) is refused."""
        body = json.dumps(noop_event()).encode()
        other = json.dumps(noop_event(), indent=1).encode()
        await error_of(await client.post(NOTIFY, data=body, headers=signed(other)), 401)

    async def test_wrong_secret(self, client: Any) -> None:
        """The right shape with another secret is refused."""
        body = json.dumps(noop_event()).encode()
        headers = signed(body, secret="not-" + SECRET)
        await error_of(await client.post(NOTIFY, data=body, headers=headers), 401)

    async def test_timestamp_not_an_integer(self, client: Any) -> None:
        """A timestamp that is not plain ASCII digits is refused, even when the signature matches it."""
        body = json.dumps(noop_event()).encode()
        now = int(time.time())
        odd = ("abc", "1.7e9", "-1", f"+{now}", f"{now}.0", "0x65f0a1b2", f"{now:_}", "9" * 40, f"{now}{now}")
        for ts in odd:
            headers = signed(body, ts=ts)  # signed over the odd timestamp: only the timestamp rule can fail
            err = await error_of(await client.post(NOTIFY, data=body, headers=headers), 401)
            assert "X-S3Sync-Timestamp" in err["message"], (ts, err)

    async def test_missing_header(self, client: Any) -> None:
        """Either header alone is not enough."""
        body = json.dumps(noop_event()).encode()
        for drop in ("X-S3Sync-Timestamp", "X-S3Sync-Signature"):
            headers = signed(body)
            del headers[drop]
            await error_of(await client.post(NOTIFY, data=body, headers=headers), 401)

    async def test_signature_spelling(self, client: Any) -> None:
        """Only ``sha256=<lowercase hex>`` of the full digest is a signature."""
        body = json.dumps(noop_event()).encode()
        headers = signed(body)
        hexmac = headers["X-S3Sync-Signature"].removeprefix("sha256=")
        for bad in (f"sha256={hexmac.upper()}", hexmac, f"sha1={hexmac}", f"sha256={hexmac[:32]}",
                    f"sha256={hexmac}00", "sha256=", f"sha256= {hexmac}"):
            resp = await client.post(NOTIFY, data=body, headers=headers | {"X-S3Sync-Signature": bad})
            await error_of(resp, 401)
        assert (await client.post(NOTIFY, data=body, headers=headers)).status == 202

    def test_secrets_compared_in_constant_time(self) -> None:
        """No ``==``/``!=`` touches a token, secret or signature where requests are admitted.

        Only ``hmac.compare_digest``. Every module of ``api/`` (auth, middleware, handlers, ...)
        and ``sources/`` (notification intake) is read, so a comparison that moves is still seen.
        """
        suspicious = ("token", "secret", "signature", "expected", "mac", "digest", "credential")
        paths = sorted([*(SRC / "api").rglob("*.py"), *(SRC / "sources").rglob("*.py")])
        assert any(p.name == "middleware.py" for p in paths) and any(p.name == "auth.py" for p in paths)
        for path in paths:
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Compare) and any(isinstance(o, EQUALITY) for o in node.ops):
                    text = ast.unparse(node).lower()
                    assert not any(word in text for word in suspicious), f"{path.name}: {text}"
        assert (SRC / "api" / "auth.py").read_text().count("hmac.compare_digest(") >= 2


class TestCredentialMatrix:
    """Which credential opens what, for each combination of api.token and api.notification_secret."""

    async def test_token_and_secret(self, api: StartApi) -> None:
        """Both set: either credential opens the notification endpoint; only the token opens the rest."""
        client = await api(token=TOKEN, notification_secret=SECRET)
        body = json.dumps(noop_event()).encode()
        assert (await client.post(NOTIFY, data=body, headers=bearer())).status == 202
        assert (await client.post(NOTIFY, data=body, headers=signed(body))).status == 202
        assert (await client.post(NOTIFY, data=body, headers=signed(body) | bearer("wrong"))).status == 202
        await error_of(await client.post(NOTIFY, data=body), 401)
        for method, path in (("POST", "/api/v1/sync"), ("GET", "/api/v1/config"), ("GET", "/api/v1/stats")):
            await error_of(await client.request(method, path, data=body, headers=signed(body)), 401)

    async def test_secret_only(self, api: StartApi) -> None:
        """Only the secret: the notification endpoint needs a signature; the rest is open (loopback only)."""
        client = await api(notification_secret=SECRET)
        body = json.dumps(noop_event()).encode()
        err = await error_of(await client.post(NOTIFY, data=body), 401)
        assert "X-S3Sync-Signature" in err["message"]
        await error_of(await client.post(NOTIFY, data=body, headers=bearer(SECRET)), 401)
        assert (await client.post(NOTIFY, data=body, headers=signed(body))).status == 202
        for path in ("/api/v1/stats", "/api/v1/config", "/metrics", "/api/v1/files"):
            assert (await client.get(path)).status == 200, path

    async def test_token_only_ignores_signatures(self, api: StartApi) -> None:
        """Only the token: a signature (over any secret) is not a credential."""
        client = await api(token=TOKEN)
        body = json.dumps(noop_event()).encode()
        await error_of(await client.post(NOTIFY, data=body, headers=signed(body)), 401)
        await error_of(await client.post(NOTIFY, data=body, headers=signed(body, secret=TOKEN)), 401)

    async def test_neither(self, api: StartApi) -> None:
        """Nothing set (loopback only): every endpoint is open."""
        client = await api()
        body = json.dumps(noop_event()).encode()
        assert (await client.post(NOTIFY, data=body)).status == 202
        assert (await client.get("/api/v1/config")).status == 200


# --------------------------------------------------------------------------- body limit


class TestBodyLimit:
    """api.max_body_bytes bounds what the notification endpoint reads, however the body is framed."""

    LIMIT = 2048

    def padded(self, size: int) -> bytes:
        """A valid s3:TestEvent padded with spaces to exactly ``size`` bytes."""
        body = json.dumps(noop_event()).encode()
        return body[:-1] + b" " * (size - len(body)) + b"}"

    async def test_content_length_over_limit(self, api: StartApi) -> None:
        """A declared body over the limit is a 413 JSON error naming the limit."""
        client = await api(max_body_bytes=self.LIMIT)
        err = await error_of(await client.post(NOTIFY, data=self.padded(self.LIMIT + 1)), 413)
        assert err["error"] == "payload_too_large" and str(self.LIMIT) in err["message"]
        assert (await client.post(NOTIFY, data=self.padded(self.LIMIT))).status == 202

    async def test_chunked_without_content_length(self, api: StartApi) -> None:
        """A chunked body is cut off at the limit too (nothing trusts Content-Length)."""
        client = await api(max_body_bytes=self.LIMIT)
        payload = self.padded(64 * 1024)

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(payload), 1024):
                yield payload[i:i + 1024]

        resp = await client.post(NOTIFY, data=chunks(), headers={"Content-Type": "application/json"})
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in resp.request_info.headers
        await error_of(resp, 413)

    async def test_signed_oversized_body(self, api: StartApi) -> None:
        """Reading the body to check a signature obeys the same limit (413 before any HMAC work)."""
        client = await api(max_body_bytes=self.LIMIT, notification_secret=SECRET)
        body = self.padded(10 * self.LIMIT)
        await error_of(await client.post(NOTIFY, data=body, headers=signed(body)), 413)

    async def test_default_limit_is_one_mebibyte(self, api: StartApi) -> None:
        """Without configuration the limit is 1 MiB."""
        client = await api()
        await error_of(await client.post(NOTIFY, data=self.padded(1024 * 1024 + 1)), 413)
        assert (await client.post(NOTIFY, data=self.padded(1024 * 1024))).status == 202

    async def test_unauthenticated_body_is_never_read(self, api: StartApi) -> None:
        """With a token set and no credential, the answer is 401 whatever the size: nothing is buffered."""
        client = await api(max_body_bytes=self.LIMIT, token=TOKEN)
        await error_of(await client.post(NOTIFY, data=self.padded(10 * self.LIMIT)), 401)


# --------------------------------------------------------------------------- brute force


class TestBruteForce:
    """Failed authentications are rate-limited per client address."""

    async def test_blocked_after_limit_even_with_the_right_token(self, api: StartApi) -> None:
        """Past auth_failures_per_minute: 429 + Retry-After, and the right token does not lift it."""
        client = await api(token=TOKEN, auth_failures_per_minute=3)
        for _ in range(3):
            await error_of(await client.get("/api/v1/stats", headers=bearer("guess")), 401)
        resp = await client.get("/api/v1/stats", headers=bearer("guess"))
        err = await error_of(resp, 429)
        assert err["error"] == "too_many_attempts"
        retry = int(resp.headers["Retry-After"])
        assert 1 <= retry <= 60
        resp = await client.get("/api/v1/stats", headers=bearer())
        await error_of(resp, 429)
        assert int(resp.headers["Retry-After"]) <= retry  # being blocked does not extend the block
        assert (await client.get("/ping")).status == 200
        assert (await client.get("/api/v1/health")).status == 200

    async def test_other_clients_unaffected(self, api: StartApi) -> None:
        """The block is per address: a client from 127.0.0.2 still gets in."""
        client = await api(token=TOKEN, auth_failures_per_minute=2)
        for _ in range(3):
            await client.get("/api/v1/stats", headers=bearer("guess"))
        await error_of(await client.get("/api/v1/stats", headers=bearer()), 429)
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as other:
            async with other.get(client.make_url("/api/v1/stats"), headers=bearer()) as resp:
                assert resp.status == 200
            async with other.get(client.make_url("/api/v1/stats"), headers=bearer("guess")) as resp:
                assert resp.status == 401

    async def test_success_forgives_earlier_failures(self, api: StartApi) -> None:
        """A typo followed by the right token does not count towards a block."""
        client = await api(token=TOKEN, auth_failures_per_minute=3)
        for _ in range(3):
            await error_of(await client.get("/api/v1/stats", headers=bearer("typo")), 401)
            await error_of(await client.get("/api/v1/stats", headers=bearer("typo")), 401)
            assert (await client.get("/api/v1/stats", headers=bearer())).status == 200

    async def test_signature_failures_count(self, api: StartApi) -> None:
        """Bad signatures count as failures too, and open endpoints do not reset the count."""
        client = await api(notification_secret=SECRET, auth_failures_per_minute=3)
        body = json.dumps(noop_event()).encode()
        for _ in range(3):
            await error_of(await client.post(NOTIFY, data=body, headers=signed(body, secret="x")), 401)
            assert (await client.get("/api/v1/stats")).status == 200  # open: no credential verified
        resp = await client.post(NOTIFY, data=body, headers=signed(body))
        await error_of(resp, 429)
        stats = await (await client.get("/api/v1/stats")).json()
        assert stats.get("auth_failures", 3) == 3

    def test_window_slides(self) -> None:
        """The block lifts when the oldest failure leaves the window; Retry-After counts down to it."""
        from s3sync.api.auth import FailureLimiter

        now = [1000.0]
        limiter = FailureLimiter(3, window=60, clock=lambda: now[0])
        for step in range(3):
            limiter.failure("c")
            now[0] += 10 * (step < 2)
        assert limiter.blocked_for("c") == 40  # first failure at 1000, now 1020
        now[0] = 1059.5
        assert limiter.blocked_for("c") == 1
        now[0] = 1060.0
        assert limiter.blocked_for("c") == 0  # one failure left the window: 2 < 3
        limiter.failure("c")
        assert limiter.blocked_for("c") == 10  # the failure at 1010 is now the oldest
        assert limiter.blocked_for("someone-else") == 0

    def test_memory_is_bounded(self) -> None:
        """Spraying from many addresses cannot grow the table without bound."""
        from s3sync.api.auth import FailureLimiter

        limiter = FailureLimiter(5, max_clients=1000)
        for i in range(10_000):
            limiter.failure(f"10.0.{i // 256}.{i % 256}")
        assert limiter.tracked() <= 1000


# --------------------------------------------------------------------------- download traversal


class TestDownloadTraversal:
    """Paths that try to leave the mirror (beyond those in test_api.py) never serve outside bytes."""

    @pytest.fixture
    async def client(self, api: StartApi, mirror: Path) -> Any:
        (mirror / "dir").mkdir()
        (mirror / "dir" / "file.bin").write_bytes(b"inside")
        (mirror.parent / "secret.txt").write_bytes(b"TOP-SECRET")
        (mirror / "link-file").symlink_to(mirror.parent / "secret.txt")
        (mirror / "link-dir").symlink_to(mirror.parent, target_is_directory=True)
        (mirror / "link-passwd").symlink_to("/etc/passwd")
        (mirror / "dir" / "relative-link").symlink_to("../../secret.txt")
        return await api()

    @staticmethod
    def leaked(body: bytes) -> bool:
        return b"TOP-SECRET" in body or b"root:" in body

    PATHS = (
        "..%5Csecret.txt",
        "..%5C..%5C..%5C..%5Cetc%5Cpasswd",
        "dir%5C..%5C..%5Csecret.txt",
        "%5Cetc%5Cpasswd",
        "%252e%252e%252fsecret.txt",
        "%c0%ae%c0%ae/secret.txt",
        "%c0%ae%c0%ae%c0%afsecret.txt",
        "%2F%2Fetc%2Fpasswd",
        "%2F%2F%2Fetc/passwd",
        "dir/%2e%2e/%2e%2e/secret.txt",
        "dir/%2e/../../secret.txt",
        "dir%00/../../secret.txt",
        "%00",
        "dir/file.bin%00.txt",
        "link-file",
        "link-dir/secret.txt",
        "link-passwd",
        "dir/relative-link",
    )
    RAW_TARGETS = (
        "/api/v1/download/..\\secret.txt",
        "/api/v1/download/dir\\..\\..\\secret.txt",
        "/api/v1/download/link-dir/secret.txt",
        "/api/v1/download/./../secret.txt",
    )

    async def test_refused(self, client: Any) -> None:
        """Backslashes, double/overlong encodings, NULs and symlinks out of the mirror: 400/404 JSON."""
        for path in self.PATHS:
            resp = await client.get(URL("/api/v1/download/" + path, encoded=True))
            body = await resp.read()
            assert not self.leaked(body), (path, body[:100])
            await error_of(resp, 400, 404)

    async def test_refused_raw(self, client: Any) -> None:
        """Request targets sent byte for byte (backslashes, dot segments) are refused as well."""
        for target in self.RAW_TARGETS:
            status, body = await raw_request(client.port, f"GET {target} HTTP/1.1\r\nHost: x".encode())
            assert not self.leaked(body), (target, body[:100])
            assert status in (400, 404), (target, status, body[:200])

    async def test_inside_still_served(self, client: Any) -> None:
        """The guard is not a blanket refusal: a real file inside is served."""
        resp = await client.get("/api/v1/download/dir/file.bin")
        assert resp.status == 200 and await resp.read() == b"inside"

    async def test_traversal_needs_the_token_first(self, api: StartApi, mirror: Path) -> None:
        """With a token set, a traversal attempt without it learns nothing (401, not 400/404)."""
        client = await api(token=TOKEN)
        target = URL("/api/v1/download/..%2F..%2Fetc%2Fpasswd", encoded=True)
        await error_of(await client.get(target), 401)
        resp = await client.get(target, headers=bearer())
        await error_of(resp, 400, 404)


# --------------------------------------------------------------------------- real serve processes


class TestServeProcess:
    """What only the server layer controls, checked on ``python -m s3sync serve``."""

    async def test_header_limits(self, serve: Callable[..., Serve], bucket: str, mirror: Path) -> None:
        """Oversized headers, request lines and header counts get 400/431; the daemon keeps serving."""
        srv = serve(bucket, mirror)
        port = int(srv.base.rsplit(":", 1)[1])
        big = b"a" * 100_000
        attacks = {
            "100 KB header": b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + big,
            "100 KB Authorization": b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + big,
            "100 KB request line": b"GET /ping?" + big + b" HTTP/1.1\r\nHost: x",
            "500 headers": b"GET /ping HTTP/1.1\r\nHost: x" + b"".join(
                b"\r\nX-H%d: v" % i for i in range(500)),
        }
        for name, head in attacks.items():
            status, _ = await raw_request(port, head)
            assert status in (400, 413, 414, 431), (name, status)
            assert fetch(srv.base + "/ping").status == 200, name
        # just under the default limit (8190 bytes per field) is still fine
        status, _ = await raw_request(port, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000)
        assert status == 200
        assert srv.stop() == 0

    async def test_secrets_never_in_logs_or_responses(
        self, serve: Callable[..., Serve], s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        """Token, notification secret and AWS keys appear in no log line and no response body."""
        log_file = tmp_path / "logs" / "s3sync.log"
        srv = serve(bucket, mirror, env={
            "S3SYNC_API__TOKEN": TOKEN, "S3SYNC_API__NOTIFICATION_SECRET": SECRET,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_SESSION_TOKEN": AWS_SESSION,
            "S3SYNC_LOG__FILE": str(log_file), "S3SYNC_LOG__LEVEL": "DEBUG", "S3SYNC_LOG__FORMAT": "json",
            "S3SYNC_API__AUTH_FAILURES_PER_MINUTE": "1000",
        })
        secrets = (TOKEN, SECRET, AWS_SECRET, AWS_SESSION)
        seed(s3, bucket, {"a.txt": b"alpha", "b/c.txt": b"gamma"})
        auth = bearer()
        # failed authentications carrying the secrets (and near-misses) in every header we read or log
        for value in (f"Bearer {TOKEN}x", f"Bearer {SECRET}", f"Basic {TOKEN}", f"Bearer {AWS_SECRET}",
                      f"Bearer {TOKEN[:-2]}", TOKEN):
            headers = {"Authorization": value, "X-Request-Id": TOKEN}
            assert srv.request("/api/v1/stats", headers=headers).status == 401
        assert srv.request(f"/api/v1/download/{TOKEN}?token={SECRET}").status == 401
        body = json.dumps(noop_event(bucket)).encode()
        for headers in (signed(body, secret=TOKEN),
                        {"X-S3Sync-Timestamp": SECRET, "X-S3Sync-Signature": SECRET},
                        signed(body, ts=int(time.time()) - 1000)):
            assert srv.request(NOTIFY, method="POST", body=body, headers=headers).status == 401
        # authorized traffic: config, a sync, a signed notification, requests ids holding secrets
        cfg = srv.request("/api/v1/config", headers=auth | {"X-Request-Id": SECRET})
        assert cfg.status == 200
        assert json.loads(cfg.body)["api"]["token"] != TOKEN
        assert srv.request("/api/v1/sync", method="POST", headers=auth).status == 200
        seed(s3, bucket, {"d.txt": b"delta"})
        event = json.dumps(created_event(bucket, "d.txt", 5)).encode()
        assert srv.request(NOTIFY, method="POST", body=event, headers=signed(event)).status == 202
        await wait_for(lambda: (mirror / "d.txt").is_file(), what="notified object mirrored")
        assert srv.request(f"/api/v1/download/{AWS_SESSION}", headers=auth).status == 404
        for path in ("/api/v1/stats", "/metrics", "/api/v1/openapi.json", "/", "/api/v1/health"):
            assert srv.request(path, headers=auth).status in (200, 503)
        # a malformed request makes aiohttp log a traceback that quotes the offending bytes
        port = int(srv.base.rsplit(":", 1)[1])
        status, _ = await raw_request(port, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + TOKEN.encode()
                                      + b"a" * 20_000)
        assert status == 400
        assert srv.stop() == 0

        logged = log_file.read_text()
        assert "authentication failed" in logged and "**redacted**" in logged
        for line in logged.splitlines():
            json.loads(line)  # still one JSON object per line after redaction
        captured = srv.output.read_text()
        for secret in secrets:
            assert secret not in logged, f"{secret} in the log file"
            assert secret not in captured, f"{secret} on stdout/stderr"
            for reply in srv.replies:
                assert secret.encode() not in reply.body, (secret, reply.status, reply.body[:200])

    async def test_tls(self, serve: Callable[..., Serve], bucket: str, mirror: Path, tmp_path: Path) -> None:
        """With api.tls_cert/tls_key: https with the right CA works, plain http and untrusted clients fail."""
        cert, key = self_signed(tmp_path)
        trusted = ssl.create_default_context(cafile=str(cert))
        srv = serve(bucket, mirror, context=trusted, env={
            "S3SYNC_API__TLS_CERT": str(cert), "S3SYNC_API__TLS_KEY": str(key), "S3SYNC_API__TOKEN": TOKEN,
        })
        assert srv.base.startswith("https://")
        assert srv.request("/ping", context=trusted).status == 200
        assert srv.request("/api/v1/stats", context=trusted, headers=bearer()).status == 200
        assert srv.request("/api/v1/stats", context=trusted).status == 401
        with pytest.raises(urllib.error.URLError) as untrusted:
            fetch(srv.base + "/ping")  # the system trust store does not know this certificate
        assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)
        plain = "http://" + srv.base.removeprefix("https://")
        with pytest.raises((OSError, http.client.HTTPException)):
            fetch(plain + "/ping")
        assert srv.stop() == 0
        assert "https://127.0.0.1:" in srv.output.read_text()

    def test_tls_unloadable_is_exit_2(self, cli: Any, bucket: str, mirror: Path, tmp_path: Path) -> None:
        """A missing certificate or a key that does not match it: exit 2 naming the keys, no traceback."""
        cert, _ = self_signed(tmp_path)
        other = tmp_path / "other"
        other.mkdir()
        _, other_key = self_signed(other)
        base = {"S3SYNC_S3__BUCKET": bucket, "S3SYNC_S3__ENDPOINT_URL": cli.endpoint,
                "S3SYNC_SYNC__LOCAL_DIR": str(mirror), "S3SYNC_API__PORT": str(free_port())}
        for cert_path, key_path in ((tmp_path / "missing.pem", other_key), (cert, other_key)):
            res = cli("serve", env=base | {"S3SYNC_API__TLS_CERT": str(cert_path),
                                          "S3SYNC_API__TLS_KEY": str(key_path)}, timeout=30)
            assert res.returncode == 2, res
            assert "api.tls_cert" in res.output and "Traceback" not in res.output, res
