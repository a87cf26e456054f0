"""Issue 23, the API side: typos refused, a tripping guard shows in health, /docs renders.

Against the real app (aiohttp test server) and a real moto S3; nothing of ours is patched.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support.s3kit import seed
from support.wait import wait_for

StartApi = Callable[..., Awaitable[Any]]


@pytest.fixture
async def start_api(aiohttp_client: Any) -> StartApi:
    from s3sync.daemon.app import create_app

    async def _start(settings: Any, **kw: Any) -> Any:
        return await aiohttp_client(create_app(settings), **kw)

    return _start


async def _ready(c: Any) -> bool:
    return bool((await c.get("/api/v1/health")).status == 200)


@pytest.fixture
async def client(start_api: StartApi, make_settings: Any, bucket: str, mirror: Path) -> Any:
    c = await start_api(make_settings(bucket, mirror))
    await wait_for(lambda: _ready(c), within=20, what="engine ready")
    return c


async def _json_error(resp: Any, status: int) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == status, (resp.status, text)
    assert resp.content_type == "application/json", (resp.content_type, text)
    data = json.loads(text)
    assert isinstance(data, dict) and set(data) == {"error", "message"}, data
    return data


class TestUnknownQueryParameters:
    """A typo in a query parameter is a 400 naming it and the accepted ones, never ignored."""

    async def test_dryrun_typo_syncs_nothing(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        seed(s3, bucket, {"a.txt": b"a"})
        data = await _json_error(await client.post("/api/v1/sync?dryrun=true"), 400)
        assert data["error"] == "unknown_parameter"
        assert "dryrun" in data["message"]
        for name in ("prefix", "background", "delete", "dry_run"):
            assert name in data["message"], data
        assert not (mirror / "a.txt").exists()

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/?x=1"),
            ("GET", "/ping?x=1"),
            ("GET", "/api/v1/health?verbose=1"),
            ("GET", "/api/v1/config?x=1"),
            ("GET", "/api/v1/stats?x=1"),
            ("GET", "/metrics?x=1"),
            ("GET", "/api/v1/files?sourc=s3"),
            ("GET", "/api/v1/sync/abc?x=1"),
            ("GET", "/api/v1/download/a.txt?x=1"),
            ("POST", "/api/v1/s3-notification?x=1"),
        ],
    )
    async def test_every_endpoint(self, client: Any, method: str, path: str) -> None:
        data = await _json_error(await client.request(method, path, data=b"{}"), 400)
        name = path.split("?")[1].split("=")[0]
        assert data["error"] == "unknown_parameter" and name in data["message"], data

    async def test_known_parameters_still_work(self, client: Any) -> None:
        resp = await client.get("/api/v1/files?source=local&limit=5&prefix=")
        assert resp.status == 200, await resp.text()

    @pytest.mark.parametrize("value", ["", "TRUE", "maybe"])
    async def test_boolean_outside_the_enum(self, client: Any, value: str) -> None:
        data = await _json_error(await client.post(f"/api/v1/sync?delete={value}"), 400)
        assert data["error"] == "invalid_parameter" and "delete" in data["message"], data

    async def test_boolean_enum_is_the_servers(self, client: Any) -> None:
        from s3sync.api.handlers import BOOL_VALUES

        spec = await (await client.get("/api/v1/openapi.json")).json()
        params = spec["paths"]["/api/v1/sync"]["post"]["parameters"]
        enums = {p["name"]: p["schema"].get("enum") for p in params}
        assert sorted(enums["delete"]) == sorted(BOOL_VALUES)

    async def test_invalid_utf8_is_refused(self, client: Any) -> None:
        data = await _json_error(await client.get("/api/v1/files?prefix=%FF"), 400)
        assert "UTF-8" in data["message"], data


class TestGuardInHealth:
    """A delete guard that trips makes health ``degraded`` with the reason, until a pass gets past it."""

    async def test_degraded_until_cleared(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        keys = {f"k{i}.txt": b"x" for i in range(4)}
        seed(s3, bucket, keys)
        assert (await client.post("/api/v1/sync")).status == 200
        for k in list(keys)[:3]:
            s3.delete_object(Bucket=bucket, Key=k)
        report = await (await client.post("/api/v1/sync?delete=true")).json()
        assert report["status"] == "failed", report

        async def degraded() -> dict[str, Any] | None:
            resp = await client.get("/api/v1/health")
            data: dict[str, Any] = await resp.json()
            return data if resp.status == 503 else None

        health = await wait_for(degraded, within=20, what="health degraded")
        assert health["status"] == "degraded", health
        assert "max_delete" in health["reason"] and "--max-delete 3" in health["reason"], health
        seed(s3, bucket, keys)  # the operator puts the files back: the next pass deletes nothing
        report = await (await client.post("/api/v1/sync?delete=true")).json()
        assert report["status"] != "failed", report
        await wait_for(lambda: _ready(client), within=20, what="health healthy again")


ROOT = Path(__file__).resolve().parents[2]


async def test_every_metric_the_docs_name_exists(client: Any) -> None:
    """docs/events.md named ``s3sync_sqs_messages{outcome}``; /metrics says ``..._total``."""
    import re

    exposed = set(re.findall(r"^# TYPE (\w+) ", await (await client.get("/metrics")).text(), flags=re.M))
    samples = set(re.findall(r"^(\w+)[{ ]", await (await client.get("/metrics")).text(), flags=re.M))
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {m for p in texts for m in re.findall(r"\bs3sync_[a-z0-9_]+", p.read_text())}
    missing = sorted(n for n in named if n not in samples and n not in exposed)
    assert named and not missing, missing


class TestApiDetails:
    """The small things an HTTP client expects (issue 23, API details)."""

    async def test_416_says_the_length(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        seed(s3, bucket, {"f.txt": b"0123456789"})
        assert (await client.post("/api/v1/sync")).status == 200
        resp = await client.get("/api/v1/download/f.txt", headers={"Range": "bytes=50-60"})
        await _json_error(resp, 416)
        assert resp.headers["Content-Range"] == "bytes */10"

    async def test_download_has_a_request_id(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        seed(s3, bucket, {"f.txt": b"0123456789"})
        assert (await client.post("/api/v1/sync")).status == 200
        for headers in ({}, {"X-Request-Id": "mine-123"}, {"Range": "bytes=0-3"}):
            resp = await client.get("/api/v1/download/f.txt", headers=headers)
            assert resp.status in (200, 206), await resp.text()
            assert resp.headers.get("X-Request-Id"), resp.headers
            if "X-Request-Id" in headers:
                assert resp.headers["X-Request-Id"] == "mine-123"

    async def test_local_listing_has_the_etag(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        seed(s3, bucket, {"f.txt": b"0123456789"})
        etag = s3.head_object(Bucket=bucket, Key="f.txt")["ETag"].strip('"')
        assert (await client.post("/api/v1/sync")).status == 200
        (mirror / "untracked.txt").write_bytes(b"mine")
        data = await (await client.get("/api/v1/files?source=local")).json()
        etags = {f["key"]: f.get("etag") for f in data["files"]}
        assert etags == {"f.txt": etag, "untracked.txt": None}, data
        (mirror / "f.txt").write_bytes(b"changed locally")  # not what the state recorded any more
        data = await (await client.get("/api/v1/files?source=local")).json()
        assert {f["key"]: f.get("etag") for f in data["files"]}["f.txt"] is None
