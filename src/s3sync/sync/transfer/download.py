"""Download one object into the mirror, verified, with bounded retries.

This module decides the shape of one download and owns its temp file: a
single GET (small bodies land in memory and commit with their batch; bigger ones
stream into a temp) or, at or above ``multipart_threshold_mb``, parallel ranged
GETs pinned with ``If-Match`` (an object replaced mid-download fails with 412
instead of producing a mixed file) into one preallocated, resumable temp. Each
download makes its check once (:func:`~s3sync.sync.transfer.verifier.checker_for`)
and hands it, with the body, to the :class:`~s3sync.sync.transfer.receive.Receiver`,
which writes, hashes and verifies; only then is the temp renamed into place, so a
body that fails its check never reaches its final name. A 412 (the object was
replaced since it was listed) re-reads the object and restarts pinned to its new ETag.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import structlog

from s3sync.errors import (
    ChangedDuringTransferError,
    NotFoundError,
    PermanentError,
    S3SyncError,
    TooLargeError,
)
from s3sync.local.groupcommit import GroupCommitter
from s3sync.local.mirror import Mirror
from s3sync.model import ObjectMeta
from s3sync.retry import RetryPolicy
from s3sync.s3.bucket import UNKNOWN_SIZE, Bucket
from s3sync.sync.transfer.config import TransferConfig
from s3sync.sync.transfer.receive import Receiver
from s3sync.sync.transfer.resume import Resumer
from s3sync.sync.transfer.throttle import Throttle
from s3sync.sync.transfer.verifier import checker_for

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
        self.mirror = mirror
        self.committer = GroupCommitter(mirror)
        self.retry = retry
        self.config = config or TransferConfig()
        self.on_retry = on_retry
        self.receiver = Receiver(bucket, throttle, self.config.max_size)

    @property
    def throttle(self) -> Throttle | None:
        """The process-wide ``--bwlimit`` bucket every body byte pays at (the receiver's)."""
        return self.receiver.throttle

    @throttle.setter
    def throttle(self, throttle: Throttle | None) -> None:
        self.receiver.throttle = throttle

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
        ans = await self.receiver.get(key, if_none_match=if_none_match, version_id=version)
        if ans.status == 304:
            assert expected is not None or if_none_match is not None
            return Downloaded(expected or ObjectMeta(key, 0, if_none_match, 0.0), 0, not_modified=True)
        assert ans.meta is not None and ans.body is not None
        meta = ans.meta
        if meta.size == UNKNOWN_SIZE and expected is not None:
            meta = replace(meta, size=expected.size)  # a chunked answer: the listing knows the size
        if expected is not None and expected.last_modified and expected.etag in (None, meta.etag):
            # the listing's timestamp (ms precision on some servers) is what reconcile compares;
            # not when the object was replaced since it was listed (a stale inventory report)
            meta = replace(meta, last_modified=expected.last_modified)
        try:
            if self.config.max_size is not None and meta.size > self.config.max_size:
                raise TooLargeError(f"{key}: {meta.size} bytes exceeds max_file_size_mb")
            if expected is None and meta.size >= self.config.multipart_threshold:
                ans.close()
                return await self._ranged(key, meta, described=True)  # this GET's head: no HEAD
            checker = await checker_for(self.bucket, key, meta, enabled=self.config.verify)
            mtime = ans.mtime or meta.last_modified or None
            if 0 <= meta.size <= SMALL_BODY:  # an unknown size streams (it may be anything)
                data = await self.receiver.take_small(key, ans, meta.size, checker)
                # group durability: fsynced with the other small files of its batch
                await self.committer.write(key, data, mtime)
                written = len(data)
            else:
                temp = await asyncio.to_thread(self.mirror.new_temp, key)
                try:
                    written = await self.receiver.take_stream(key, ans, meta.size, temp, checker)
                    await asyncio.to_thread(self.mirror.commit, temp, mtime)
                except BaseException:  # after a failed commit a no-op: the commit closed and removed it
                    await asyncio.shield(asyncio.to_thread(self.mirror.discard, temp))
                    raise
        finally:
            ans.close()
        if meta.size == UNKNOWN_SIZE:
            meta = replace(meta, size=written)
        return Downloaded(meta, written, mtime=ans.mtime)

    async def _ranged(self, key: str, meta: ObjectMeta, described: bool = False) -> Downloaded:
        """Parallel ranged GETs pinned to one ETag into a preallocated (resumable) temp, then the rename."""
        if not (described and meta.etag) and (self.config.verify or not meta.etag):
            # a listing says nothing of encryption or the checksum value: a HEAD does (checksum mode;
            # ``described``: a whole-object GET's answer did), its ETag pins every range
            head = await self.bucket.head(key, version_id=meta.version_id)
            if head is None:
                raise NotFoundError(f"{key}: gone before download")
            if meta.last_modified and head.etag == meta.etag:
                head = replace(head, last_modified=meta.last_modified)
            meta = head
        checker = await checker_for(self.bucket, key, meta, enabled=self.config.verify)
        # a fresh preallocated temp, or the one a killed attempt left (same ETag): only the
        # missing ranges are fetched, the hasher re-reads the rest from disk
        op = await self.resumer.open(key, meta, self.config.part_size)
        frontier = [lo for lo, _ in op.missing]
        watcher = asyncio.ensure_future(self.resumer.watch(op, frontier))
        try:
            seen_mtime = await self.receiver.take_ranges(
                key,
                meta,
                op.temp,
                op.missing,
                frontier,
                checker,
                concurrency=self.config.part_concurrency,
                done_before=op.done_before,
            )
            await _stop(watcher)
            await asyncio.to_thread(self.mirror.commit, op.temp, seen_mtime or meta.last_modified or None)
            await self.resumer.finished(op)
        except BaseException as exc:
            await _stop(watcher)  # parts' threads have all finished (settled): close ends the temp once
            await self.resumer.close(op, frontier, exc)
            raise
        return Downloaded(meta, meta.size - op.done_before, mtime=seen_mtime)


async def _stop(task: asyncio.Future[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


__all__ = ["Downloaded", "PermanentError", "RetryPolicy", "Transfer"]
