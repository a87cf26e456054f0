"""The inventory reader against a real S3 API (moto on loopback), report laid out as AWS writes it.

The report lives in its own bucket, as AWS delivers it (destination bucket ≠
source bucket): several CSV data files in ``data/``, an older report beside the
newest, ``manifest.checksum`` and the Hive ``symlink.txt``; keys with spaces,
``+``, ``%`` and unicode. A corrupt data file fails the read with nothing yielded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import pytest
from support.inventorykit import Obj, build_report, upload
from support.s3kit import AWS_ENV

from s3sync.s3.inventory import InventoryError, InventoryReader

T0 = dt.datetime(2026, 11, 30, 3, 14, tzinfo=dt.UTC)
KEYS = [
    "plain.txt",
    "dir with space/file name.txt",
    "c++/a+b=c.txt",
    "100%/per cent.bin",
    "ünïcode/ключ/文件.txt",
    "emoji/🎉.png",
    "deep/a/b/c/d.txt",
    *[f"bulk/{i:04d}.dat" for i in range(300)],
]


class Moto:
    """The two callables the reader takes, over aioboto3 against moto; counts what it asked."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.session = aioboto3.Session(
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        self.list_calls: list[tuple[str, str]] = []
        self.gets: list[tuple[str, str]] = []

    async def list_keys(self, bucket: str, prefix: str) -> AsyncIterator[str]:
        async with self.session.client("s3", endpoint_url=self.endpoint) as c:
            token: dict[str, Any] = {}
            while True:
                self.list_calls.append((bucket, prefix))
                page = await c.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=5, **token)
                for item in page.get("Contents", []):
                    yield item["Key"]
                if not page.get("IsTruncated"):
                    return
                token = {"ContinuationToken": page["NextContinuationToken"]}

    async def get_object(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        self.gets.append((bucket, key))
        async with self.session.client("s3", endpoint_url=self.endpoint) as c:
            resp = await c.get_object(Bucket=bucket, Key=key)
            body = resp["Body"]
            try:
                async for chunk in body.iter_chunks(4096):
                    yield chunk
            finally:
                body.close()


def _obj(key: str) -> Obj:
    return Obj(key, len(key), hashlib.md5(key.encode()).hexdigest(), 1_764_460_800.0 + len(key))


@pytest.fixture
def report_bucket(s3: Any) -> str:
    name = f"inv-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


class TestInventoryOnS3:
    """Newest report, every data file, keys decoded, S3 key order; corrupt file → error."""

    async def test_newest_report_read_in_key_order(
        self, s3: Any, moto_endpoint: str, report_bucket: str
    ) -> None:
        src = "photos-prod"
        files = [[_obj(k) for k in KEYS[i::4]] for i in range(4)]
        older = build_report(
            report_bucket, "inventory", src, "daily-all", T0 - dt.timedelta(days=1), [[_obj("stale")]]
        )
        newest = build_report(report_bucket, "inventory", src, "daily-all", T0, files)
        upload(s3, report_bucket, older.objects)
        upload(s3, report_bucket, newest.objects)
        io = Moto(moto_endpoint)
        reader = InventoryReader(newest.location, io.list_keys, io.get_object, source_bucket=src, run_size=64)
        got = [m async for m in reader.objects()]

        assert [m.key for m in got] == sorted(KEYS, key=lambda k: k.encode("utf-8"))
        by_key = {m.key: m for m in got}
        want = _obj("c++/a+b=c.txt")
        assert (by_key[want.key].size, by_key[want.key].etag) == (want.size, want.etag)
        assert by_key[want.key].last_modified == want.last_modified
        assert reader.manifest is not None
        assert reader.manifest.report == "2026-11-30T03-14Z" and reader.manifest.created == T0.timestamp()
        assert reader.manifest.created_iso == "2026-11-30T03:14:00Z"
        assert reader.stats["data_files"] == 4 and reader.stats["runs"] >= 4
        fetched = {k for _, k in io.gets}
        assert set(newest.data_keys) <= fetched and not set(older.data_keys) & fetched
        # only the dated folders were paged through, never the data/ files
        assert all(b == report_bucket for b, _ in io.list_calls)
        assert len(io.list_calls) <= 2

    async def test_corrupt_data_file_fails_with_nothing_yielded(
        self, s3: Any, moto_endpoint: str, report_bucket: str
    ) -> None:
        rep = build_report(
            report_bucket, "", "src", "cfg", T0, [[_obj(k) for k in KEYS[:50]], [_obj(k) for k in KEYS[50:]]]
        )
        bad = rep.data_keys[1]
        body = bytearray(rep.objects[bad])
        body[-30] ^= 0x55
        rep.objects[bad] = bytes(body)
        upload(s3, report_bucket, rep.objects)
        io = Moto(moto_endpoint)
        yielded = []
        with pytest.raises(InventoryError, match="MD5checksum") as err:
            async for m in InventoryReader(rep.location, io.list_keys, io.get_object).objects():
                yielded.append(m)
        assert yielded == []
        assert bad in str(err.value)
