"""The sync engine: intake → coalescing queue → transfer workers → mirror + state → stats.

One :class:`Engine` owns the queue and the worker pool (an arq-style
lifecycle: start, run, drain on stop, close). Every source hands it
:class:`~s3sync.model.Change` objects; the workers apply them with S3 as the
source of truth: creates fetch the object, removes delete locally only when S3
confirms the key is gone (404) or a sequencer proves the remove is newer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from s3sync.s3.bucket import Bucket
from s3sync.config import Settings
from s3sync.errors import (
    FatalError,
    LocalIOError,
    NotFoundError,
    PermanentError,
    S3SyncError,
    UnsafeKeyError,
    classify,
)
from s3sync.local.keys import KeyFilter
from s3sync.local.mirror import Mirror
from s3sync.model import Change, ChangeKind, ChangeSource, ObjectMeta, compare_sequencers
from s3sync.sync.queue import KeyedCoalescingQueue, Work
from s3sync.sync.plan import Adopt, Fetch, Remove, Skip, Unchanged, plan
from s3sync.state.store import StateRow, StateStore
from s3sync.stats import SyncStats
from s3sync.sync.transfer import RetryPolicy, Transfer

log = structlog.get_logger("s3sync.sync.engine")

MAX_DETAILS = 1000
EVENT_SOURCES = (ChangeSource.NOTIFICATION, ChangeSource.SQS, ChangeSource.JOURNAL)
# Failures that may heal by themselves (S3 down, throttled, bad credentials being fixed, disk
# full): a journaled change that ends this way stays in the journal and is tried again after a
# growing delay (and replayed at the next start), so an outage loses no accepted event.
TRANSIENT_FAILURES = frozenset({"retries_exceeded", "retryable", "changed", "fatal", "local_io"})
REQUEUE_BASE_SECONDS = 1.0
REQUEUE_CAP_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class OpResult:
    """The outcome of one applied change."""

    key: str
    operation: str  # download | delete | skip | none
    status: str  # success | failed | skipped | unchanged | dry_run
    message: str = ""
    bytes: int = 0
    error: str | None = None


@dataclass
class SyncReport:
    """Aggregate of one reconcile pass (CLI summary and the legacy /sync response)."""

    dry_run: bool = False
    downloaded: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    unchanged: int = 0
    adopted: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    details: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    aborted: str | None = None
    planned: int = 0

    def add(self, r: OpResult) -> None:
        if r.status in ("success", "dry_run"):
            if r.operation == "download":
                self.downloaded += 1
                self.bytes += r.bytes
            elif r.operation == "delete":
                self.deleted += 1
        elif r.status == "failed":
            self.failed += 1
            if len(self.errors) < MAX_DETAILS:
                self.errors.append({"key": r.key, "error": r.error or "failed", "message": r.message})
        elif r.status == "skipped":
            self.skipped += 1
            if r.error and len(self.errors) < MAX_DETAILS:
                self.errors.append({"key": r.key, "error": r.error, "message": r.message})
        elif r.status == "unchanged":
            self.unchanged += 1
        if r.status != "unchanged" and len(self.details) < MAX_DETAILS:
            self.details.append(
                {"operation": r.operation, "file_key": r.key, "status": r.status, "message": r.message}
            )

    def finish(self) -> SyncReport:
        self.seconds = time.monotonic() - self.started
        return self

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.aborted is None

    def summary_line(self) -> str:
        prefix = "dry run: would have " if self.dry_run else ""
        line = (
            f"{prefix}downloaded {self.downloaded}, deleted {self.deleted}, failed {self.failed}, "
            f"skipped {self.skipped}, unchanged {self.unchanged}, {self.bytes} bytes in {self.seconds:.2f}s"
        )
        if self.aborted:
            line += f" ({self.aborted})"
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "downloaded": self.downloaded,
            "deleted": self.deleted,
            "failed": self.failed,
            "skipped": self.skipped,
            "unchanged": self.unchanged,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "aborted": self.aborted,
            "errors": self.errors,
        }

    def legacy(self) -> dict[str, Any]:
        """The earlier FastAPI service's /sync response shape (plus our extras)."""
        processed = self.downloaded + self.deleted + self.failed + self.skipped + self.unchanged
        ok = self.downloaded + self.deleted + self.unchanged
        if self.aborted or (self.failed and not ok):
            status = "failed"
        elif self.failed:
            status = "partial"
        else:
            status = "success"
        msg = f"Synced {ok} of {processed} files in {self.seconds:.2f} seconds"
        if self.dry_run:
            msg = "Dry run: " + msg
        if self.aborted:
            msg += f"; {self.aborted}"
        return {
            "status": status,
            "message": msg,
            "processed_files": processed,
            "successful_operations": ok,
            "failed_operations": self.failed,
            "sync_details": self.details,
            **self.as_json(),
        }


