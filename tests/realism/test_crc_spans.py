"""A full-object CRC of a ranged download is computed part by part as the bytes land, on both GET paths.

Each ranged part hashes its own bytes (``CrcSpans``) and the parts' CRCs are
combined in offset order, instead of reading the temp back: these tests prove that
the combined value is the whole body's (a right checksum passes, with a last part
shorter than the others), that it really covers every byte (a wrong checksum and
a byte flipped by the proxy inside one part both fail the check before the
rename), and that a resumed download, whose earlier bytes are only on disk, is
still checked whole. The checksums come from the proxy's AWS behaviour (moto
answers as AWS does with ``x-amz-checksum-mode: ENABLED``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from support.proxy import Proxy
from support.s3kit import body_for, seed, temp_files, tree

MiB = 1024 * 1024
#: three ranges at the suite's 5 MiB part size, the last one shorter (2 MiB + 12345 bytes)
SIZE = 12 * MiB + 12345
PATHS = pytest.mark.parametrize("fast_get", [True, False], ids=["lean", "boto"])
CRCS = pytest.mark.parametrize("algorithm", ["CRC64NVME", "CRC32C", "CRC32"])


async def reconcile(settings: Any) -> tuple[Any, Any]:
    from s3sync.stats import SyncStats
    from s3sync.sync.engine import open_engine

    stats = SyncStats()
    async with open_engine(settings, stats) as engine:
        report = await engine.reconcile()
    return report, stats


def assert_mirror(mirror: Path, expected: dict[str, bytes]) -> None:
    got = tree(mirror)
    assert sorted(got) == sorted(expected)
    for key, data in expected.items():
        assert hashlib.sha256(got[key]).digest() == hashlib.sha256(data).digest(), key
    assert temp_files(mirror) == []


def ranges_of(proxy: Proxy, key: str) -> list[str]:
    return [s.header("range") for s in proxy.requests("GET", key) if s.op == "RANGE"]


@PATHS
@CRCS
async def test_right_passes_wrong_fails(
    fast_get: bool, algorithm: str, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
) -> None:
    """The parts' combined CRC is the body's: the right value passes, a wrong one is an integrity failure."""
    data = seed(s3, bucket, {"good.bin": body_for("good", SIZE), "bad.bin": body_for("bad", SIZE)})
    proxy.aws.checksum("good.bin", algorithm)
    proxy.aws.checksum("bad.bin", algorithm, wrong=True)
    report, stats = await reconcile(settings_for(bucket, mirror, fast_get))
    assert report.downloaded == 1 and report.failed == 1, report.errors
    assert [e["key"] for e in report.errors] == ["bad.bin"]
    assert stats.failed["integrity"] == 1, stats.failed
    assert_mirror(mirror, {"good.bin": data["good.bin"]})
    assert len(ranges_of(proxy, "good.bin")) == 3  # each range fetched once: nothing downloaded twice
    assert all(s.header("x-amz-checksum-mode") == "ENABLED" for s in proxy.requests("HEAD", "good.bin"))


@PATHS
async def test_flipped_byte_in_one_part_is_caught(
    fast_get: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
) -> None:
    """A byte flipped inside one part fails the CRC64NVME before the rename; a fresh download passes."""
    data = seed(s3, bucket, {"big.bin": body_for("big", SIZE)})
    proxy.aws.checksum("big.bin", "CRC64NVME")
    proxy.faults.add("corrupt", op="RANGE", key_re="big.bin", after_bytes=3 * MiB + 7, times=1)
    report, stats = await reconcile(settings_for(bucket, mirror, fast_get))
    assert report.ok and report.downloaded == 1, report.errors
    assert proxy.faults["corrupt"] == 1
    assert stats.retries == 1  # the damaged download was refused, not renamed into place
    assert_mirror(mirror, data)


@PATHS
@pytest.mark.parametrize("wrong", [False, True], ids=["right", "wrong"])
async def test_resumed_download_is_checked_whole(
    fast_get: bool, wrong: bool, s3: Any, bucket: str, mirror: Path, proxy: Proxy, settings_for: Any
) -> None:
    """A part cut mid-way, then resumed: the bytes already on disk are hashed from the temp and combined.

    The cut lands 4 MiB into a 5 MiB part, so at least 3.5 MiB of it is on disk
    (written in 512 KiB batches) and the retry asks only for the rest.
    """
    data = seed(s3, bucket, {"big.bin": body_for("big", SIZE)})
    proxy.aws.checksum("big.bin", "CRC64NVME", wrong=wrong)
    proxy.faults.add("truncate", op="RANGE", key_re="big.bin", after_bytes=4 * MiB, times=1)
    settings = settings_for(bucket, mirror, fast_get, sync={"resume_min_mb": 1, "retry_attempts": 3})
    report, stats = await reconcile(settings)
    assert proxy.faults["truncate"] == 1
    starts = [int(r.removeprefix("bytes=").split("-")[0]) for r in ranges_of(proxy, "big.bin")]
    assert any(lo % (5 * MiB) for lo in starts), starts  # a part resumed from where it was cut
    if wrong:
        assert report.failed == 1 and stats.failed["integrity"] == 1, (report.errors, stats.failed)
        assert "big.bin" not in tree(mirror) and temp_files(mirror) == []
    else:
        assert report.ok and report.downloaded == 1, report.errors
        assert stats.retries == 1
        assert_mirror(mirror, data)
