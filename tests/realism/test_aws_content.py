"""s3sync against AWS's content behaviour (through the proxy's AWS behaviour), on both GET paths.

Every test runs a real engine (``open_engine``) on the lean path and on the
aioboto3 path (``fast_get`` true / false) and asserts on the mirror *and* on
what the proxy saw: which headers were sent, how many GETs were made. Object
sizes are picked to hit each download shape: a body read whole, a body
streamed to a temp file, and parallel ranged GETs.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from support.proxy import Proxy
from support.s3kit import body_for, seed, temp_files, tree

MiB = 1024 * 1024
SMALL, STREAMED, RANGED = 200 * 1024, 9 * MiB, 12 * MiB
SHAPES = pytest.mark.parametrize("size", [SMALL, STREAMED, RANGED], ids=["small", "streamed", "ranged"])
PATHS = pytest.mark.parametrize("fast_get", [True, False], ids=["lean", "boto"])


async def reconcile(settings: Any, **kw: Any) -> tuple[Any, Any]:
    from s3sync.stats import SyncStats
    from s3sync.sync.engine import open_engine

    stats = SyncStats()
    async with open_engine(settings, stats) as engine:
        report = await engine.reconcile(**kw)
    return report, stats


def assert_mirror(mirror: Path, expected: dict[str, bytes]) -> None:
    got = tree(mirror)
    assert sorted(got) == sorted(expected)
    for key, data in expected.items():
        assert hashlib.sha256(got[key]).digest() == hashlib.sha256(data).digest(), key
    assert temp_files(mirror) == []


def multipart_put(s3: Any, bucket: str, key: str, data: bytes, part: int = 5 * MiB) -> str:
    """A real multipart upload in moto (so ``HEAD ?partNumber=1`` works); returns the ETag."""
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    for n, off in enumerate(range(0, len(data), part), start=1):
        r = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=data[off : off + part]
        )
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )
    return str(done["ETag"]).strip('"')


def full_gets(proxy: Proxy, key: str) -> list[Any]:
    return [s for s in proxy.requests("GET", key) if s.op == "GET"]


def checksum_asked(proxy: Proxy, key: str) -> None:
    """Every whole-object GET and every HEAD of ``key`` asked for checksums."""
    asked = full_gets(proxy, key) + proxy.requests("HEAD", key)
    assert asked, f"no GET/HEAD of {key}"
    assert all(s.header("x-amz-checksum-mode") == "ENABLED" for s in asked), [
        (s.op, s.headers) for s in asked
    ]


class TestEncryption:
    """KMS and DSSE objects sync with no false alarm; their ETag is never compared with an MD5."""

    @PATHS
    @SHAPES
    @pytest.mark.parametrize("dsse", [False, True], ids=["kms", "dsse"])
    async def test_single_part_kms(
        self,
        fast_get: bool,
        size: int,
        dsse: bool,
        s3: Any,
        bucket: str,
        mirror: Path,
        proxy: Proxy,
        settings_for: Any,
    ) -> None:
        data = seed(s3, bucket, {"enc.bin": body_for("enc", size)})
        proxy.aws.kms("enc.bin", dsse=dsse)
        report, stats = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.ok and report.downloaded == 1, report.errors
        assert stats.retries == 0
        assert_mirror(mirror, data)
        if size < RANGED:
            assert len(full_gets(proxy, "enc.bin")) == 1
        checksum_asked(proxy, "enc.bin")

    @PATHS
    @pytest.mark.parametrize("size", [6 * MiB, RANGED], ids=["single", "ranged"])
    async def test_multipart_kms(
        self, fast_get: bool, size: int, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        """A multipart KMS ETag (``<hex>-N``) is not an MD5 of part MD5s either: size only, no failure."""
        data = body_for("mp", size)
        assert multipart_put(s3, bucket, "mp.bin", data).endswith("-2" if size < 10 * MiB else "-3")
        proxy.aws.kms("mp.bin")
        report, stats = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.ok and report.downloaded == 1, report.errors
        assert stats.retries == 0
        assert_mirror(mirror, {"mp.bin": data})

    @PATHS
    async def test_second_pass_unchanged(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        """The opaque ETag is remembered as is: a second pass fetches nothing."""
        seed(s3, bucket, {"a": b"one", "b": b"two"})
        proxy.aws.kms("a")
        proxy.aws.kms("b", dsse=True)
        settings = settings_for(bucket, mirror, fast_get)
        await reconcile(settings)
        before = len(proxy.requests("GET"))
        report, _ = await reconcile(settings)
        assert report.ok and report.downloaded == 0 and report.unchanged == 2
        assert len(proxy.requests("GET")) == before


class TestChecksums:
    """Full-object additional checksums are verified (a wrong one fails), composite ones never as full."""

    @PATHS
    @SHAPES
    async def test_crc64nvme_on_kms_object_is_verified(
        self,
        fast_get: bool,
        size: int,
        s3: Any,
        bucket: str,
        mirror: Path,
        proxy: Proxy,
        settings_for: Any,
    ) -> None:
        """KMS hides the MD5, the CRC64NVME still proves the bytes: a wrong value fails the key."""
        data = seed(s3, bucket, {"good.bin": body_for("good", size), "bad.bin": body_for("bad", size)})
        for key in data:
            proxy.aws.kms(key)
        proxy.aws.checksum("good.bin", "CRC64NVME")
        proxy.aws.checksum("bad.bin", "CRC64NVME", wrong=True)
        report, _ = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.downloaded == 1 and report.failed == 1, report.errors
        assert [e["key"] for e in report.errors] == ["bad.bin"]
        assert report.errors[0]["error"] in ("integrity", "retries_exceeded"), report.errors
        assert_mirror(mirror, {"good.bin": data["good.bin"]})
        checksum_asked(proxy, "good.bin")
        if size >= RANGED:  # the ranged path learns the checksum from a HEAD
            assert proxy.requests("HEAD", "good.bin")

    @PATHS
    @pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
    async def test_each_algorithm(
        self,
        fast_get: bool,
        algorithm: str,
        s3: Any,
        bucket: str,
        mirror: Path,
        proxy: Proxy,
        settings_for: Any,
    ) -> None:
        data = seed(s3, bucket, {"good": body_for("g", 5000), "bad": body_for("b", 5000)})
        proxy.aws.kms("good")
        proxy.aws.kms("bad")
        proxy.aws.checksum("good", algorithm)
        proxy.aws.checksum("bad", algorithm, wrong=True)
        report, _ = await reconcile(settings_for(bucket, mirror, fast_get))
        assert (report.downloaded, report.failed) == (1, 1), report.errors
        assert_mirror(mirror, {"good": data["good"]})

    @PATHS
    @pytest.mark.parametrize("size", [6 * MiB, RANGED], ids=["single", "ranged"])
    async def test_composite_not_compared_as_full(
        self, fast_get: bool, size: int, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        """A composite ``<b64>-N`` CRC32C on a multipart KMS object: recomputed per part, never as full."""
        data = body_for("comp", size)
        multipart_put(s3, bucket, "comp.bin", data)
        proxy.aws.kms("comp.bin")
        proxy.aws.checksum("comp.bin", "CRC32C", composite_part_size=5 * MiB)
        report, stats = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.ok and report.downloaded == 1, report.errors
        assert stats.retries == 0
        assert_mirror(mirror, {"comp.bin": data})

    @PATHS
    async def test_wrong_composite_is_caught(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        """The per-part recomputation is real: a wrong composite value fails the key."""
        multipart_put(s3, bucket, "comp.bin", body_for("comp", 6 * MiB))
        proxy.aws.kms("comp.bin")
        proxy.aws.checksum("comp.bin", "CRC32C", composite_part_size=5 * MiB, wrong=True)
        report, _ = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.failed == 1 and tree(mirror) == {}, report.errors


class TestStorageClasses:
    """Archived objects are skipped as ``archived``: counted, listed, not failures, not blocking deletes."""

    @PATHS
    async def test_archived_skipped_restored_downloaded(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        keys = ["cold-glacier", "cold-deep", "cold-it", "thawed", "warm", "gone"]
        data = seed(s3, bucket, {k: body_for(k, 3000) for k in keys})
        settings = settings_for(bucket, mirror, fast_get, sync={"delete": True})
        await reconcile(settings)  # everything is warm and downloaded once
        s3.delete_object(Bucket=bucket, Key="gone")
        for key in ("cold-glacier", "cold-deep", "cold-it", "thawed"):
            s3.put_object(Bucket=bucket, Key=key, Body=data[key] + b"v2")  # changed, then archived
        proxy.aws.archive("cold-glacier", "GLACIER")
        proxy.aws.archive("cold-deep", "DEEP_ARCHIVE", restore="ongoing")
        proxy.aws.archive("cold-it", "INTELLIGENT_TIERING", tier="DEEP_ARCHIVE_ACCESS")
        proxy.aws.archive("thawed", "GLACIER", restore="done")
        proxy.seen.clear()
        report, stats = await reconcile(settings)
        assert report.failed == 0 and report.aborted is None, report.errors
        assert report.deleted == 1 and "gone" not in tree(mirror)  # deletes not held back
        assert stats.snapshot()["skipped_by_reason"]["archived"] == 3
        skipped = {d["file_key"] for d in report.details if d["status"] == "skipped"}
        assert skipped == {"cold-glacier", "cold-deep", "cold-it"}
        # the listing's RestoreStatus (asked for on both paths) says GLACIER/DEEP_ARCHIVE ones are not
        # restored: no GET at all; an Intelligent-Tiering archive tier is not in the listing: one GET
        for key in ("cold-glacier", "cold-deep"):
            assert full_gets(proxy, key) == [], key
        assert len(full_gets(proxy, "cold-it")) == 1  # asked once, never retried
        got = tree(mirror)
        assert got["thawed"] == data["thawed"] + b"v2"
        assert got["cold-glacier"] == data["cold-glacier"]  # the old copy is kept
        report2, _ = await reconcile(settings)
        assert report2.failed == 0 and report2.skipped == 3

    @PATHS
    async def test_exclude_storage_class(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        """``exclude_storage_classes`` skips by the listing's StorageClass, without asking S3."""
        data = seed(s3, bucket, {"cold": b"c", "ia": b"i", "warm": b"w"})
        proxy.aws.archive("cold", "GLACIER")
        proxy.aws.configure("ia", storage_class="STANDARD_IA")
        settings = settings_for(
            bucket, mirror, fast_get, sync={"exclude_storage_classes": ["glacier", "STANDARD_IA"]}
        )
        report, stats = await reconcile(settings)
        assert report.ok and report.downloaded == 1, report.errors
        assert stats.snapshot()["skipped_by_reason"]["storage_class"] == 2
        assert proxy.requests("GET", "cold") == [] and proxy.requests("GET", "ia") == []
        assert_mirror(mirror, {"warm": data["warm"]})


