"""The Lambda forwarder, invoked in-process against a real HTTP server on 127.0.0.1.

The handler is synchronous (urllib), so each test runs it in a worker thread while
the aiohttp server runs on the test's event loop. The ``daemon`` fixture is the one
place that decides what answers on the other end; it can be swapped for the real
daemon app without touching the tests that only look at outcomes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lambda_forwarder import handler
from tests.lambda_support import NOTIFICATION_PATH, NotificationReceiver

SECRET = "s3cr3t-shared-with-the-daemon"
TOKEN = "bearer-token-for-the-daemon"


# --------------------------------------------------------------------------- fixtures


@dataclass
class Daemon:
    url: str
    receiver: NotificationReceiver


@pytest.fixture
async def start_daemon(
    aiohttp_server: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Daemon]]:
    async def start(
        *,
        secret: str | None = SECRET,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Daemon:
        receiver = NotificationReceiver(secret=secret, token=token)
        server = await aiohttp_server(receiver.app(), host="127.0.0.1", ssl=ssl_context)
        return Daemon(str(server.make_url("")).rstrip("/"), receiver)

    return start


@pytest.fixture
async def daemon(start_daemon: Callable[..., Awaitable[Daemon]]) -> Daemon:
    return await start_daemon()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny backoff so that retry tests take milliseconds, and a clean environment."""
    for name in (
        "API_ENDPOINT",
        "NOTIFICATION_SECRET",
        "API_TOKEN",
        "TIMEOUT_SECONDS",
        "RETRY_ATTEMPTS",
        "RETRY_MAX_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RETRY_BASE_SECONDS", "0.01")
    monkeypatch.setenv("TIMEOUT_SECONDS", "2")


def configure(monkeypatch: pytest.MonkeyPatch, url: str, **env: str) -> None:
    monkeypatch.setenv("API_ENDPOINT", url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def invoke(event: Any, context: Any = None) -> Any:
    return await asyncio.to_thread(handler.lambda_handler, event, context)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no trust store knows."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- events


def s3_record(key: str, event_name: str = "ObjectCreated:Put", size: int = 5) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "s3sync",
            "bucket": {"name": "demo-bucket", "arn": "arn:aws:s3:::demo-bucket"},
            "object": {
                "key": key,
                "size": size,
                "eTag": "0123456789abcdef",
                "sequencer": "0055AED6DCD90281E5",
            },
        },
    }


def s3_event(*keys: str) -> dict[str, Any]:
    return {"Records": [s3_record(k) for k in keys]}


TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2024-05-01T12:00:00.000Z",
    "Bucket": "demo-bucket",
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def sns_envelope(message: Any) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:s3-events",
        "Subject": "Amazon S3 Notification",
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2024-05-01T12:00:00.000Z",
    }


def sns_event(message: Any) -> dict[str, Any]:
    envelope = sns_envelope(message)
    sns = {k: v for k, v in envelope.items() if k != "TopicArn"} | {
        "TopicArn": envelope["TopicArn"],
        "Signature": "EXAMPLE",
        "SignatureVersion": "1",
    }
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": envelope["TopicArn"] + ":sub",
                "Sns": sns,
            }
        ]
    }


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": "AQEB" + message_id,
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:s3sync-events",
        "awsRegion": "us-east-1",
    }


def expected_signature(timestamp: str, body: bytes, secret: str = SECRET) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# --------------------------------------------------------------------------- tests


