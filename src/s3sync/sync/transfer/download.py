"""Download one object into the mirror, verified, with bounded retries.

This module decides the shape of one attempt and nothing below it: what the object
is (:meth:`Transfer._describe`: the whole GET's answer, or a HEAD for a big listed
object), how its bytes are checked (:func:`~s3sync.sync.transfer.verifier.checker_for`,
made once), and which way the :class:`~s3sync.sync.transfer.receive.Receiver`
takes them (the whole GET's body, or parallel ranged GETs at or above
``multipart_threshold_mb``). A body that fails its check never reaches its final
name. A 412 (the object was replaced since it was listed) re-reads the object and
restarts pinned to its new ETag.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog

from s3sync.errors import (
    ChangedDuringTransferError,
    NotFoundError,
    PermanentError,
    S3SyncError,
    TooLargeError,
)
from s3sync.local.mirror import Mirror
from s3sync.model import ObjectMeta
from s3sync.retry import RetryPolicy
from s3sync.s3.bucket import UNKNOWN_SIZE, Bucket
from s3sync.sync.transfer.config import TransferConfig
from s3sync.sync.transfer.receive import Answer, Receiver
from s3sync.sync.transfer.resume import Resumer
from s3sync.sync.transfer.throttle import Throttle
from s3sync.sync.transfer.verifier import checker_for

log = structlog.get_logger(__name__)


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
        self.retry = retry
        self.config = config or TransferConfig()
        self.on_retry = on_retry
        self.receiver = Receiver(bucket, mirror, self.resumer, throttle, self.config)

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
                return await self._fetch(key, current, if_none_match)
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

    async def _fetch(self, key: str, expected: ObjectMeta | None, if_none_match: str | None) -> Downloaded:
        """One attempt: what the object is, how it is checked, then the receiver takes it into place."""
        ans, meta = await self._describe(key, expected, if_none_match)
        try:
            if ans is not None and ans.status == 304:
                return Downloaded(meta, 0, not_modified=True)
            checker = await checker_for(self.bucket, key, meta, enabled=self.config.verify)
            if ans is None:  # by ranged parts
                got, mtime = await self.receiver.take_ranges(key, meta, checker)
                return Downloaded(meta, got, mtime=mtime)
            written = await self.receiver.take_whole(key, ans, meta, checker)
        finally:
            if ans is not None:
                ans.close()
        if meta.size == UNKNOWN_SIZE:
            meta = replace(meta, size=written)
        return Downloaded(meta, written, mtime=ans.mtime)

    async def _describe(
        self, key: str, expected: ObjectMeta | None, if_none_match: str | None
    ) -> tuple[Answer | None, ObjectMeta]:
        """What the object is, and its whole GET unless it is taken by ranged parts (then None).

        At or above ``multipart_threshold_mb`` the parts are pinned to the ETag, and a
        listing says nothing of encryption or the checksum value: a HEAD does (checksum
        mode). Without a listing (an event), a whole GET is sent, and its answer
        describes the object as a HEAD would: a big one is then closed and fetched by
        parts, with no HEAD.
        """
        if expected is not None and expected.size >= self.config.multipart_threshold:
            if expected.etag and not self.config.verify:
                return None, expected  # the ETag alone pins the ranges
            head = await self.bucket.head(key, version_id=expected.version_id)
            if head is None:
                raise NotFoundError(f"{key}: gone before download")
            if expected.last_modified and head.etag == expected.etag:
                head = replace(head, last_modified=expected.last_modified)
            return None, head
        version = expected.version_id if expected is not None else None  # --version-at pins it
        ans = await self.receiver.get(key, if_none_match=if_none_match, version_id=version)
        if ans.status == 304:
            assert expected is not None or if_none_match is not None
            return ans, expected or ObjectMeta(key, 0, if_none_match, 0.0)
        assert ans.meta is not None and ans.body is not None
        meta = ans.meta
        if meta.size == UNKNOWN_SIZE and expected is not None:
            meta = replace(meta, size=expected.size)  # a chunked answer: the listing knows the size
        if expected is not None and expected.last_modified and expected.etag in (None, meta.etag):
            # the listing's timestamp (ms precision on some servers) is what reconcile compares;
            # not when the object was replaced since it was listed (a stale inventory report)
            meta = replace(meta, last_modified=expected.last_modified)
        if self.config.max_size is not None and meta.size > self.config.max_size:
            ans.close()
            raise TooLargeError(f"{key}: {meta.size} bytes exceeds max_file_size_mb")
        if expected is None and meta.size >= self.config.multipart_threshold:
            ans.close()
            return None, meta
        return ans, meta


__all__ = ["Downloaded", "PermanentError", "RetryPolicy", "Transfer"]
