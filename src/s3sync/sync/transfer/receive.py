"""Bytes from S3 into place: paid for, written, hashed, verified, then renamed or batched.

:class:`Receiver` is the transfer's hands; :mod:`s3sync.sync.transfer.download`
decides which way a body is taken and with which check, and calls one of them once.
:meth:`~Receiver.get` is the one place a GET's body is put behind the process-wide
``--bwlimit`` (:func:`~s3sync.sync.transfer.throttle.throttle_result`) and rclone's
``x-amz-meta-mtime`` is read. Each way feeds every byte to the check's hasher,
checks the length, asks the :class:`~s3sync.sync.transfer.verifier.BodyCheck` for
its verdict (handing it a way to hash the body again from where it lies) and only
then lets the body reach its final name:

* :meth:`~Receiver.take_whole` takes a whole GET's body: a small one is read into
  memory and written with the other small files of its batch (group durability),
  a bigger one is written into a temp file as it arrives;
* :meth:`~Receiver.take_ranges` runs the parallel ranged GETs of a big object,
  pinned with ``If-Match`` (an object replaced mid-download fails with 412 instead
  of producing a mixed file), into one preallocated temp that a killed attempt can
  resume (:class:`~s3sync.sync.transfer.resume.Resumer`), ``pwritev`` at each
  range's offset, while a :class:`RegionHasher` follows the contiguous written
  frontier and hashes it back from the page cache in a worker thread (hashlib
  releases the GIL), so verification overlaps the network instead of adding a
  second pass. A full-object CRC needs no read-back at all: each part hashes its
  own bytes as they arrive, and the parts' CRCs are combined
  in offset order (:class:`~s3sync.sync.transfer.verifier.CrcSpans`); only bytes
  a killed attempt left on disk are read from the temp.

Every thread that touches a temp goes through :meth:`TempFile.run
<s3sync.local.temps.TempFile.run>` and is waited for
(:func:`~s3sync.sync.transfer.resume.settled`), so all have finished before the
temp is committed, discarded or closed, each exactly once.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from s3sync.errors import RetryableError, TooLargeError
from s3sync.local.groupcommit import GroupCommitter
from s3sync.local.mirror import Mirror
from s3sync.local.temps import TempFile
from s3sync.local.writeback import LaggedWriteback
from s3sync.model import ObjectMeta
from s3sync.s3.bucket import UNKNOWN_SIZE, Body, Bucket
from s3sync.s3.meta import rclone_mtime
from s3sync.sync.transfer.config import TransferConfig
from s3sync.sync.transfer.integrity import Hasher
from s3sync.sync.transfer.resume import Resumer, settled
from s3sync.sync.transfer.throttle import Throttle, throttle_result
from s3sync.sync.transfer.verifier import BodyCheck, CrcSpans, crc_spans

CHUNK = 1024 * 1024

#: a body up to this size is read into memory and written with its batch (group durability)
SMALL_BODY = 8 * 1024 * 1024

#: bytes of one part gathered before one pwritev: 512 KiB, not 2 MiB, took ~8 MB off W4's peak
#: RSS (eight parts each hold a batch) at no measurable cost in CPU (1 GiB, 4 interleaved runs)
WRITE_BATCH = 512 * 1024


@dataclass(slots=True)
class Answer:
    """One GET's answer: status, what it says of the object, its body (already throttled), rclone's mtime."""

    status: int
    meta: ObjectMeta | None
    body: Body | None
    mtime: float | None  # x-amz-meta-mtime, when the object carries a plausible one

    def close(self) -> None:
        if self.body is not None:
            self.body.close()


class Receiver:
    """Takes bodies from S3 into the mirror for one :class:`~s3sync.sync.transfer.download.Transfer`."""

    def __init__(
        self,
        bucket: Bucket,
        mirror: Mirror,
        resumer: Resumer,
        throttle: Throttle | None,
        config: TransferConfig,
    ) -> None:
        self.bucket = bucket
        self.mirror = mirror
        self.committer = GroupCommitter(mirror)
        self.resumer = resumer
        self.throttle = throttle  # every body byte pays here
        self.config = config

    async def get(
        self,
        key: str,
        *,
        if_none_match: str | None = None,
        if_match: str | None = None,
        byte_range: tuple[int, int] | None = None,
        version_id: str | None = None,
    ) -> Answer:
        """GET ``key`` (see :meth:`Bucket.get`), its body behind the throttle."""
        res = throttle_result(
            await self.bucket.get(
                key,
                if_none_match=if_none_match,
                if_match=if_match,
                byte_range=byte_range,
                version_id=version_id,
            ),
            self.throttle,
        )
        return Answer(res.status, res.meta, res.body, rclone_mtime(res.headers))

    async def take_whole(self, key: str, ans: Answer, meta: ObjectMeta, checker: BodyCheck) -> int:
        """A whole GET's body, proven, then in place; returns its length.

        Up to :data:`SMALL_BODY` it is read into memory and written with the other
        small files of its batch (group durability: one fsync for the batch); anything
        bigger, or of unknown size (a chunked answer: the length is what arrived), is
        written into a temp as it arrives and renamed.
        """
        assert ans.body is not None
        mtime = ans.mtime or meta.last_modified or None
        hasher = checker.hasher
        if not 0 <= meta.size <= SMALL_BODY:  # an unknown size streams (it may be anything)
            temp = await asyncio.to_thread(self.mirror.new_temp, key)
            written = 0
            try:
                batch: list[bytes] = []
                pending = 0
                async for chunk in ans.body.iter_chunks(CHUNK):
                    if hasher is not None:
                        hasher.update(chunk)
                    batch.append(chunk)
                    pending += len(chunk)
                    written += len(chunk)
                    if self.config.max_size is not None and written > self.config.max_size:
                        raise TooLargeError(f"{key}: body exceeds max_file_size_mb")
                    if pending >= WRITE_BATCH:  # a cancelled write is still waited for (settled)
                        await settled(temp.run, _pwritev_all, batch, written - pending)
                        batch, pending = [], 0
                if batch:
                    await settled(temp.run, _pwritev_all, batch, written - pending)
                if meta.size != UNKNOWN_SIZE:
                    _whole(key, written, meta.size)
                await checker.verify(key, written, _reread_temp(temp, written))
                await asyncio.to_thread(self.mirror.commit, temp, mtime)
            except BaseException:  # after a failed commit a no-op: the commit closed and removed it
                await asyncio.shield(asyncio.to_thread(self.mirror.discard, temp))
                raise
            return written
        data = await ans.body.read()
        _whole(key, len(data), meta.size)
        if hasher is not None:
            hasher.update(data)
        await checker.verify(key, len(data), _reread_memory(data))
        await self.committer.write(key, data, mtime)
        return len(data)

    async def take_ranges(self, key: str, meta: ObjectMeta, checker: BodyCheck) -> tuple[int, float | None]:
        """Parallel ranged GETs pinned to ``meta``'s ETag into a preallocated temp, proven, renamed.

        The temp is a fresh one or the one a killed attempt left (same ETag): only
        the missing ranges are fetched, and the hasher re-reads the rest from
        disk. Returns the bytes fetched now and rclone's mtime (any part's headers).
        """
        op = await self.resumer.open(key, meta, self.config.part_size)
        frontier = [lo for lo, _ in op.missing]  # how far each range is written: checkpointed
        watcher = asyncio.ensure_future(self.resumer.watch(op, frontier))
        try:
            mtime = await self._parts(key, meta, op.temp, op.missing, frontier, checker)
            _whole(
                key,
                op.done_before + sum(f - lo for f, (lo, _) in zip(frontier, op.missing, strict=True)),
                meta.size,
            )
            await checker.verify(key, meta.size, _reread_temp(op.temp, meta.size))
            await _stop(watcher)
            await asyncio.to_thread(self.mirror.commit, op.temp, mtime or meta.last_modified or None)
            await self.resumer.finished(op)
        except BaseException as exc:
            await _stop(watcher)  # parts' threads have all finished (settled): close ends the temp once
            await self.resumer.close(op, frontier, exc)
            raise
        return meta.size - op.done_before, mtime

    async def _parts(
        self,
        key: str,
        meta: ObjectMeta,
        temp: TempFile,
        ranges: Sequence[tuple[int, int]],
        frontier: list[int],
        checker: BodyCheck,
    ) -> float | None:
        """The ranges' GETs, each written at its offset; the body is hashed while they land.

        A full-object CRC is taken by each part as its chunks arrive (see :func:`_join_spans`);
        anything hashed in order (MD5, SHA, a parted check) by a :class:`RegionHasher`
        that follows the contiguous written frontier.
        """
        size = meta.size
        seen_mtime: list[float | None] = [None]
        writeback = LaggedWriteback(temp.fd)  # only ever called by the writers, inside temp.use()
        turn = threading.Lock()  # the parts' writers take turns (see _pwritev_all)
        spans = crc_spans(checker.hasher, size)  # a full-object CRC: each part hashes its own bytes
        hasher = RegionHasher(checker.hasher) if checker.hasher is not None and spans is None else None
        sem = asyncio.Semaphore(self.config.part_concurrency)
        progress = asyncio.Event()

        async def part(idx: int, lo: int, hi: int) -> None:
            async with sem:
                crc = spans.span(lo) if spans is not None else None
                ans = await self.get(key, if_match=meta.etag, byte_range=(lo, hi), version_id=meta.version_id)
                seen_mtime[0] = seen_mtime[0] or ans.mtime
                try:
                    assert ans.body is not None
                    off = lo
                    # chunks gathered as they arrived and written with one pwritev: joining
                    # them first was a memcpy of the whole object on the event loop
                    batch: list[bytes] = []
                    pending = 0
                    async for chunk in ans.body.iter_chunks(CHUNK):
                        if off + pending + len(chunk) > hi + 1:
                            raise RetryableError(f"{key}: server sent more than the range")
                        batch.append(chunk)
                        if crc is not None:  # on the loop: see _join_spans
                            crc.update(chunk)
                        pending += len(chunk)
                        if pending >= WRITE_BATCH:  # a cancelled part still waits for it
                            await settled(temp.run, _pwritev_all, batch, off, writeback, turn)
                            off += pending
                            batch, pending = [], 0
                            frontier[idx] = off
                            progress.set()
                    if batch:
                        await settled(temp.run, _pwritev_all, batch, off, writeback, turn)
                        off += pending
                    frontier[idx] = off
                    progress.set()
                    if off != hi + 1:
                        raise RetryableError(f"{key}: range {lo}-{hi} truncated at {off}")
                finally:
                    ans.close()

        async def follow() -> None:
            assert hasher is not None
            while hasher.done < size:
                upto = next((f for (_, hi), f in zip(ranges, frontier, strict=True) if f <= hi), size)
                if upto > hasher.done:
                    await settled(temp.run, hasher.feed, upto)
                else:
                    progress.clear()
                    await progress.wait()

        jobs = [part(i, lo, hi) for i, (lo, hi) in enumerate(ranges)]
        if hasher is not None and size:
            jobs.append(follow())
        await _gather_cancel_on_error(jobs)
        if spans is not None:
            await _join_spans(spans, temp, ranges, size)
        return seen_mtime[0]


async def _join_spans(spans: CrcSpans, temp: TempFile, ranges: Sequence[tuple[int, int]], size: int) -> None:
    """Complete a full-object CRC from the parts' own CRCs; only a resumed temp's old bytes are read back.

    Each fetched range hashed its chunks on the event loop as they arrived, in the
    range's own order: awscrt's CRC runs at tens of GB/s and gives up the GIL, and
    doing it there rather than in the part's writer thread (one more GIL release
    per chunk in a thread that then has to win the GIL back) kept the futex count
    near what it was (25,600 against 38,900 per GiB under ``strace -f``) for the
    same CPU (docs/benchmarks.md, round 3b). What an earlier attempt left on disk
    (the gaps between ``ranges``) is hashed from the temp, then all are combined in
    offset order.
    """
    pos = 0
    for lo, hi in [*ranges, (size, size)]:
        if pos < lo:
            await settled(temp.run, RegionHasher(spans.span(pos), start=pos).feed, lo)
        pos = hi + 1
    spans.join()


def _whole(key: str, got: int, expected: int) -> None:
    if got != expected:
        raise RetryableError(f"{key}: got {got} bytes, expected {expected} (truncated body)")


def _reread_memory(data: bytes) -> Callable[[Hasher], Awaitable[None]]:
    """Hash ``data`` again into a fresh hasher (a parted check's real layout)."""

    async def reread(hasher: Hasher) -> None:
        hasher.update(data)

    return reread


def _reread_temp(temp: TempFile, size: int) -> Callable[[Hasher], Awaitable[None]]:
    """Hash ``temp``'s first ``size`` bytes again into a fresh hasher (a parted check's real layout)."""

    async def reread(hasher: Hasher) -> None:
        await settled(temp.run, RegionHasher(hasher).feed, size)

    return reread


class RegionHasher:
    """Feeds a file to ``hasher`` in order; ``done`` is how far it got.

    Reads go into one reused ``WINDOW`` (4 MiB) buffer with ``preadv``, one
    ``update`` per read. The size is the point: every read and every
    ``update`` gives up the GIL and then has to win it back from the event
    loop, which keeps it up to the 5 ms switch interval while parts arrive.
    With the earlier 1 MiB buffer that was 2,048 hand-overs per GiB; against
    it, hashing 4 MiB windows straight from a ``mmap`` of the temp took a 1 GiB
    W4 from 3.26 to 2.93 s (median of 6 interleaved runs; CPU 2.57 to 2.42 s).
    This buffer measured the same as that mapping (5 interleaved runs each:
    CPU 2.94 against 2.84 s, peak RSS equal; the copy costs ~0.1 s per GiB)
    and is kept instead because a mapping turns a read error of the temp (a
    failing disk) or a temp truncated underneath into SIGBUS, which kills the
    daemon, where ``preadv`` raises. Larger buffers cost peak RSS (8 and 16 MiB
    windows: 4-12 MB more) and saved no measurable time.
    """

    def __init__(self, hasher: Hasher, *, start: int = 0) -> None:
        self.hasher = hasher
        self.done = start  # where in the file the hasher starts
        self._buf = bytearray(WINDOW)

    def feed(self, fd: int, upto: int) -> None:
        view = memoryview(self._buf)
        while self.done < upto:
            n = os.preadv(fd, [view[: min(WINDOW, upto - self.done)]], self.done)
            if not n:
                raise RetryableError("temp file shorter than written frontier")
            self.hasher.update(view[:n])
            self.done += n


#: bytes read and hashed per call (per GIL hand-over); the buffer is reused for the whole file
WINDOW = 4 * 1024 * 1024

_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024


def _pwritev_all(
    fd: int,
    chunks: list[bytes],
    offset: int,
    writeback: LaggedWriteback | None = None,
    turn: threading.Lock | None = None,
) -> None:
    """Write ``chunks`` back to back at ``offset`` (one pwritev, retried on a short write).

    Called through :meth:`TempFile.run`, so ``fd`` stays open until this returns.
    Dirty pages never pile up (``writeback``): no pwrite throttling mid-download, a short final fsync.
    """
    views = [memoryview(c) for c in chunks if c]
    total = sum(len(v) for v in views)
    if turn is None:
        _pwritev_locked(fd, views, offset)
    else:
        # the parts' writers take turns: eight threads copying into one file at once spun on its
        # inode lock in the kernel (rwsem_spin_on_owner), burning the CPU the hasher needed
        with turn:
            _pwritev_locked(fd, views, offset)
    if writeback is not None:
        writeback.written(offset, total)


def _pwritev_locked(fd: int, views: list[memoryview], offset: int) -> None:
    """pwritev at most ``IOV_MAX`` buffers a call (more is EINVAL: a chunked body of tiny chunks)."""
    i = 0
    while i < len(views):
        n = os.pwritev(fd, views[i : i + _IOV_MAX], offset)
        offset += n
        while i < len(views) and n >= len(views[i]):
            n -= len(views[i])
            i += 1
        if n:
            views[i] = views[i][n:]


async def _stop(task: asyncio.Future[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _gather_cancel_on_error(coros: Sequence[Awaitable[None]]) -> None:
    """Run all; on the first failure cancel the rest and wait for them (their writes are settled)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


__all__ = ["CHUNK", "SMALL_BODY", "WRITE_BATCH", "Answer", "Receiver", "RegionHasher"]
