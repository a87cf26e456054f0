"""The Lambda forwarder against the REAL daemon: ``create_app`` on a loopback AppRunner, moto behind it.

tests/unit/test_lambda_handler.py checks the forwarder against a scripted stand-in
(status codes on demand); this module checks that the two halves agree — the
forwarder's signature is what the daemon verifies, the daemon's errors are what
the forwarder classifies, and a forwarded event ends as a file in the mirror.
The handler is synchronous (urllib), so it runs in a worker thread while the
daemon runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import pytest
from support.daemon import App, run_daemon
from support.s3kit import seed
from support.wait import wait_for

from lambda_forwarder import handler

SECRET = "lambda-e2e-secret-7c1d"
TOKEN = "lambda-e2e-token-93ab"


@pytest.fixture
async def start_daemon(
    make_settings: Any, bucket: str, mirror: Path
) -> AsyncIterator[Callable[..., Awaitable[App]]]:
    """``await start_daemon(**api_keys)`` → the daemon app, token and notification secret set."""
    async with contextlib.AsyncExitStack() as stack:

        async def _start(**api_keys: Any) -> App:
            api = {"token": TOKEN, "notification_secret": SECRET} | api_keys
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            return await stack.enter_async_context(
                run_daemon(make_settings(bucket, mirror, api=api), headers=bearer)
            )

        yield _start


@pytest.fixture(autouse=True)
def forwarder_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean forwarder environment with millisecond backoff."""
    for name in ("API_ENDPOINT", "NOTIFICATION_SECRET", "API_TOKEN", "RETRY_ATTEMPTS", "RETRY_MAX_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RETRY_BASE_SECONDS", "0.01")
    monkeypatch.setenv("TIMEOUT_SECONDS", "5")


async def invoke(event: Any) -> Any:
    return await asyncio.to_thread(handler.lambda_handler, event, None)


def s3_event(bucket: str, *keys: tuple[str, int]) -> dict[str, Any]:
    """A direct S3 notification as S3 sends it (keys URL-encoded, '+' for space)."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "s3sync",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key, safe="/"), "size": size}},
    } for key, size in keys]}


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {"messageId": message_id, "receiptHandle": "AQEB" + message_id, "body": body,
            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:s3sync",
            "awsRegion": "us-east-1"}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class TestDelivery:
    """Forwarded events are verified by the daemon and end up as files in the mirror."""

    async def test_signed_event_is_mirrored(
        self, start_daemon: Callable[..., Awaitable[App]], s3: Any, bucket: str, mirror: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """HMAC mode: the daemon accepts the signature and downloads the objects, spaces and all."""
        daemon = await start_daemon()
        objects = seed(s3, bucket, {"photos/a b.jpg": b"jpeg-bytes", "docs/ünï.txt": b"unicode"})
        monkeypatch.setenv("API_ENDPOINT", daemon.url)
        monkeypatch.setenv("NOTIFICATION_SECRET", SECRET)

        result = await invoke(s3_event(bucket, *((k, len(v)) for k, v in objects.items())))

        assert result["delivered"] == 1 and result["keys"] == 2
        assert result["responses"] == [{"accepted": 2, "ignored": 0}]
        for key, data in objects.items():
            await wait_for(lambda k=key: (mirror / k).is_file(), what=f"{key} mirrored")
            assert (mirror / key).read_bytes() == data
        assert (await daemon.stats())["auth_failures"] == 0

    async def test_bearer_mode(
        self, start_daemon: Callable[..., Awaitable[App]], s3: Any, bucket: str, mirror: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """API_TOKEN instead of a secret: the daemon's bearer check lets it in."""
        daemon = await start_daemon()
        seed(s3, bucket, {"t.txt": b"token"})
        monkeypatch.setenv("API_ENDPOINT", daemon.url)
        monkeypatch.setenv("API_TOKEN", TOKEN)
        await invoke(s3_event(bucket, ("t.txt", 5)))
        await wait_for(lambda: (mirror / "t.txt").is_file(), what="t.txt mirrored")


