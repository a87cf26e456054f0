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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import structlog

from s3sync.config import Settings
from s3sync.errors import S3SyncError
from s3sync.local.mirror import Mirror
from s3sync.model import Change, ChangeKind, ChangeSource
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
from s3sync.sync.reconcile.inventory_pass import InventoryPass
from s3sync.sync.reconcile.plan import Adopt, Fetch, Remove, Skip, Unchanged, plan
from s3sync.sync.report import OpResult, SyncReport

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


class Reconciler:
    """Runs reconcile passes, one at a time."""

    def __init__(
        self,
        settings: Settings,
        bucket: Bucket,
        state: StateStore,
        mirror: Mirror,
        stats: SyncStats,
        pool: TransferPool,
        applier: Applier,
    ) -> None:
        self.settings = settings
        self.bucket = bucket
        self.state = state
        self.mirror = mirror
        self.stats = stats
        self.pool = pool
        self.applier = applier
        self._lock = asyncio.Lock()

    async def reconcile(self, opts: PassOptions | None = None) -> SyncReport:
        """One full pass (one at a time): plan by sorted merge, download, then (maybe) delete."""
        opts = opts or PassOptions()
        async with self._lock:
            self.stats.reconcile_running = True
            self.stats.last_reconcile_at = time.time()
            try:
                report = await self._reconcile(opts)
            except S3SyncError as exc:
                report = SyncReport(dry_run=opts.dry_run)
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
            if report.ok and not opts.dry_run:
                self.stats.last_reconcile_success_at = time.time()
            log.info("reconcile finished", **report.as_json() | {"errors": len(report.errors)})
            return report

    async def _reconcile(self, opts: PassOptions) -> SyncReport:
        sync = self.settings.sync
        delete = sync.delete if opts.delete is None else opts.delete
        checksum = sync.checksum if opts.checksum is None else opts.checksum
        dry_run, progress, source, version_at = opts.dry_run, opts.progress, opts.source, opts.version_at
        scope = self.settings.s3.prefix + (opts.prefix or "")
        filt = Selection.from_settings(sync, scope)
        report = SyncReport(dry_run=dry_run)
        removes: list[str] = []
        uncertain: set[str] = set()  # listed keys this pass did not settle: never deleted as "extra"
        listed = 0
        case = case_policy(self.mirror)
        pending: set[asyncio.Future[OpResult]] = set()

        def collect(fut: asyncio.Future[OpResult]) -> None:
            pending.discard(fut)
            if fut.cancelled():  # the pass itself was cancelled (Ctrl-C, shutdown): nothing to count
                return
            result = fut.result()
            report.add(result)
            if result.status in ("failed", "skipped"):
                uncertain.add(result.key)
            if progress:
                progress(report)

        await asyncio.to_thread(self.mirror.ensure_root)
        content = partial(content_matches, self.mirror) if checksum else None
        confirm = partial(confirm_content, self.bucket, self.mirror) if checksum else None
        from_inventory = version_at is None and bool(self.settings.inventory.location)
        # the inventory side of this pass, or None for a listing-fed pass
        inv = InventoryPass(self.settings, self.state, self.stats) if from_inventory else None
        self.stats.last_reconcile_source = "inventory" if from_inventory else "listing"
        if inv is not None:
            listing = inv.listing(scope, filt)
        else:
            listing = (
                self.bucket.list(scope) if version_at is None else self.bucket.list_at(scope, version_at)
            )
        async for item in plan(
            listing,
            self.state.iter_sorted(scope),
            filt,
            self.mirror.stat_many,
            skip_existing=sync.skip_existing,
            content_matches=content,
            confirm_content=confirm,
            name_max=self.mirror.mapper.name_max,
            case=case,
            excluded_classes=frozenset(sync.exclude_storage_classes),
        ):
            listed += not isinstance(item, Remove)
            if isinstance(item, Fetch) and inv is not None and await inv.stale_fetch(item):
                report.unchanged += 1  # our copy is newer than the report: events and the next pass own it
                self.stats.skipped["newer_than_report"] += 1
            elif isinstance(item, Fetch):
                report.planned += 1
                if dry_run:
                    would = f"would download ({item.reason})"
                    report.add(OpResult(item.meta.key, "download", "dry_run", would, item.meta.size))
                    self.stats.skipped["dry_run"] += 1
                    continue
                fut: asyncio.Future[OpResult] = asyncio.get_running_loop().create_future()
                pending.add(fut)
                fut.add_done_callback(collect)
                await self.pool.put(
                    Change(
                        item.meta.key,
                        ChangeKind.UPSERT,
                        source,
                        etag=item.meta.etag,
                        size=item.meta.size,
                        meta=item.meta if inv is None else inv.fetch_meta(item.meta),
                        listed=True,
                    ),
                    fut,
                )
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
            elif isinstance(item, Skip) and item.reason == "filtered":
                self.stats.skipped["filtered"] += 1  # what the operator asked for: not an error
                report.skipped += 1
            elif isinstance(item, Skip):
                uncertain.add(item.key)
                self.stats.skip(item.reason, item.key, item.message)
                if item.reason == "case_conflict" and sync.case_conflict == "error":
                    report.add(OpResult(item.key, "download", "failed", item.message, error=item.reason))
                else:
                    report.add(OpResult(item.key, "skip", "skipped", item.message, error=item.reason))
                log.warning("key skipped", key=item.key, reason=item.reason, message=item.message)
                if item.tracked and item.reason == "key_conflict" and not dry_run:
                    # the directory wins: drop our old file so the children can be written
                    await self.applier.delete_local(
                        Change(item.key, ChangeKind.REMOVE, source, listed=True), "key conflict"
                    )
            if progress and not isinstance(item, Fetch):
                progress(report)
        if pending:
            await asyncio.gather(*list(pending), return_exceptions=True)
        await self.state.flush()
        if delete:
            await self._reconcile_deletes(
                report, removes, scope, filt, opts, inv, uncertain=uncertain, listed=listed, case=case
            )
        elif removes:
            log.info("keys gone from the bucket kept locally (delete is off)", count=len(removes))
        return report

    async def _reconcile_deletes(
        self,
        report: SyncReport,
        removes: list[str],
        scope: str,
        filt: Selection,
        opts: PassOptions,
        inv: InventoryPass | None,
        *,
        uncertain: set[str] | None = None,
        listed: int = 1,
        case: CaseConflicts | None = None,
    ) -> None:
        """Guard the pass's deletes as a whole, then submit each through the queue.

        A failure elsewhere in the pass does not hold deletes back: each one is
        re-checked with S3 when the worker holding its key applies it. What is
        withheld is what this pass could not settle: local files of listed keys
        that failed or were skipped, and, on a folding filesystem, another
        spelling of a key that is kept (deleting it would delete the kept file).
        """
        extras = await untracked_local_files(self.mirror, self.state, scope, filt)
        removes, extras, withheld = withhold(removes, extras, uncertain or set(), case)
        note_withheld(report, withheld)
        victims = await self._deletable(removes + extras, filt)
        if inv is not None and victims:  # a day-old report: S3 must confirm each delete
            victims = await inv.confirm_gone(victims, self.bucket)
        tracked = await self.state.count(scope) if victims else 0
        sync = self.settings.sync
        if not guard(
            report,
            self.stats,
            DeletePlan(len(victims), tracked + len(extras), listed, scope),
            max_delete=sync.max_delete,
            allow_empty_source=sync.allow_empty_source,
        ):
            return
        if not victims:
            return
        if opts.dry_run:
            for key in victims:
                report.add(OpResult(key, "delete", "dry_run", "would delete"))
            return
        futs = [self.pool.submit(Change(k, ChangeKind.REMOVE, opts.source, listed=True)) for k in victims]
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