class TestSignedDelivery:
    """A direct S3 event reaches the daemon once, signed as the contract says."""

    async def test_delivered_and_signed(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        event = s3_event("photos/a b.jpg", "docs/ünïcode.txt")

        result = await invoke(event)

        assert result["delivered"] == 1 and result["keys"] == 2
        assert result["responses"] == [{"accepted": 2, "ignored": 0}]
        [request] = daemon.receiver.requests
        timestamp = request.headers["X-S3Sync-Timestamp"]
        assert timestamp.isdigit() and abs(int(timestamp) - time.time()) < 5
        assert request.headers["X-S3Sync-Signature"] == expected_signature(timestamp, request.body)
        assert request.headers["Content-Type"] == "application/json"
        assert "Authorization" not in request.headers
        assert json.loads(request.body) == {"Records": event["Records"]}
        assert daemon.receiver.accepted == [{"Records": event["Records"]}]

    async def test_full_notification_url_accepted_as_endpoint(
        self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        configure(monkeypatch, daemon.url + NOTIFICATION_PATH + "/", NOTIFICATION_SECRET=SECRET)
        await invoke(s3_event("k"))
        assert len(daemon.receiver.accepted) == 1

    async def test_secret_and_token_never_logged(
        self,
        start_daemon: Callable[..., Awaitable[Daemon]],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        daemon = await start_daemon(secret="other-secret")
        daemon.receiver.reply_next(503)
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET, API_TOKEN=TOKEN)
        with pytest.raises(handler.RejectedError):
            await invoke(s3_event("k"))
        out = capsys.readouterr().out
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        events = [line["event"] for line in lines]
        assert events == ["forward.retry", "forward.rejected"]
        assert lines[0]["status"] == 503 and lines[0]["attempt"] == 1 and lines[0]["keys"] == 1
        assert "duration_ms" in lines[0]
        assert SECRET not in out and TOKEN not in out


class TestBearerToken:
    """Without a secret, the bearer token authenticates the request."""

    async def test_bearer_mode(
        self, start_daemon: Callable[..., Awaitable[Daemon]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        daemon = await start_daemon(secret=None, token=TOKEN)
        configure(monkeypatch, daemon.url, API_TOKEN=TOKEN)

        await invoke(s3_event("k"))

        [request] = daemon.receiver.requests
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert "X-S3Sync-Signature" not in request.headers
        assert len(daemon.receiver.accepted) == 1


class TestRetries:
    """Transient failures are retried with backoff; permanent ones are not."""

    async def test_daemon_down_retries_then_raises(self, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, closed_port_url(), NOTIFICATION_SECRET=SECRET, RETRY_ATTEMPTS="2")
        sleeps: list[float] = []

        with pytest.raises(handler.DeliveryError) as info:
            await asyncio.to_thread(handler.forward, s3_event("k"), sleep=sleeps.append)

        assert info.value.attempts == 3 and info.value.status is None
        assert "retries exhausted" in str(info.value)
        assert len(sleeps) == 2
        # full jitter: each wait is within [0, base * 2**n)
        assert 0 <= sleeps[0] <= 0.01 and 0 <= sleeps[1] <= 0.02

    async def test_daemon_down_real_sleep(self, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, closed_port_url(), NOTIFICATION_SECRET=SECRET)
        started = time.monotonic()
        with pytest.raises(handler.DeliveryError) as info:
            await invoke(s3_event("k"))
        assert info.value.attempts == 4  # 1 + RETRY_ATTEMPTS default 3
        assert time.monotonic() - started < 2

    async def test_5xx_then_success(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        daemon.receiver.reply_next(500)
        daemon.receiver.reply_next(502)

        result = await invoke(s3_event("k"))

        assert result["delivered"] == 1
        assert len(daemon.receiver.requests) == 3
        assert len(daemon.receiver.accepted) == 1
        # every attempt is signed on its own
        for request in daemon.receiver.requests:
            ts = request.headers["X-S3Sync-Timestamp"]
            assert request.headers["X-S3Sync-Signature"] == expected_signature(ts, request.body)

    async def test_429_retry_after_honoured(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        daemon.receiver.reply_next(429, headers={"Retry-After": "1"})

        await invoke(s3_event("k"))

        first, second = daemon.receiver.requests
        assert second.at - first.at >= 0.95
        assert len(daemon.receiver.accepted) == 1

    async def test_retry_after_is_capped(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET, RETRY_MAX_SECONDS="7")
        daemon.receiver.reply_next(503, headers={"Retry-After": "3600"})
        sleeps: list[float] = []

        await asyncio.to_thread(handler.forward, s3_event("k"), sleep=sleeps.append)

        assert sleeps == [7.0]

    async def test_bad_secret_401_not_retried(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET="not-the-secret")

        with pytest.raises(handler.RejectedError) as info:
            await invoke(s3_event("k"))

        assert len(daemon.receiver.requests) == 1
        assert info.value.status == 401 and info.value.attempts == 1
        assert info.value.daemon_message == "signature mismatch"
        assert "HTTP 401" in str(info.value) and "signature mismatch" in str(info.value)
        assert "NOTIFICATION_SECRET" in str(info.value)

    async def test_other_4xx_not_retried(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        daemon.receiver.reply_next(404)
        with pytest.raises(handler.RejectedError) as info:
            await invoke(s3_event("k"))
        assert info.value.status == 404
        assert len(daemon.receiver.requests) == 1

    async def test_redirect_is_not_followed(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        daemon.receiver.reply_next(302, headers={"Location": daemon.url + NOTIFICATION_PATH})
        with pytest.raises(handler.RejectedError) as info:
            await invoke(s3_event("k"))
        assert info.value.status == 302
        assert len(daemon.receiver.requests) == 1

    async def test_retry_after_http_date(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET, RETRY_MAX_SECONDS="60")
        when = email.utils.formatdate(time.time() + 30, usegmt=True)
        daemon.receiver.reply_next(503, headers={"Retry-After": when})
        sleeps: list[float] = []

        await asyncio.to_thread(handler.forward, s3_event("k"), sleep=sleeps.append)

        [slept] = sleeps
        assert 27 <= slept <= 31

    async def test_no_time_left_gives_up_without_trying(
        self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)

        class AlmostOutOfTime:
            aws_request_id = "req-1"

            def get_remaining_time_in_millis(self) -> int:
                return 2500

        with pytest.raises(handler.DeliveryError, match="out of time"):
            await invoke(s3_event("k"), AlmostOutOfTime())
        assert daemon.receiver.requests == []


class TestTls:
    """HTTPS is verified: a trusted certificate works, an unknown one fails at once."""

    @pytest.fixture
    async def tls_daemon(
        self, start_daemon: Callable[..., Awaitable[Daemon]], tmp_path: Path
    ) -> tuple[Daemon, Path]:
        cert, key = self_signed_cert(tmp_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return await start_daemon(ssl_context=context), cert

    async def test_untrusted_certificate_not_retried(
        self, tls_daemon: tuple[Daemon, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        daemon, _ = tls_daemon
        assert daemon.url.startswith("https://")
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        sleeps: list[float] = []

        with pytest.raises(handler.DeliveryError, match="TLS verification failed") as info:
            await asyncio.to_thread(handler.forward, s3_event("k"), sleep=sleeps.append)

        assert info.value.attempts == 1 and sleeps == []
        assert daemon.receiver.requests == []

    async def test_trusted_certificate_delivers(
        self, tls_daemon: tuple[Daemon, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        daemon, cert = tls_daemon
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET, SSL_CERT_FILE=str(cert))

        await invoke(s3_event("k"))

        assert len(daemon.receiver.accepted) == 1


class TestEnvelopes:
    """SNS- and SQS-wrapped notifications are unwrapped; the test event is forwarded."""

    async def test_sns_wrapped_event_unwrapped(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        inner = s3_event("a", "b")

        result = await invoke(sns_event(inner))

        assert result["keys"] == 2
        assert daemon.receiver.accepted == [{"Records": inner["Records"]}]

    async def test_test_event_forwarded(self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        await invoke(TEST_EVENT)
        assert daemon.receiver.accepted == [TEST_EVENT]

    async def test_sqs_batch_reports_only_bad_record(
        self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        good = s3_event("good/key")
        event = {
            "Records": [
                sqs_record("msg-bad", "{not json"),
                sqs_record("msg-good", json.dumps(good)),
                sqs_record("msg-sns", json.dumps(sns_envelope(s3_event("via/sns")))),
                sqs_record("msg-test", json.dumps(TEST_EVENT)),
                sqs_record("msg-odd", json.dumps({"hello": "world"})),
            ]
        }

        result = await invoke(event)

        assert result == {
            "batchItemFailures": [
                {"itemIdentifier": "msg-bad"},
                {"itemIdentifier": "msg-odd"},
            ]
        }
        assert daemon.receiver.accepted == [
            {"Records": good["Records"]},
            s3_event("via/sns"),
            TEST_EVENT,
        ]

    async def test_sqs_batch_daemon_down_fails_every_record_fast(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        configure(monkeypatch, closed_port_url(), NOTIFICATION_SECRET=SECRET, RETRY_ATTEMPTS="1")
        sleeps: list[float] = []
        event = {"Records": [sqs_record(f"m{i}", json.dumps(s3_event(f"k{i}"))) for i in range(3)]}

        result = await asyncio.to_thread(handler.forward, event, sleep=sleeps.append)

        assert result == {"batchItemFailures": [{"itemIdentifier": f"m{i}"} for i in range(3)]}
        assert len(sleeps) == 1  # only the first record spent its retries

    async def test_sqs_payload_specific_rejection_does_not_stop_batch(
        self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        daemon.receiver.reply_next(422)
        event = {"Records": [sqs_record(f"m{i}", json.dumps(s3_event(f"k{i}"))) for i in range(2)]}

        result = await invoke(event)

        assert result == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
        assert daemon.receiver.accepted == [s3_event("k1")]

    async def test_malformed_direct_event_raises(
        self, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        configure(monkeypatch, daemon.url, NOTIFICATION_SECRET=SECRET)
        with pytest.raises(handler.MalformedEventError):
            await invoke({"Records": [{"eventSource": "aws:dynamodb"}]})
        assert daemon.receiver.requests == []


class TestConfig:
    """A broken environment fails loudly before anything is sent."""

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({}, "API_ENDPOINT is not set"),
            ({"API_ENDPOINT": "ftp://host"}, "http(s) URL"),
            ({"API_ENDPOINT": "http://h", "TIMEOUT_SECONDS": "soon"}, "TIMEOUT_SECONDS"),
            ({"API_ENDPOINT": "http://h", "RETRY_ATTEMPTS": "-1"}, "RETRY_ATTEMPTS"),
            ({"API_ENDPOINT": "http://h", "RETRY_ATTEMPTS": "2.5"}, "integer"),
        ],
    )
    def test_invalid_environment(self, env: dict[str, str], message: str) -> None:
        with pytest.raises(handler.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            handler.forward(s3_event("k"), env=env)

    def test_secret_not_in_repr(self) -> None:
        config = handler.ForwarderConfig.from_env(
            {"API_ENDPOINT": "https://user:pw@example.com:8888/", "NOTIFICATION_SECRET": SECRET}
        )
        assert config.url == "https://user:pw@example.com:8888/api/v1/s3-notification"
        assert SECRET not in repr(config)
