"""One reconcile pass: plan by sorted merge, download what differs, then (maybe) delete.

This module runs a pass and nothing below it: one at a time (a lock), the health
timeline (running, when it started, how long it took, when it last succeeded), the
outcome counted and logged, and in between the pass's orchestration. It chooses the
listing (an S3 Inventory report, ``ListObjectsV2``, or ``ListObjectVersions`` for
``--version-at``), streams it against the state store through the plan
(:mod:`s3sync.sync.reconcile.plan`), hands each item to its handler
(:mod:`s3sync.sync.reconcile.items`), waits for the downloads the pass queued, and ends
with the delete step (:mod:`s3sync.sync.reconcile.delete_step`). Deletes are the dangerous
operation, so they wait for the end of the pass and pass a guard: never more than
``max_delete`` (a count or a percentage of tracked files), never what the pass could not
settle. What a pass is asked and what it holds are values
(:mod:`s3sync.sync.reconcile.passstate`), handed down, not attributes of the runner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import partial

import structlog

from s3sync.config import SyncSettings
from s3sync.errors import S3SyncError
from s3sync.local.mirror import Mirror
from s3sync.model import ObjectMeta
from s3sync.s3.bucket import Bucket
from s3sync.state.store import StateStore
from s3sync.stats import SyncStats
from s3sync.sync.apply import Applier
from s3sync.sync.content import confirm_content
from s3sync.sync.filters import Selection
from s3sync.sync.pool import TransferPool
from s3sync.sync.reconcile.delete_step import DeleteStep
from s3sync.sync.reconcile.deletes import case_policy, content_matches
from s3sync.sync.reconcile.inventory_pass import InventoryPass, ReportSource
from s3sync.sync.reconcile.items import ItemHandlers
from s3sync.sync.reconcile.passstate import PassOptions, PassState
from s3sync.sync.reconcile.plan import plan
from s3sync.sync.report import SyncReport

log = structlog.get_logger(__name__)


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
        self.items = ItemHandlers(sync, state, stats, pool, applier)
        self.deletes = DeleteStep(sync, bucket, state, mirror, stats, pool)
        self._lock = asyncio.Lock()

    @property
    def told_unsafe(self) -> frozenset[str]:
        """The unsafe keys reported once already (later passes count them without a word)."""
        return self.items.told_unsafe

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
            self._record(opts, report)
            return report

    def _record(self, opts: PassOptions, report: SyncReport) -> None:
        """The pass is over: finish its report, count its outcome, move the timeline, log it."""
        report.finish()
        self.stats.health.last_reconcile_duration = report.seconds
        outcome = "success" if report.ok else ("aborted" if report.aborted else "failed")
        self.stats.reconcile_runs[outcome] += 1
        if report.ok and not opts.dry_run:
            self.stats.health.last_reconcile_success_at = time.time()
        log.info("reconcile finished", **report.as_json() | {"errors": len(report.errors)})

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
        p = PassState(opts, SyncReport(dry_run=opts.dry_run), scope, filt, case_policy(self.mirror), inv)
        self.stats.health.last_reconcile_source = "inventory" if inv is not None else "listing"
        async for item in plan(
            self._listing(p),
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
            await self.items.handle(p, item)
        if p.pending:
            await asyncio.gather(*list(p.pending), return_exceptions=True)
        await self.state.flush()
        p.note_missing_listed()
        if delete:
            await self.deletes.run(p)
        elif p.removes:
            log.info("keys gone from the bucket kept locally (delete is off)", count=len(p.removes))
        return p.report

    def _listing(self, p: PassState) -> AsyncIterator[ObjectMeta]:
        """The in-scope objects: from the inventory report, the listing, or the versions at an instant."""
        if p.inv is not None:
            return p.inv.listing(p.scope, partial(p.in_scope, self.stats))
        if p.opts.version_at is None:
            return p.scoped(self.stats, self.bucket.list(p.scope))
        return p.scoped(self.stats, self.bucket.list_at(p.scope, p.opts.version_at))


__all__ = ["PassOptions", "Reconciler"]
