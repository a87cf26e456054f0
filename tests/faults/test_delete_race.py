"""A reconcile's delete is re-checked when it is applied: a key re-created since the listing is kept.

The race is real: the fault proxy holds the pass's GETs (latency), so the pass
sits between its listing (which says ``victim`` is gone) and its deletes while
``victim`` is re-created in S3 and its event is applied by the same engine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from support.proxy import Proxy
from support.s3kit import delete_objects, seed
from support.wait import wait_for

from s3sync.model import Change, ChangeKind, ChangeSource


def _read(p: Path) -> bytes | None:
    try:
        return p.read_bytes()
    except OSError:
        return None


class TestDeleteRecheck:
    """Deletes go through the coalescing queue and ask S3 again, key by key."""

    async def test_recreated_key_survives_a_slow_reconcile(
        self, s3: Any, bucket: str, mirror: Path, proxy: Proxy, proxied_settings: Any
    ) -> None:
        from s3sync.sync.engine import open_engine

        slow = {f"slow-{i}": b"v1" for i in range(3)}
        seed(s3, bucket, {**slow, "victim": b"old", **{f"keep-{i}": b"k" for i in range(6)}})
        settings = proxied_settings(bucket, mirror, sync={"max_delete": -1})
        async with open_engine(settings) as engine:
            first = await engine.reconcile()
            assert first.ok and (mirror / "victim").read_bytes() == b"old", first.errors

            seed(s3, bucket, {k: b"v2" for k in slow})  # the next pass has slow downloads to make
            delete_objects(s3, bucket, ["victim"])  # ... and, per its listing, one delete
            proxy.faults.add("latency", op="GET", key_re="slow-", seconds=6.0)
            proxy.reset_counters()
            task = asyncio.create_task(engine.reconcile(delete=True))
            await wait_for(
                lambda: any(proxy.count("GET", k) for k in slow),
                within=30,
                interval=0.02,
                what="the pass to list and start its slow GETs",
            )
            assert proxy.count("LIST") >= 1 and proxy.count("HEAD", "victim") == 0

            seed(s3, bucket, {"victim": b"reborn"})  # re-created after the listing ...
            await engine.intake([Change("victim", ChangeKind.UPSERT, ChangeSource.NOTIFICATION)])
            await wait_for(
                lambda: _read(mirror / "victim") == b"reborn",
                within=30,
                interval=0.02,
                what="the event's download",
            )
            assert not task.done(), "the pass must still be between its listing and its deletes"

            report = await task
        assert (mirror / "victim").read_bytes() == b"reborn"
        assert report.deleted == 0, report.details
        kept = [d for d in report.details if d["file_key"] == "victim"]
        assert kept and kept[0]["operation"] == "delete" and kept[0]["status"] == "kept", kept
        assert proxy.count("HEAD", "victim") >= 1  # the delete asked S3 again when it was applied
        assert all((mirror / k).read_bytes() == b"v2" for k in slow)


class TestDeletesWithheldPerKey:
    """One key failing holds back no other delete; only that key's own state is uncertain."""

    async def test_failed_download_does_not_block_other_deletes(
        self, s3: Any, bucket: str, mirror: Path, proxy: Proxy, proxied_settings: Any
    ) -> None:
        from s3sync.sync.engine import open_engine

        seed(s3, bucket, {"broken": b"v1", "gone": b"g", **{f"k{i}": b"k" for i in range(4)}})
        settings = proxied_settings(bucket, mirror, sync={"retry_attempts": 1})
        async with open_engine(settings) as engine:
            assert (await engine.reconcile()).ok
            seed(s3, bucket, {"broken": b"v2", "new": b"n", "new-broken": b"nb"})  # fetched next pass
            delete_objects(s3, bucket, ["gone"])
            (mirror / "local-only").write_bytes(b"not in the bucket")
            (mirror / "new-broken").write_bytes(b"someone's copy")  # untracked, and its key fails
            proxy.faults.add("status", op="GET", key_re="broken$", status=500, code="InternalError")
            report = await engine.reconcile(delete=True)
        assert sorted(e["key"] for e in report.errors) == ["broken", "new-broken"], report.errors
        assert report.deleted == 2, report.details  # 'gone' and the untracked 'local-only'
        assert not (mirror / "gone").exists() and not (mirror / "local-only").exists()
        assert (mirror / "broken").read_bytes() == b"v1"  # the failed key keeps its old copy
        assert (mirror / "new").read_bytes() == b"n"
        # not settled by this pass: its local file is withheld from the sweep, and the report says so
        assert (mirror / "new-broken").read_bytes() == b"someone's copy"
        withheld = [d for d in report.details if d["status"] == "withheld"]
        assert [d["file_key"] for d in withheld] == ["new-broken"] and "not settled" in withheld[0]["message"]
