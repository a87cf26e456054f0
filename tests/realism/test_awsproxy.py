"""The AWS-like proxy itself: each rewrite looks like AWS's documented answer.

These use botocore against the proxy (and so also check that botocore, which
knows AWS, accepts what the proxy says: it validates the checksums itself).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, FlexibleChecksumError
from support.awsrules import opaque_etag
from support.proxy import Proxy
from support.s3kit import AWS_ENV, body_for

MiB = 1024 * 1024
CHECK_INPUT = b"123456789"


def client(url: str, **cfg: Any) -> Any:
    """botocore that asks for checksums only when told to (so the tests control the header)."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            response_checksum_validation="when_required",
            request_checksum_calculation="when_required",
            retries={"max_attempts": 1},
            **cfg,
        ),
    )


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


class TestEncryption:
    """KMS and DSSE answers carry the SSE header and an ETag that is not the body's MD5."""

    @pytest.mark.parametrize("dsse", [False, True], ids=["kms", "dsse"])
    def test_kms_etag_everywhere(self, dsse: bool, s3: Any, bucket: str, proxy: Proxy) -> None:
        """GET, HEAD and the listing agree on one opaque ETag; If-Match/If-None-Match still work."""
        s3.put_object(Bucket=bucket, Key="k", Body=b"secret")
        proxy.aws.kms("k", dsse=dsse)
        c = client(proxy.url)
        md5 = hashlib.md5(b"secret").hexdigest()
        head = c.head_object(Bucket=bucket, Key="k")
        etag = head["ETag"].strip('"')
        assert etag != md5 and len(etag) == 32 and etag == opaque_etag(md5)
        assert head["ServerSideEncryption"] == ("aws:kms:dsse" if dsse else "aws:kms")
        assert head["SSEKMSKeyId"].startswith("arn:aws:kms:")
        got = c.get_object(Bucket=bucket, Key="k", IfMatch=head["ETag"])
        assert got["Body"].read() == b"secret" and got["ETag"] == head["ETag"]
        listed = c.list_objects_v2(Bucket=bucket)["Contents"]
        assert [o["ETag"] for o in listed] == [head["ETag"]]
        with pytest.raises(ClientError) as exc:
            c.get_object(Bucket=bucket, Key="k", IfNoneMatch=head["ETag"])
        assert code_of(exc)[0] == 304
        with pytest.raises(ClientError) as exc:
            c.get_object(Bucket=bucket, Key="k", IfMatch=f'"{md5}"')  # the MD5 is not its ETag
        assert code_of(exc)[0] == 412

    def test_unconfigured_keys_untouched(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
        proxy.aws.kms("other")
        head = client(proxy.url).head_object(Bucket=bucket, Key="plain")
        assert head["ETag"].strip('"') == hashlib.md5(b"x").hexdigest()
        assert "ServerSideEncryption" not in head


class TestChecksums:
    """Checksum headers appear only with checksum mode, are right, and composite ones end in -N."""

    def test_only_with_checksum_mode(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=CHECK_INPUT)
        proxy.aws.checksum("k", "CRC64NVME")
        c = client(proxy.url)
        plain = c.get_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]
        assert not [h for h in plain if h.startswith("x-amz-checksum")]  # moto's own CRC32 removed
        got = c.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert base64.b64decode(got["ChecksumCRC64NVME"]).hex() == "ae8b14860a799888"
        assert got["ChecksumType"] == "FULL_OBJECT"
        assert got["Body"].read() == CHECK_INPUT  # botocore validated the CRC64NVME while reading
        head = c.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert head["ChecksumCRC64NVME"] == got["ChecksumCRC64NVME"]
        ranged = c.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED", Range="bytes=0-3")
        assert "ChecksumCRC64NVME" not in ranged
        listed = c.list_objects_v2(Bucket=bucket)["Contents"][0]
        assert (listed["ChecksumAlgorithm"], listed["ChecksumType"]) == (["CRC64NVME"], "FULL_OBJECT")
        modes = [s.header("x-amz-checksum-mode") for s in proxy.requests("GET", "k")]
        assert modes == [None, "ENABLED", "ENABLED"]

    @pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
    def test_botocore_accepts_each_algorithm(
        self, algorithm: str, s3: Any, bucket: str, proxy: Proxy
    ) -> None:
        data = body_for(algorithm, 70_000)
        s3.put_object(Bucket=bucket, Key="k", Body=data)
        proxy.aws.checksum("k", algorithm)
        got = client(proxy.url).get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert got["Body"].read() == data
        assert got[f"Checksum{algorithm}"]

    def test_wrong_checksum_is_caught_by_botocore(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        """The `wrong` hook really sends a bad value (botocore, which knows S3, refuses the body)."""
        s3.put_object(Bucket=bucket, Key="k", Body=b"abc")
        proxy.aws.checksum("k", "CRC32C", wrong=True)
        got = client(proxy.url).get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        with pytest.raises(FlexibleChecksumError):
            got["Body"].read()

    def test_composite(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        """A multipart upload with a composite CRC32: checksum of the part checksums, -2."""
        data = body_for("mp", 5 * MiB + 1000)
        up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
        parts = [
            {
                "PartNumber": n,
                "ETag": s3.upload_part(
                    Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=chunk
                )["ETag"],
            }
            for n, chunk in ((1, data[: 5 * MiB]), (2, data[5 * MiB :]))
        ]
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
        )
        proxy.aws.kms("mp")
        proxy.aws.checksum("mp", "CRC32", composite_part_size=5 * MiB)
        got = client(proxy.url).get_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
        import zlib

        part_crcs = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in (data[: 5 * MiB], data[5 * MiB :]))
        assert (
            got["ChecksumCRC32"] == base64.b64encode(zlib.crc32(part_crcs).to_bytes(4, "big")).decode() + "-2"
        )
        assert got["ChecksumType"] == "COMPOSITE"
        assert got["ETag"].strip('"').endswith("-2")
        assert got["Body"].read() == data  # botocore skips -N values, as it must


