"""The proxy's corpus rules end to end: moto behind it answers as the recorded AWS did.

botocore (which knows S3) talks to the proxy; each test asserts the answer the
corpus recorded for the same request: 206 part answers and their checksums,
InvalidPartNumber, CRC64NVME on objects stored without a checksum, delete-marker
405s, percent-encoded ListObjectVersions, a new KMS ETag for every PUT.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from support.awsrules import s3_checksum
from support.awstruth import entry
from support.proxy import Proxy
from test_awsproxy import client, code_of

MiB = 1024 * 1024


def raw_client(s3: Any) -> Any:
    """A client that sends no checksum, so moto stores none (as an old SDK, curl, a presigned POST)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            request_checksum_calculation="when_required", response_checksum_validation="when_required"
        ),
    )


def upload(s3: Any, bucket: str, key: str, parts: list[bytes], **create: Any) -> str:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)
    done = []
    for n, body in enumerate(parts, start=1):
        extra = {"ChecksumAlgorithm": create["ChecksumAlgorithm"]} if "ChecksumAlgorithm" in create else {}
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=body, **extra)
        done.append(
            {"PartNumber": n, "ETag": r["ETag"], **{k: v for k, v in r.items() if k.startswith("Checksum")}}
        )
    out = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    return str(out["ETag"])


