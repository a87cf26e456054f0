"""``s3sync sync --inventory`` and ``--shard K/N`` end to end against moto.

The report is built in the test from the bucket's own listing, laid out as AWS
writes it, into a second bucket; s3sync talks to moto through a counting
proxy, so "no ListObjectsV2 on the source bucket" is checked on the wire.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.inventorykit import Obj, build_report, upload
from support.proxy import Proxy
from support.s3kit import body_for, seed, tree

KEYS = ["plain.txt", "dir with space/a b.txt", "c++/x+y.txt", "ünï/ключ.txt", "deep/1/2/3.bin"] + [
    f"bulk/{i:03d}.dat" for i in range(25)
]


def report_of(
    s3: Any, source: str, report_bucket: str, *, files: int = 3, when: dt.datetime | None = None
) -> str:
    """An inventory report of what ``source`` holds now (AWS's view at report time); its location."""
    rows = [
        Obj(o["Key"], o["Size"], o["ETag"].strip('"'), o["LastModified"].timestamp())
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source)
        for o in page.get("Contents", [])
    ]
    when = when or dt.datetime.now(dt.UTC)
    rep = build_report(
        report_bucket, "inventory", source, "daily", when, [rows[i::files] for i in range(files)]
    )
    upload(s3, report_bucket, rep.objects)
    return rep.location


@pytest.fixture
def report_bucket(s3: Any) -> str:
    name = f"inv-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def state_keys(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT key FROM objects")}
    finally:
        conn.close()


