"""The worker pool: N workers draining the coalescing queue, with an arq-style lifecycle.

``start`` → workers run → ``drain`` (intake closed, in-flight work finishes up
to a deadline) → ``stop`` (cancel, flush). The pool knows nothing about what a
change *means*: it hands each :class:`~s3sync.sync.queue.Work` to the apply
function it was given and owns only what happens around it — journal rows
removed once a change settles, transient failures of journaled changes
requeued after a growing delay (:class:`~s3sync.retry.Backoff`), waiters told
the result, gauges kept current. A bug in one change costs that change, never
a worker: a dead worker would stall the queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from s3sync.model import Change
from s3sync.retry import full_jitter
from s3sync.state.store import StateStore
from s3sync.stats import SyncStats
from s3sync.sync.queue import KeyedCoalescingQueue, Work
from s3sync.sync.report import OpResult
from s3sync.sync.transfer.admission import ByteBudget, weight

log = structlog.get_logger(__name__)

# Failures that may heal by themselves (S3 down, throttled, bad credentials being fixed, disk
# full): a journaled change that ends this way stays in the journal and is tried again after a
# growing delay (and replayed at the next start), so an outage loses no accepted event.
TRANSIENT_FAILURES = frozenset({"retries_exceeded", "retryable", "changed", "fatal", "local_io"})
REQUEUE_BASE_SECONDS = 1.0
REQUEUE_CAP_SECONDS = 60.0

ApplyFn = Callable[[Work], Awaitable[OpResult]]


def _stopped(key: str) -> OpResult:
    return OpResult(key, "none", "failed", "daemon stopping", error="stopped")


class TransferPool:
    """Owns the queue and the workers; see the module docstring."""

    def __init__(
        self, apply: ApplyFn, state: StateStore, stats: SyncStats, *, concurrency: int, drain_timeout: float
    ) -> None:
        self._apply = apply
        self.state = state
        self.stats = stats
        self.concurrency = concurrency
        self.drain_timeout = drain_timeout
        self.queue = KeyedCoalescingQueue(maxsize=max(64, concurrency * 4))
        self.budget = ByteBudget()
        self._workers: list[asyncio.Task[None]] = []
        self._accepting = True
        self._drain_deadline: float | None = None
        self._requeue_attempts: dict[str, int] = {}
        self._requeue_handles: set[asyncio.TimerHandle] = set()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        for i in range(self.concurrency):
            self._workers.append(asyncio.create_task(self._worker(), name=f"transfer-{i}"))

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - a deadline, not a wait
        """Stop intake and wait up to ``timeout`` for queued and in-flight work; True when idle.

        The deadline is fixed by the first call, so ``serve`` can drain while its API
        still answers (new events get 503) and the later :meth:`stop` does not wait
        a second ``drain_timeout_seconds``.
        """
        self._accepting = False
        if self._drain_deadline is None:
            t = self.drain_timeout if timeout is None else timeout
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
                    w.set_result(_stopped(work.change.key))
        await self.state.flush()

    @property
    def accepting(self) -> bool:
        return self._accepting

    # -- intake ------------------------------------------------------------
    async def replay_journal(self) -> int:
        """Re-enqueue changes accepted before a crash or stop (202 means durable)."""
        pending = await self.state.journal_pending()
        for jid, change in pending:
            self.queue.put_nowait(change, journal_ids=[jid])
        # the workers decrement this as rows settle; without it the gauge (and the
        # backpressure check that reads it) would under-count after a restart
        self.stats.journal_pending += len(pending)
        self.stats.freshness.accepted((j for j, _ in pending), (c.received_at for _, c in pending))
        self.update_gauges()
        if pending:
            log.info("replaying journal", count=len(pending))
        return len(pending)

    async def intake(self, changes: list[Change]) -> int:
        """Journal (durably) then enqueue; returns how many were accepted."""
        if not changes:
            return 0
        ids = await self.state.journal_append(changes)
        for change, jid in zip(changes, ids, strict=True):
            if self.queue.put_nowait(change, journal_ids=[jid]):
                self.stats.coalesced += 1
        self.stats.journal_pending += len(ids)
        self.stats.freshness.accepted(ids, (c.received_at for c in changes))
        self.update_gauges()
        return len(ids)

    def submit(self, change: Change) -> asyncio.Future[OpResult]:
        """Queue one change (not journaled); the future gets its result."""
        fut: asyncio.Future[OpResult] = asyncio.get_running_loop().create_future()
        if self.queue.put_nowait(change, fut):
            self.stats.coalesced += 1
        self.update_gauges()
        return fut

    async def put(self, change: Change, fut: asyncio.Future[OpResult]) -> None:
        """Queue one change, waiting for room (backpressure for the reconcile's stream)."""
        if await self.queue.put(change, fut):
            self.stats.coalesced += 1
        self.update_gauges()

    def update_gauges(self) -> None:
        self.stats.queue_depth = self.queue.depth
        self.stats.in_flight = self.queue.in_flight

    # -- workers -----------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            work = await self.queue.get()
            self.update_gauges()
            try:
                async with self.budget.hold(weight(work.change)):  # bytes in flight: sync.admission
                    result = await self._apply(work)
            except asyncio.CancelledError:
                # put it back for the journal/next start; waiters learn we stopped
                self.queue.done(work.change.key)
                for w in work.waiters:
                    if not w.done():
                        w.set_result(_stopped(work.change.key))
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
                self.stats.freshness.settled(work.journal_ids)  # the watermark may pass them now
                try:
                    await self.state.journal_remove(work.journal_ids)
                    self.stats.journal_pending = max(0, self.stats.journal_pending - len(work.journal_ids))
                except Exception as exc:  # journal rows replay harmlessly next start
                    log.warning("journal cleanup failed", error=str(exc))
            for w in work.waiters:
                if not w.done():
                    w.set_result(result)
            self.update_gauges()

    def _requeue_later(self, work: Work) -> None:
        """Keep a transiently failed, journaled change; try it again after a growing, jittered delay."""
        key = work.change.key
        n = self._requeue_attempts.get(key, 0)
        self._requeue_attempts[key] = n + 1
        delay = full_jitter(n, REQUEUE_BASE_SECONDS, REQUEUE_CAP_SECONDS)
        log.info("change kept in the journal; trying again later", key=key, retry_in=round(delay, 2))

        def again() -> None:
            self._requeue_handles.discard(handle)
            if self._accepting:
                if self.queue.put_nowait(work.change, journal_ids=work.journal_ids):
                    self.stats.coalesced += 1
                self.update_gauges()

        handle = asyncio.get_running_loop().call_later(delay, again)
        self._requeue_handles.add(handle)


__all__ = ["TRANSIENT_FAILURES", "TransferPool"]
