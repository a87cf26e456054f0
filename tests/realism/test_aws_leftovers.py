"""s3sync against the AWS behaviours the recorded corpus showed, on both GET paths.

* **206 part answers**: multipart objects (one part, several, FULL_OBJECT and
  COMPOSITE checksums stored by the uploader, or S3's own CRC64NVME) download
  and verify; the part HEAD's 206 and its part checksum are read as AWS sends them.
* **archived objects cost no GET per pass** once the listing's ``RestoreStatus``
  says they are not restored (asked for on both paths); a server that never lists
  a RestoreStatus keeps the GET that tells.
* **``sync --checksum`` and opaque ETags**: KMS objects are not re-downloaded
  every pass; a damaged local copy still is (the object's CRC64NVME tells).
* **access points**: an ``-s3alias`` alias is a bucket name on both paths; an ARN
  is accepted and handed to the aioboto3 path.
* **ListObjectVersions** with control characters in keys (``--version-at``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from support.proxy import Proxy
from support.s3kit import body_for, seed, tree
from test_aws_content import PATHS, RANGED, assert_mirror, full_gets, reconcile
from test_awsproxy_parts import raw_client, upload

MiB = 1024 * 1024


class TestPartAnswers:
    """Every multipart layout syncs with no false alarm; the part HEAD is a 206."""

    @PATHS
    @pytest.mark.parametrize(
        "layout",
        ["one-part", "two-parts", "full-object-crc32c", "composite-crc32", "composite-one-part"],
    )
    @pytest.mark.parametrize("size", [6 * MiB, RANGED], ids=["single", "ranged"])
    async def test_multipart_layouts(
        self,
        fast_get: bool,
        layout: str,
        size: int,
        s3: Any,
        bucket: str,
        mirror: Path,
        proxy: Proxy,
        settings_for: Any,
    ) -> None:
        data = body_for(layout, size)
        part = size if "one-part" in layout else 5 * MiB
        parts = [data[i : i + part] for i in range(0, size, part)]
        create: dict[str, Any] = {}
        if layout == "full-object-crc32c":
            create = {"ChecksumAlgorithm": "CRC32C", "ChecksumType": "FULL_OBJECT"}
        elif layout.startswith("composite"):
            create = {"ChecksumAlgorithm": "CRC32", "ChecksumType": "COMPOSITE"}
        client = s3 if create else raw_client(s3)  # none: S3 assigns CRC64NVME (the proxy does)
        etag = upload(client, bucket, "mp.bin", parts, **create)
        assert etag.strip('"').endswith(f"-{len(parts)}")
        report, stats = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.ok and report.downloaded == 1, report.errors
        assert stats.retries == 0
        assert_mirror(mirror, {"mp.bin": data})
        heads = proxy.requests("HEAD", "mp.bin")
        part_heads = [h for h in heads if "partNumber" in h.query]
        assert all(h.status == 206 for h in part_heads), [(h.query, h.status) for h in part_heads]
        again, _ = await reconcile(settings_for(bucket, mirror, fast_get))
        assert again.ok and again.unchanged == 1 and again.downloaded == 0

    @PATHS
    async def test_wrong_assigned_checksum_is_caught(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        """The CRC64NVME of a multipart object is checked: a bad one fails the key."""
        upload(raw_client(s3), bucket, "mp.bin", [body_for("a", 5 * MiB), body_for("b", 100)])
        proxy.aws.checksum("mp.bin", "CRC64NVME", wrong=True)
        report, _ = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.failed == 1 and tree(mirror) == {}, report.errors


class TestArchivedFromListing:
    """GLACIER/DEEP_ARCHIVE objects the listing calls unrestored are skipped without a GET."""

    @PATHS
    async def test_no_get_per_pass(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        data = seed(s3, bucket, {k: body_for(k, 1000) for k in ("cold", "deep", "thawing", "thawed", "warm")})
        proxy.aws.archive("cold", "GLACIER")
        proxy.aws.archive("deep", "DEEP_ARCHIVE")
        proxy.aws.archive("thawing", "GLACIER", restore="ongoing")
        proxy.aws.archive("thawed", "DEEP_ARCHIVE", restore="done")
        settings = settings_for(bucket, mirror, fast_get)
        for _ in range(2):
            report, stats = await reconcile(settings)
            assert report.failed == 0 and report.skipped == 3, report.errors
            assert stats.snapshot()["skipped_by_reason"]["archived"] == 3
        for key in ("cold", "deep", "thawing"):
            assert full_gets(proxy, key) == [], key
        assert tree(mirror) == {"thawed": data["thawed"], "warm": data["warm"]}
        lists = proxy.requests("LIST")
        assert lists and all(s.header("x-amz-optional-object-attributes") == "RestoreStatus" for s in lists)

    @PATHS
    async def test_restored_later_is_downloaded(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        data = seed(s3, bucket, {"cold": b"ice", "thawed": b"water"})
        proxy.aws.archive("cold", "GLACIER")
        proxy.aws.archive("thawed", "GLACIER", restore="done")
        settings = settings_for(bucket, mirror, fast_get)
        first, _ = await reconcile(settings)
        assert first.skipped == 1 and full_gets(proxy, "cold") == []
        proxy.aws.archive("cold", "GLACIER", restore="done")
        second, _ = await reconcile(settings)
        assert second.ok and second.downloaded == 1, second.errors
        assert tree(mirror) == data

    @PATHS
    async def test_silent_server_keeps_the_get(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        """Where no RestoreStatus was ever listed (a server ignoring the attribute), the GET tells."""
        seed(s3, bucket, {"cold": b"ice", "warm": b"sun"})
        proxy.aws.archive("cold", "GLACIER")
        report, stats = await reconcile(settings_for(bucket, mirror, fast_get))
        assert report.failed == 0 and report.skipped == 1
        assert stats.snapshot()["skipped_by_reason"]["archived"] == 1
        assert len(full_gets(proxy, "cold")) == 1


class TestChecksumFlagWithOpaqueEtags:
    """``--checksum`` does not re-download KMS objects every pass, and still finds damage."""

    @PATHS
    async def test_kms_not_refetched(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        keys = ("kms", "kms-crc", "kms-legacy", "plain")
        data = seed(s3, bucket, {k: body_for(k, 3000) for k in keys})
        for key in ("kms", "kms-crc", "kms-legacy"):
            proxy.aws.kms(key)
        proxy.aws.checksum("kms", "CRC64NVME")
        proxy.aws.checksum("kms-crc", "CRC32C")
        # "kms-legacy": configured without a checksum, an object stored before S3 assigned them
        settings = settings_for(bucket, mirror, fast_get)
        first, _ = await reconcile(settings, checksum=True)
        assert first.ok and first.downloaded == 4, first.errors
        gets = len(proxy.requests("GET"))
        second, _ = await reconcile(settings, checksum=True)
        assert second.ok and second.downloaded == 0 and second.unchanged == 4, second.details
        assert len(proxy.requests("GET")) == gets  # HEADs settle the opaque ETags, no body is fetched
        # damage the local copies, keeping size and mtime: only content can tell
        for key in keys:
            path = mirror / key
            st = path.stat()
            damaged = bytearray(data[key])
            damaged[10] ^= 0xFF
            path.write_bytes(bytes(damaged))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        third, _ = await reconcile(settings, checksum=True)
        assert third.ok, third.errors
        refetched = {d["file_key"] for d in third.details if d["status"] == "success"}
        assert refetched == {"kms", "kms-crc", "plain"}  # the legacy one has only size and mtime
        got = tree(mirror)
        for key in ("kms", "kms-crc", "plain"):
            assert got[key] == data[key], key

    @PATHS
    async def test_new_etag_every_put(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        """The same bytes PUT again under KMS get a new ETag: fetched once more, then unchanged."""
        seed(s3, bucket, {"k": b"same bytes"})
        proxy.aws.kms("k")
        settings = settings_for(bucket, mirror, fast_get)
        await reconcile(settings, checksum=True)
        proxy.aws.reput("k")
        again, _ = await reconcile(settings, checksum=True)
        assert again.ok and again.downloaded == 1
        third, _ = await reconcile(settings, checksum=True)
        assert third.ok and third.downloaded == 0 and third.unchanged == 1


class TestAccessPoints:
    ALIAS = "my-ap-abcdefghijklmnopqrstuvwxyz012-s3alias"

    @PATHS
    async def test_alias_is_a_bucket(
        self, fast_get: bool, s3: Any, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        s3.create_bucket(Bucket=self.ALIAS)
        try:
            s3.put_object(Bucket=self.ALIAS, Key="k", Body=b"via alias")
            report, _ = await reconcile(settings_for(self.ALIAS, mirror, fast_get))
            assert report.ok and report.downloaded == 1, report.errors
            assert tree(mirror) == {"k": b"via alias"}
            assert all(s.op != "OTHER" for s in proxy.requests())
        finally:
            s3.delete_object(Bucket=self.ALIAS, Key="k")
            s3.delete_bucket(Bucket=self.ALIAS)

    @pytest.mark.parametrize(
        "arn",
        [
            "arn:aws:s3:us-west-2:123456789012:accesspoint/my-ap",
            "arn:aws-cn:s3:cn-north-1:123456789012:accesspoint/ap-1",
            "arn:aws:s3::123456789012:accesspoint/mfzwi23gnjvgw.mrap",
        ],
    )
    def test_arn_accepted_and_handed_to_boto(self, arn: str, mirror: Path, settings_for: Any) -> None:
        from s3sync.s3.bucket import Bucket
        from s3sync.s3.endpoints import resolve, route

        settings = settings_for(arn, mirror, True)
        assert settings.s3.bucket == arn
        region = arn.split(":")[3] or "us-east-1"  # the ARN's partition must be s3.region's
        r = route(resolve(arn, region, None, environ={}), {})
        assert not r.lean and "access point ARN" in r.reason
        assert Bucket(settings.s3, fast_get=True).name == arn

    def test_arn_of_another_partition_than_the_region(self) -> None:
        from s3sync.errors import ConfigError
        from s3sync.s3.endpoints import resolve

        with pytest.raises(ConfigError, match="access point ARN"):
            resolve("arn:aws-cn:s3:cn-north-1:123456789012:accesspoint/ap-1", "us-west-2", None, environ={})

    @pytest.mark.parametrize(
        "bad", ["arn:aws:s3:::my-bucket", "arn:aws:iam::123456789012:user/x", "My_Bucket"]
    )
    def test_other_arns_refused(self, bad: str, mirror: Path, settings_for: Any) -> None:
        from s3sync.errors import ConfigError

        with pytest.raises((ConfigError, ValueError)) as exc:
            settings_for(bad, mirror, True)
        assert "access point" in str(exc.value)


class TestVersionsWithControlCharacters:
    @PATHS
    async def test_version_at(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
    ) -> None:
        from s3sync.s3.versions import parse_instant

        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        keys = {"ctl\x01key": b"one", "tab\tkey": b"two", "plain": b"three", "gone\x02": b"four"}
        seed(s3, bucket, keys)
        s3.delete_object(Bucket=bucket, Key="gone\x02")  # a delete marker with a control character
        report, _ = await reconcile(
            settings_for(bucket, mirror, fast_get), version_at=parse_instant("2999-01-01T00:00:00Z")
        )
        assert report.ok and report.downloaded == 3, report.errors
        assert tree(mirror) == {k: v for k, v in keys.items() if k != "gone\x02"}
        versions = [s for s in proxy.requests() if "versions" in s.query]
        assert versions and all(s.query.get("encoding-type") == "url" for s in versions)
