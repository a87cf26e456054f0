"""S3 down, credentials refused, bucket missing: the daemon serves, says why, and recovers alone."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.eventkit import notification
from support.proxy import Proxy
from support.s3kit import body_for, seed, tree
from support.wait import wait_for


@pytest.fixture
async def start_api(aiohttp_client: Any) -> Any:
    from s3sync.daemon.app import create_app

    async def _start(settings: Any) -> Any:
        return await aiohttp_client(create_app(settings))

    return _start


async def health(client: Any) -> tuple[int, dict[str, Any]]:
    r = await client.get("/api/v1/health")
    return r.status, json.loads(await r.text())


class TestStartWithoutS3:
    """The API is up before S3 is; health reports 503 with the reason until S3 answers."""

    async def test_s3_unreachable_then_back(
        self, s3: Any, bucket: str, mirror: Path, proxy: Proxy, proxied_settings: Any, start_api: Any
    ) -> None:
        """Every connection dropped: 503 + reason; once the proxy forwards again, 200 without restart."""
        data = seed(s3, bucket, {"a.txt": b"alpha", "b/c.txt": body_for("c", 3000)})
        proxy.faults.add("drop")
        client = await start_api(proxied_settings(bucket, mirror))
        status, body = await health(client)
        assert status == 503 and body["status"] in ("degraded", "unhealthy")
        assert body["s3_connection"] is False and body["reason"]
        assert (await client.get("/ping")).status == 200

        proxy.faults.clear()
        await wait_for(lambda: _healthy(client), within=20, what="health 200 after S3 came back")
        r = await client.post("/api/v1/sync")
        assert r.status == 200, await r.text()
        assert tree(mirror) == data

    async def test_wrong_credentials_then_fixed(
        self, bucket: str, mirror: Path, proxy: Proxy, proxied_settings: Any, start_api: Any
    ) -> None:
        """403 InvalidAccessKeyId on everything: 503 naming credentials; healthy once S3 accepts again."""
        proxy.faults.add("status", status=403, code="InvalidAccessKeyId")
        client = await start_api(proxied_settings(bucket, mirror))
        status, body = await health(client)
        assert status == 503 and body["s3_connection"] is False
        assert "credential" in body["reason"].lower() or "denied" in body["reason"].lower(), body
        proxy.faults.clear()
        await wait_for(lambda: _healthy(client), within=20, what="health 200 after credentials accepted")

    async def test_missing_bucket_then_created(
        self, s3: Any, mirror: Path, proxy: Proxy, proxied_settings: Any, start_api: Any
    ) -> None:
        """A bucket that does not exist yet: 503 saying so; creating it heals the daemon."""
        name = f"t-later-{uuid.uuid4().hex[:8]}"
        client = await start_api(proxied_settings(name, mirror))
        status, body = await health(client)
        assert status == 503 and "does not exist" in body["reason"], body
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="k.txt", Body=b"hello")
        await wait_for(lambda: _healthy(client), within=20, what="health 200 after the bucket appeared")
        r = await client.post("/api/v1/sync")
        assert r.status == 200
        assert tree(mirror) == {"k.txt": b"hello"}


class TestEventsDuringOutage:
    """Notifications accepted while S3 is down are not lost: they apply once S3 is back."""

    async def test_accepted_during_outage_applied_after(
        self, s3: Any, bucket: str, mirror: Path, proxy: Proxy, proxied_settings: Any, start_api: Any
    ) -> None:
        data = seed(s3, bucket, {f"o{i}.txt": body_for(f"o{i}", 200 + i) for i in range(5)})
        proxy.faults.add("drop")
        client = await start_api(proxied_settings(bucket, mirror, sync={"retry_attempts": 1}))
        r = await client.post("/api/v1/s3-notification", json=notification(bucket, *data))
        assert r.status == 202, await r.text()
        await wait_for(lambda: _failed(client), within=20, what="the transfers to fail during the outage")
        proxy.faults.clear()
        await wait_for(lambda: tree(mirror) == data, within=30, what="changes applied after S3 came back")


async def _healthy(client: Any) -> bool:
    return (await health(client))[0] == 200


async def _failed(client: Any) -> bool:
    r = await client.get("/api/v1/stats")
    return bool(json.loads(await r.text())["files_failed"] >= 5)
