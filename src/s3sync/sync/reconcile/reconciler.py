"""One reconcile pass: plan by sorted merge, download what differs, then (maybe) delete.

The plan (:mod:`s3sync.sync.reconcile.plan`) streams the listing against the state store;
fetches go through the pool's queue like any other change, so one writer per
key holds. Deletes are the dangerous operation, so they wait for the end of
the pass and pass a guard: nothing is deleted after any error of the pass, and
never more than ``max_delete`` (a count or a percentage of tracked files).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial

import structlog

from s3sync.config import SyncSettings
from s3sync.errors import S3SyncError
from s3sync.local.mirror import Mirror
from s3sync.model import Change, ChangeKind, ChangeSource, ObjectMeta
from s3sync.s3.bucket import Bucket
from s3sync.state.store import StateRow, StateStore
from s3sync.stats import SyncStats
from s3sync.sync.apply import Applier
from s3sync.sync.content import confirm_content
from s3sync.sync.filters import Selection
from s3sync.sync.pool import TransferPool
from s3sync.sync.reconcile.conflicts import CaseConflicts
from s3sync.sync.reconcile.deletes import (
    DeletePlan,
    case_policy,
    content_matches,
    guard,
    note_result,
    note_withheld,
    untracked_local_files,
    withhold,
)
from s3sync.sync.reconcile.inventory_pass import InventoryPass, ReportSource
from s3sync.sync.reconcile.plan import Adopt, Fetch, Remove, Skip, Unchanged, plan
from s3sync.sync.report import MAX_MISSING_SHOWN, OpResult, SyncReport

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PassOptions:
    """What one pass is asked to do: one value, handed down instead of seven keywords.

    ``None`` means "as ``[sync]`` says" (``delete``, ``checksum``). ``version_at``
    (``--version-at``, one-shot only) plans against the bucket as it was at that
    instant: ListObjectVersions instead of ListObjectsV2, each fetch pinned to the
    version id it names.
    """

    prefix: str | None = None
    delete: bool | None = None
    dry_run: bool = False
    checksum: bool | None = None
    progress: Callable[[SyncReport], None] | None = None
    source: ChangeSource = ChangeSource.RECONCILE
    version_at: float | None = None


@dataclass(slots=True)
class _Pass:
    """The pass under way: what it counted, what it holds back, what it still waits for."""

    opts: PassOptions
    report: SyncReport
    scope: str
    filt: Selection
    case: CaseConflicts | None
    inv: InventoryPass | None
    removes: list[str] = field(default_factory=list)
    uncertain: set[str] = field(default_factory=set)  # listed keys not settled: never deleted as "extra"
    listed: int = 0
    seen: set[str] = field(default_factory=set)  # with --files-from: the listed keys the bucket has
    pending: set[asyncio.Future[OpResult]] = field(default_factory=set)

    def collect(self, fut: asyncio.Future[OpResult]) -> None:
        """A queued download is done: count it (a failed or skipped key stays unsettled)."""
        self.pending.discard(fut)
        if fut.cancelled():  # the pass itself was cancelled (Ctrl-C, shutdown): nothing to count
            return
        result = fut.result()
        self.report.add(result)
        if result.status in ("failed", "skipped"):
            self.uncertain.add(result.key)
        if self.opts.progress:
            self.opts.progress(self.report)


class Reconciler:
    """Runs reconcile passes, one at a time (given ``[sync]``, ``prefix`` and the reports, as values)."""

    def __init__(
        self,
        sync: SyncSettings,
        bucket: Bucket,
        state: StateStore,
        mirror: Mirror,
        stats: SyncStats,
        pool: TransferPool,
        applier: Applier,
        *,
        prefix: str = "",
        reports: ReportSource | None = None,
    ) -> None:
        self.sync = sync
        self.prefix = prefix
        self.reports = reports
        self.bucket = bucket
        self.state = state
        self.mirror = mirror
        self.stats = stats
        self.pool = pool
        self.applier = applier
        self._lock = asyncio.Lock()
        # unsafe keys already reported, with the ETag they had: said once until the object changes
        self._told_unsafe: dict[str, str] = {}

    @property
    def told_unsafe(self) -> frozenset[str]:
        """The unsafe keys reported once already (later passes count them without a word)."""
        return frozenset(self._told_unsafe)

    async def reconcile(self, opts: PassOptions | None = None) -> SyncReport:
        """One full pass (one at a time): plan by sorted merge, download, then (maybe) delete."""
        opts = opts or PassOptions()
        async with self._lock:
            self.stats.health.reconcile_running = True
            self.stats.health.last_reconcile_at = time.time()
            try:
                report = await self._reconcile(opts)
            except S3SyncError as exc:
                report = SyncReport(dry_run=opts.dry_run)
                report.aborted = f"listing failed: {exc}"
                report.failed += 1
                report.errors.append({"key": "", "error": exc.code, "message": str(exc)})
                self.stats.error(exc.code, f"reconcile: {exc}")
            finally:
                self.stats.health.reconcile_running = False
            report.finish()
            self.stats.health.last_reconcile_duration = report.seconds
            outcome = "success" if report.ok else ("aborted" if report.aborted else "failed")
            self.stats.reconcile_runs[outcome] += 1
            if report.ok and not opts.dry_run:
                self.stats.health.last_reconcile_success_at = time.time()
            log.info("reconcile finished", **report.as_json() | {"errors": len(report.errors)})
            return report

    async def _reconcile(self, opts: PassOptions) -> SyncReport:
        sync = self.sync
        delete = sync.delete if opts.delete is None else opts.delete
        checksum = sync.checksum if opts.checksum is None else opts.checksum
        scope = self.prefix + (opts.prefix or "")
        filt = Selection.from_settings(sync, scope)
        await asyncio.to_thread(self.mirror.ensure_root)
        content = partial(content_matches, self.mirror) if checksum else None
        confirm = partial(confirm_content, self.bucket, self.mirror) if checksum else None
        reports = self.reports if opts.version_at is None else None  # the inventory side, or a listing
        inv = InventoryPass(reports, sync.multipart_threshold_mb, self.state, self.stats) if reports else None
        p = _Pass(opts, SyncReport(dry_run=opts.dry_run), scope, filt, case_policy(self.mirror), inv)
        self.stats.health.last_reconcile_source = "inventory" if inv is not None else "listing"
        if inv is not None:
            listing = inv.listing(scope, partial(self._in_scope, p))
        elif opts.version_at is None:
            listing = self._scoped(p, self.bucket.list(scope))
        else:
            listing = self._scoped(p, self.bucket.list_at(scope, opts.version_at))
        async for item in plan(
            listing,
            self.state.iter_sorted(scope),
            filt,
            self.mirror.stat_many,
            skip_existing=sync.skip_existing,
            content_matches=content,
            confirm_content=confirm,
            name_max=self.mirror.mapper.name_max,
            case=p.case,
            excluded_classes=frozenset(sync.exclude_storage_classes),
        ):
            match item:  # one handler per plan item
                case Fetch():
                    await self._fetch(p, item)
                case Unchanged():
                    p.report.unchanged += 1
                    self.stats.unchanged += 1
                case Adopt():
                    self._adopt(p, item)
                case Remove():
                    p.removes.append(item.key)
                case Skip():
                    await self._skip(p, item)
            p.listed += not isinstance(item, Remove)
            if filt.objects.files_from is not None and not isinstance(item, Remove):
                p.seen.add(item.meta.key if isinstance(item, Fetch | Adopt) else item.key)
            if opts.progress and not isinstance(item, Fetch):
                opts.progress(p.report)
        if p.pending:
            await asyncio.gather(*list(p.pending), return_exceptions=True)
        await self.state.flush()
        self._note_missing_listed(p)
        if delete:
            await self._reconcile_deletes(p)
        elif p.removes:
            log.info("keys gone from the bucket kept locally (delete is off)", count=len(p.removes))
        return p.report

    def _in_scope(self, p: _Pass, key: str) -> bool:
        """Is a listed key in scope? One left out by include/exclude/--files-from is a "filtered" skip.

        Another host's keys (``--shard``) are not this host's to count.
        """
        if p.filt.wants_key(key):
            return True
        if p.filt.shard.owns(key):
            p.report.skipped += 1
            self.stats.skipped["filtered"] += 1
        return False

    async def _scoped(self, p: _Pass, listing: AsyncIterator[ObjectMeta]) -> AsyncIterator[ObjectMeta]:
        """The listing's in-scope objects (the plan would drop the rest); the rest are counted."""
        async for meta in listing:
            if self._in_scope(p, meta.key):
                yield meta

    @staticmethod
    def _note_missing_listed(p: _Pass) -> None:
        """Say once per pass which ``--files-from`` keys in scope the bucket does not have."""
        listed = p.filt.objects.files_from
        if listed is None:
            return
        missing = sorted(k for k in listed if k not in p.seen and p.filt.wants_key(k))
        p.report.note_missing_listed(missing)
        if missing:
            log.warning(
                "keys listed in --files-from not found in the bucket",
                count=len(missing),
                keys=missing[:MAX_MISSING_SHOWN],
                whitespace=sum(1 for k in missing if k != k.strip()),
            )

    async def _fetch(self, p: _Pass, item: Fetch) -> None:
        """Queue the download (its result is collected when the worker is done), or say it would."""
        if p.inv is not None and await p.inv.stale_fetch(item):
            p.report.unchanged += 1  # our copy is newer than the report: events and the next pass own it
            self.stats.skipped["newer_than_report"] += 1
            return
        p.report.planned += 1
        if p.opts.dry_run:
            would = f"would download ({item.reason})"
            p.report.add(OpResult(item.meta.key, "download", "dry_run", would, item.meta.size))
            self.stats.skipped["dry_run"] += 1
            return
        fut: asyncio.Future[OpResult] = asyncio.get_running_loop().create_future()
        p.pending.add(fut)
        fut.add_done_callback(p.collect)
        m = item.meta
        listed_meta = m if p.inv is None else p.inv.fetch_meta(m)  # a big one: as its GET describes it
        change = Change(
            m.key, ChangeKind.UPSERT, p.opts.source, etag=m.etag, size=m.size, meta=listed_meta, listed=True
        )
        await self.pool.put(change, fut)

    def _adopt(self, p: _Pass, item: Adopt) -> None:
        """The local file already is the object: record it without a download."""
        p.report.unchanged += 1
        p.report.adopted += 1
        if not p.opts.dry_run:
            m = item.meta
            self.state.record(StateRow(m.key, m.etag, m.size, m.last_modified, synced_at=time.time()))

    async def _skip(self, p: _Pass, item: Skip) -> None:
        """A filtered key is what the operator asked for; any other skip is counted and reported."""
        if item.reason == "filtered":
            self.stats.skipped["filtered"] += 1  # not an error
            p.report.skipped += 1
            return
        p.uncertain.add(item.key)
        if item.reason == "unsafe_key":
            if item.etag and self._told_unsafe.get(item.key) == item.etag:
                self.stats.skipped[item.reason] += 1  # still counted, but said once already
                p.report.skipped += 1
                return
            self._told_unsafe[item.key] = item.etag
        self.stats.skip(item.reason, item.key, item.message)
        failed = item.reason == "case_conflict" and self.sync.case_conflict == "error"
        op, status = ("download", "failed") if failed else ("skip", "skipped")
        p.report.add(OpResult(item.key, op, status, item.message, error=item.reason))
        log.warning("key skipped", key=item.key, reason=item.reason, message=item.message)
        if item.tracked and item.reason == "key_conflict" and not p.opts.dry_run:
            # the directory wins: drop our old file so the children can be written
            await self.applier.delete_local(
                Change(item.key, ChangeKind.REMOVE, p.opts.source, listed=True), "key conflict"
            )

    async def _reconcile_deletes(self, p: _Pass) -> None:
        """Guard the pass's deletes as a whole, then submit each through the queue.

        A failure elsewhere in the pass does not hold deletes back: each one is
        re-checked with S3 when the worker holding its key applies it. What is
        withheld is what this pass could not settle: local files of listed keys
        that failed or were skipped, and, on a folding filesystem, another
        spelling of a key that is kept (deleting it would delete the kept file).
        """
        report, scope, filt = p.report, p.scope, p.filt
        extras = await untracked_local_files(self.mirror, self.state, scope, filt)
        removes, extras, withheld = withhold(p.removes, extras, p.uncertain, p.case)
        note_withheld(report, withheld)
        victims = await self._deletable(removes + extras, filt)
        if p.inv is not None and victims:  # a day-old report: S3 must confirm each delete
            victims = await p.inv.confirm_gone(victims, self.bucket)
        tracked = await self.state.count(scope) if victims else 0
        sync = self.sync
        if not guard(
            report,
            self.stats,
            DeletePlan(len(victims), tracked + len(extras), p.listed, scope),
            max_delete=sync.max_delete,
            allow_empty_source=sync.allow_empty_source,
        ):
            return
        if not victims:
            return
        if p.opts.dry_run:
            for key in victims:
                report.add(OpResult(key, "delete", "dry_run", "would delete"))
            return
        futs = [self.pool.submit(Change(k, ChangeKind.REMOVE, p.opts.source, listed=True)) for k in victims]
        for r in await asyncio.gather(*futs):
            note_result(report, r)

    async def _deletable(self, keys: list[str], filt: Selection) -> list[str]:
        """Drop the keys whose local file the size/age filters leave out (s5cmd#815).

        A filter narrows what is synced; it is never a reason to delete. A key
        without a local file stays a victim (only its state row goes).
        """
        if not keys or not filt.objects.active:
            return keys
        stats = await asyncio.to_thread(self.mirror.stat_many, keys)
        now = time.time()
        kept = [
            k
            for k, st in zip(keys, stats, strict=True)
            if st is None or filt.may_delete_local(k, st.size, st.mtime, now)
        ]
        if len(kept) < len(keys):
            log.info("local files outside the filters kept (not deleted)", count=len(keys) - len(kept))
        return kept


__all__ = ["PassOptions", "Reconciler"]
