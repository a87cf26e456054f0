"""Download one object into the mirror, verified, with bounded retries.

Integrity is decided by :mod:`s3sync.sync.transfer.integrity` from what the GET (or,
for ranged downloads, a HEAD) said, both asked with checksum mode: a
full-object additional checksum (CRC64NVME, CRC32, CRC32C, SHA-1, SHA-256),
else MD5 when the ETag is a single-part MD5 of an unencrypted or SSE-S3
object, else the multipart ETag or a composite checksum recomputed over the
real part layout (each part's size from ``HEAD ?partNumber=N``: parts need not
be equal), else the size alone (KMS,
DSSE and SSE-C ETags are never compared with an MD5). A body that fails its
check never reaches its final name. A 412 (the object was replaced since it
was listed) re-reads the object and restarts pinned to its new ETag.

Objects at or above ``multipart_threshold_mb`` are fetched as parallel ranged
GETs pinned with ``If-Match`` (an object replaced mid-download fails with 412
instead of producing a mixed file), written with ``os.pwrite`` into one
preallocated temp file.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import structlog

from s3sync.errors import (
    ChangedDuringTransferError,
    NotFoundError,
    PermanentError,
    RetryableError,
    S3SyncError,
    TooLargeError,
)
from s3sync.local.groupcommit import GroupCommitter
from s3sync.local.mirror import Mirror
from s3sync.local.writeback import LaggedWriteback
from s3sync.model import ObjectMeta
from s3sync.retry import RetryPolicy
from s3sync.s3.bucket import UNKNOWN_SIZE, Bucket, GetResult
from s3sync.s3.meta import rclone_mtime
from s3sync.sync.transfer.config import TransferConfig
from s3sync.sync.transfer.hashing import CHUNK, BodyCheck, RegionHasher
from s3sync.sync.transfer.integrity import Facts, choose, new_hasher, part_layout_ok
from s3sync.sync.transfer.resume import Resumer, settled
from s3sync.sync.transfer.throttle import Throttle, throttle_result

log = structlog.get_logger(__name__)
T = TypeVar("T")

SMALL_BODY = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Downloaded:
    """Outcome of one successful transfer."""

    meta: ObjectMeta
    bytes: int
    not_modified: bool = False
    attempts: int = 1
    mtime: float | None = None  # set when the object carries rclone's x-amz-meta-mtime


class Transfer:
    """Downloads objects into a :class:`Mirror`; one instance shared by all workers."""

    def __init__(
        self,
        bucket: Bucket,
        mirror: Mirror,
        *,
        retry: RetryPolicy,
        config: TransferConfig | None = None,
        on_retry: Callable[[S3SyncError], None] | None = None,
        throttle: Throttle | None = None,
        resumer: Resumer | None = None,
    ) -> None:
        # without a resumer nothing is resumable (the threshold is never reached)
        self.resumer = resumer or Resumer(mirror, bucket.name, min_size=sys.maxsize, fsync=False)
        self.bucket = bucket
        self.throttle = throttle  # the process-wide --bwlimit bucket: every body byte pays here
        self.mirror = mirror
        self.committer = GroupCommitter(mirror)
        self.retry = retry
        self.config = config or TransferConfig()
        self.on_retry = on_retry

    async def download(
        self, key: str, *, expected: ObjectMeta | None = None, if_none_match: str | None = None
    ) -> Downloaded:
        """Fetch ``key`` into place; raises a PermanentError subclass when it cannot."""
        self.mirror.mapper.check(key)  # unsafe keys fail before any request
        if expected is not None and self.config.max_size is not None and expected.size > self.config.max_size:
            raise TooLargeError(f"{key}: {expected.size} bytes exceeds max_file_size_mb")
        attempts = 0
        current = expected

        async def once() -> Downloaded:
            nonlocal attempts, current
            attempts += 1
            try:
                if current is not None and current.size >= self.config.multipart_threshold:
                    return await self._ranged(key, current)
                return await self._single(key, current, if_none_match)
            except ChangedDuringTransferError:
                # 412: replaced since it was listed (or mid-download). Retrying with the stale
                # ETag would fail every time: re-read the object and restart pinned to the new one.
                fresh = await self.bucket.head(key)
                if fresh is None:
                    raise NotFoundError(f"{key}: replaced, then gone") from None
                log.info("object replaced during download, restarting", key=key, etag=fresh.etag)
                current = fresh
                raise

        result = await self.retry.run(once, self.on_retry)
        return Downloaded(result.meta, result.bytes, result.not_modified, attempts, result.mtime)

    async def _single(self, key: str, expected: ObjectMeta | None, if_none_match: str | None) -> Downloaded:
        version = expected.version_id if expected is not None else None  # --version-at pins it
        res = throttle_result(
            await self.bucket.get(key, if_none_match=if_none_match, version_id=version), self.throttle
        )
        if res.status == 304:
            assert expected is not None or if_none_match is not None
            return Downloaded(expected or ObjectMeta(key, 0, if_none_match, 0.0), 0, not_modified=True)
        assert res.meta is not None and res.body is not None
        meta = res.meta
        if meta.size == UNKNOWN_SIZE and expected is not None:
            meta = replace(meta, size=expected.size)  # a chunked answer: the listing knows the size
        if expected is not None and expected.last_modified and expected.etag in (None, meta.etag):
            # the listing's timestamp (ms precision on some servers) is what reconcile compares;
            # not when the object was replaced since it was listed (a stale inventory report)
            meta = replace(meta, last_modified=expected.last_modified)
        mtime = rclone_mtime(res.headers)
        try:
            if self.config.max_size is not None and meta.size > self.config.max_size:
                raise TooLargeError(f"{key}: {meta.size} bytes exceeds max_file_size_mb")
            if expected is None and meta.size >= self.config.multipart_threshold:
                res.close()
                return await self._ranged(key, meta, described=True)  # this GET's head: no HEAD
            checker = await self._checker(key, meta)
            if 0 <= meta.size <= SMALL_BODY:  # an unknown size streams (it may be anything)
                data = await res.body.read()
                self._check_size(key, len(data), meta.size)
                checker.update(data)
                checker.verify(key)
                # group durability: fsynced with the other small files of its batch
                await self.committer.write(key, data, mtime or meta.last_modified or None)
                written = len(data)
            else:
                written = await self._stream(key, res, meta, checker)
        finally:
            res.close()
        if meta.size == UNKNOWN_SIZE:
            meta = replace(meta, size=written)
        return Downloaded(meta, written, mtime=mtime)

    async def _checker(self, key: str, meta: ObjectMeta) -> BodyCheck:
        """How this body is verified (:func:`~s3sync.sync.transfer.integrity.choose`), ready to be fed.

        A multipart ETag or a composite checksum needs the part layout. Parts need
        not be equal, so it is read from S3, never extrapolated from the first
        part: ``HEAD ?partNumber=1`` gives part 1, which for two parts fixes the
        other; three or more are each asked for (:meth:`Bucket.part_sizes`). A
        layout that does not add up to the size falls back to the size alone
        rather than raise a false alarm on every pass.
        """
        verification = choose(Facts.from_meta(meta), enabled=self.config.verify)
        if not verification.needs_part_size:
            return BodyCheck(verification, new_hasher(verification))
        parts = verification.parts or 0
        part1 = await self.bucket.head(key, part_number=1, version_id=meta.version_id)
        sizes: list[int] | None = None
        if part1 is not None and parts <= 2:
            sizes = [part1.size, meta.size - part1.size][:parts]
        elif part1 is not None:
            sizes = await self.bucket.part_sizes(key, parts, meta.version_id, known={1: part1.size})
        if not part_layout_ok(meta.size, sizes, verification.parts):
            log.info("part layout unknown or inconsistent: size check only", key=key)
            return BodyCheck(verification, None)
        return BodyCheck(verification, new_hasher(verification, sizes))

    async def _stream(self, key: str, res: GetResult, meta: ObjectMeta, checker: BodyCheck) -> int:
        """Write as it arrives; a cancelled write is still waited for (``settled``), then the temp ends."""
        assert res.body is not None
        temp = await asyncio.to_thread(self.mirror.new_temp, key)
        written = 0
        try:
            batch: list[bytes] = []
            pending = 0
            async for chunk in res.body.iter_chunks(CHUNK):
                checker.update(chunk)
                batch.append(chunk)
                pending += len(chunk)
                written += len(chunk)
                if self.config.max_size is not None and written > self.config.max_size:
                    raise TooLargeError(f"{key}: body exceeds max_file_size_mb")
                if pending >= WRITE_BATCH:
                    await settled(temp.run, _pwritev_all, batch, written - pending)
                    batch, pending = [], 0
            if batch:
                await settled(temp.run, _pwritev_all, batch, written - pending)
            if meta.size != UNKNOWN_SIZE:
                self._check_size(key, written, meta.size)
            checker.verify(key)
            mtime = rclone_mtime(res.headers) or meta.last_modified or None
            await asyncio.to_thread(self.mirror.commit, temp, mtime)
        except BaseException:  # after a failed commit a no-op: the commit closed and removed it
            await asyncio.shield(asyncio.to_thread(self.mirror.discard, temp))
            raise
        return written

    async def _ranged(self, key: str, meta: ObjectMeta, described: bool = False) -> Downloaded:
        """Parallel ranged GETs pinned to one ETag, pwrite'd into a preallocated temp.

        The checksum is computed *while* the parts arrive: a hasher follows the
        contiguous written frontier and reads it back from the page cache
        (a 4 MiB read per GIL hand-over, :class:`RegionHasher`) in a
        worker thread (hashlib releases the GIL), so verification overlaps the
        network instead of adding a second pass over the file.
        """
        if not (described and meta.etag) and (self.config.verify or not meta.etag):
            # a listing says nothing of encryption or the checksum value: a HEAD does (checksum mode;
            # ``described``: a whole-object GET's answer did), its ETag pins every range
            head = await self.bucket.head(key, version_id=meta.version_id)
            if head is None:
                raise NotFoundError(f"{key}: gone before download")
            if meta.last_modified and head.etag == meta.etag:
                head = replace(head, last_modified=meta.last_modified)
            meta = head
        size = meta.size
        checker = await self._checker(key, meta)
        hasher = RegionHasher(checker.hasher) if checker.hasher is not None else None
        # a fresh preallocated temp, or the one a killed attempt left (same ETag): only the
        # missing ranges are fetched, the hasher below re-reads the rest from disk
        op = await self.resumer.open(key, meta, self.config.part_size)
        temp, ranges = op.temp, op.missing
        frontier = [lo for lo, _ in ranges]
        watcher = asyncio.ensure_future(self.resumer.watch(op, frontier))
        seen_mtime: list[float | None] = [None]  # rclone's x-amz-meta-mtime, from any part's headers
        writeback = LaggedWriteback(temp.fd)  # only ever called by the writers, inside temp.use()
        turn = threading.Lock()  # the parts' writers take turns (see _pwritev_all)
        try:
            sem = asyncio.Semaphore(self.config.part_concurrency)
            progress = asyncio.Event()

            async def part(idx: int, lo: int, hi: int) -> None:
                async with sem:
                    res = throttle_result(
                        await self.bucket.get(
                            key, if_match=meta.etag, byte_range=(lo, hi), version_id=meta.version_id
                        ),
                        self.throttle,
                    )
                    seen_mtime[0] = seen_mtime[0] or rclone_mtime(res.headers)
                    try:
                        assert res.body is not None
                        off = lo
                        # chunks gathered as they arrived and written with one pwritev: joining
                        # them first was a memcpy of the whole object on the event loop
                        batch: list[bytes] = []
                        pending = 0
                        async for chunk in res.body.iter_chunks(CHUNK):
                            if off + pending + len(chunk) > hi + 1:
                                raise RetryableError(f"{key}: server sent more than the range")
                            batch.append(chunk)
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
                        res.close()

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
            got_bytes = op.done_before + sum(f - lo for f, (lo, _) in zip(frontier, ranges, strict=True))
            self._check_size(key, got_bytes, size)
            checker.verify(key)
            await _stop(watcher)
            mtime = seen_mtime[0] or meta.last_modified or None
            await asyncio.to_thread(self.mirror.commit, temp, mtime)
            await self.resumer.finished(op)
        except BaseException as exc:
            await _stop(watcher)  # parts' threads have all finished (settled): close ends the temp once
            await self.resumer.close(op, frontier, exc)
            raise
        return Downloaded(meta, size - op.done_before, mtime=seen_mtime[0])

    @staticmethod
    def _check_size(key: str, got: int, expected: int) -> None:
        if got != expected:
            raise RetryableError(f"{key}: got {got} bytes, expected {expected} (truncated body)")


#: bytes of one part gathered before one pwritev: 512 KiB, not 2 MiB, took ~8 MB off W4's peak
#: RSS (eight parts each hold a batch) at no measurable cost in CPU (1 GiB, 4 interleaved runs)
WRITE_BATCH = 512 * 1024


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
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


__all__ = ["Downloaded", "PermanentError", "RetryPolicy", "Transfer"]
