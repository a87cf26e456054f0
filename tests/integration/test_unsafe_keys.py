"""Hostile keys are skipped, counted and reported, and never write outside the mirror."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.s3kit import CliRunner, seed, temp_files, tree

LONG = "s" * 300

UNSAFE = ["../x", "a/../../x", "/abs", "./y", LONG, "x"]  # "x" collides with the "x/" directory
PATH_UNSAFE = [k for k in UNSAFE if k != "x"]  # unsafe whatever else the bucket holds
SAFE = {"file..txt": b"dots inside a name", "a..b/c": b"dots inside a dir", "x/y": b"x is a dir"}


def _seed_hostile(s3: Any, bucket: str) -> dict[str, bytes]:
    objects = {k: f"body of {k}".encode() for k in UNSAFE}
    objects.update(SAFE)
    return seed(s3, bucket, objects)


def _assert_contained(mirror: Path) -> None:
    """The mirror's parent holds nothing but the mirror; nothing was written above it."""
    assert sorted(p.name for p in mirror.parent.iterdir()) == ["mirror"]
    assert sorted(p.name for p in mirror.parent.parent.iterdir()) == ["jail"]
    assert not Path("/abs").exists()


class TestCliUnsafeKeys:
    """``s3sync sync`` maps the safe keys, refuses the rest, and keeps going."""

    def test_hostile_bucket(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        """Six unsafe keys are refused and listed; the three safe ones sync byte for byte."""
        _seed_hostile(s3, bucket)
        res = cli.sync(bucket, mirror, "--json")
        assert res.returncode in (0, 1), res
        data = res.json()
        assert data["downloaded"] == len(SAFE), data
        assert data["skipped"] + data["failed"] == len(UNSAFE), data
        reported = {e["key"] for e in data["errors"]}
        assert reported == set(UNSAFE), data["errors"]
        for err in data["errors"]:
            assert err["error"] and err["message"], err
        assert tree(mirror) == SAFE
        assert temp_files(mirror) == []
        _assert_contained(mirror)  # the CLI's cwd is tmp_path, so this covers relative escapes

    def test_rerun_and_verify(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        """Re-runs download nothing new but keep counting the refused keys; verify copes too."""
        _seed_hostile(s3, bucket)
        first = cli.sync(bucket, mirror)
        counts = first.summary()
        assert counts["downloaded"] == len(SAFE), first
        assert counts["skipped"] + counts["failed"] == len(UNSAFE), first

        second = cli.sync(bucket, mirror)
        counts = second.summary()
        assert counts["downloaded"] == 0, second
        assert counts["unchanged"] == len(SAFE), second
        assert counts["skipped"] + counts["failed"] == len(UNSAFE), second
        assert tree(mirror) == SAFE

        res = cli.verify(bucket, mirror)
        assert res.returncode in (0, 1), res
        assert "Traceback" not in res.output
        _assert_contained(mirror)


class TestApiUnsafeKeys:
    """The same rules hold for manual syncs and notifications through the HTTP API."""

    @pytest.fixture
    async def client(
        self, aiohttp_client: Any, make_settings: Any, bucket: str, mirror: Path
    ) -> Any:
        from s3sync.daemon.app import create_app

        return await aiohttp_client(create_app(make_settings(bucket, mirror)))

    async def test_manual_sync(self, client: Any, s3: Any, bucket: str, mirror: Path) -> None:
        """Unsafe keys show up as non-success details and in the unsafe_keys counter."""
        _seed_hostile(s3, bucket)
        resp = await client.post("/api/v1/sync")
        assert resp.status == 200, await resp.text()
        data = await resp.json()
        assert data["status"] in ("partial", "failed", "success"), data
        ok = {d["file_key"] for d in data["sync_details"] if d["status"] == "success"}
        assert ok == set(SAFE), data
        bad = {d["file_key"] for d in data["sync_details"] if d["status"] in ("failed", "skipped")}
        assert bad == set(UNSAFE), data
        stats = await (await client.get("/api/v1/stats")).json()
        assert stats["unsafe_keys"] >= len(UNSAFE) - 1, stats  # "x" may count as a conflict
        assert tree(mirror) == SAFE
        _assert_contained(mirror)

    async def test_unsafe_key_told_once_until_it_changes(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """A second pass counts the unsafe keys but no longer lists them as errors; a new ETag does."""
        seed(s3, bucket, {k: b"v1" for k in PATH_UNSAFE} | SAFE)

        async def sync() -> tuple[dict[str, Any], dict[str, Any]]:
            resp = await client.post("/api/v1/sync")
            assert resp.status == 200, await resp.text()
            return await resp.json(), await (await client.get("/api/v1/stats")).json()

        first, stats1 = await sync()
        assert {e["key"] for e in first["errors"]} == set(PATH_UNSAFE), first
        assert first["skipped"] == len(PATH_UNSAFE), first
        second, stats2 = await sync()
        assert second["errors"] == [], second
        assert second["skipped"] == len(PATH_UNSAFE), second
        assert stats2["unsafe_keys"] == stats1["unsafe_keys"] + len(PATH_UNSAFE), (stats1, stats2)
        s3.put_object(Bucket=bucket, Key="../x", Body=b"v2")  # a new ETag: said again, once
        third, _ = await sync()
        assert [e["key"] for e in third["errors"]] == ["../x"], third
        fourth, _ = await sync()
        assert fourth["errors"] == [], fourth
        assert tree(mirror) == SAFE

    async def test_events_for_unsafe_keys(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """Create events naming hostile keys are accepted but never write outside the mirror."""
        from urllib.parse import quote_plus

        from support.wait import wait_for

        _seed_hostile(s3, bucket)
        records = [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(k, safe="/")}},
            }
            for k in [*PATH_UNSAFE, "file..txt"]
        ]
        resp = await client.post("/api/v1/s3-notification", json={"Records": records})
        assert resp.status in (202, 400), await resp.text()

        async def settled() -> bool:
            stats = await (await client.get("/api/v1/stats")).json()
            return bool(
                (mirror / "file..txt").is_file()
                and stats["queue_depth"] == 0
                and stats["in_flight"] == 0
            ) or resp.status == 400

        await wait_for(settled, what="events processed")
        assert set(tree(mirror)) == {"file..txt"}
        _assert_contained(mirror)
