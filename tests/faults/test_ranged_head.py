"""Issue 19 (the ranged path's extra HEAD): a big object first met by a whole-object GET is not HEADed.

An event names a key without describing it, so the download starts with a GET
(checksum mode on). When its answer says the object is at least
``multipart_threshold`` large, the transfer switches to parallel ranged GETs; that
answer already carries what the HEAD would have said (ETag, size, checksum,
encryption), so no HEAD is sent. A download planned from a listing still asks the
HEAD: a listing says nothing of encryption or checksums. Requests are counted at
the fault proxy, on both GET paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.proxy import Proxy
from support.s3kit import body_for, seed

from s3sync.local.mirror import Mirror
from s3sync.retry import RetryPolicy
from s3sync.s3.bucket import Bucket
from s3sync.s3.errors import classify
from s3sync.sync.transfer.config import TransferConfig
from s3sync.sync.transfer.download import Transfer

MiB = 1024 * 1024


@pytest.mark.parametrize("fast_get", [True, False], ids=["fast_get", "boto_get"])
async def test_ranged_download_after_a_whole_get_sends_no_head(
    fast_get: bool, tmp_path: Path, s3: Any, bucket: str, proxy: Proxy, proxied_settings: Any
) -> None:
    key = "big.bin"
    data = seed(s3, bucket, {key: body_for(key, 6 * MiB)})[key]
    root = tmp_path / "mirror"
    root.mkdir()
    settings = proxied_settings(bucket, root)
    async with Bucket(settings.s3, fast_get=fast_get) as b:
        transfer = Transfer(
            b, Mirror(root, fsync=False), retry=RetryPolicy(attempts=1, classify=classify),
            config=TransferConfig(multipart_threshold=4 * MiB, part_size=2 * MiB),
        )
        proxy.reset_counters()
        got = await transfer.download(key)  # as for an event: nothing known beforehand
        assert (root / key).read_bytes() == data and got.bytes == len(data)
        assert (proxy.count("GET"), proxy.count("RANGE"), proxy.count("HEAD")) == (1, 3, 0)

        listed = got.meta
        (root / key).unlink()
        proxy.reset_counters()
        await transfer.download(key, expected=listed)  # as for a reconcile: the listing's meta
        assert (root / key).read_bytes() == data
        assert (proxy.count("GET"), proxy.count("RANGE"), proxy.count("HEAD")) == (0, 3, 1)