class TestInventorySync:
    """The report replaces the listing: same mirror, no LIST of the source bucket."""

    def test_mirror_from_report_without_listing_source(
        self, s3: Any, bucket: str, report_bucket: str, mirror: Path, cli: Any, moto_endpoint: str
    ) -> None:
        objects = seed(s3, bucket, {k: body_for(k, 100 + i) for i, k in enumerate(KEYS)})
        location = report_of(s3, bucket, report_bucket)
        with Proxy(moto_endpoint) as proxy:
            args = ["--bucket", bucket, "--endpoint-url", proxy.url, "--dest", str(mirror)]
            args += ["--inventory", location]
            first = cli("sync", *args)
            assert first.returncode == 0, first.stderr
            assert tree(mirror) == objects
            assert len(proxy.requests("LIST", bucket=bucket)) == 0
            assert len(proxy.requests("LIST", bucket=report_bucket)) >= 1
            assert len(proxy.requests("GET", bucket=bucket)) == len(objects)
            again = cli("sync", *args)
        assert again.returncode == 0, again.stderr
        assert len(proxy.requests("LIST", bucket=bucket)) == 0
        assert len(proxy.requests("GET", bucket=bucket)) == len(objects)  # the no-change pass fetched nothing

    def test_corrupt_report_fails_and_deletes_nothing(
        self, s3: Any, bucket: str, report_bucket: str, mirror: Path, cli: Any
    ) -> None:
        seed(s3, bucket, {"a.txt": b"a", "b.txt": b"b"})
        assert cli.sync(bucket, mirror).returncode == 0
        s3.delete_object(Bucket=bucket, Key="b.txt")
        location = report_of(s3, bucket, report_bucket, files=1)
        data_key = next(
            o["Key"] for o in s3.list_objects_v2(Bucket=report_bucket)["Contents"] if "/data/" in o["Key"]
        )
        good = s3.get_object(Bucket=report_bucket, Key=data_key)["Body"].read()
        s3.put_object(Bucket=report_bucket, Key=data_key, Body=good[:-8] + bytes(8))
        res = cli.sync(bucket, mirror, "--inventory", location, "--delete")
        assert res.returncode == 1
        assert "MD5" in res.stdout + res.stderr
        assert set(tree(mirror)) == {"a.txt", "b.txt"}  # nothing deleted

    def test_stale_report_deleted_and_recreated_keys(
        self, s3: Any, bucket: str, report_bucket: str, mirror: Path, cli: Any, moto_endpoint: str
    ) -> None:
        """Changes after the report are S3's to decide: a 404 is no failure, a HEAD keeps a live key."""
        seed(s3, bucket, {"keep.txt": b"keep", "gone.txt": b"gone", "again.txt": b"old", "k2": b"k2"})
        assert cli.sync(bucket, mirror).returncode == 0
        s3.delete_object(Bucket=bucket, Key="gone.txt")  # really gone: must be deleted
        s3.delete_object(Bucket=bucket, Key="again.txt")  # gone at report time ...
        seed(s3, bucket, {"brief.txt": b"brief"})  # ... and this one only lived around the report
        location = report_of(s3, bucket, report_bucket)
        time.sleep(1.1)  # LastModified has whole seconds: the re-creation must postdate the report
        s3.delete_object(Bucket=bucket, Key="brief.txt")
        seed(s3, bucket, {"again.txt": b"new"})  # ... re-created after the report
        with Proxy(moto_endpoint) as proxy:
            res = cli(
                "sync",
                "--bucket",
                bucket,
                "--endpoint-url",
                proxy.url,
                "--dest",
                str(mirror),
                "--inventory",
                location,
                "--delete",
                "--json",
            )
        assert res.returncode == 0, res.stdout + res.stderr
        got = tree(mirror)
        assert "gone.txt" not in got  # absent from the report, HEAD 404: deleted
        assert got["again.txt"] in (b"old", b"new")  # absent from the report, HEAD 200: kept
        assert "brief.txt" not in got  # in the report, 404 on GET: a skip, not a failure
        assert got["keep.txt"] == b"keep" and got["k2"] == b"k2"
        assert len(proxy.requests("LIST", bucket=bucket)) == 0
        assert len(proxy.requests("HEAD", bucket=bucket)) >= 2  # each delete candidate was confirmed with S3

    async def test_stats_name_the_source_and_report(
        self, s3: Any, bucket: str, report_bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        from s3sync.stats import SyncStats
        from s3sync.sync.engine import open_engine

        seed(s3, bucket, {"x": b"x"})
        when = dt.datetime(2026, 11, 30, 4, 5, tzinfo=dt.UTC)
        location = report_of(s3, bucket, report_bucket, files=1, when=when)
        stats = SyncStats()
        async with open_engine(
            make_settings(bucket, mirror, inventory={"location": location}), stats
        ) as engine:
            report = await engine.reconcile()
        assert report.ok and report.downloaded == 1
        snap = stats.snapshot()
        assert snap["last_reconcile_source"] == "inventory"
        assert snap["inventory_report"]["date"] == "2026-11-30T04-05Z"
        assert snap["inventory_report"]["created"].startswith("2026-11-30T04:05:00")
        assert snap["inventory_report"]["location"] == location
        from prometheus_client import generate_latest

        from s3sync.api.metrics import make_registry

        text = generate_latest(make_registry(stats)).decode()
        gauge = next(ln for ln in text.splitlines() if ln.startswith("s3sync_inventory_report_created"))
        assert float(gauge.split()[1]) == when.timestamp()


class TestShards:
    """Two hosts on one filesystem, each its shard: every object exactly once, nobody deletes the other's."""

    @pytest.mark.parametrize("with_inventory", [False, True])
    def test_two_way_split_covers_bucket_once(
        self,
        s3: Any,
        bucket: str,
        report_bucket: str,
        mirror: Path,
        cli: Any,
        moto_endpoint: str,
        with_inventory: bool,
    ) -> None:
        objects = seed(s3, bucket, {k: body_for(k, 50) for k in KEYS})
        extra = ["--inventory", report_of(s3, bucket, report_bucket)] if with_inventory else []
        with Proxy(moto_endpoint) as proxy:
            for k in (0, 1):
                res = cli(
                    "sync",
                    "--bucket",
                    bucket,
                    "--endpoint-url",
                    proxy.url,
                    "--dest",
                    str(mirror),
                    "--shard",
                    f"{k}/2",
                    *extra,
                )
                assert res.returncode == 0, res.stderr
            assert tree(mirror) == objects
            got = [s.key for s in proxy.seen if s.method == "GET" and s.bucket == bucket and s.key]
            assert sorted(got) == sorted(objects)  # each object fetched once, by one shard
            for k in (0, 1):  # a --delete pass of either shard leaves the other's files alone
                res = cli(
                    "sync",
                    "--bucket",
                    bucket,
                    "--endpoint-url",
                    proxy.url,
                    "--dest",
                    str(mirror),
                    "--shard",
                    f"{k}/2",
                    "--delete",
                    *extra,
                )
                assert res.returncode == 0, res.stderr
        assert tree(mirror) == objects
        s0 = state_keys(mirror / ".s3sync" / "state-0-of-2.db")
        s1 = state_keys(mirror / ".s3sync" / "state-1-of-2.db")
        assert s0 | s1 == set(objects) and not s0 & s1 and s0 and s1

    async def test_event_for_another_shard_is_ignored_and_counted(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        from s3sync.model import Change, ChangeKind, ChangeSource, shard_of
        from s3sync.stats import SyncStats
        from s3sync.sync.engine import open_engine

        keys = [f"k{i}" for i in range(20)]
        seed(s3, bucket, {k: k.encode() for k in keys})
        mine = [k for k in keys if shard_of(k, 2) == 1]
        stats = SyncStats()
        settings = make_settings(bucket, mirror, sync={"shard": "1/2"})
        async with open_engine(settings, stats) as engine:
            changes = [Change(k, ChangeKind.UPSERT, ChangeSource.NOTIFICATION) for k in keys]
            assert await engine.intake(changes) == len(mine)
            assert await engine.drain(30)
        assert stats.other_shard == len(keys) - len(mine)
        assert sorted(tree(mirror)) == sorted(mine)
        assert stats.snapshot()["changes_other_shard"] == len(keys) - len(mine)
