"""The sync engine: intake → coalescing queue → workers → mirror + state → stats.

A facade that wires the three parts of the sync core and gives the sources,
the API and the CLI one object to hold:

- :class:`~s3sync.sync.pool.TransferPool` — queue, workers, lifecycle, requeue;
- :class:`~s3sync.sync.apply.Applier` — what an upsert or a remove means;
- :class:`~s3sync.sync.reconcile.reconciler.Reconciler` — passes and the delete guard.

:func:`open_engine` (settings → a running engine, unwound in reverse order) is what the
CLI's one-shot commands and the daemon's supervisor both call. It is the one place
here that reads the whole :class:`~s3sync.config.Settings`: the engine and its parts
are given ``[sync]`` and, as plain values, the little they need of other sections
(the bucket's prefix, where the inventory reports are).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog

from s3sync.config import Settings, SyncSettings
from s3sync.errors import FatalError, S3SyncError
from s3sync.local.errors import classify_local
from s3sync.local.mirror import Mirror
from s3sync.model import Change, ChangeSource
from s3sync.retry import RetryPolicy
from s3sync.s3.bucket import Bucket
from s3sync.state.store import StateStore
from s3sync.stats import SyncStats
from s3sync.sync.apply import Applier
from s3sync.sync.pool import TransferPool
from s3sync.sync.queue import KeyedCoalescingQueue, Work
from s3sync.sync.reconcile.inventory_pass import ReportSource
from s3sync.sync.reconcile.reconciler import PassOptions, Reconciler
from s3sync.sync.report import OpResult, SyncReport
from s3sync.sync.waiters import Held, KeyWaiters

log = structlog.get_logger(__name__)


class Engine:
    """Owns the pool, the apply rules and the reconcile; see the module docstring."""

    def __init__(
        self,
        sync: SyncSettings,
        bucket: Bucket,
        state: StateStore,
        mirror: Mirror,
        stats: SyncStats,
        *,
        prefix: str = "",
        reports: ReportSource | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.sync = sync
        self.prefix = prefix  # [s3] prefix: the part of the bucket this mirror holds
        self.bucket = bucket
        self.state = state
        self.mirror = mirror
        self.stats = stats
        self.shard = sync.shard  # --shard K/N: the keys this host owns (parsed by the config)
        # temps and sidecars carry (host, shard, process): the start-up sweep removes only its own
        # and those of owners proven gone, never another host's or shard's (docs/scale.md)
        mirror.claim(self.shard.index, self.shard.count)
        # S3's errors arrive classified; what a retried download raises besides is the mirror's OSError
        self.retry = retry or RetryPolicy(attempts=sync.retry_attempts + 1, classify=classify_local)
        self.applier = Applier(sync, bucket, state, mirror, stats, retry=self.retry, prefix=prefix)
        # told about every change before it is applied, and every applied change before it is
        # reported applied (the hooks' outbox: a provisional row, then the change's document)
        self.on_applying: Callable[[Work], Awaitable[None]] | None = None
        self.on_applied: Callable[[Work, OpResult], Awaitable[None]] | None = None
        self.waiters = KeyWaiters(self.held, self.submit)
        self.pool = TransferPool(
            self._apply,
            state,
            stats,
            concurrency=sync.concurrency,
            drain_timeout=sync.drain_timeout_seconds,
        )
        self.reconciler = Reconciler(
            sync, bucket, state, mirror, stats, self.pool, self.applier, prefix=prefix, reports=reports
        )

    async def _apply(self, work: Work) -> OpResult:
        """The apply rules, then what follows an applied change: outbox, status page, waiters."""
        change = work.change
        if self.on_applying is not None:
            try:
                await self.on_applying(work)
            except Exception as exc:  # e.g. the state disk is full: nothing applied, so retried
                why = f"not recorded for the hooks: {exc}"
                self.stats.error("local_io", f"{change.key}: {why}")
                log.error("recording a change before applying it failed", key=change.key, error=str(exc))
                return OpResult(change.key, "none", "failed", why, error="local_io")
        result = await self.applier.apply(work)
        if self.on_applied is not None:
            try:
                await self.on_applied(work, result)
            except Exception as exc:  # e.g. the state disk is full: not reported applied, so retried
                why = f"not recorded for the hooks: {exc}"
                self.stats.error("local_io", f"{change.key}: {why}")
                log.error("recording an applied change failed", key=change.key, error=str(exc))
                return OpResult(change.key, result.operation, "failed", why, error="local_io")
        if result.status == "success":
            op = "remove" if result.operation == "delete" else "upsert"
            size = result.bytes if op == "upsert" else None
            self.stats.applied(change.key, op, change.source.value, size, result.bytes)
        self.waiters.wake(change.key)
        return result

    async def held(self, key: str) -> Held:
        """What the mirror holds for ``key`` now: the file, and what was recorded for it."""
        st = await asyncio.to_thread(self.mirror.stat, key)
        if st is None:
            return Held(key, present=False)
        row = await self.state.get(key)
        if row is None:
            return Held(key, present=True, size=st.size)
        return Held(key, present=True, etag=row.etag, size=st.size, version_id=row.version_id)

    @property
    def queue(self) -> KeyedCoalescingQueue:
        return self.pool.queue

    @property
    def accepting(self) -> bool:
        return self.pool.accepting

    async def start(self) -> None:
        resumer = self.applier.transfer.resumer  # temps a killed big download can resume stay

        def sweep() -> int:
            return self.mirror.sweep_temps(resumer.sweep_keep())

        swept = await asyncio.to_thread(sweep)
        if swept:
            log.info("swept stale temporary files", count=swept)
        at = await self.state.on_writer(lambda conn: _reconciled_load(conn, self._scope()))
        if at is not None:  # a pass of an earlier run over this same scope
            self.stats.freshness.reconciled(at)
        self.pool.start()

    async def replay_journal(self) -> int:
        return await self.pool.replay_journal()

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - a deadline, not a wait
        return await self.pool.drain(timeout)

    async def stop(self, drain_timeout: float | None = None) -> None:
        await self.pool.stop(drain_timeout)

    async def intake(self, changes: list[Change]) -> int:
        """Journal (durably) then enqueue; returns how many were accepted.

        With ``--shard K/N`` a change for a key another shard owns is ignored (and
        counted): that host's own queue or intake delivers it there.
        """
        if not self.shard.everything:
            owned = [c for c in changes if self.shard.owns(c.key)]
            self.stats.other_shard += len(changes) - len(owned)
            changes = owned
        if not changes:
            return 0
        # received but not journaled yet: the watermark must not pass them while the commit runs
        hold = self.stats.freshness.hold(min(c.received_at for c in changes))
        try:
            return await self.pool.intake(changes)
        finally:
            self.stats.freshness.release(hold)

    def submit(self, change: Change) -> asyncio.Future[OpResult]:
        return self.pool.submit(change)

    async def reconcile(
        self,
        *,
        prefix: str | None = None,
        delete: bool | None = None,
        dry_run: bool = False,
        checksum: bool | None = None,
        progress: Callable[[SyncReport], None] | None = None,
        source: ChangeSource = ChangeSource.RECONCILE,
        version_at: float | None = None,
    ) -> SyncReport:
        """One full pass: plan by sorted merge, download, then (maybe) delete (:class:`PassOptions`).

        A complete (whole scope, not a dry run, current versions), error-free pass
        moves ``reconciled_through`` to the instant it was asked for, which is no
        later than the instant it started listing; an aborted one moves nothing.
        """
        asked = time.time()
        report = await self.reconciler.reconcile(
            PassOptions(prefix, delete, dry_run, checksum, progress, source, version_at)
        )
        if report.ok and not report.aborted and not dry_run and not prefix and version_at is None:
            self.stats.freshness.reconciled(asked)
            through, scope = self.stats.freshness.reconciled_through, self._scope()
            try:  # kept for the next start (its own commit: a pass ends a few times a day)
                await self.state.on_writer(lambda conn: _reconciled_save(conn, scope, through))
            except sqlite3.Error as exc:  # the pass did its work; only the restart loses the mark
                log.warning("could not keep reconciled_through for the next start", error=str(exc))
        return report

    def _scope(self) -> str:
        """What a pass covers (bucket, prefix, filters, shard): an earlier run's pass proves
        something for this run only when these are the same."""
        s = self.sync
        scope: list[object] = [self.bucket.name, self.prefix, s.include, s.exclude, s.exclude_storage_classes]
        scope += [s.max_file_size_mb, s.min_size, s.max_size, s.min_age, s.max_age, s.files_from]
        return json.dumps([*scope, s.shard, s.case_conflict], default=str)

    async def check_s3(self) -> tuple[bool, str | None]:
        """HEAD the bucket; the answer also lands in the stats (health, /metrics)."""
        try:
            await self.bucket.check()
        except S3SyncError as err:  # s3/ raises its errors classified
            self.stats.health.s3_reachable, self.stats.health.s3_error = False, str(err)
            return False, str(err)
        self.stats.health.s3_reachable, self.stats.health.s3_error = True, None
        return True, None


_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_malloc() -> None:
    """Keep glibc from hoarding multi-MiB transfer buffers.

    Large-object buffers are allocated in worker threads; with glibc's defaults
    each thread gets its own arena and the mmap threshold drifts up to 32 MiB,
    so freed buffers stay in RSS (W4: 235 MB → ~110 MB with these settings).
    A no-op where glibc's ``mallopt`` is not available.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
        libc.mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass


