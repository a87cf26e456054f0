"""The apply rules: the only code that decides what an upsert or a remove means.

Events are hints and S3 is the truth (docs/design.md, decision 1):

- an **upsert** fetches the object (a conditional GET with ``If-None-Match``
  when we hold a copy), and an object S3 says is gone (404) after an event
  said "created" is deleted locally. The queue folds a remove and an upsert
  whose order it cannot prove into such a hint (:data:`s3sync.sync.queue.COALESCE`),
  so S3 decides between them here: 200 fetches, 404 deletes, as the remove
  would (and, like a remove, not a file the size/age filters leave out). Only
  a listed upsert takes a 404 as "gone since it was listed" and deletes nothing;
- a **remove** deletes only when S3 confirms the key is gone *when the remove
  is applied*: a HEAD (404), or for an event a newer sequencer. A remove from a
  listing (``Change.listed``) is as old as the listing, so it is always
  confirmed; otherwise we make sure we hold the current object.

What a change means is read from its fields (``kind``, ``listed``, ``meta``,
``sequencer``), never from ``source``, which is for logs and metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import structlog

from s3sync.config import SyncSettings
from s3sync.errors import (
    ArchivedError,
    FatalError,
    KeyConflictError,
    LocalIOError,
    NotFoundError,
    S3SyncError,
    UnsafeKeyError,
)
from s3sync.local.errors import classify_local
from s3sync.local.mirror import Mirror
from s3sync.model import Change, ChangeKind, ChangeSource, ObjectMeta, compare_sequencers
from s3sync.retry import RetryPolicy
from s3sync.s3.bucket import Bucket
from s3sync.state.store import StateRow, StateStore
from s3sync.stats import SyncStats
from s3sync.sync.filters import Selection
from s3sync.sync.queue import Work
from s3sync.sync.report import OpResult
from s3sync.sync.transfer.config import TransferConfig
from s3sync.sync.transfer.download import Transfer
from s3sync.sync.transfer.resume import Resumer
from s3sync.sync.transfer.throttle import Throttle

log = structlog.get_logger(__name__)

EVENT_SOURCES = (ChangeSource.NOTIFICATION, ChangeSource.SQS, ChangeSource.JOURNAL)


class Applier:
    """Applies one change at a time for the pool's workers (one writer per key: the queue's job).

    Given ``[sync]`` and the bucket's ``prefix`` (of ``[s3]``) as values, never the whole settings.
    """

    def __init__(
        self,
        sync: SyncSettings,
        bucket: Bucket,
        state: StateStore,
        mirror: Mirror,
        stats: SyncStats,
        *,
        retry: RetryPolicy,
        prefix: str = "",
    ) -> None:
        self.bucket = bucket
        self.state = state
        self.mirror = mirror
        self.stats = stats
        self.retry = retry
        # prefix, globs, --files-from and the size/age filters: events obey them like passes do
        self.filter = Selection.from_settings(sync, prefix)
        stats.bwlimit = sync.bwlimit
        self.transfer = Transfer(
            bucket,
            mirror,
            retry=retry,
            config=TransferConfig.from_settings(sync),
            on_retry=self.on_retry,
            throttle=Throttle(sync.bwlimit) if sync.bwlimit else None,
            resumer=Resumer(
                mirror,
                bucket.name,
                min_size=int(sync.resume_min_mb * 1024 * 1024),
                fsync=sync.fsync,
            ),
        )

    def on_retry(self, exc: S3SyncError) -> None:
        self.stats.retries += 1
        log.info("retrying", error=str(exc))

    async def apply(self, work: Work) -> OpResult:
        """Apply one change; every outcome, failures included, is an OpResult (never raises)."""
        change = work.change
        started = time.monotonic()
        blog = log.bind(key=change.key, operation=change.kind.value, source=change.source.value)
        try:
            if change.kind is ChangeKind.UPSERT:
                result = await self._upsert(change)
            else:
                result = await self._remove(change)
        except UnsafeKeyError as exc:  # unsafe_key, key_conflict, symlink: a visible skip
            self.stats.skip(exc.code, change.key, str(exc))
            blog.warning("unsafe key skipped", error=str(exc), reason=exc.code)
            return OpResult(change.key, "skip", "skipped", str(exc), error=exc.code)
        except ArchivedError as exc:  # Glacier / Deep Archive, not restored: a skip, never a failure
            self.stats.skip(exc.code, change.key, str(exc))
            blog.info("archived object skipped", error=str(exc), reason=exc.code)
            return OpResult(change.key, "skip", "skipped", f"archived, not restored: {exc}", error=exc.code)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # S3's arrive classified; the disk's OSError is named here
            err = classify_local(exc)
            code = err.code if not isinstance(err, FatalError) else "fatal"
            self.stats.error(code, f"{change.key}: {err}")
            if isinstance(err, LocalIOError):
                self.stats.health.note_local_io(change.key, str(err))
            blog.error(
                "operation failed",
                error=str(err),
                error_code=code,
                duration=round(time.monotonic() - started, 4),
            )
            return OpResult(
                change.key,
                "download" if change.kind is ChangeKind.UPSERT else "delete",
                "failed",
                str(err),
                error=code,
            )
        # written, deleted or skipped: no longer failing
        self.stats.health.local_io_failed.pop(change.key, None)
        duration = time.monotonic() - started
        if result.status == "success":
            if result.operation == "download":
                self.stats.transfer_seconds.observe(duration)
            if change.source in EVENT_SOURCES:
                self.stats.event_to_file_seconds.observe(max(0.0, time.time() - change.received_at))
            blog.info("applied", result=result.operation, bytes=result.bytes, duration=round(duration, 4))
        return result

    async def _upsert(self, change: Change) -> OpResult:
        key = change.key
        self.mirror.mapper.check(key)
        if not self.filter.wants(key):
            self.stats.skipped["filtered"] += 1
            return OpResult(key, "skip", "skipped", "excluded by prefix/include/exclude")
        if change.meta is not None and self.filter.too_large(change.meta.size):
            self.stats.skipped["too_large"] += 1
            return OpResult(key, "skip", "skipped", "exceeds max_file_size_mb", error="too_large")
        probe = change.meta
        if probe is None and change.size is not None:  # an event: its size, and "just now"
            probe = ObjectMeta(key, change.size, change.etag, change.received_at)
        if probe is not None and (why := self.filter.rejects(probe)) is not None:
            self.stats.skipped["filtered"] += 1
            return OpResult(key, "skip", "skipped", why)
        if_none_match: str | None = None
        row: StateRow | None = None
        if change.meta is None:
            row = await self.state.get(key)
            if row is not None and row.etag and await asyncio.to_thread(self.mirror.stat, key) is not None:
                if_none_match = row.etag
        try:
            done = await self.transfer.download(key, expected=change.meta, if_none_match=if_none_match)
        except NotFoundError:
            if change.meta is None:
                # an event said "created" (or a remove was folded in) but S3 says gone: S3 is the truth
                if await self._filters_keep_local(key):
                    self.stats.skipped["filtered"] += 1
                    return OpResult(key, "skip", "skipped", "gone from S3; kept: outside the filters")
                return await self.delete_local(change, "gone from S3 (404)")
            if change.listed:
                # listed (or in a day-old inventory report), gone by the time of the GET:
                # nothing to fetch, nothing failed; a later pass removes our copy if delete is on
                self.stats.skipped["gone"] += 1
                return OpResult(key, "download", "skipped", "gone from S3 since it was listed")
            raise
        if done.not_modified:
            self.stats.unchanged += 1
            if (
                row is not None
                and change.sequencer is not None
                and change.etag is not None
                and change.etag == row.etag
                and (row.sequencer is None or compare_sequencers(change.sequencer, row.sequencer) > 0)
            ):
                # A newer put of the same bytes: remember its sequencer, or a remove
                # that happened between the two puts would later "prove" itself newer.
                self.state.record(dataclasses.replace(row, sequencer=change.sequencer))
            return OpResult(key, "download", "unchanged", "not modified (304)")
        meta = change.meta or done.meta
        if meta.etag and done.meta.etag and meta.etag != done.meta.etag:
            meta = done.meta  # replaced since it was listed (a stale inventory report): record what we hold
        self.state.record(
            StateRow(
                key=key,
                etag=meta.etag or done.meta.etag,
                size=done.meta.size,
                # the mtime the local file was given (rclone's x-amz-meta-mtime when present), so
                # the next pass recognises the file: see plan._held_as_recorded
                last_modified=done.mtime or meta.last_modified or done.meta.last_modified,
                version_id=done.meta.version_id,
                sequencer=_content_sequencer(change, done.meta),
                synced_at=time.time(),
            )
        )
        self.stats.synced[change.source.value] += 1
        self.stats.bytes_downloaded += done.bytes
        return OpResult(key, "download", "success", f"downloaded {done.bytes} bytes", bytes=done.bytes)

    async def _remove(self, change: Change) -> OpResult:
        """Delete only what S3 confirms is gone, checked now, while this worker holds the key.

        A listed remove (reconcile) is as old as its listing: a key re-created
        since then (and maybe already downloaded by an event) must be kept, so
        it is confirmed with a HEAD like an event's remove without a sequencer.
        A key the filters leave out is never deleted because of them (s5cmd#815).
        """
        key = change.key
        self.mirror.mapper.check(key)
        if not self.filter.wants(key):
            self.stats.skipped["filtered"] += 1
            return OpResult(key, "skip", "skipped", "outside the filters; not deleted")
        if await self._filters_keep_local(key):
            self.stats.skipped["filtered"] += 1
            return OpResult(key, "skip", "skipped", "outside the size/age filters; not deleted")
        row = await self.state.get(key)
        proven = (
            not change.listed
            and row is not None
            and change.sequencer is not None
            and row.sequencer is not None
            and compare_sequencers(change.sequencer, row.sequencer) > 0
            # On a versioned bucket only a delete marker hides the key: permanently
            # deleting a version (even the current one) can leave an older version
            # current, so such removes are always confirmed with a HEAD.
            and (change.delete_marker or change.version_id is None)
        )
        if not proven:
            meta = await self.retry.run(lambda: self.bucket.head(key), self.on_retry)
            if meta is not None:
                # still there (old version removed, or re-created): make sure we hold the current one
                held = await asyncio.to_thread(self.mirror.stat, key) if row is not None else None
                if row is not None and row.etag == meta.etag and held is not None:
                    why = (
                        "kept: in S3 again since the listing"
                        if change.listed
                        else "object still exists in S3"
                    )
                    return OpResult(key, "delete", "unchanged", why)
                if not self.filter.wants(key):
                    return OpResult(key, "skip", "skipped", "excluded")
                up = Change(
                    key,
                    ChangeKind.UPSERT,
                    change.source,
                    sequencer=None,
                    meta=meta,
                    received_at=change.received_at,
                )
                return await self._upsert(up)
        return await self.delete_local(change, "not in bucket" if change.listed else "deleted in S3")

    async def _filters_keep_local(self, key: str) -> bool:
        """True when the size/age filters leave our file out: never deleted because of them."""
        if not self.filter.objects.active:
            return False
        held = await asyncio.to_thread(self.mirror.stat, key)
        return held is not None and not self.filter.may_delete_local(key, held.size, held.mtime)

    async def delete_local(self, change: Change, why: str) -> OpResult:
        """Remove our file for the key and its row.

        A directory of other keys at the key's name (``a`` next to ``a/b``) is not
        this key's file: nothing is deleted, the row goes, and the caller (a
        remove, or a pass clearing a key conflict) goes on.
        """
        key = change.key
        try:
            existed = await asyncio.to_thread(self.mirror.delete, key)
        except KeyConflictError:
            existed = False
            why = f"{why}; the name is a directory of other keys"
        self.state.forget(key)
        if existed:
            self.stats.deleted[change.source.value] += 1
            return OpResult(key, "delete", "success", why)
        return OpResult(key, "delete", "unchanged", f"{why}; no local file")


def _content_sequencer(change: Change, got: ObjectMeta) -> str | None:
    """The sequencer to remember for the bytes just written, or None when unknown.

    An event is only a hint: by the time we GET, the key may hold a newer object
    than the event described. Remembering the event's sequencer for newer bytes
    would let a later remove whose sequencer falls between the two "prove" itself
    newer and delete a live file. So the sequencer is kept only when the object
    fetched is the one the event named (same version id, else same ETag);
    otherwise the next remove is confirmed with S3.
    """
    if change.sequencer is None:
        return None
    if change.version_id is not None and got.version_id is not None:
        return change.sequencer if change.version_id == got.version_id else None
    if change.etag is not None and got.etag is not None:
        return change.sequencer if change.etag == got.etag else None
    return None


__all__ = ["EVENT_SOURCES", "Applier"]
