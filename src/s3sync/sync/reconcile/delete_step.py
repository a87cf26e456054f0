"""The last step of a reconcile pass: what it may delete, guarded as a whole, then deleted.

Deletes are the dangerous operation, so they wait for the end of the pass. The rules
are pure and live in :mod:`s3sync.sync.reconcile.deletes` (which keys are withheld, the
guard over the pass as a whole, the counting of results); this module gathers what they
judge, which needs the mirror, the store and (for a pass fed by an inventory report) S3,
and submits what they allow through the pool's queue, so one writer per key holds.
Split from the runner (:mod:`s3sync.sync.reconcile.reconciler`) because it is one step
with its own inputs: the pass's state (:class:`~s3sync.sync.reconcile.passstate.PassState`)
in, results into the pass's report.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from s3sync.config import SyncSettings
from s3sync.local.mirror import Mirror
from s3sync.model import Change, ChangeKind
from s3sync.s3.bucket import Bucket
from s3sync.state.store import StateStore
from s3sync.stats import SyncStats
from s3sync.sync.filters import Selection
from s3sync.sync.pool import TransferPool
from s3sync.sync.reconcile.deletes import (
    DeletePlan,
    guard,
    note_result,
    note_withheld,
    untracked_local_files,
    withhold,
)
from s3sync.sync.reconcile.passstate import PassState
from s3sync.sync.report import OpResult

__all__ = ["DeleteStep"]

log = structlog.get_logger(__name__)


class DeleteStep:
    """Runs the delete step of each pass (given ``[sync]`` and the parts it reads and writes through)."""

    def __init__(
        self,
        sync: SyncSettings,
        bucket: Bucket,
        state: StateStore,
        mirror: Mirror,
        stats: SyncStats,
        pool: TransferPool,
    ) -> None:
        self.sync = sync
        self.bucket = bucket
        self.state = state
        self.mirror = mirror
        self.stats = stats
        self.pool = pool

    async def run(self, p: PassState) -> None:
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
