"""Multipart objects with unequal parts, and a checksum mismatch that will not go away (defect 4).

Parts of 6, 5, 6, 6 and 2 MiB are legal (UploadPartCopy and many uploaders make
such layouts) and fit "5 parts of 6 MiB": guessing the layout from part 1 gives
a false multipart-ETag mismatch on every download. Both GET paths, both the
single-stream and the ranged download, must verify such an object. A body
that mismatches again on a fresh download is a permanent, counted failure of
that change: the journal row settles instead of being requeued forever.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy
from support.core import core, idle, until

from s3sync.model import Change, ChangeKind, ChangeSource

MiB = 1024 * 1024
LAYOUT = [6 * MiB, 5 * MiB, 6 * MiB, 6 * MiB, 2 * MiB]
PATHS = pytest.mark.parametrize("fast_get", [True, False], ids=["lean", "boto"])


def upload_parts(s3: Any, bucket: str, key: str, sizes: list[int]) -> tuple[bytes, str]:
    """A multipart upload with exactly these part sizes; returns (body, ETag)."""
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    body, done = b"", []
    for n, size in enumerate(sizes, start=1):
        chunk = hashlib.sha256(f"{key}{n}".encode()).digest() * (size // 32) + b"x" * (size % 32)
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=chunk)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
        body += chunk
    r = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    return body, r["ETag"].strip('"')


def event(key: str) -> Change:
    return Change(key, ChangeKind.UPSERT, ChangeSource.NOTIFICATION)


@PATHS
@pytest.mark.parametrize("ranged", [False, True], ids=["stream", "ranged"])
async def test_unequal_parts_verify_and_land(
    fast_get: bool, ranged: bool, s3: Any, bucket: str, mirror: Path, proxied_settings: Any, proxy: FaultProxy
) -> None:
    """The real layout is read (a HEAD per part) and the multipart ETag matches: one GET, no retry."""
    body, etag = upload_parts(s3, bucket, "big.bin", LAYOUT)
    assert etag.endswith("-5")
    threshold = 1 if ranged else 64  # MiB: the ranged path, or one streamed GET
    settings = proxied_settings(
        bucket,
        mirror,
        s3={"fast_get": fast_get},
        sync={"multipart_threshold_mb": threshold, "verify_integrity": True},
    )
    async with core(settings) as engine:
        await engine.start()
        assert await engine.intake([event("big.bin")]) == 1
        await until(lambda: idle(engine), within=60, what="the download settles")
        assert engine.stats.retries == 0, engine.stats.last_error
        assert engine.stats.failed["integrity"] == 0
    assert (mirror / "big.bin").read_bytes() == body
    assert proxy.count("HEAD", "big.bin") >= len(LAYOUT) - 1  # parts 2..5 asked for, not guessed


@PATHS
async def test_a_mismatch_that_repeats_is_permanent_and_counted(
    fast_get: bool, s3: Any, bucket: str, mirror: Path, proxied_settings: Any, proxy: FaultProxy
) -> None:
    """Every GET's bytes flipped: two attempts, then a counted integrity failure; the journal row settles."""
    s3.put_object(Bucket=bucket, Key="bad.bin", Body=b"v" * 100_000)
    proxy.add("corrupt", op="GET", key_re="bad.bin", after_bytes=10)
    settings = proxied_settings(bucket, mirror, s3={"fast_get": fast_get}, sync={"retry_attempts": 5})
    async with core(settings) as engine:
        await engine.start()
        await engine.intake([event("bad.bin")])
        await until(lambda: idle(engine), within=60, what="the journal row settles (not requeued)")
        assert engine.stats.failed["integrity"] == 1
        assert proxy.faults["corrupt"] == 2  # the first download and one fresh one, no more
        assert not (mirror / "bad.bin").exists()
        assert "bad.bin" in (engine.stats.last_error or "")
