"""The HTTP API end to end: the real app (``create_app``) on loopback against moto."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from support.eventkit import s3_record
from support.s3kit import body_for, delete_objects, nested_objects, raw_http, seed, temp_files, tree
from support.wait import wait_for
from yarl import URL

StartApi = Callable[..., Awaitable[Any]]
TOKEN = "test-token-123"
SECRET = "hmac-secret-456"


@pytest.fixture
async def start_api(aiohttp_client: Any) -> StartApi:
    """``await start_api(settings)`` → a test client for the real app, services started."""
    from s3sync.daemon.app import create_app

    async def _start(settings: Any, **kw: Any) -> Any:
        return await aiohttp_client(create_app(settings), **kw)

    return _start


@pytest.fixture
async def client(start_api: StartApi, make_settings: Any, bucket: str, mirror: Path) -> Any:
    """The app mirroring this test's bucket into ``mirror``, no auth."""
    return await start_api(make_settings(bucket, mirror))


async def _json(resp: Any, status: int) -> Any:
    text = await resp.text()
    assert resp.status == status, (resp.status, text)
    assert "Traceback" not in text
    return json.loads(text)


async def _error(resp: Any, *statuses: int) -> dict[str, Any]:
    """A JSON error body ``{"error", "message"}`` with one of ``statuses``."""
    text = await resp.text()
    assert resp.status in statuses, (resp.status, text)
    assert "Traceback" not in text
    data = json.loads(text)
    assert isinstance(data, dict) and "error" in data and "message" in data, data
    return data


def s3_event(bucket: str, name: str, key: str, size: int | None = None) -> dict[str, Any]:
    """An S3 notification record as S3 sends it: key URL-encoded with '+' for space."""
    return s3_record(bucket, name, key, size=size)


async def _manual_sync(client: Any, query: str = "") -> dict[str, Any]:
    resp = await client.post(f"/api/v1/sync{query}")
    data: dict[str, Any] = await _json(resp, 200)
    return data


def _same_dir(a: str, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _metric(text: str, name: str, *, required: bool = True) -> float:
    """Sum of every sample of ``name`` (any labels) in Prometheus text.

    A labelled counter legitimately has no samples until its first increment.
    """
    total = 0.0
    found = False
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})?\s+(\S+)", text, re.MULTILINE):
        total += float(m.group(1))
        found = True
    assert found or not required, f"{name} not in metrics:\n{text[:2000]}"
    return total


