"""SIGKILL a real ``s3sync serve`` mid-transfer and mid-reconcile, then restart it.

After the restart: no temporary file survives, every file is complete
(sha256 against the bucket), files that were already complete are not
downloaded again (GETs counted at the proxy), and changes accepted with 202
before the crash are applied from the journal without any reconcile.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from support.eventkit import notification
from support.proxy import Proxy
from support.s3kit import body_for, seed, temp_files, tree
from support.wait import poll

MiB = 1024 * 1024


def sha_tree(root: Path) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in tree(root).items()}


def sha_bucket(s3: Any, bucket: str) -> dict[str, str]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            out[item["Key"]] = hashlib.sha256(body).hexdigest()
    return out


class TestCrashMidTransfer:
    """A large object being written when the daemon dies leaves only a temp, swept at restart."""

    def test_sigkill_during_large_download(
        self, s3: Any, bucket: str, mirror: Path, proxy: Proxy, daemon_factory: Any
    ) -> None:
        big = seed(s3, bucket, {"big/blob.bin": body_for("big", 64 * MiB)})
        small = seed(s3, bucket, {f"small/{i:02d}.txt": body_for(f"s{i}", 2000 + i) for i in range(20)})
        # ranged GETs of the big object trickle at 4 MiB/s each; small ones are instant
        proxy.faults.add("throttle", op="GET", key_re="^big/", bytes_per_second=4 * MiB)
        d = daemon_factory(bucket=bucket, endpoint=proxy.url, local_dir=mirror, sync__concurrency=4)
        assert d.post("/api/v1/sync?background=true").status == 202
        poll(lambda: all(k in tree(mirror) for k in small), what="small files")
        poll(lambda: temp_files(mirror) and proxy.bytes_out > 20 * MiB, what="big download under way")
        d.kill()
        assert temp_files(mirror), "the crash should have left the big object's temp file behind"
        assert "big/blob.bin" not in tree(mirror)

        proxy.faults.clear()
        proxy.reset_counters()
        d2 = daemon_factory(bucket=bucket, endpoint=proxy.url, local_dir=mirror)
        assert temp_files(mirror) == [], "stale temps are swept at start"
        r = d2.post("/api/v1/sync", timeout=120)
        assert r.status == 200 and r.json()["failed_operations"] == 0, r.body
        assert sha_tree(mirror) == sha_bucket(s3, bucket)
        for key in small:
            assert proxy.count("GET", key) == 0, f"{key} was complete before the crash, yet fetched again"
        assert proxy.count("RANGE", "big/blob.bin") + proxy.count("GET", "big/blob.bin") >= 1
        assert sha_tree(mirror)["big/blob.bin"] == hashlib.sha256(big["big/blob.bin"]).hexdigest()
        assert d2.terminate() == 0


class TestCrashMidReconcile:
    """Files completed before the crash are kept and not fetched again; the rest follow."""

    def test_sigkill_half_way_through_a_reconcile(
        self, s3: Any, bucket: str, mirror: Path, proxy: Proxy, daemon_factory: Any
    ) -> None:
        objs = {f"d{i % 5}/f{i:03d}.bin": body_for(f"f{i}", 1000 + 37 * i) for i in range(120)}
        data = seed(s3, bucket, objs)
        proxy.faults.add("latency", op="GET", seconds=0.05)
        d = daemon_factory(bucket=bucket, endpoint=proxy.url, local_dir=mirror, sync__concurrency=2)
        assert d.post("/api/v1/sync?background=true").status == 202
        poll(lambda: len(tree(mirror)) >= 30, what="a quarter of the files")
        d.kill()
        before = tree(mirror)
        assert 30 <= len(before) < len(data)
        for key, body in before.items():
            assert body == data[key], f"{key} is visible but incomplete after the crash"

        proxy.faults.clear()
        proxy.reset_counters()
        d2 = daemon_factory(bucket=bucket, endpoint=proxy.url, local_dir=mirror, sync__concurrency=8)
        r = d2.post("/api/v1/sync", timeout=120)
        assert r.status == 200 and r.json()["failed_operations"] == 0, r.body
        assert tree(mirror) == data
        assert temp_files(mirror) == []
        refetched = [k for k in before if proxy.count("GET", k)]
        assert refetched == [], f"unchanged files downloaded again: {refetched[:5]}"
        assert proxy.count("GET") == len(data) - len(before)


class TestCrashWithJournal:
    """Notifications answered 202 before a crash are applied after restart, without a reconcile."""

    def test_accepted_changes_survive_sigkill(
        self, s3: Any, bucket: str, mirror: Path, proxy: Proxy, daemon_factory: Any
    ) -> None:
        data = seed(s3, bucket, {f"ev/{i:02d}.txt": body_for(f"e{i}", 500 + i) for i in range(12)})
        proxy.faults.add("latency", op="GET", seconds=60)  # workers hang: nothing can finish before the crash
        d = daemon_factory(bucket=bucket, endpoint=proxy.url, local_dir=mirror, sync__concurrency=2)
        r = d.post("/api/v1/s3-notification", notification(bucket, *data))
        assert r.status == 202 and r.json()["accepted"] == len(data), r.body
        poll(lambda: proxy.count("GET") >= 1, what="a worker to start a GET")
        d.kill()
        assert tree(mirror) == {}

        proxy.faults.clear()
        proxy.reset_counters()
        d2 = daemon_factory(bucket=bucket, endpoint=proxy.url, local_dir=mirror)
        poll(lambda: tree(mirror) == data, what="journaled changes applied after restart")
        assert proxy.count("LIST") == 0, "applied from the journal, not by a reconcile"
        poll(lambda: d2.stats()["journal_pending"] == 0 and d2.stats()["in_flight"] == 0,
             what="journal drained")
        assert d2.terminate() == 0
