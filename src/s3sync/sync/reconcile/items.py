"""What a reconcile pass does with each plan item: one handler per item type.

The plan (:mod:`s3sync.sync.reconcile.plan`) says *what* each listed or tracked key is
(``Fetch``, ``Adopt``, ``Unchanged``, ``Remove``, ``Skip``); this module says what the pass
does about it, and nothing else. Split from the runner
(:mod:`s3sync.sync.reconcile.reconciler`), which lists, guards and records the pass, so a
new item type is one ``case`` and one method here. A fetch goes through the pool's queue
like any other change (one writer per key holds); a ``Remove`` is only noted, for the
delete step at the end of the pass (:mod:`s3sync.sync.reconcile.delete_step`).

The one thing kept across passes is which unsafe keys were reported already, with the
ETag they had: such a key is said once, then counted silently until the object changes.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from s3sync.config import SyncSettings
from s3sync.model import Change, ChangeKind
from s3sync.state.store import StateRow, StateStore
from s3sync.stats import SyncStats
from s3sync.sync.apply import Applier
from s3sync.sync.pool import TransferPool
from s3sync.sync.reconcile.passstate import PassState
from s3sync.sync.reconcile.plan import Adopt, Fetch, PlanItem, Remove, Skip, Unchanged
from s3sync.sync.report import OpResult

__all__ = ["ItemHandlers"]

log = structlog.get_logger(__name__)


class ItemHandlers:
    """Handles each plan item of a pass (given ``[sync]``, the store, the pool and the applier)."""

    def __init__(
        self,
        sync: SyncSettings,
        state: StateStore,
        stats: SyncStats,
        pool: TransferPool,
        applier: Applier,
    ) -> None:
        self.sync = sync
        self.state = state
        self.stats = stats
        self.pool = pool
        self.applier = applier
        # unsafe keys already reported, with the ETag they had: said once until the object changes
        self._told_unsafe: dict[str, str] = {}

    @property
    def told_unsafe(self) -> frozenset[str]:
        """The unsafe keys reported once already (later passes count them without a word)."""
        return frozenset(self._told_unsafe)

    async def handle(self, p: PassState, item: PlanItem) -> None:
        """One plan item: its handler, then what the pass counts of every item."""
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
        if p.filt.objects.files_from is not None and not isinstance(item, Remove):
            p.seen.add(item.meta.key if isinstance(item, Fetch | Adopt) else item.key)
        if p.opts.progress and not isinstance(item, Fetch):
            p.opts.progress(p.report)

    async def _fetch(self, p: PassState, item: Fetch) -> None:
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

    def _adopt(self, p: PassState, item: Adopt) -> None:
        """The local file already is the object: record it without a download."""
        p.report.unchanged += 1
        p.report.adopted += 1
        if not p.opts.dry_run:
            m = item.meta
            self.state.record(StateRow(m.key, m.etag, m.size, m.last_modified, synced_at=time.time()))

    async def _skip(self, p: PassState, item: Skip) -> None:
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