class TestStorageClasses:
    """Archived objects refuse GET with InvalidObjectState until restored."""

    @pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
    def test_archived(self, storage_class: str, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="cold", Body=b"ice")
        proxy.aws.archive("cold", storage_class)
        c = client(proxy.url)
        with pytest.raises(ClientError) as exc:
            c.get_object(Bucket=bucket, Key="cold")
        assert code_of(exc) == (403, "InvalidObjectState")
        assert exc.value.response["Error"]["StorageClass"] == storage_class
        assert c.head_object(Bucket=bucket, Key="cold")["StorageClass"] == storage_class
        assert c.list_objects_v2(Bucket=bucket)["Contents"][0]["StorageClass"] == storage_class

    def test_intelligent_tiering_archive_tier(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="it", Body=b"x")
        proxy.aws.archive("it", "INTELLIGENT_TIERING", tier="ARCHIVE_ACCESS")
        c = client(proxy.url)
        assert c.head_object(Bucket=bucket, Key="it")["ArchiveStatus"] == "ARCHIVE_ACCESS"
        with pytest.raises(ClientError) as exc:
            c.get_object(Bucket=bucket, Key="it")
        assert code_of(exc) == (403, "InvalidObjectState")

    def test_restored(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="thawed", Body=b"water")
        proxy.aws.archive("thawed", "GLACIER", restore="done")
        c = client(proxy.url)
        got = c.get_object(Bucket=bucket, Key="thawed")
        assert got["Body"].read() == b"water"
        assert got["Restore"].startswith('ongoing-request="false", expiry-date=')
        listed = c.list_objects_v2(Bucket=bucket, OptionalObjectAttributes=["RestoreStatus"])["Contents"][0]
        assert listed["RestoreStatus"]["IsRestoreInProgress"] is False

    def test_restore_in_progress_still_refused(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        proxy.aws.archive("k", "DEEP_ARCHIVE", restore="ongoing")
        c = client(proxy.url)
        assert c.head_object(Bucket=bucket, Key="k")["Restore"] == 'ongoing-request="true"'
        with pytest.raises(ClientError) as exc:
            c.get_object(Bucket=bucket, Key="k")
        assert code_of(exc) == (403, "InvalidObjectState")


class TestRequesterPays:
    """Every request must say who pays."""

    def test_refused_without_header(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        proxy.aws.requester_pays = True
        c = client(proxy.url)
        with pytest.raises(ClientError) as exc:
            c.list_objects_v2(Bucket=bucket)
        assert code_of(exc) == (403, "AccessDenied")
        with pytest.raises(ClientError) as exc:
            c.get_object(Bucket=bucket, Key="k")
        assert code_of(exc) == (403, "AccessDenied")
        with pytest.raises(ClientError) as exc:
            c.head_object(Bucket=bucket, Key="k")
        assert code_of(exc)[0] == 403
        got = c.get_object(Bucket=bucket, Key="k", RequestPayer="requester")
        assert got["RequestCharged"] == "requester" and got["Body"].read() == b"x"
        assert c.list_objects_v2(Bucket=bucket, RequestPayer="requester")["KeyCount"] == 1
        assert [s.header("x-amz-request-payer") for s in proxy.requests()] == [
            None,
            None,
            None,
            "requester",
            "requester",
        ]


class TestSseC:
    """An SSE-C object needs its key on every GET/HEAD."""

    KEY = bytes(range(32))

    def test_key_required_and_checked(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"hidden")
        proxy.aws.sse_c("k", self.KEY)
        c = client(proxy.url)
        with pytest.raises(ClientError) as exc:
            c.get_object(Bucket=bucket, Key="k")
        assert code_of(exc) == (400, "InvalidRequest")
        with pytest.raises(ClientError) as exc:
            c.get_object(Bucket=bucket, Key="k", SSECustomerAlgorithm="AES256", SSECustomerKey=b"\1" * 32)
        assert code_of(exc) == (403, "AccessDenied")
        with pytest.raises(ClientError) as exc:
            c.get_object(
                Bucket=bucket,
                Key="k",
                SSECustomerAlgorithm="AES256",
                SSECustomerKey=base64.b64encode(self.KEY).decode(),
                SSECustomerKeyMD5="AAAA",
            )
        assert code_of(exc) == (400, "InvalidArgument")
        got = c.get_object(Bucket=bucket, Key="k", SSECustomerAlgorithm="AES256", SSECustomerKey=self.KEY)
        assert got["Body"].read() == b"hidden"
        assert got["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(self.KEY).digest()).decode()
        assert got["ETag"].strip('"') != hashlib.md5(b"hidden").hexdigest()


class TestReplacedBeforeGet:
    """The object changes between the listing and the GET."""

    def test_pinned_get_is_412_and_object_replaced(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        old = s3.put_object(Bucket=bucket, Key="k", Body=b"old")["ETag"]
        proxy.aws.replace_on_get("k", b"new")
        c = client(proxy.url)
        with pytest.raises(ClientError) as exc:
            c.get_object(Bucket=bucket, Key="k", IfMatch=old)
        assert code_of(exc) == (412, "PreconditionFailed")
        got = c.get_object(Bucket=bucket, Key="k")  # once only
        assert got["Body"].read() == b"new" and got["ETag"] != old

    def test_forced_412(self, s3: Any, bucket: str, proxy: Proxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"old")
        proxy.aws.replace_on_get("k", b"newer", force_412=True)
        c = client(proxy.url)
        with pytest.raises(ClientError) as exc:
            c.get_object(Bucket=bucket, Key="k")
        assert code_of(exc)[0] == 412
        assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"newer"
        assert [s.status for s in proxy.requests("GET", "k")] == [412, 200]
