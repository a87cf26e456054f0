"""Issue 20, defect 1: a failed commit leaves nothing to close twice.

The rename into place is made to fail for real: while the body streams (slowed by
the fault proxy), a concurrent writer turns the final path into a directory — what a
concurrent event for ``big.bin/child`` does — so ``renameat`` meets a key conflict.

The race that made the double close harmful is made certain instead of likely: the
moment the temp's fd is closed, an unrelated file takes that very number (``dup2``,
what SQLite, a socket or another worker's ``open`` does in a busy daemon). A second
close of the temp's fd then closes that unrelated file; the test sees it as EBADF.
The audit also checks that no descriptor below the mirror stays open.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.proxy import Proxy
from support.s3kit import body_for, seed, temp_files

from s3sync.errors import KeyConflictError
from s3sync.local.mirror import Mirror
from s3sync.retry import RetryPolicy
from s3sync.s3.bucket import Bucket
from s3sync.s3.errors import classify
from s3sync.sync.transfer.config import TransferConfig
from s3sync.sync.transfer.download import Transfer
from s3sync.sync.transfer.resume import Resumer

MiB = 1024 * 1024
MARKER = ".s3sync-tmp-"


class Reuse:
    """``os.close`` that lets an unrelated file take the temp's fd number the instant it is freed."""

    def __init__(self, real: Callable[[int], None], victim: Path) -> None:
        self.real = real
        self.victim = victim
        self.taken: int | None = None
        self.lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        with self.lock:
            self.real(fd)
            if self.taken is None and MARKER in os.path.basename(target):
                unrelated = os.open(self.victim, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                if unrelated != fd:
                    os.dup2(unrelated, fd, inheritable=False)
                    self.real(unrelated)
                self.taken = fd


def fds_below(root: Path) -> set[str]:
    """What this process has open below ``root`` (temps, directory fds)."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(str(root)):
            out.add(f"{name}->{target}")
    return out


async def until_temp(root: Path, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not temp_files(root):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("no temp file appeared")
        await asyncio.sleep(0.002)


@pytest.mark.parametrize("fast_get", [True, False], ids=["fast_get", "boto_get"])
@pytest.mark.parametrize("shape", ["streamed", "ranged", "ranged_resumable"])
async def test_failed_rename_closes_the_temp_exactly_once(
    shape: str,
    fast_get: bool,
    tmp_path: Path,
    s3: Any,
    bucket: str,
    proxy: Proxy,
    proxied_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = 9 * MiB if shape == "streamed" else 6 * MiB
    key = "big.bin"
    seed(s3, bucket, {key: body_for(key, size)})
    root = tmp_path / "mirror"
    root.mkdir()
    settings = proxied_settings(bucket, root)
    proxy.faults.add("throttle", op="GET", bytes_per_second=24 * MiB)  # ~0.3 s of body: time to mkdir
    mirror = Mirror(root, fsync=False)
    victim = tmp_path / "unrelated.db"
    reuse = Reuse(os.close, victim)
    async with Bucket(settings.s3, fast_get=fast_get) as b:
        transfer = Transfer(
            b,
            mirror,
            retry=RetryPolicy(attempts=1, classify=classify),
            config=TransferConfig(
                multipart_threshold=4 * MiB if shape != "streamed" else 64 * MiB,
                part_size=2 * MiB,
                part_concurrency=3,
            ),
            resumer=Resumer(mirror, bucket, min_size=0, fsync=True) if shape == "ranged_resumable" else None,
        )
        before = fds_below(root)
        monkeypatch.setattr(os, "close", reuse)
        task = asyncio.ensure_future(transfer.download(key))
        await until_temp(root)
        (root / key / "child").mkdir(parents=True)  # the concurrent event's big.bin/child
        with pytest.raises(KeyConflictError):
            await task
        monkeypatch.setattr(os, "close", reuse.real)
    assert reuse.taken is not None, "the temp's fd was never closed"
    try:
        st = os.fstat(reuse.taken)
    except OSError as exc:
        assert exc.errno != errno.EBADF, "the unrelated file that took the temp's fd number was closed"
        raise
    assert (st.st_dev, st.st_ino) == (os.stat(victim).st_dev, os.stat(victim).st_ino)
    os.write(reuse.taken, b"still mine")  # and it is still usable
    os.close(reuse.taken)
    assert victim.read_bytes() == b"still mine"
    assert fds_below(root) == before, "a descriptor below the mirror stayed open"
    assert temp_files(root) == [], "the failed temp was not removed"
    assert (root / key).is_dir()