class Engine:
    """Owns the queue, the workers and the reconcile; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        bucket: Bucket,
        state: StateStore,
        mirror: Mirror,
        stats: SyncStats,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.bucket = bucket
        self.state = state
        self.mirror = mirror
        self.stats = stats
        sync = settings.sync
        self.filter = KeyFilter(settings.s3.prefix, sync.include, sync.exclude, sync.max_file_size_bytes)
        self.retry = retry or RetryPolicy(attempts=sync.retry_attempts + 1)
        self.transfer = Transfer(
            bucket,
            mirror,
            retry=self.retry,
            verify=sync.verify_integrity,
            max_size=sync.max_file_size_bytes,
            multipart_threshold=int(sync.multipart_threshold_mb * 1024 * 1024),
            part_size=int(sync.part_size_mb * 1024 * 1024),
            on_retry=self._on_retry,
        )
        self.queue = KeyedCoalescingQueue(maxsize=max(64, sync.concurrency * 4))
        self._workers: list[asyncio.Task[None]] = []
        self._reconcile_lock = asyncio.Lock()
        self._accepting = True
        self._drain_deadline: float | None = None
        self._requeue_attempts: dict[str, int] = {}
        self._requeue_handles: set[asyncio.TimerHandle] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        swept = await asyncio.to_thread(self.mirror.sweep_temps)
        if swept:
            log.info("swept stale temporary files", count=swept)
        for i in range(self.settings.sync.concurrency):
            self._workers.append(asyncio.create_task(self._worker(), name=f"transfer-{i}"))

    async def replay_journal(self) -> int:
        """Re-enqueue changes accepted before a crash or stop (202 means durable)."""
        pending = await self.state.journal_pending()
        for jid, change in pending:
            self.queue.put_nowait(change, journal_ids=[jid])
        # the workers decrement this as rows settle; without it the gauge (and the
        # backpressure check that reads it) would under-count after a restart
        self.stats.journal_pending += len(pending)
        self._update_gauges()
        if pending:
            log.info("replaying journal", count=len(pending))
        return len(pending)

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - a deadline, not a wait
        """Stop intake and wait up to ``timeout`` for queued and in-flight work; True when idle.

        The deadline is fixed by the first call, so ``serve`` can drain while its API
        still answers (new events get 503) and the later :meth:`stop` does not wait
        a second ``drain_timeout_seconds``.
        """
        self._accepting = False
        if self._drain_deadline is None:
            t = self.settings.sync.drain_timeout_seconds if timeout is None else timeout
            self._drain_deadline = time.monotonic() + t
        # two conditions and a deadline: a 20 ms poll is simpler than an event per queue change
        while (self.queue.in_flight or self.queue.depth) and time.monotonic() < self._drain_deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return not (self.queue.in_flight or self.queue.depth)

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop intake, let in-flight work finish up to ``drain_timeout``, then cancel.

        Whatever is left stays in the journal (its rows are removed only once
        applied) and is replayed at the next start.
        """
        await self.drain(drain_timeout)
        for handle in self._requeue_handles:
            handle.cancel()  # their rows stay in the journal for the next start
        self._requeue_handles.clear()
        for t in self._workers:
            t.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        for work in self.queue.drain_pending():
            for w in work.waiters:
                if not w.done():
                    w.set_result(
                        OpResult(work.change.key, "none", "failed", "daemon stopping", error="stopped")
                    )
        await self.state.flush()

    @property
    def accepting(self) -> bool:
        return self._accepting

    # -- intake ------------------------------------------------------------
    async def intake(self, changes: list[Change]) -> int:
        """Journal (durably) then enqueue; returns how many were accepted."""
        if not changes:
            return 0
        ids = await self.state.journal_append(changes)
        for change, jid in zip(changes, ids, strict=True):
            if self.queue.put_nowait(change, journal_ids=[jid]):
                self.stats.coalesced += 1
        self.stats.journal_pending += len(ids)
        self._update_gauges()
        return len(ids)

    def submit(self, change: Change) -> asyncio.Future[OpResult]:
        fut: asyncio.Future[OpResult] = asyncio.get_running_loop().create_future()
        if self.queue.put_nowait(change, fut):
            self.stats.coalesced += 1
        self._update_gauges()
        return fut

    def _update_gauges(self) -> None:
        self.stats.queue_depth = self.queue.depth
        self.stats.in_flight = self.queue.in_flight

    def _on_retry(self, exc: S3SyncError) -> None:
        self.stats.retries += 1
        log.info("retrying", error=str(exc))

    # -- workers -----------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            work = await self.queue.get()
            self._update_gauges()
            try:
                result = await self._apply(work)
            except asyncio.CancelledError:
                # put it back for the journal/next start; waiters learn we stopped
                self.queue.done(work.change.key)
                for w in work.waiters:
                    if not w.done():
                        w.set_result(
                            OpResult(work.change.key, "none", "failed", "daemon stopping", error="stopped")
                        )
                raise
            except Exception as exc:  # a bug costs one change, never a worker: a dead worker stalls the queue
                log.exception("internal error applying a change", key=work.change.key)
                self.stats.error("internal", f"{work.change.key}: {type(exc).__name__}: {exc}")
                result = OpResult(
                    work.change.key,
                    "none",
                    "failed",
                    f"internal error ({type(exc).__name__})",
                    error="internal",
                )
            self.queue.done(work.change.key)
            if work.journal_ids and result.status == "failed" and result.error in TRANSIENT_FAILURES:
                self._requeue_later(work)
            elif work.journal_ids:
                self._requeue_attempts.pop(work.change.key, None)
                try:
                    await self.state.journal_remove(work.journal_ids)
                    self.stats.journal_pending = max(0, self.stats.journal_pending - len(work.journal_ids))
                except Exception as exc:  # journal rows replay harmlessly next start
                    log.warning("journal cleanup failed", error=str(exc))
            for w in work.waiters:
                if not w.done():
                    w.set_result(result)
            self._update_gauges()

    def _requeue_later(self, work: Work) -> None:
        """Keep a transiently failed, journaled change; try it again after a growing, jittered delay."""
        key = work.change.key
        n = self._requeue_attempts.get(key, 0)
        self._requeue_attempts[key] = n + 1
        delay = min(REQUEUE_CAP_SECONDS, REQUEUE_BASE_SECONDS * 2**n) * (0.5 + random.random() / 2)
        log.info("change kept in the journal; trying again later", key=key, retry_in=round(delay, 2))

        def again() -> None:
            self._requeue_handles.discard(handle)
            if self._accepting:
                if self.queue.put_nowait(work.change, journal_ids=work.journal_ids):
                    self.stats.coalesced += 1
                self._update_gauges()

        handle = asyncio.get_running_loop().call_later(delay, again)
        self._requeue_handles.add(handle)

    async def _apply(self, work: Work) -> OpResult:
        change = work.change
        started = time.monotonic()
        blog = log.bind(key=change.key, operation=change.kind.value, source=change.source.value)
        try:
            if change.kind is ChangeKind.UPSERT:
                result = await self._upsert(change)
            else:
                result = await self._remove(change)
        except UnsafeKeyError as exc:
            self.stats.skipped[exc.code] += 1
            self.stats.last_error = f"{change.key!r}: {exc}"
            blog.warning("unsafe key skipped", error=str(exc))
            return OpResult(change.key, "skip", "skipped", str(exc), error=exc.code)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = classify(exc)
            code = err.code if not isinstance(err, FatalError) else "fatal"
            self.stats.error(code, f"{change.key}: {err}")
            if isinstance(err, LocalIOError):
                self.stats.note_local_io(change.key, str(err))
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
        self.stats.local_io_failed.pop(change.key, None)  # written, deleted or skipped: no longer failing
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
        self.mirror.mapper.to_path(key)
        if not self.filter.wants(key):
            self.stats.skipped["filtered"] += 1
            return OpResult(key, "skip", "skipped", "excluded by prefix/include/exclude")
        if change.meta is not None and self.filter.too_large(change.meta.size):
            self.stats.skipped["too_large"] += 1
            return OpResult(key, "skip", "skipped", "exceeds max_file_size_mb", error="too_large")
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
                # an event said "created" but S3 says gone: S3 is the truth
                return await self._delete_local(change, "gone from S3 (404)")
            raise
        if done.not_modified:
            self.stats.skipped["unchanged"] += 1
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
        self.state.record(
            StateRow(
                key=key,
                etag=meta.etag or done.meta.etag,
                size=done.meta.size,
                last_modified=meta.last_modified or done.meta.last_modified,
                version_id=done.meta.version_id,
                sequencer=_content_sequencer(change, done.meta),
                synced_at=time.time(),
            )
        )
        self.stats.synced[change.source.value] += 1
        self.stats.bytes_downloaded += done.bytes
        return OpResult(key, "download", "success", f"downloaded {done.bytes} bytes", bytes=done.bytes)

    async def _remove(self, change: Change) -> OpResult:
        key = change.key
        if change.source in (ChangeSource.RECONCILE, ChangeSource.MANUAL):
            return await self._delete_local(change, "not in bucket")
        self.mirror.mapper.to_path(key)
        row = await self.state.get(key)
        proven = (
            row is not None
            and change.sequencer is not None
            and row.sequencer is not None
            and compare_sequencers(change.sequencer, row.sequencer) > 0
            # On a versioned bucket only a delete marker hides the key: permanently
            # deleting a version (even the current one) can leave an older version
            # current, so such removes are always confirmed with a HEAD.
            and (change.delete_marker or change.version_id is None)
        )
        if not proven:
            meta = await self.retry.run(lambda: self.bucket.head(key), self._on_retry)
            if meta is not None:
                # still there (old version removed, or re-created): make sure we hold the current one
                held = await asyncio.to_thread(self.mirror.stat, key) if row is not None else None
                if row is not None and row.etag == meta.etag and held is not None:
                    return OpResult(key, "delete", "unchanged", "object still exists in S3")
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
        return await self._delete_local(change, "deleted in S3")

    async def _delete_local(self, change: Change, why: str) -> OpResult:
        key = change.key
        existed = await asyncio.to_thread(self.mirror.delete, key)
        self.state.forget(key)
        if existed:
            self.stats.deleted[change.source.value] += 1
            return OpResult(key, "delete", "success", why)
        return OpResult(key, "delete", "unchanged", f"{why}; no local file")

    # -- reconcile ---------------------------------------------------------
    async def reconcile(
        self,
        *,
        prefix: str | None = None,
        delete: bool | None = None,
        dry_run: bool = False,
        checksum: bool | None = None,
        progress: Callable[[SyncReport], None] | None = None,
        source: ChangeSource = ChangeSource.RECONCILE,
    ) -> SyncReport:
        """One full pass: plan by sorted merge, download, then (maybe) delete."""
        async with self._reconcile_lock:
            self.stats.reconcile_running = True
            self.stats.last_reconcile_at = time.time()
            try:
                report = await self._reconcile(prefix, delete, dry_run, checksum, progress, source)
            except S3SyncError as exc:
                report = SyncReport(dry_run=dry_run)
                report.aborted = f"listing failed: {exc}"
                report.failed += 1
                report.errors.append({"key": "", "error": exc.code, "message": str(exc)})
                self.stats.error(exc.code, f"reconcile: {exc}")
            finally:
                self.stats.reconcile_running = False
            report.finish()
            self.stats.last_reconcile_duration = report.seconds
            outcome = "success" if report.ok else ("aborted" if report.aborted else "failed")
            self.stats.reconcile_runs[outcome] += 1
            if report.ok and not dry_run:
                self.stats.last_reconcile_success_at = time.time()
            log.info("reconcile finished", **report.as_json() | {"errors": len(report.errors)})
            return report

    async def _reconcile(
        self,
        prefix: str | None,
        delete: bool | None,
        dry_run: bool,
        checksum: bool | None,
        progress: Callable[[SyncReport], None] | None,
        source: ChangeSource,
    ) -> SyncReport:
        sync = self.settings.sync
        delete = sync.delete if delete is None else delete
        checksum = sync.checksum if checksum is None else checksum
        scope = self.settings.s3.prefix + (prefix or "")
        filt = KeyFilter(scope, sync.include, sync.exclude, sync.max_file_size_bytes)
        report = SyncReport(dry_run=dry_run)
        removes: list[str] = []
        pending: set[asyncio.Future[OpResult]] = set()

        def collect(fut: asyncio.Future[OpResult]) -> None:
            pending.discard(fut)
            report.add(fut.result())
            if progress:
                progress(report)

        await asyncio.to_thread(self.mirror.ensure_root)
        content = self._content_matches if checksum else None
        async for item in plan(
            self.bucket.list(scope),
            self.state.iter_sorted(scope),
            filt,
            self.mirror.stat_many,
            skip_existing=sync.skip_existing,
            content_matches=content,
        ):
            if isinstance(item, Fetch):
                report.planned += 1
                if dry_run:
                    report.add(
                        OpResult(item.meta.key, "download", "dry_run", f"would download ({item.reason})")
                    )
                    self.stats.skipped["dry_run"] += 1
                    continue
                fut: asyncio.Future[OpResult] = asyncio.get_running_loop().create_future()
                pending.add(fut)
                fut.add_done_callback(collect)
                if await self.queue.put(
                    Change(
                        item.meta.key,
                        ChangeKind.UPSERT,
                        source,
                        etag=item.meta.etag,
                        size=item.meta.size,
                        meta=item.meta,
                    ),
                    fut,
                ):
                    self.stats.coalesced += 1
                self._update_gauges()
            elif isinstance(item, Unchanged):
                report.unchanged += 1
                self.stats.skipped["unchanged"] += 1
            elif isinstance(item, Adopt):
                report.unchanged += 1
                report.adopted += 1
                if not dry_run:
                    m = item.meta
                    self.state.record(StateRow(m.key, m.etag, m.size, m.last_modified, synced_at=time.time()))
            elif isinstance(item, Remove):
                removes.append(item.key)
            elif isinstance(item, Skip):
                self.stats.skipped[item.reason] += 1
                report.add(OpResult(item.key, "skip", "skipped", item.message, error=item.reason))
                log.warning("key skipped", key=item.key, reason=item.reason, message=item.message)
                if item.tracked and item.reason == "key_conflict" and not dry_run:
                    # the directory wins: drop our old file so the children can be written
                    await self._delete_local(Change(item.key, ChangeKind.REMOVE, source), "key conflict")
            if progress and not isinstance(item, Fetch):
                progress(report)
        if pending:
            await asyncio.gather(*list(pending), return_exceptions=True)
        await self.state.flush()
        if delete:
            await self._reconcile_deletes(report, removes, scope, filt, dry_run, source)
        elif removes:
            log.info("keys gone from the bucket kept locally (delete is off)", count=len(removes))
        return report

    async def _reconcile_deletes(
        self,
        report: SyncReport,
        removes: list[str],
        scope: str,
        filt: KeyFilter,
        dry_run: bool,
        source: ChangeSource,
    ) -> None:
        if report.failed:
            report.aborted = "deletions skipped because the pass had errors"
            return
        extras = await self._untracked_local_files(scope, filt)
        victims = removes + extras
        if not victims:
            return
        tracked = await self.state.count(scope)
        limit = self.settings.sync.delete_limit(tracked + len(extras))
        if limit is not None and len(victims) > limit:
            report.aborted = (
                f"max_delete guard: would delete {len(victims)} files, limit is {limit}; nothing deleted"
            )
            report.failed += 1
            report.errors.append({"key": "", "error": "max_delete", "message": report.aborted})
            self.stats.error("max_delete", report.aborted)
            log.error("max_delete guard tripped", would_delete=len(victims), limit=limit)
            return
        if dry_run:
            for key in victims:
                report.add(OpResult(key, "delete", "dry_run", "would delete"))
            return
        futs = [self.submit(Change(k, ChangeKind.REMOVE, source)) for k in victims]
        for r in await asyncio.gather(*futs):
            report.add(r)

    async def _untracked_local_files(self, scope: str, filt: KeyFilter) -> list[str]:
        """Local files that are neither tracked nor bucket objects (after a clean pass)."""

        def walk() -> list[str]:
            return [k for k, _ in self.mirror.walk_sorted(scope) if filt.wants(k)]

        local = await asyncio.to_thread(walk)
        if not local:
            return []
        known = await self.state.contains_many(local)
        return [k for k in local if k not in known]

    def _content_matches(self, meta: ObjectMeta) -> bool:
        """--checksum: compare local bytes with a single-part MD5 ETag (blocking; worker thread)."""
        etag = meta.etag or ""
        if len(etag) != 32:
            return True  # multipart/unknown ETag: size+mtime is all we can compare cheaply
        h = hashlib.md5(usedforsecurity=False)
        try:
            with open(self.mirror.mapper.to_path(meta.key), "rb") as fh:
                for chunk in iter(lambda: fh.read(1024 * 1024), b""):
                    h.update(chunk)
        except (OSError, UnsafeKeyError):
            return False
        return h.hexdigest() == etag

    # -- health ------------------------------------------------------------
    async def check_s3(self) -> tuple[bool, str | None]:
        try:
            await self.bucket.check()
        except S3SyncError as exc:
            self.stats.s3_reachable, self.stats.s3_error = False, str(exc)
            return False, str(exc)
        except Exception as exc:
            err = classify(exc)
            self.stats.s3_reachable, self.stats.s3_error = False, str(err)
            return False, str(err)
        self.stats.s3_reachable, self.stats.s3_error = True, None
        return True, None


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


__all__ = ["Engine", "OpResult", "PermanentError", "SyncReport"]
