"""Issue 20, defect 2: when one part of a ranged download fails, its siblings' writes finish first.

A part's bytes are written by a worker thread; cancelling the part's coroutine does
not stop that thread. Before the fix the temp was closed — its fd number free for
the next ``open`` — while a sibling's ``pwritev`` was still to come, and the late
write landed in whatever file took the number (65 MB of one object were once found
in an unrelated file).

Everything here is real: the mirror lives on a small ext4 filesystem (a loop
device) that the test freezes (``fsfreeze``) once the temp is preallocated, so
the parts' writes block in the kernel like on a stalled disk; the fault proxy
answers one part late and with a 412 (the object was replaced mid-download). While
the disk is frozen, an unrelated file takes the temp's fd number the moment it is
free. After the thaw, that file must be untouched and the temp gone.

(A resumable download is not run here: its failure path first updates the sidecar
on the same frozen disk, so the close would wait for the thaw with or without the
fix. The same ``TempFile`` guards it; tests/faults/test_temp_fd.py covers it.)

Needs root (mount, losetup, fsfreeze); skipped with the reason elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.proxy import Proxy
from support.s3kit import body_for, seed, temp_files

from s3sync.errors import S3SyncError
from s3sync.local.mirror import Mirror
from s3sync.retry import RetryPolicy
from s3sync.s3.bucket import Bucket
from s3sync.s3.errors import classify
from s3sync.sync.transfer.config import TransferConfig
from s3sync.sync.transfer.download import Transfer

MiB = 1024 * 1024
PART = 1 * MiB
MARKER = ".s3sync-tmp-"
#: how long the test watches, disk frozen, for the temp's fd to be closed under its writers: the
#: 412 goes out 2.5 s after the parts asked; then the transfer has 2.5 s more to (wrongly) close it
WINDOW = 5.0


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB ext4 filesystem on a loop device, mounted for this test."""
    if shutil.which("mkfs.ext4") is None or shutil.which("fsfreeze") is None:
        pytest.skip("needs mkfs.ext4 and fsfreeze")
    image, mnt = tmp_path / "disk.img", tmp_path / "disk"
    mnt.mkdir()
    with image.open("wb") as fh:
        fh.truncate(64 * MiB)
    r = _run("mkfs.ext4", "-q", "-F", str(image))
    if r.returncode != 0:
        pytest.skip(f"mkfs.ext4: {(r.stderr or r.stdout).strip()}")
    r = _run("mount", "-o", "loop", str(image), str(mnt))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a loop device here: {(r.stderr or r.stdout).strip()}")
    try:
        yield mnt
    finally:
        _run("fsfreeze", "-u", str(mnt))
        _run("umount", "-l", str(mnt))


@contextlib.contextmanager
def frozen(fs: Path) -> Iterator[None]:
    r = _run("fsfreeze", "-f", str(fs))
    if r.returncode != 0:
        pytest.skip(f"fsfreeze: {(r.stderr or r.stdout).strip()}")
    try:
        yield
    finally:
        _run("fsfreeze", "-u", str(fs))


def temp_fd(root: Path) -> int | None:
    """The descriptor this process holds on the download's temp, if any."""
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(str(root)) and MARKER in os.path.basename(target):
            return int(name)
    return None


def points_at_temp(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        return MARKER in os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return False


async def poll(pred: Any, within: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not pred():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.mark.parametrize("fast_get", [True, False], ids=["fast_get", "boto_get"])
async def test_failed_part_waits_for_sibling_writes_before_closing(
    fast_get: bool,
    disk: Path,
    tmp_path: Path,
    s3: Any,
    bucket: str,
    proxy: Proxy,
    proxied_settings: Any,
) -> None:
    key = "big.bin"
    seed(s3, bucket, {key: body_for(key, 3 * PART)})
    root = disk / "mirror"
    root.mkdir()
    settings = proxied_settings(bucket, root)
    # every part's answer waits 1.5 s at the proxy (time to freeze the disk first); one part
    # (whichever asks first) waits 1 s more and gets 412: the object was replaced mid-download
    proxy.faults.add("latency", op="RANGE", seconds=1.5)
    proxy.faults.add("latency", op="RANGE", times=1, seconds=1.0)
    proxy.faults.add("status", op="RANGE", times=1, status=412, code="PreconditionFailed")
    mirror = Mirror(root, fsync=False)
    victim_path = tmp_path / "state.db"  # not on the frozen disk
    victim = -1
    async with Bucket(settings.s3, fast_get=fast_get) as b:
        transfer = Transfer(
            b,
            mirror,
            retry=RetryPolicy(attempts=1, classify=classify),
            config=TransferConfig(multipart_threshold=2 * PART, part_size=PART, part_concurrency=3),
        )
        task = asyncio.ensure_future(transfer.download(key))
        # all three ranges asked (so the temp is created and preallocated), none answered yet
        assert await poll(lambda: proxy.count("RANGE") == 3, 20), "the parts never started"
        fd = temp_fd(root)
        assert fd is not None
        with frozen(disk):
            if any(os.pread(fd, 4096, off).strip(b"\0") for off in (0, PART, 2 * PART)):
                pytest.skip("this busy machine froze the disk only after a part was written")
            # the two prompt parts now block writing; the late one fails; the transfer has ample
            # time to unwind, and it must not close the temp while their writes are stuck
            if await poll(lambda: not points_at_temp(fd), WINDOW):
                # closed under its writers: an unrelated file takes the number at once
                v = os.open(victim_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                if v != fd:
                    os.dup2(v, fd, inheritable=False)
                    os.close(v)
                victim = fd
            ended_while_frozen = task.done()
        with pytest.raises(S3SyncError):
            await asyncio.wait_for(task, 30)
    if victim >= 0:
        os.close(victim)
    written = victim_path.stat().st_size if victim_path.exists() else 0
    assert written == 0, f"a cancelled part wrote {written} bytes into an unrelated file"
    assert victim < 0, "the temp was closed while its parts' writes were still in flight"
    assert not ended_while_frozen
    assert temp_files(root) == []
    assert mirror.open_temps == 0