class TestInfoEndpoints:
    """The small read-only endpoints answer with the documented shapes."""

    async def test_root_and_ping(self, client: Any) -> None:
        """/ names the service, /ping says ok."""
        root = await _json(await client.get("/"), 200)
        assert root["service"] == "s3sync"
        assert "version" in root and "uptime_seconds" in root
        assert await _json(await client.get("/ping"), 200) == {"status": "ok"}

    async def test_health_ok(self, client: Any, mirror: Path) -> None:
        """A reachable bucket and a writable directory → 200 healthy."""
        data = await _json(await client.get("/api/v1/health"), 200)
        assert data["status"] == "healthy"
        assert data["s3_connection"] is True
        assert data["directory_writable"] is True
        assert _same_dir(data["download_directory"], mirror)
        assert data["timestamp"]

    async def test_health_missing_bucket(
        self, start_api: StartApi, make_settings: Any, mirror: Path
    ) -> None:
        """A bucket that does not exist → 503 degraded/unhealthy with a reason."""
        client = await start_api(make_settings("t-does-not-exist-0", mirror))
        data = await _json(await client.get("/api/v1/health"), 503)
        assert data["status"] in ("degraded", "unhealthy")
        assert data["reason"]

    async def test_config_redacts_secrets(
        self, start_api: StartApi, make_settings: Any, bucket: str, mirror: Path
    ) -> None:
        """Token and notification secret never appear in /api/v1/config."""
        settings = make_settings(
            bucket, mirror, api={"token": TOKEN, "notification_secret": SECRET}
        )
        client = await start_api(settings)
        resp = await client.get("/api/v1/config", headers={"Authorization": f"Bearer {TOKEN}"})
        text = await resp.text()
        assert resp.status == 200, text
        assert TOKEN not in text and SECRET not in text
        data = json.loads(text)
        assert data["api"]["token"] == "**redacted**"
        assert data["api"]["notification_secret"] == "**redacted**"
        assert data["s3"]["bucket"] == bucket

    async def test_stats_keys(self, client: Any) -> None:
        """/api/v1/stats exposes every documented counter and gauge."""
        data = await _json(await client.get("/api/v1/stats"), 200)
        for key in (
            "files_synced", "files_deleted", "files_failed", "files_skipped",
            "bytes_downloaded", "queue_depth", "in_flight", "last_reconcile",
            "next_reconcile", "last_error", "unsafe_keys",
        ):
            assert key in data, (key, data)

    async def test_openapi_and_docs(self, client: Any) -> None:
        """The OpenAPI 3 description lists the public paths and /docs is an HTML page."""
        spec = await _json(await client.get("/api/v1/openapi.json"), 200)
        assert str(spec["openapi"]).startswith("3")
        for path in ("/api/v1/sync", "/api/v1/s3-notification", "/api/v1/files"):
            assert path in spec["paths"], path
        resp = await client.get("/docs")
        assert resp.status == 200
        assert "html" in resp.headers["Content-Type"]
        page = await resp.text()
        remote = re.findall(r"""(?:src|href)\s*=\s*["'](?:https?:)?//[^"']*""", page)
        assert not remote, f"/docs must work offline, but loads {remote}"

    async def test_unknown_route_is_json_404(self, client: Any) -> None:
        """Even the router's own errors are JSON."""
        await _error(await client.get("/api/v1/nope"), 404)
        await _error(await client.delete("/ping"), 404, 405)