class TestFailures:
    """What the forwarder does with each way the real daemon can say no."""

    async def test_daemon_down_retries_then_raises(
        self, start_daemon: Callable[..., Awaitable[App]], bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A daemon that stopped listening: every attempt is made, then the invocation fails for Lambda."""
        daemon = await start_daemon()
        url = daemon.url
        await daemon.stop()
        monkeypatch.setenv("API_ENDPOINT", url)
        monkeypatch.setenv("NOTIFICATION_SECRET", SECRET)
        monkeypatch.setenv("RETRY_ATTEMPTS", "2")

        with pytest.raises(handler.DeliveryError) as info:
            await invoke(s3_event(bucket, ("k", 1)))

        assert info.value.attempts == 3 and info.value.status is None
        assert "retries exhausted" in str(info.value)

    async def test_never_listening(self, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """A port nobody ever listened on behaves the same (connection refused is transient)."""
        monkeypatch.setenv("API_ENDPOINT", closed_port_url())
        monkeypatch.setenv("NOTIFICATION_SECRET", SECRET)
        with pytest.raises(handler.DeliveryError) as info:
            await invoke(s3_event(bucket, ("k", 1)))
        assert info.value.attempts == 4  # RETRY_ATTEMPTS defaults to 3

    async def test_bad_secret_is_not_retried(
        self, start_daemon: Callable[..., Awaitable[App]], bucket: str, mirror: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A 401 from the daemon is final: one attempt, the daemon's reason in the error, nothing mirrored."""
        daemon = await start_daemon()
        monkeypatch.setenv("API_ENDPOINT", daemon.url)
        monkeypatch.setenv("NOTIFICATION_SECRET", "not-" + SECRET)

        with pytest.raises(handler.RejectedError) as info:
            await invoke(s3_event(bucket, ("k", 1)))

        assert info.value.status == 401 and info.value.attempts == 1
        assert info.value.daemon_message == "signature does not match"
        assert "NOTIFICATION_SECRET" in str(info.value)
        assert (await daemon.stats())["auth_failures"] == 1  # the daemon saw exactly one try
        assert not (mirror / "k").exists()

    async def test_brute_force_block_is_retried_after_retry_after(
        self, start_daemon: Callable[..., Awaitable[App]], bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A forwarder sharing an address with a blocked client gets 429 + Retry-After: it retries (its
        wait capped by RETRY_MAX_SECONDS) and then fails the invocation, so Lambda retries later."""
        daemon = await start_daemon(auth_failures_per_minute=1)
        notify = daemon.url + "/api/v1/s3-notification"
        async with aiohttp.ClientSession() as session, session.post(notify, data=b"{}") as resp:
            assert resp.status == 401  # someone else at this address guessed wrong once
        monkeypatch.setenv("API_ENDPOINT", daemon.url)
        monkeypatch.setenv("NOTIFICATION_SECRET", SECRET)
        monkeypatch.setenv("RETRY_MAX_SECONDS", "0.05")
        monkeypatch.setenv("RETRY_ATTEMPTS", "1")
        with pytest.raises(handler.DeliveryError) as info:
            await invoke(s3_event(bucket, ("k", 1)))
        assert info.value.status == 429 and info.value.attempts == 2


class TestSqsBatch:
    """An SQS batch reports exactly the records that were not delivered."""

    async def test_one_malformed_record(
        self, start_daemon: Callable[..., Awaitable[App]], s3: Any, bucket: str, mirror: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A record whose body is not an event fails alone; the others are delivered and mirrored."""
        daemon = await start_daemon()
        seed(s3, bucket, {"one.txt": b"1", "two.txt": b"22"})
        monkeypatch.setenv("API_ENDPOINT", daemon.url)
        monkeypatch.setenv("NOTIFICATION_SECRET", SECRET)
        event = {"Records": [
            sqs_record("m-one", json.dumps(s3_event(bucket, ("one.txt", 1)))),
            sqs_record("m-bad", "{not json"),
            sqs_record("m-two", json.dumps(s3_event(bucket, ("two.txt", 2)))),
        ]}

        result = await invoke(event)

        assert result == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
        for key in ("one.txt", "two.txt"):
            await wait_for(lambda k=key: (mirror / k).is_file(), what=f"{key} mirrored")

    async def test_one_record_the_daemon_refuses(
        self, start_daemon: Callable[..., Awaitable[App]], s3: Any, bucket: str, mirror: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A record over the daemon's body limit (413) fails alone; the batch goes on."""
        daemon = await start_daemon(max_body_bytes=4096)
        seed(s3, bucket, {"small.txt": b"s", "after.txt": b"a"})
        monkeypatch.setenv("API_ENDPOINT", daemon.url)
        monkeypatch.setenv("NOTIFICATION_SECRET", SECRET)
        huge = s3_event(bucket, *((f"bulk/{i:04d}-{'x' * 40}", 1) for i in range(60)))
        event = {"Records": [
            sqs_record("m-small", json.dumps(s3_event(bucket, ("small.txt", 1)))),
            sqs_record("m-huge", json.dumps(huge)),
            sqs_record("m-after", json.dumps(s3_event(bucket, ("after.txt", 1)))),
        ]}

        result = await invoke(event)

        assert result == {"batchItemFailures": [{"itemIdentifier": "m-huge"}]}
        for key in ("small.txt", "after.txt"):
            await wait_for(lambda k=key: (mirror / k).is_file(), what=f"{key} mirrored")
        assert not (mirror / "bulk").exists()