class TestRequesterPays:
    """``request_payer`` puts ``x-amz-request-payer: requester`` on every request of every path."""

    @PATHS
    async def test_every_request_says_requester(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        data = {"small": body_for("s", 1000), "big": body_for("b", RANGED)}
        seed(s3, bucket, data)
        multipart_put(s3, bucket, "mp", body_for("mp", 6 * MiB))  # multipart: HEAD ?partNumber=1
        data["mp"] = body_for("mp", 6 * MiB)
        proxy.aws.requester_pays = True
        refused, _ = await reconcile(settings_for(bucket, mirror, fast_get))
        assert not refused.ok  # without it, S3 says 403
        proxy.seen.clear()
        report, _ = await reconcile(settings_for(bucket, mirror, fast_get, s3={"request_payer": True}))
        assert report.ok and report.downloaded == 3, report.errors
        assert_mirror(mirror, data)
        seen = proxy.requests()
        assert {s.op for s in seen} >= {"LIST", "GET", "RANGE"}
        assert all(s.header("x-amz-request-payer") == "requester" for s in seen), [
            (s.op, s.key) for s in seen if s.header("x-amz-request-payer") != "requester"
        ]


class TestSseC:
    """``sse_customer_key_file``: the three SSE-C headers on every GET/HEAD; the key never shown."""

    KEY = bytes(range(100, 132))

    @PATHS
    @pytest.mark.parametrize("encoding", ["raw", "base64"])
    async def test_sse_c_headers_everywhere(
        self,
        fast_get: bool,
        encoding: str,
        s3: Any,
        bucket: str,
        mirror: Path,
        tmp_path: Path,
        proxy: Proxy,
        settings_for: Any,
    ) -> None:
        data = seed(s3, bucket, {"small": body_for("s", 1000), "big": body_for("b", RANGED)})
        multipart_put(s3, bucket, "mp", body_for("mp", 6 * MiB))
        data["mp"] = body_for("mp", 6 * MiB)
        for key in data:
            proxy.aws.sse_c(key, self.KEY)
        key_file = tmp_path / "sse-c.key"
        key_file.write_bytes(self.KEY if encoding == "raw" else base64.b64encode(self.KEY) + b"\n")
        settings = settings_for(bucket, mirror, fast_get, s3={"sse_customer_key_file": str(key_file)})
        with structlog.testing.capture_logs() as logs:
            report, stats = await reconcile(settings)
        assert report.ok and report.downloaded == 3, report.errors
        assert stats.retries == 0
        assert_mirror(mirror, data)
        md5 = base64.b64encode(hashlib.md5(self.KEY).digest()).decode()
        objects = [s for s in proxy.requests() if s.op in ("GET", "RANGE", "HEAD")]
        assert objects
        for s in objects:
            assert s.header("x-amz-server-side-encryption-customer-algorithm") == "AES256", s
            assert s.header("x-amz-server-side-encryption-customer-key-md5") == md5, s
        public = str(settings.public_dict())
        assert logs
        for form in (base64.b64encode(self.KEY).decode(), self.KEY.hex(), repr(self.KEY)):
            assert form not in public
            assert not [entry for entry in logs if form in repr(entry)]

    @PATHS
    async def test_without_key_fails_visibly(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        seed(s3, bucket, {"k": b"x"})
        proxy.aws.sse_c("k", self.KEY)
        report, _ = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.failed == 1 and tree(mirror) == {}


class TestReplacedBetweenListingAndGet:
    """A 412 re-reads the object (HEAD) and restarts with the new ETag, never the stale one."""

    @PATHS
    async def test_ranged_get_pinned_to_old_etag(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        old = body_for("old", RANGED)
        new = body_for("new", RANGED)
        old_etag = s3.put_object(Bucket=bucket, Key="big", Body=old)["ETag"].strip('"')
        new_etag = hashlib.md5(new).hexdigest()
        proxy.aws.replace_on_get("big", new)
        report, _ = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.ok and report.downloaded == 1, report.errors
        assert_mirror(mirror, {"big": new})
        seen = [s for s in proxy.requests() if s.key == "big"]
        first_412 = next(i for i, s in enumerate(seen) if s.status == 412)
        # the re-read: a HEAD after the 412; from then on every range is pinned to the new ETag
        reread = next(i for i, s in enumerate(seen) if i > first_412 and s.op == "HEAD")
        refetch = [s for s in seen[reread + 1 :] if s.op in ("GET", "RANGE")]
        assert refetch, "no GET after the re-read"
        assert all(s.header("if-match") == f'"{new_etag}"' for s in refetch), [s.headers for s in refetch]
        assert all(s.status == 206 for s in refetch)
        assert old_etag != new_etag

    @PATHS
    async def test_single_get_412(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        s3.put_object(Bucket=bucket, Key="small", Body=b"old")
        proxy.aws.replace_on_get("small", b"brand new", force_412=True)
        report, _ = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.ok and report.downloaded == 1, report.errors
        assert tree(mirror) == {"small": b"brand new"}
        assert [s.status for s in full_gets(proxy, "small")] == [412, 200]
        assert proxy.requests("HEAD", "small")


class TestVerify:
    """``verify --checksum`` raises no false drift on KMS objects, and still finds real damage."""

    @PATHS
    async def test_kms_objects(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        from s3sync.local.keys import KeyFilter
        from s3sync.local.mirror import Mirror
        from s3sync.s3.bucket import Bucket
        from s3sync.sync.verify import verify

        data = seed(s3, bucket, {k: body_for(k, 4000) for k in ("plain", "kms", "kms-crc", "kms-crc-bad")})
        for key in ("kms", "kms-crc", "kms-crc-bad"):
            proxy.aws.kms(key)
        proxy.aws.checksum("kms-crc", "CRC64NVME")
        proxy.aws.checksum("kms-crc-bad", "CRC64NVME")
        settings = settings_for(bucket, mirror, fast_get)
        report, _ = await reconcile(settings)
        assert report.ok and report.downloaded == 4, report.errors
        damaged = bytearray(data["kms-crc-bad"])
        damaged[100] ^= 0xFF
        (mirror / "kms-crc-bad").write_bytes(bytes(damaged))  # same size: only a checksum can tell
        async with Bucket(settings.s3, fast_get=fast_get) as b:
            result = await verify(b, Mirror(mirror, fsync=False), KeyFilter(), checksum=True)
        assert [(d.key, d.kind) for d in result.drift] == [("kms-crc-bad", "checksum")]
        assert result.checked == 4


class TestCommandLine:
    """The flags and the key file work end to end in a real ``s3sync sync`` process."""

    @PATHS
    def test_flags(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, tmp_path: Path, proxy: Proxy
    ) -> None:
        from support.s3kit import CliRunner, clean_environ

        keys = ("warm", "cold", "frozen", "thawed")
        data = seed(s3, bucket, {k: body_for(k, 2000) for k in keys})
        key = bytes(range(40, 72))
        for k in keys:
            proxy.aws.sse_c(k, key)
            proxy.aws.kms(k)
        proxy.aws.archive("cold", "GLACIER")
        proxy.aws.archive("frozen", "DEEP_ARCHIVE")
        proxy.aws.archive("thawed", "GLACIER", restore="done")
        proxy.aws.requester_pays = True
        key_file = tmp_path / "sse-c.key"
        key_file.write_text(base64.b64encode(key).decode())
        cli = CliRunner(proxy.url, cwd=tmp_path, base_env=clean_environ())
        env = {
            "S3SYNC_S3__FAST_GET": str(fast_get).lower(),
            "S3SYNC_S3__SSE_CUSTOMER_KEY_FILE": str(key_file),
        }
        res = cli.sync(bucket, mirror, "--request-payer", "--exclude-storage-class", "glacier", env=env)
        assert res.returncode == 0, res
        assert res.summary() == {"downloaded": 1, "deleted": 0, "failed": 0, "skipped": 3, "unchanged": 0}, (
            res
        )
        # "thawed" is restored but its class is excluded: skipped from the listing like "cold"
        assert tree(mirror) == {"warm": data["warm"]}
        assert proxy.requests("GET", "cold") == [] and proxy.requests("GET", "thawed") == []
        assert proxy.requests("GET", "frozen") == []  # archived, and the listing said so: no GET
        assert all(s.header("x-amz-request-payer") == "requester" for s in proxy.requests())
        assert base64.b64encode(key).decode() not in res.output


class TestEvents:
    """An event for an archived object is the same visible skip as in a reconcile pass."""

    @PATHS
    async def test_event_for_archived_object(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        from s3sync.model import Change, ChangeKind, ChangeSource
        from s3sync.stats import SyncStats
        from s3sync.sync.engine import open_engine

        seed(s3, bucket, {"cold": b"ice", "warm": b"sun"})
        proxy.aws.archive("cold", "DEEP_ARCHIVE")
        stats = SyncStats()
        async with open_engine(settings_for(bucket, mirror, fast_get), stats) as engine:
            cold = await engine.submit(Change("cold", ChangeKind.UPSERT, ChangeSource.NOTIFICATION))
            warm = await engine.submit(Change("warm", ChangeKind.UPSERT, ChangeSource.NOTIFICATION))
        assert (cold.status, cold.error) == ("skipped", "archived"), cold
        assert warm.status == "success", warm
        assert stats.skipped["archived"] == 1 and sum(stats.failed.values()) == 0
        assert len(proxy.requests("GET", "cold")) == 1
        assert tree(mirror) == {"warm": b"sun"}


class TestConfigEndpoint:
    """``/api/v1/config`` of a running app shows the key file's path, never the key."""

    async def test_key_not_served(
        self,
        aiohttp_client: Any,
        s3: Any,
        bucket: str,
        mirror: Path,
        tmp_path: Path,
        proxy: Proxy,
        settings_for: Any,
    ) -> None:
        from s3sync.daemon.app import create_app

        key = bytes(range(150, 182))
        key_file = tmp_path / "sse-c.key"
        key_file.write_bytes(base64.b64encode(key))
        settings = settings_for(bucket, mirror, True, s3={"sse_customer_key_file": str(key_file)})
        client = await aiohttp_client(create_app(settings))
        resp = await client.get("/api/v1/config")
        assert resp.status == 200
        body = await resp.text()
        assert (await resp.json())["s3"]["sse_customer_key_file"] == str(key_file)
        for form in (base64.b64encode(key).decode(), key.hex()):
            assert form not in body
