"""Multipart objects with unequal parts, and a checksum mismatch that will not go away (defect 4).

Parts of 6, 5, 6, 6 and 2 MiB are legal (UploadPartCopy and many uploaders make
such layouts) and fit "5 parts of 6 MiB": hashing them as equal parts of part 1's
size gives a multipart-ETag mismatch. The transfer guesses equal parts (one
``HEAD ?partNumber=1``) and only on a mismatch reads the real layout (a HEAD per
other part) and hashes the body again from disk: never downloaded twice, and an
object of equal parts costs one HEAD, not one per part. The fault proxy counts
the requests. Both GET paths, both the single-stream and the ranged download,
must verify such an object. A body that mismatches again on a fresh download is
a permanent, counted failure of that change: the journal row settles instead of
being requeued forever.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from support.core import core, idle
from support.proxy import Proxy
from support.wait import wait_for

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
@pytest.mark.parametrize(
    "layout",
    [LAYOUT, [6 * MiB, 6 * MiB, 6 * MiB, 6 * MiB, 1 * MiB]],
    ids=["unequal", "equal"],
)
async def test_multipart_etag_verified_with_one_head_unless_parts_differ(
    fast_get: bool,
    ranged: bool,
    layout: list[int],
    s3: Any,
    bucket: str,
    mirror: Path,
    proxied_settings: Any,
    proxy: Proxy,
) -> None:
    """Equal parts: one GET per range and one HEAD (part 1). Unequal: 1 + 4 HEADs, still one download."""
    body, etag = upload_parts(s3, bucket, "big.bin", layout)
    assert etag.endswith("-5")
    threshold = 1 if ranged else 64  # MiB: the ranged path, or one streamed GET
    part_mb = 8  # the ranged download's own ranges: 4 GETs for 25 MiB
    settings = proxied_settings(
        bucket,
        mirror,
        s3={"fast_get": fast_get},
        sync={"multipart_threshold_mb": threshold, "part_size_mb": part_mb, "verify_integrity": True},
    )
    async with core(settings) as engine:
        await engine.start()
        assert await engine.intake([event("big.bin")]) == 1
        await wait_for(lambda: idle(engine), within=60, what="the download settles")
        assert engine.stats.retries == 0, engine.stats.health.last_error
        assert engine.stats.failed["integrity"] == 0
    assert (mirror / "big.bin").read_bytes() == body
    # an event says nothing of the object: one whole GET first (its answer describes the object,
    # so the ranged path sends no object HEAD), then the ranges; never a second download
    assert proxy.count("GET", "big.bin") == 1
    assert proxy.count("RANGE", "big.bin") == (-(-len(body) // (part_mb * MiB)) if ranged else 0)
    # part 1's HEAD always; the other parts' only when equal parts do not match
    heads = 1 if layout[:-1] == [layout[0]] * (len(layout) - 1) else len(layout)
    assert proxy.count("HEAD", "big.bin") == heads


@PATHS
async def test_a_mismatch_that_repeats_is_permanent_and_counted(
    fast_get: bool, s3: Any, bucket: str, mirror: Path, proxied_settings: Any, proxy: Proxy
) -> None:
    """Every GET's bytes flipped: two attempts, then a counted integrity failure; the journal row settles."""
    s3.put_object(Bucket=bucket, Key="bad.bin", Body=b"v" * 100_000)
    proxy.faults.add("corrupt", op="GET", key_re="bad.bin", after_bytes=10)
    settings = proxied_settings(bucket, mirror, s3={"fast_get": fast_get}, sync={"retry_attempts": 5})
    async with core(settings) as engine:
        await engine.start()
        await engine.intake([event("bad.bin")])
        await wait_for(lambda: idle(engine), within=60, what="the journal row settles (not requeued)")
        assert engine.stats.failed["integrity"] == 1
        assert proxy.faults["corrupt"] == 2  # the first download and one fresh one, no more
        assert not (mirror / "bad.bin").exists()
        assert "bad.bin" in (engine.stats.health.last_error or "")


@PATHS
async def test_damaged_unequal_parts_fail_after_the_real_layout(
    fast_get: bool, s3: Any, bucket: str, mirror: Path, proxied_settings: Any, proxy: Proxy
) -> None:
    """The real layout does not excuse damaged bytes: hashed again from disk, they fail twice, then stop."""
    upload_parts(s3, bucket, "big.bin", LAYOUT)
    proxy.faults.add("corrupt", op="GET", key_re="big.bin", after_bytes=10)
    settings = proxied_settings(
        bucket,
        mirror,
        s3={"fast_get": fast_get},
        sync={"retry_attempts": 5, "multipart_threshold_mb": 64, "verify_integrity": True},
    )
    async with core(settings) as engine:
        await engine.start()
        await engine.intake([event("big.bin")])
        await wait_for(lambda: idle(engine), within=60, what="the journal row settles (not requeued)")
        assert engine.stats.failed["integrity"] == 1
        assert proxy.faults["corrupt"] == 2  # the first download and one fresh one, no more
        # each download: part 1's HEAD, then, the equal-parts guess missing, the other parts'
        assert proxy.count("HEAD", "big.bin") == 2 * len(LAYOUT)
        assert not (mirror / "big.bin").exists()