_RECONCILED = "reconciled_through"  # its row in the state db's meta table: {"at": unix s, "scope": ...}


def _reconciled_load(conn: sqlite3.Connection, scope: str) -> float | None:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (_RECONCILED,)).fetchone()
    try:
        kept = json.loads(row[0]) if row else None
        return float(kept["at"]) if kept and kept.get("scope") == scope else None
    except (ValueError, TypeError, KeyError):  # unreadable: as if no pass had finished
        return None


def _reconciled_save(conn: sqlite3.Connection, scope: str, at: float | None) -> None:
    value = json.dumps({"at": at, "scope": scope})
    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (_RECONCILED, value))


@asynccontextmanager
async def open_engine(
    settings: Settings, stats: SyncStats | None = None, mirror: Mirror | None = None
) -> AsyncIterator[Engine]:
    """Open state, mirror and bucket, start the workers; unwind in reverse order.

    The daemon passes the one :class:`Mirror` its API also reads (one instance per
    process, so its directory cache and its checks are shared).
    """
    tune_malloc()
    stats = stats or SyncStats()
    mirror = mirror or Mirror(
        settings.sync.local_dir, fsync=settings.sync.fsync, backup_dir=settings.sync.backup_dir
    )
    try:
        mirror.ensure_root()
    except OSError as exc:
        raise FatalError(
            f"sync.local_dir: cannot create {str(settings.sync.local_dir)!r}: {exc.strerror}"
        ) from exc
    stats.health.directory_writable = mirror.is_writable()
    if not stats.health.directory_writable:
        raise FatalError(f"sync.local_dir: {str(mirror.root)!r} is not writable")
    try:
        probe = mirror.probe_case()  # keys that differ only by case must not flip-flop on exFAT/SMB
    except OSError as exc:
        raise FatalError(f"sync.local_dir: {str(mirror.root)!r} is not writable ({exc.strerror})") from exc
    if probe.folds:
        log.info(
            "the mirror's filesystem folds names: keys that differ only by case are case_conflict skips",
            case_sensitive=probe.case_sensitive,
            normalization_sensitive=probe.normalization_sensitive,
        )
    state = StateStore(settings.sync.resolved_state_path)
    try:
        await state.open()
    except Exception as exc:
        raise FatalError(f"sync.state_path: cannot open {str(state.path)!r}: {exc}") from exc
    try:
        timeout = settings.sync.download_timeout_seconds
        async with Bucket(settings.s3, fast_get=settings.s3.fast_get, timeout=timeout) as bucket:
            reports = ReportSource.of(settings.inventory, settings.s3, timeout)
            engine = Engine(
                settings.sync, bucket, state, mirror, stats, prefix=settings.s3.prefix, reports=reports
            )
            await engine.start()
            try:
                yield engine
            finally:
                await engine.stop()
    finally:
        await state.close()


__all__ = ["Engine", "OpResult", "SyncReport", "open_engine", "tune_malloc"]