class TestPartAnswers:
    """``?partNumber=N``: 206 with Content-Range, parts count and the checksum AWS gives a part."""

    def test_single_part_object(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        """s3 TestS3::test_get_object_part [get-obj-no-multipart]: whole object, full checksum, no count."""
        s3.put_object(Bucket=bucket, Key="k", Body=b"test-123")
        proxy.aws.checksum("k", "CRC32")
        got = client(proxy.url).get_object(Bucket=bucket, Key="k", PartNumber=1, ChecksumMode="ENABLED")
        h = got["ResponseMetadata"]["HTTPHeaders"]
        recorded = entry("s3 TestS3::test_get_object_part [get-obj-no-multipart]")
        assert got["ResponseMetadata"]["HTTPStatusCode"] == recorded["status"] == 206
        assert h["content-range"] == recorded["headers"]["Content-Range"]
        assert "x-amz-mp-parts-count" not in h
        assert h["x-amz-checksum-crc32"] == recorded["headers"]["x-amz-checksum-crc32"]
        assert got["Body"].read() == b"test-123"

    def test_composite_part_carries_its_own(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        data = [b"a" * (5 * MiB + 1), b"b" * 10]
        upload(s3, bucket, "mp", data)
        proxy.aws.checksum("mp", "CRC32", composite_part_size=5 * MiB + 1)
        c = client(proxy.url)
        head = c.head_object(Bucket=bucket, Key="mp", PartNumber=2, ChecksumMode="ENABLED")
        h = head["ResponseMetadata"]["HTTPHeaders"]
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert h["x-amz-mp-parts-count"] == "2" and h["content-length"] == "10"
        assert h["x-amz-checksum-crc32"] == base64.b64encode(zlib.crc32(data[1]).to_bytes(4, "big")).decode()
        assert h["x-amz-checksum-type"] == "COMPOSITE"
        whole = c.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
        assert whole["ChecksumCRC32"].endswith("-2")

    @pytest.mark.parametrize("algorithm", ["CRC32", "CRC64NVME"])
    def test_full_object_part_has_none(self, algorithm: str, s3: Any, bucket: str, proxy: Proxy) -> None:
        upload(s3, bucket, "mp", [b"a" * 5 * MiB, b"b" * 16])
        proxy.aws.checksum("mp", algorithm)
        c = client(proxy.url)
        for part in (1, 2):
            got = c.get_object(Bucket=bucket, Key="mp", PartNumber=part, ChecksumMode="ENABLED")
            h = got["ResponseMetadata"]["HTTPHeaders"]
            assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
            assert not [n for n in h if n.startswith("x-amz-checksum")], h
            got["Body"].read()
        whole = c.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
        assert whole[f"Checksum{algorithm}"] and whole["ChecksumType"] == "FULL_OBJECT"

    def test_moto_composite_keeps_suffix(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        """An unconfigured composite upload: moto drops the ``-N``, AWS keeps it; parts as recorded."""
        data = [b"a" * (5 * MiB + 1), b"a" * (5 * MiB + 1), b"a" * 10]
        upload(s3, bucket, "mp", data, ChecksumAlgorithm="CRC32", ChecksumType="COMPOSITE")
        c = client(proxy.url)
        whole = c.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
        cite = (
            "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_composite[CRC32] "
            "[head-object-with-checksum]"
        )
        assert whole["ChecksumCRC32"] == entry(cite)["headers"]["x-amz-checksum-crc32"] == "5FRUiw==-3"
        part = c.get_object(Bucket=bucket, Key="mp", PartNumber=3, ChecksumMode="ENABLED")
        cite = cite.replace("[head-object-with-checksum]", "[get-object-part-checksum]")
        assert part["ChecksumCRC32"] == entry(cite)["headers"]["x-amz-checksum-crc32"]
        assert part["Body"].read() == b"a" * 10

    @pytest.mark.parametrize("multipart", [False, True], ids=["single", "multi"])
    def test_part_past_the_last(self, multipart: bool, s3: Any, bucket: str, proxy: Proxy) -> None:
        if multipart:
            upload(s3, bucket, "k", [b"a" * 5 * MiB, b"b"])
        else:
            s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        with pytest.raises(ClientError) as exc:
            client(proxy.url).get_object(Bucket=bucket, Key="k", PartNumber=10)
        assert code_of(exc) == (416, "InvalidPartNumber")
        err = exc.value.response["Error"]
        assert (err["PartNumberRequested"], err["ActualPartCount"]) == ("10", "2" if multipart else "1")

    def test_part_and_range(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
        with pytest.raises(ClientError) as exc:
            client(proxy.url).get_object(Bucket=bucket, Key="k", PartNumber=1, Range="bytes=0-8")
        assert code_of(exc) == (400, "InvalidRequest")


class TestDefaultChecksum:
    """Objects stored with no checksum carry S3's CRC64NVME, FULL_OBJECT (single- and multipart)."""

    def test_put_without_checksum(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        raw_client(s3).put_object(Bucket=bucket, Key="k", Body=b"test data..")
        c = client(proxy.url)
        head = c.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        cite = (
            "s3 TestS3PutObjectChecksum::test_s3_checksum_no_automatic_sdk_calculation [head-obj-no-checksum]"
        )
        assert head["ChecksumCRC64NVME"] == entry(cite)["headers"]["x-amz-checksum-crc64nvme"]
        assert head["ChecksumType"] == "FULL_OBJECT"
        got = c.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert got["Body"].read() == b"test data.."  # botocore checked the CRC64NVME
        listed = c.list_objects_v2(Bucket=bucket)["Contents"][0]
        assert (listed["ChecksumAlgorithm"], listed["ChecksumType"]) == (["CRC64NVME"], "FULL_OBJECT")

    def test_stored_checksum_kept(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ChecksumAlgorithm="SHA256")
        head = client(proxy.url).head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == s3_checksum("SHA256", b"x") and "ChecksumCRC64NVME" not in head

    def test_multipart_without_algorithm(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        data = [b"a" * 5 * MiB, b"b" * 7]
        upload(raw_client(s3), bucket, "mp", data)
        c = client(proxy.url)
        head = c.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
        assert head["ChecksumCRC64NVME"] == s3_checksum("CRC64NVME", b"".join(data))
        part = c.head_object(Bucket=bucket, Key="mp", PartNumber=1, ChecksumMode="ENABLED")
        assert "ChecksumCRC64NVME" not in part and part["PartsCount"] == 2

    def test_can_be_switched_off(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        """An object stored before S3 assigned checksums (December 2024) has none."""
        raw_client(s3).put_object(Bucket=bucket, Key="old", Body=b"x")
        proxy.aws.assign_checksums = False
        head = client(proxy.url).head_object(Bucket=bucket, Key="old", ChecksumMode="ENABLED")
        assert not [k for k in head if k.startswith("Checksum")]


class TestDeleteMarkers:
    def test_marker_answers(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
        url = f"{proxy.url}/{bucket}/k"
        # raw HTTP: moto does not check signatures, and botocore hides 405 headers behind its error
        latest = requests.get(url, timeout=10)
        assert latest.status_code == 404 and "<Code>NoSuchKey</Code>" in latest.text
        assert (
            latest.headers["x-amz-delete-marker"] == "true" and latest.headers["x-amz-version-id"] == marker
        )
        pinned = requests.get(url, params={"versionId": marker}, timeout=10)
        assert pinned.status_code == 405 and "<ResourceType>DeleteMarker</ResourceType>" in pinned.text
        assert pinned.headers["Allow"] == "DELETE" and pinned.headers["x-amz-version-id"] == marker
        head = requests.head(url, params={"versionId": marker}, timeout=10)
        assert head.status_code == 405 and head.content == b""
        missing = requests.get(f"{proxy.url}/{bucket}/never", timeout=10)
        assert missing.status_code == 404 and "x-amz-delete-marker" not in missing.headers


class TestVersionsListing:
    def test_control_characters_encoded(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        for key in ("ctl\x01key", "sp ace+plus", "ü/=x"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        s3.delete_object(Bucket=bucket, Key="sp ace+plus")
        # botocore sends and decodes encoding-type
        page = client(proxy.url).list_object_versions(Bucket=bucket)
        keys = sorted(v["Key"] for v in page["Versions"])
        assert keys == sorted(["ctl\x01key", "sp ace+plus", "ü/=x"])
        assert [m["Key"] for m in page["DeleteMarkers"]] == ["sp ace+plus"]
        raw = requests.get(
            f"{proxy.url}/{bucket}", params={"versions": "", "encoding-type": "url"}, timeout=10
        )
        assert "<Key>ctl%01key</Key>" in raw.text and "<EncodingType>url</EncodingType>" in raw.text


class TestEtagPerPut:
    def test_kms_etag_changes_on_reput(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"test-encrypted")
        proxy.aws.kms("k")
        c = client(proxy.url)
        first = c.head_object(Bucket=bucket, Key="k")["ETag"]
        proxy.aws.reput("k")
        second = c.head_object(Bucket=bucket, Key="k")["ETag"]
        assert first != second
        assert c.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"] == second
        assert c.get_object(Bucket=bucket, Key="k", IfMatch=second)["Body"].read() == b"test-encrypted"
