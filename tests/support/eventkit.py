"""Helpers for the event tests: S3-shaped notifications, a live daemon app.

The app runs in-process on a real loopback port (``web.AppRunner``), so tests
talk to it over HTTP exactly as S3, SNS or the Lambda forwarder would.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import aiohttp
from aiohttp import web
from support.proxy import Proxy
from support.s3kit import AWS_ENV
from support.wait import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def boto(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


# --------------------------------------------------------------------------- event shapes


def s3_record(
    bucket: str,
    name: str,
    key: str,
    *,
    size: int | None = None,
    etag: str | None = None,
    sequencer: str | None = None,
    version_id: str | None = None,
) -> dict[str, Any]:
    """One S3 event record as S3 sends it: the key form-encoded (``+`` for space)."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    if sequencer is not None:
        obj["sequencer"] = sequencer
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-01-15T10:30:00.000Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "test",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def sns_envelope(message: dict[str, Any]) -> dict[str, Any]:
    """An SNS Notification wrapping ``message`` (what an HTTPS subscription or SQS receives)."""
    return {
        "Type": "Notification",
        "MessageId": "5b2f8f63-0000-0000-0000-000000000000",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:s3-events",
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps(message),
        "Timestamp": "2024-01-15T10:30:00.000Z",
        "SignatureVersion": "1",
        "Signature": "x",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    }


def eventbridge(bucket: str, detail_type: str, key: str, **obj: Any) -> dict[str, Any]:
    """An EventBridge S3 event (hyphenated ``detail`` fields)."""
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2024-01-15T10:30:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(key, safe="/"), **obj},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": "PutObject" if "Created" in detail_type else "DeleteObject",
        },
    }


def s3_test_event(bucket: str) -> dict[str, Any]:
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-01-15T10:30:00.000Z",
        "Bucket": bucket,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }


# --------------------------------------------------------------------------- the daemon


@dataclass
class Daemon:
    """A running in-process app and an HTTP session to talk to it."""

    url: str
    http: aiohttp.ClientSession
    app: web.Application
    mirror: Path

    async def notify(self, payload: Any, *, status: int = 202) -> dict[str, Any]:
        async with self.http.post(f"{self.url}/api/v1/s3-notification", json=payload) as resp:
            text = await resp.text()
            assert resp.status == status, (resp.status, text)
            data: dict[str, Any] = json.loads(text)
            return data

    async def stats(self) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/api/v1/stats") as resp:
            assert resp.status == 200, await resp.text()
            data: dict[str, Any] = await resp.json()
            return data

    async def idle(self, *, within: float = 20.0) -> dict[str, Any]:
        """Wait until every accepted change has been applied (queue, workers and journal empty)."""

        async def probe() -> dict[str, Any] | None:
            st = await self.stats()
            done = st["queue_depth"] == 0 and st["in_flight"] == 0 and st["journal_pending"] == 0
            return st if done else None

        result: dict[str, Any] = await wait_for(probe, within=within, what="daemon idle")
        return result

    async def reconcile(self, *, delete: bool = True) -> dict[str, Any]:
        q = "?delete=true" if delete else ""
        async with self.http.post(f"{self.url}/api/v1/sync{q}") as resp:
            assert resp.status == 200, await resp.text()
            data: dict[str, Any] = await resp.json()
            return data

    @property
    def services(self) -> Any:
        from s3sync.api import keys as K

        return self.app[K.SERVICES]


@contextlib.asynccontextmanager
async def run_daemon(settings: Any) -> AsyncIterator[Daemon]:
    """Start ``create_app(settings)`` on a free loopback port; stop it (gracefully) afterwards."""
    from s3sync.daemon.app import create_app

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        try:
            yield Daemon(f"http://127.0.0.1:{port}", http, app, Path(settings.sync.local_dir))
        finally:
            await runner.cleanup()


# --------------------------------------------------------------------------- S3 proxy


class S3Proxy(Proxy):
    """Kept for test_freshness.py; remove when it moves to :class:`support.proxy.Proxy`.

    The old counting proxy's surface on the one proxy: ``get_delay`` is a latency
    rule on object GETs and HEADs, ``gets(key)`` counts GETs of a key.
    """

    def __init__(self, upstream: str, get_delay: float = 0.0) -> None:
        super().__init__(upstream)
        self._delay = self.faults.add("latency", op="OBJECT", seconds=get_delay)

    @property
    def get_delay(self) -> float:
        return self._delay.seconds

    @get_delay.setter
    def get_delay(self, seconds: float) -> None:
        self._delay.seconds = seconds

    def gets(self, key: str) -> int:
        return len(self.requests("GET", key))


@contextlib.asynccontextmanager
async def request_recorder() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request path it receives."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()
