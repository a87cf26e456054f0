"""What one reconcile pass is asked to do, and what it holds while it runs.

Two values, split from the runner (:mod:`s3sync.sync.reconcile.reconciler`) so the item
handlers (:mod:`s3sync.sync.reconcile.items`) and the pass's delete step
(:mod:`s3sync.sync.reconcile.delete_step`) are handed the pass instead of reaching back
into the runner for it: :class:`PassOptions` (frozen, the caller's request, one value
instead of seven keywords) and :class:`PassState` (mutable, born and dropped with the
pass, so nothing of one pass leaks into the next through attributes of a long-lived object).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import structlog

from s3sync.model import ChangeSource, ObjectMeta
from s3sync.stats import SyncStats
from s3sync.sync.filters import Selection
from s3sync.sync.reconcile.conflicts import CaseConflicts
from s3sync.sync.reconcile.inventory_pass import InventoryPass
from s3sync.sync.report import MAX_MISSING_SHOWN, OpResult, SyncReport

__all__ = ["PassOptions", "PassState"]

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
class PassState:
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

    def in_scope(self, stats: SyncStats, key: str) -> bool:
        """Is a listed key in scope? One left out by include/exclude/--files-from is a "filtered" skip.

        Another host's keys (``--shard``) are not this host's to count.
        """
        if self.filt.wants_key(key):
            return True
        if self.filt.shard.owns(key):
            self.report.skipped += 1
            stats.skipped["filtered"] += 1
        return False

    async def scoped(self, stats: SyncStats, listing: AsyncIterator[ObjectMeta]) -> AsyncIterator[ObjectMeta]:
        """The listing's in-scope objects (the plan would drop the rest); the rest are counted."""
        async for meta in listing:
            if self.in_scope(stats, meta.key):
                yield meta

    def note_missing_listed(self) -> None:
        """Say once per pass which ``--files-from`` keys in scope the bucket does not have."""
        listed = self.filt.objects.files_from
        if listed is None:
            return
        missing = sorted(k for k in listed if k not in self.seen and self.filt.wants_key(k))
        self.report.note_missing_listed(missing)
        if missing:
            log.warning(
                "keys listed in --files-from not found in the bucket",
                count=len(missing),
                keys=missing[:MAX_MISSING_SHOWN],
                whitespace=sum(1 for k in missing if k != k.strip()),
            )
