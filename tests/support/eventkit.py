"""Helpers for the event tests: S3-shaped notifications, a live daemon app, a counting S3 proxy.

The app runs in-process on a real loopback port (``web.AppRunner``), so tests
talk to it over HTTP exactly as S3, SNS or the Lambda forwarder would. The
proxy sits between the daemon and moto: it counts requests per method and key,
records how many operations on one key overlapped, and can delay or refuse
GETs, which is how tests see what the daemon asked S3 without mocking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote

import aiohttp
from aiohttp import web
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


@dataclass
class S3Proxy:
    """Forwards everything to moto; counts and optionally slows down or refuses object GETs."""

    upstream: str
    get_delay: float = 0.0
    refuse: bool = False
    # when set: object GETs/HEADs wait for it (a test holds a download open as long as it needs)
    gate: asyncio.Event | None = None
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    active: Counter[str] = field(default_factory=Counter)
    max_active: Counter[str] = field(default_factory=Counter)
    url: str = ""
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    def key_of(self, path: str) -> str:
        """``/bucket/some/key`` → ``some/key`` (path-style addressing)."""
        parts = path.lstrip("/").split("/", 1)
        return unquote(parts[1]) if len(parts) == 2 else ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        key = self.key_of(request.path)
        self.counts[request.method, key] += 1
        is_object = bool(key) and request.method in ("GET", "HEAD")
        if is_object:
            self.active[key] += 1
            self.max_active[key] = max(self.max_active[key], self.active[key])
        try:
            if self.refuse and is_object:
                # What an overloaded or unreachable S3 looks like to the daemon.
                return web.Response(status=503, body=b"<Error><Code>SlowDown</Code></Error>")
            if is_object and self.gate is not None:
                await self.gate.wait()
            if is_object and self.get_delay:
                await asyncio.sleep(self.get_delay)
            assert self._session is not None
            drop_in = ("host", "content-length")
            headers = {k: v for k, v in request.headers.items() if k.lower() not in drop_in}
            body = await request.read()
            async with self._session.request(
                request.method,
                self.upstream + request.raw_path,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                auto_decompress=False,
            ) as up:
                data = await up.read()
                drop_out = ("transfer-encoding", "content-length", "connection", "server", "date")
                out_headers = {k: v for k, v in up.headers.items() if k.lower() not in drop_out}
                return web.Response(status=up.status, body=data, headers=out_headers)
        finally:
            if is_object:
                self.active[key] -= 1

    def gets(self, key: str) -> int:
        return self.counts["GET", key]

    def heads(self, key: str) -> int:
        return self.counts["HEAD", key]

    async def __aenter__(self) -> S3Proxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # short: requests held by get_delay must not hold up the test's teardown
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


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