class TestManualSync:
    """POST /api/v1/sync runs a reconcile and answers in the legacy shape."""

    async def test_fifty_objects_foreground(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """All fifty nested objects arrive byte for byte, one success detail each."""
        objects = seed(s3, bucket, nested_objects(50))
        data = await _manual_sync(client)
        assert data["status"] == "success", data
        assert data["failed_operations"] == 0
        assert data["successful_operations"] == 50
        assert data["processed_files"] == 50
        assert isinstance(data["message"], str)
        downloads = {d["file_key"] for d in data["sync_details"] if d["operation"] == "download"}
        assert downloads == set(objects)
        assert all(d["status"] == "success" for d in data["sync_details"])
        assert tree(mirror) == objects
        assert temp_files(mirror) == []

    async def test_second_sync_downloads_nothing(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """Unchanged objects are not fetched again."""
        objects = seed(s3, bucket, nested_objects(10))
        await _manual_sync(client)
        before = (await _json(await client.get("/api/v1/stats"), 200))["files_synced"]
        data = await _manual_sync(client)
        assert data["status"] == "success", data
        assert data["failed_operations"] == 0
        assert not [d for d in data["sync_details"] if d["operation"] == "download"], data
        after = (await _json(await client.get("/api/v1/stats"), 200))["files_synced"]
        assert after == before
        assert tree(mirror) == objects

    async def test_restart_does_not_redownload(
        self, start_api: StartApi, make_settings: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """A new app over the same state directory finds everything already in place."""
        objects = seed(s3, bucket, nested_objects(6))
        first = await start_api(make_settings(bucket, mirror))
        await _manual_sync(first)
        await first.close()
        second = await start_api(make_settings(bucket, mirror))
        data = await _manual_sync(second)
        assert not [d for d in data["sync_details"] if d["operation"] == "download"], data
        stats = await _json(await second.get("/api/v1/stats"), 200)
        assert stats["files_synced"] == 0
        assert tree(mirror) == objects

    async def test_prefix(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        """?prefix= limits the pass to that prefix."""
        seed(s3, bucket, {"in/a": b"a", "in/b/c": b"c", "out/d": b"d"})
        data = await _manual_sync(client, "?prefix=in/")
        assert data["status"] == "success", data
        assert tree(mirror) == {"in/a": b"a", "in/b/c": b"c"}

    async def test_dry_run(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        """?dry_run=true lists the downloads it would do and writes nothing."""
        objects = seed(s3, bucket, nested_objects(4))
        data = await _manual_sync(client, "?dry_run=true")
        assert {d["file_key"] for d in data["sync_details"]} == set(objects)
        assert all(d["status"] == "dry_run" for d in data["sync_details"]), data
        assert tree(mirror) == {}

    async def test_delete(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        """?delete=true removes files whose objects are gone; without it they stay."""
        seed(s3, bucket, {"keep": b"k", "drop/me": b"d"})
        await _manual_sync(client)
        delete_objects(s3, bucket, ["drop/me"])
        data = await _manual_sync(client)
        assert not [d for d in data["sync_details"] if d["operation"] == "delete"], data
        assert tree(mirror) == {"keep": b"k", "drop/me": b"d"}
        data = await _manual_sync(client, "?delete=true")
        deletes = [d for d in data["sync_details"] if d["operation"] == "delete"]
        assert [(d["file_key"], d["status"]) for d in deletes] == [("drop/me", "success")]
        assert tree(mirror) == {"keep": b"k"}

    async def test_background_job(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        """?background=true → 202 and a job id whose result can be polled."""
        objects = seed(s3, bucket, nested_objects(5))
        job = await _json(await client.post("/api/v1/sync?background=true"), 202)
        assert job["job_id"]
        assert job["status"] == "queued"

        async def done() -> dict[str, Any] | None:
            state = await _json(await client.get(f"/api/v1/sync/{job['job_id']}"), 200)
            assert state["status"] in ("queued", "running", "completed", "failed"), state
            return state if state["status"] in ("completed", "failed") else None

        state = await wait_for(done, within=15, what="background job")
        assert state["job_id"] == job["job_id"]
        assert state["status"] == "completed", state
        assert state["result"]["status"] == "success"
        assert state["result"]["successful_operations"] == 5
        assert tree(mirror) == objects

    async def test_unknown_job(self, client: Any) -> None:
        """An unknown job id is a JSON 404."""
        await _error(await client.get("/api/v1/sync/no-such-job"), 404)

    async def test_metrics_move_after_sync(self, client: Any, s3: Any, bucket: str) -> None:
        """s3sync_files_synced_total and the stats counters grow by the number of downloads."""
        seed(s3, bucket, nested_objects(7))
        resp = await client.get("/metrics")
        assert resp.status == 200
        before = _metric(await resp.text(), "s3sync_files_synced_total", required=False)
        await _manual_sync(client)
        resp = await client.get("/metrics")
        after = _metric(await resp.text(), "s3sync_files_synced_total")
        assert after - before == 7
        stats = await _json(await client.get("/api/v1/stats"), 200)
        assert stats["files_synced"] == 7
        assert stats["bytes_downloaded"] == sum(len(b) for b in nested_objects(7).values())


class TestNotifications:
    """POST /api/v1/s3-notification turns S3 events into local creates and deletes."""

    async def test_create_then_delete(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """A Put event fetches the file; a Delete event (after S3 confirms) removes it."""
        key = "inbox/new file+plus.txt"
        data = body_for(key, 3000)
        seed(s3, bucket, {key: data})
        event = {"Records": [s3_event(bucket, "ObjectCreated:Put", key, len(data))]}
        ack = await _json(await client.post("/api/v1/s3-notification", json=event), 202)
        assert ack == {"accepted": 1, "ignored": 0}
        local = mirror / key

        await wait_for(
            lambda: local.is_file() and local.read_bytes() == data, what="created file"
        )

        delete_objects(s3, bucket, [key])
        event = {"Records": [s3_event(bucket, "ObjectRemoved:Delete", key)]}
        ack = await _json(await client.post("/api/v1/s3-notification", json=event), 202)
        assert ack["accepted"] == 1
        await wait_for(lambda: not local.exists(), what="deleted file")
        assert temp_files(mirror) == []

    async def test_remove_event_for_live_object_keeps_file(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """A remove event is only a hint: while S3 still has the object the file stays."""
        seed(s3, bucket, {"alive.txt": b"still here", "marker.txt": b"m"})
        await _manual_sync(client)
        (mirror / "marker.txt").unlink()
        event = {
            "Records": [
                s3_event(bucket, "ObjectRemoved:Delete", "alive.txt"),
                s3_event(bucket, "ObjectCreated:Put", "marker.txt", 1),
            ]
        }
        ack = await _json(await client.post("/api/v1/s3-notification", json=event), 202)
        assert ack["accepted"] == 2

        async def settled() -> bool:
            stats = await _json(await client.get("/api/v1/stats"), 200)
            return (
                (mirror / "marker.txt").is_file()
                and stats["queue_depth"] == 0
                and stats["in_flight"] == 0
            )

        await wait_for(settled, what="both events processed")
        assert (mirror / "alive.txt").read_bytes() == b"still here"

    async def test_sns_envelope(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        """An S3 event wrapped in an SNS Notification is unwrapped and applied."""
        seed(s3, bucket, {"sns/obj.txt": b"via sns"})
        inner = {"Records": [s3_event(bucket, "ObjectCreated:Put", "sns/obj.txt", 7)]}
        envelope = {
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
            "Subject": "Amazon S3 Notification",
            "Message": json.dumps(inner),
            "Timestamp": "2024-01-15T10:30:00.000Z",
        }
        ack = await _json(await client.post("/api/v1/s3-notification", json=envelope), 202)
        assert ack["accepted"] == 1
        local = mirror / "sns/obj.txt"
        await wait_for(lambda: local.is_file() and local.read_bytes() == b"via sns", what="file")

    async def test_eventbridge_events(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """EventBridge "Object Created" and "Object Deleted" events are applied."""
        seed(s3, bucket, {"eb/obj.txt": b"via eventbridge"})

        def eb(detail_type: str) -> dict[str, Any]:
            return {
                "version": "0",
                "id": "e-1",
                "detail-type": detail_type,
                "source": "aws.s3",
                "account": "123456789012",
                "time": "2024-01-15T10:30:00Z",
                "region": "us-east-1",
                "resources": [f"arn:aws:s3:::{bucket}"],
                "detail": {
                    "version": "0",
                    "bucket": {"name": bucket},
                    "object": {"key": "eb/obj.txt", "size": 15},
                    "request-id": "r",
                    "requester": "123456789012",
                    "reason": "PutObject" if "Created" in detail_type else "DeleteObject",
                },
            }

        ack = await _json(await client.post("/api/v1/s3-notification", json=eb("Object Created")), 202)
        assert ack["accepted"] == 1
        local = mirror / "eb/obj.txt"
        await wait_for(lambda: local.is_file(), what="created file")
        assert local.read_bytes() == b"via eventbridge"
        delete_objects(s3, bucket, ["eb/obj.txt"])
        ack = await _json(await client.post("/api/v1/s3-notification", json=eb("Object Deleted")), 202)
        assert ack["accepted"] == 1
        await wait_for(lambda: not local.exists(), what="deleted file")

    async def test_duplicate_and_reordered_events_converge(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """A stale remove arriving after a create, plus duplicates, still leaves the live file."""
        seed(s3, bucket, {"dup.txt": b"final"})
        records = [
            s3_event(bucket, "ObjectCreated:Put", "dup.txt", 5),
            s3_event(bucket, "ObjectCreated:Put", "dup.txt", 5),
            s3_event(bucket, "ObjectRemoved:Delete", "dup.txt"),
            s3_event(bucket, "ObjectCreated:Put", "dup.txt", 5),
        ]
        resp = await client.post("/api/v1/s3-notification", json={"Records": records})
        assert resp.status == 202, await resp.text()
        local = mirror / "dup.txt"

        async def settled() -> bool:
            stats = await _json(await client.get("/api/v1/stats"), 200)
            return local.is_file() and stats["queue_depth"] == 0 and stats["in_flight"] == 0

        await wait_for(settled, what="events applied")
        assert local.read_bytes() == b"final"
        assert temp_files(mirror) == []

    async def test_oversized_body(self, client: Any) -> None:
        """A body over api.max_body_bytes is refused with a JSON 413."""
        resp = await client.post(
            "/api/v1/s3-notification",
            data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
            headers={"Content-Type": "application/json"},
        )
        await _error(resp, 413)

    async def test_test_event_is_acknowledged(self, client: Any, bucket: str) -> None:
        """The s3:TestEvent S3 sends on configuration is accepted with nothing to do."""
        event = {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": "2024-01-15T10:30:00.000Z",
            "Bucket": bucket,
            "RequestId": "R",
            "HostId": "H",
        }
        resp = await client.post("/api/v1/s3-notification", json=event)
        data = await _json(resp, 202)
        assert data.get("accepted", 0) == 0

    @pytest.mark.parametrize(
        "payload",
        [
            {"Records": "x"},
            {"Records": [1, None, "s"]},
            {"Records": [{"eventName": 5, "s3": None}]},
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {}}}]},
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": 7}}}]},
            {"Type": "Notification", "Message": "not json"},
            {"Type": "Notification", "Message": 12},
            {"detail-type": "Object Created", "source": "aws.s3", "detail": None},
            {"detail-type": "Object Created", "source": "aws.s3", "detail": {"object": "k"}},
            {},
            "just a string",
            None,
        ],
        ids=lambda p: json.dumps(p)[:40],
    )
    async def test_hostile_payloads_never_500(
        self, client: Any, payload: Any, mirror: Path
    ) -> None:
        """Malformed events are refused (4xx) or ignored (202), always as JSON, never a 500."""
        resp = await client.post("/api/v1/s3-notification", json=payload)
        text = await resp.text()
        assert resp.status in (202, 400, 422), (resp.status, text)
        assert "Traceback" not in text
        data = json.loads(text)
        if resp.status == 202:
            assert data.get("accepted", 0) == 0, data
        else:
            assert "error" in data and "message" in data, data
        assert tree(mirror) == {}

    async def test_event_for_missing_object(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """A create event for a key S3 no longer has writes nothing and breaks nothing."""
        seed(s3, bucket, {"real.txt": b"real"})
        records = [
            s3_event(bucket, "ObjectCreated:Put", "ghost.txt", 5),
            s3_event(bucket, "ObjectCreated:Put", "real.txt", 4),
        ]
        resp = await client.post("/api/v1/s3-notification", json={"Records": records})
        assert resp.status == 202, await resp.text()

        async def settled() -> bool:
            stats = await _json(await client.get("/api/v1/stats"), 200)
            return (
                (mirror / "real.txt").is_file()
                and stats["queue_depth"] == 0
                and stats["in_flight"] == 0
            )

        await wait_for(settled, what="events applied")
        assert tree(mirror) == {"real.txt": b"real"}
        assert temp_files(mirror) == []
        health = await _json(await client.get("/api/v1/health"), 200)
        assert health["status"] == "healthy"

    async def test_event_for_other_bucket_is_ignored(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """Records naming another bucket are counted as ignored and write nothing."""
        other = f"{bucket}-other"
        s3.create_bucket(Bucket=other)
        seed(s3, other, {"foreign.txt": b"not ours"})
        resp = await client.post(
            "/api/v1/s3-notification",
            json={"Records": [s3_event(other, "ObjectCreated:Put", "foreign.txt", 8)]},
        )
        data = await _json(resp, 202)
        assert data == {"accepted": 0, "ignored": 1}
        assert tree(mirror) == {}

    async def test_invalid_json(self, client: Any) -> None:
        """A body that is not JSON is a 400 with a JSON error."""
        resp = await client.post(
            "/api/v1/s3-notification",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        await _error(resp, 400)

    async def test_wrong_shape(self, client: Any) -> None:
        """JSON that is not an event at all is a 400, not a 500."""
        resp = await client.post("/api/v1/s3-notification", json=[1, 2, 3])
        await _error(resp, 400)


class TestFiles:
    """GET /api/v1/files pages through local or bucket listings."""

    async def _walk(self, client: Any, source: str, limit: int, prefix: str = "") -> list[str]:
        keys: list[str] = []
        cursor: str | None = None
        for _ in range(100):
            params = {"source": source, "limit": str(limit)}
            if prefix:
                params["prefix"] = prefix
            if cursor:
                params["cursor"] = cursor
            data = await _json(await client.get("/api/v1/files", params=params), 200)
            assert data["source"] == source
            assert len(data["files"]) <= limit
            for f in data["files"]:
                assert "key" in f and "size" in f, f
            keys.extend(f["key"] for f in data["files"])
            cursor = data["next_cursor"]
            if cursor is None:
                return keys
        raise AssertionError("pagination did not terminate")

    @pytest.mark.parametrize("source", ["local", "s3"])
    async def test_pages_cover_every_key_once(
        self, client: Any, s3: Any, bucket: str, source: str
    ) -> None:
        """Walking all pages with the cursor yields every key exactly once."""
        objects = seed(s3, bucket, nested_objects(11, size=10))
        if source == "local":
            await _manual_sync(client)
        keys = await self._walk(client, source, limit=3)
        assert len(keys) == len(set(keys)), keys
        assert set(keys) == set(objects)

    async def test_prefix_and_sizes(self, client: Any, s3: Any, bucket: str) -> None:
        """prefix narrows the listing and sizes are the object sizes."""
        seed(s3, bucket, {"p/a": b"12345", "p/b/c": b"1", "q": b"22"})
        await _manual_sync(client)
        for source in ("local", "s3"):
            data = await _json(
                await client.get("/api/v1/files", params={"source": source, "prefix": "p/"}), 200
            )
            assert {f["key"]: f["size"] for f in data["files"]} == {"p/a": 5, "p/b/c": 1}

    async def test_local_listing_hides_state_dir(self, client: Any, s3: Any, bucket: str) -> None:
        """The .s3sync state directory never shows up as files."""
        seed(s3, bucket, {"only": b"1"})
        await _manual_sync(client)
        keys = await self._walk(client, "local", limit=50)
        assert keys == ["only"]

    async def test_awkward_keys_roundtrip(self, client: Any, s3: Any, bucket: str) -> None:
        """Unicode, spaces, '+' and '%' keys list correctly and download by their encoded path."""
        objects = seed(
            s3,
            bucket,
            {"ü/日本 語.txt": b"u", "a+b.txt": b"p", "100%.txt": b"pc", "q?.txt": b"q"},
        )
        await _manual_sync(client)
        for source in ("local", "s3"):
            keys = await self._walk(client, source, limit=2)
            assert sorted(keys) == sorted(objects), (source, keys)
        for key, data in objects.items():
            resp = await client.get(URL("/api/v1/download/" + quote(key), encoded=True))
            assert resp.status == 200, (key, await resp.text())
            assert await resp.read() == data

    async def test_garbage_cursor(self, client: Any) -> None:
        """A cursor the server never issued is a 400 (or an empty page), never a 500."""
        for cursor in ("%%%", "not-a-cursor", "eyJ4IjogMX0=", "\u0000"):
            resp = await client.get(
                "/api/v1/files", params={"source": "local", "cursor": cursor}
            )
            text = await resp.text()
            assert resp.status in (200, 400), (cursor, resp.status, text)
            assert "Traceback" not in text

    @pytest.mark.parametrize(
        "query",
        ["source=ftp", "source=local&limit=0", "source=local&limit=-5", "source=s3&limit=abc"],
    )
    async def test_bad_parameters(self, client: Any, query: str) -> None:
        """Bad source or limit is a JSON 400."""
        await _error(await client.get(f"/api/v1/files?{query}"), 400)


class TestDownload:
    """GET /api/v1/download/{key} serves the mirror, and nothing but the mirror."""

    @pytest.fixture
    async def synced(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> dict[str, bytes]:
        objects = seed(
            s3,
            bucket,
            {"dir/file.bin": body_for("dl", 5000), "space name.txt": b"spaced", "top": b"t"},
        )
        await _manual_sync(client)
        # A secret next to the mirror: any traversal that works would leak it.
        (mirror.parent / "secret.txt").write_bytes(b"TOP-SECRET")
        return objects

    async def test_whole_file(self, client: Any, synced: dict[str, bytes]) -> None:
        """The body is the local copy's bytes."""
        resp = await client.get("/api/v1/download/dir/file.bin")
        assert resp.status == 200
        assert await resp.read() == synced["dir/file.bin"]
        resp = await client.get(URL("/api/v1/download/" + quote("space name.txt"), encoded=True))
        assert resp.status == 200
        assert await resp.read() == b"spaced"

    async def test_range(self, client: Any, synced: dict[str, bytes]) -> None:
        """A Range request gets 206, the slice, and a Content-Range header."""
        data = synced["dir/file.bin"]
        resp = await client.get("/api/v1/download/dir/file.bin", headers={"Range": "bytes=10-19"})
        assert resp.status == 206
        assert await resp.read() == data[10:20]
        assert resp.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        resp = await client.get("/api/v1/download/dir/file.bin", headers={"Range": "bytes=-7"})
        assert resp.status == 206
        assert await resp.read() == data[-7:]

    async def test_absent(self, client: Any, synced: dict[str, bytes]) -> None:
        """A key that is not in the mirror is a JSON 404."""
        await _error(await client.get("/api/v1/download/dir/nope.bin"), 404)
        await _error(await client.get("/api/v1/download/dir"), 400, 404)

    @pytest.mark.parametrize(
        "path",
        [
            "/api/v1/download/..%2Fsecret.txt",
            "/api/v1/download/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
            "/api/v1/download/%2e%2e/secret.txt",
            "/api/v1/download/%2e%2e%2fsecret.txt",
            "/api/v1/download/dir/..%2F..%2Fsecret.txt",
            "/api/v1/download/%2Fetc%2Fpasswd",
            "/api/v1/download//etc/passwd",
            "/api/v1/download/top%00.txt",
            "/api/v1/download/.s3sync/state.db",
        ],
    )
    async def test_traversal_via_client(
        self, client: Any, synced: dict[str, bytes], path: str
    ) -> None:
        """Encoded traversal attempts are refused with JSON, never served."""
        resp = await client.get(URL(path, encoded=True))
        body = await resp.read()
        assert b"TOP-SECRET" not in body and b"root:" not in body and b"SQLite" not in body
        await _error(resp, 400, 404)

    @pytest.mark.parametrize(
        "target",
        [
            "/api/v1/download/../secret.txt",
            "/api/v1/download/../../../../../../etc/passwd",
            "/api/v1/download/..%2Fsecret.txt",
            "/api/v1/download/%2e%2e/secret.txt",
            "/api/v1/download/dir/../../secret.txt",
            "/api/v1/download/%2Fetc%2Fpasswd",
            "/api/v1/download/top%00",
        ],
    )
    async def test_traversal_raw_socket(
        self, client: Any, synced: dict[str, bytes], target: str
    ) -> None:
        """Request targets sent byte for byte (no client normalisation) are refused too."""
        status, body = await raw_http(client.host, client.port, f"GET {target} HTTP/1.1")
        assert b"TOP-SECRET" not in body and b"root:" not in body
        assert status in (400, 404), (status, body[:300])
        data = json.loads(body)
        assert "error" in data and "message" in data


class TestAuth:
    """With api.token set, only /ping and /api/v1/health are open."""

    @pytest.fixture
    async def authed(
        self, start_api: StartApi, make_settings: Any, bucket: str, mirror: Path
    ) -> Any:
        return await start_api(make_settings(bucket, mirror, api={"token": TOKEN}))

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/"),
            ("GET", "/api/v1/config"),
            ("GET", "/api/v1/stats"),
            ("GET", "/metrics"),
            ("GET", "/api/v1/files?source=local"),
            ("GET", "/api/v1/download/anything"),
            ("GET", "/api/v1/sync/some-job"),
            ("POST", "/api/v1/sync"),
            ("POST", "/api/v1/s3-notification"),
            ("GET", "/api/v1/openapi.json"),
        ],
    )
    async def test_protected_without_token(self, authed: Any, method: str, path: str) -> None:
        """No header, a wrong token, or a non-Bearer scheme → 401 JSON."""
        await _error(await authed.request(method, path), 401)
        await _error(
            await authed.request(method, path, headers={"Authorization": "Bearer wrong"}), 401
        )
        await _error(
            await authed.request(method, path, headers={"Authorization": f"Basic {TOKEN}"}), 401
        )

    async def test_hmac_signed_notification(
        self, start_api: StartApi, make_settings: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """A fresh, correct HMAC signature replaces the bearer token; anything else is 401."""
        client = await start_api(
            make_settings(bucket, mirror, api={"token": TOKEN, "notification_secret": SECRET})
        )
        seed(s3, bucket, {"signed.txt": b"signed"})
        body = json.dumps(
            {"Records": [s3_event(bucket, "ObjectCreated:Put", "signed.txt", 6)]}
        ).encode()

        def signed(ts: int, secret: str = SECRET, payload: bytes = body) -> dict[str, str]:
            mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256)
            return {
                "Content-Type": "application/json",
                "X-S3Sync-Timestamp": str(ts),
                "X-S3Sync-Signature": "sha256=" + mac.hexdigest(),
            }

        now = int(time.time())
        path = "/api/v1/s3-notification"
        await _error(await client.post(path, data=body, headers=signed(now, "wrong")), 401)
        await _error(await client.post(path, data=body, headers=signed(now - 3600)), 401)
        await _error(
            await client.post(path, data=body, headers=signed(now, payload=b"{}")), 401
        )
        # the signature opens only the notification endpoint
        await _error(await client.post("/api/v1/sync", data=body, headers=signed(now)), 401)
        resp = await client.post(path, data=body, headers=signed(now))
        assert (await _json(resp, 202))["accepted"] == 1
        local = mirror / "signed.txt"
        await wait_for(lambda: local.is_file(), what="signed event applied")

    async def test_open_endpoints(self, authed: Any) -> None:
        """/ping and /api/v1/health need no token."""
        assert (await authed.get("/ping")).status == 200
        assert (await authed.get("/api/v1/health")).status == 200

    async def test_with_token(self, authed: Any, s3: Any, bucket: str, mirror: Path) -> None:
        """The right bearer token opens every endpoint."""
        seed(s3, bucket, {"k": b"v"})
        hdr = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/", "/api/v1/config", "/api/v1/stats", "/metrics"):
            resp = await authed.get(path, headers=hdr)
            assert resp.status == 200, (path, await resp.text())
        resp = await authed.post("/api/v1/sync", headers=hdr)
        assert resp.status == 200, await resp.text()
        resp = await authed.get("/api/v1/download/k", headers=hdr)
        assert resp.status == 200
        assert await resp.read() == b"v"
        assert tree(mirror) == {"k": b"v"}
