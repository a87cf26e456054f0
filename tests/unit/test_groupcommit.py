"""GroupCommitter: small files made durable in self-forming batches, on a real temp mirror."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from s3sync.errors import KeyConflictError, UnsafeKeyError
from s3sync.local.dirsync import FilesystemSync, syncfs, syncfs_available
from s3sync.local.groupcommit import SYNCFS_MIN_BATCH, GroupCommitter, _Item, commit_batch
from s3sync.local.keys import is_temp_name
from s3sync.local.mirror import Mirror


def _temps(root: Path) -> list[str]:
    return [n for _d, _s, files in os.walk(root) for n in files if is_temp_name(n)]


@pytest.fixture
def mirror(tmp_path: Path) -> Mirror:
    m = Mirror(tmp_path / "mirror", fsync=True)
    m.ensure_root()
    return m


class TestBatches:
    """Concurrent writers share batches; a lone writer waits for nobody."""

    async def test_concurrent_writes_share_batches_and_all_land(self, mirror: Mirror) -> None:
        gc = GroupCommitter(mirror, max_batch=64)
        keys = [f"p{i % 7}/obj{i:04d}.bin" for i in range(300)]
        await asyncio.gather(*(gc.write(k, k.encode() * 3, 1_600_000_000.0 + i) for i, k in enumerate(keys)))
        assert gc.batches < len(keys)  # batched: fewer batches than files
        assert 1 < gc.largest <= 64
        for i, k in enumerate(keys):
            p = mirror.root / k
            assert p.read_bytes() == k.encode() * 3
            assert p.stat().st_mtime == 1_600_000_000.0 + i
        assert _temps(mirror.root) == []

    async def test_a_single_write_is_a_batch_of_one(self, mirror: Mirror) -> None:
        gc = GroupCommitter(mirror)
        await gc.write("only/one.txt", b"x", None)
        assert (gc.batches, gc.largest) == (1, 1)
        assert (mirror.root / "only" / "one.txt").read_bytes() == b"x"

    async def test_the_file_is_in_place_when_write_returns(self, mirror: Mirror) -> None:
        gc = GroupCommitter(mirror)

        async def write_then_look(i: int) -> bytes:
            await gc.write(f"d/f{i}", str(i).encode(), None)
            return (mirror.root / "d" / f"f{i}").read_bytes()

        got = await asyncio.gather(*(write_then_look(i) for i in range(50)))
        assert got == [str(i).encode() for i in range(50)]

    async def test_overwrite_replaces_content(self, mirror: Mirror) -> None:
        gc = GroupCommitter(mirror)
        await gc.write("a/b", b"old", None)
        await gc.write("a/b", b"new!", None)
        assert (mirror.root / "a" / "b").read_bytes() == b"new!"
        assert _temps(mirror.root) == []


class TestFailures:
    """One bad file fails alone; the rest of its batch lands."""

    async def test_directory_conflict_fails_only_that_key(self, mirror: Mirror) -> None:
        (mirror.root / "clash" / "inner").mkdir(parents=True)
        gc = GroupCommitter(mirror)
        results = await asyncio.gather(
            *(gc.write(f"ok/{i}", b"v", None) for i in range(20)),
            gc.write("clash", b"v", None),
            return_exceptions=True,
        )
        assert all(r is None for r in results[:20])
        assert isinstance(results[20], KeyConflictError)
        assert (mirror.root / "clash").is_dir()
        assert sorted(os.listdir(mirror.root / "ok")) == sorted(str(i) for i in range(20))
        assert _temps(mirror.root) == []

    async def test_symlinked_directory_is_refused_and_nothing_written_through_it(
        self, mirror: Mirror, tmp_path: Path
    ) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (mirror.root / "link").symlink_to(outside)
        gc = GroupCommitter(mirror)
        results = await asyncio.gather(
            gc.write("link/evil", b"x", None), gc.write("fine/good", b"y", None), return_exceptions=True
        )
        assert isinstance(results[0], UnsafeKeyError)
        assert results[1] is None
        assert os.listdir(outside) == []
        assert (mirror.root / "fine" / "good").read_bytes() == b"y"

    async def test_without_fsync_files_still_land_atomically(self, tmp_path: Path) -> None:
        m = Mirror(tmp_path / "nofsync", fsync=False)
        m.ensure_root()
        gc = GroupCommitter(m)
        await asyncio.gather(*(gc.write(f"x/{i}", b"z" * i, None) for i in range(40)))
        assert [len((m.root / "x" / str(i)).read_bytes()) for i in range(40)] == list(range(40))
        assert _temps(m.root) == []


class TestSyncfsBatches:
    """A batch of SYNCFS_MIN_BATCH or more is made durable with syncfs; the per-file path stays for fewer.

    Both are driven through ``commit_batch`` directly on a real mirror, so each
    path is exercised whatever batches the scheduler would have formed.
    """

    def _items(self, keys: list[str]) -> list[Any]:
        loop = asyncio.new_event_loop()
        try:
            return [_Item(k, k.encode() * 2, 1_700_000_000.0, loop.create_future()) for k in keys]
        finally:
            loop.close()

    @pytest.mark.skipif(not syncfs_available(), reason="syncfs needs Linux 5.8 or later")
    @pytest.mark.parametrize("n", [1, SYNCFS_MIN_BATCH - 1, SYNCFS_MIN_BATCH, 40])
    def test_every_file_lands_with_its_mtime_and_no_temp(self, mirror: Mirror, n: int) -> None:
        keys = [f"d{i % 3}/f{i:03d}" for i in range(n)]
        items = self._items(keys)
        commit_batch(mirror, items)
        assert [it.error for it in items] == [None] * n
        for k in keys:
            p = mirror.root / k
            assert p.read_bytes() == k.encode() * 2
            assert p.stat().st_mtime == 1_700_000_000.0
        assert _temps(mirror.root) == []

    @pytest.mark.skipif(not syncfs_available(), reason="syncfs needs Linux 5.8 or later")
    def test_a_bad_key_in_a_syncfs_batch_fails_alone(self, mirror: Mirror) -> None:
        (mirror.root / "clash" / "inner").mkdir(parents=True)
        keys = [f"ok/{i}" for i in range(SYNCFS_MIN_BATCH * 2)] + ["clash"]
        items = self._items(keys)
        commit_batch(mirror, items)
        assert all(it.error is None for it in items[:-1])
        assert isinstance(items[-1].error, KeyConflictError)
        assert sorted(os.listdir(mirror.root / "ok")) == sorted(str(i) for i in range(SYNCFS_MIN_BATCH * 2))
        assert _temps(mirror.root) == []

    @pytest.mark.skipif(not syncfs_available(), reason="syncfs needs Linux 5.8 or later")
    def test_a_symlink_at_a_final_name_is_not_replaced_and_no_fd_is_left(
        self, mirror: Mirror, tmp_path: Path
    ) -> None:
        # the batch borrows each directory's fd (BatchDirs): the leaf is checked at the rename only
        (mirror.root / "d").mkdir()
        (mirror.root / "d" / "link").symlink_to(tmp_path / "elsewhere")
        keys = [f"d/{i}" for i in range(SYNCFS_MIN_BATCH)] + ["d/link"]
        fds = len(os.listdir("/proc/self/fd"))
        items = self._items(keys)
        commit_batch(mirror, items)
        assert all(it.error is None for it in items[:-1])
        assert "symlink" in str(items[-1].error)
        assert (mirror.root / "d" / "link").is_symlink()
        assert not (tmp_path / "elsewhere").exists()
        assert _temps(mirror.root) == []
        assert mirror.open_temps == 0
        assert len(os.listdir("/proc/self/fd")) == fds

    @pytest.mark.skipif(not syncfs_available(), reason="syncfs needs Linux 5.8 or later")
    def test_filesystem_sync_keeps_one_fd_per_filesystem(self, tmp_path: Path) -> None:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        fds = [os.open(tmp_path / d, os.O_RDONLY | os.O_DIRECTORY) for d in ("a", "b")]
        try:
            fs = FilesystemSync()
            for fd in fds:
                fs.add(fd)
            assert len(fs) == 1  # same filesystem: one syncfs covers both
            fs.flush()
            assert len(fs) == 0
        finally:
            for fd in fds:
                os.close(fd)

    def test_syncfs_on_a_closed_fd_raises(self) -> None:
        if not syncfs_available():
            with pytest.raises(OSError):
                syncfs(0)
            return
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        with pytest.raises(OSError):
            syncfs(r)
