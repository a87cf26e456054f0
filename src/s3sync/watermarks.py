"""Freshness watermarks: how current the mirror provably is (docs/freshness.md, "Watermarks").

A watermark is only worth anything if it is never optimistic, so it is kept
from the same facts the journal keeps, not estimated from timings:

- every journaled change (HTTP notification, SQS message, a replayed row) is
  registered under its journal id with the instant it was *received*, and
  leaves when its row is settled (applied, or finally skipped or failed);
- a *hold* covers the gap between receiving something and journaling it (an
  SQS batch being parsed, a notification's journal commit), so the watermark
  cannot pass a change that is about to be accepted;
- ``events_applied_through`` is the oldest registered receive time, or "now"
  when nothing is registered, and it never moves backwards.

``reconciled_through`` moves only when a complete, error-free pass finishes,
to the instant that pass started (see :meth:`Watermarks.reconciled`).

Ground floor (no s3sync imports): :class:`~s3sync.stats.SyncStats` carries one,
the pool and the sources update it, ``/metrics`` and the API read it.
"""

from __future__ import annotations

import datetime as dt
import heapq
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


class Watermarks:
    """Pending receive times by journal id (holds use negative ids) and the two watermarks."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pending: dict[int, float] = {}  # journal id (> 0) or hold token (< 0) -> received at
        self._heap: list[tuple[float, int]] = []  # lazily pruned: entries whose id left are skipped
        self._next_hold = 0
        self._seen = False  # has any event source delivered anything?
        self._last: float | None = None  # the last events_applied_through answered
        self.journaled = 0  # registered journal ids (holds not counted)
        self.reconciled_through: float | None = None

    # -- changes in and out --------------------------------------------------
    def accepted(self, ids: Iterable[int], received: Iterable[float]) -> None:
        """Journal rows ``ids`` now hold changes received at ``received`` (same order)."""
        for jid, at in zip(ids, received, strict=True):
            if jid not in self._pending:
                self.journaled += 1
            self._add(jid, at)

    def settled(self, ids: Iterable[int]) -> None:
        """Journal rows ``ids`` are settled: their changes no longer hold the watermark back."""
        for jid in ids:
            if self._pending.pop(jid, None) is not None:
                self.journaled -= 1
        self._compact()

    def hold(self, received: float) -> int:
        """Keep the watermark at or before ``received`` until :meth:`release`; returns the token."""
        self._next_hold -= 1
        self._add(self._next_hold, received)
        return self._next_hold

    def release(self, token: int) -> None:
        self._pending.pop(token, None)
        self._compact()

    def reconciled(self, started: float) -> None:
        """A complete, error-free pass that started listing at ``started`` has finished."""
        if self.reconciled_through is None or started > self.reconciled_through:
            self.reconciled_through = started

    def journal_ids(self) -> set[int]:
        return {i for i in self._pending if i > 0}

    # -- reading -------------------------------------------------------------
    def applied_through(self) -> float | None:
        """``events_applied_through`` as unix seconds (None until an event source delivered one)."""
        if not self._seen:
            return None
        now = self._clock()
        oldest = self._oldest()
        at = now if oldest is None else min(oldest, now)
        if self._last is not None and at < self._last:
            at = self._last  # never backwards
        self._last = at
        return at

    def lag_seconds(self) -> float:
        through = self.applied_through()
        if through is None or not self._pending:
            return 0.0
        return max(0.0, round(self._clock() - through, 3))

    def snapshot(self) -> dict[str, Any]:
        """The JSON shape of ``GET /api/v1/freshness``."""
        return {
            "events_applied_through": iso(self.applied_through()),
            "reconciled_through": iso(self.reconciled_through),
            "lag_seconds": self.lag_seconds(),
            "pending": self.journaled,
        }

    # -- internals -----------------------------------------------------------
    def _add(self, ident: int, at: float) -> None:
        self._seen = True
        self._pending[ident] = at
        heapq.heappush(self._heap, (at, ident))

    def _oldest(self) -> float | None:
        heap, pending = self._heap, self._pending
        while heap and pending.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _compact(self) -> None:
        """Bound the heap: a long-pending oldest entry must not let settled ones pile up behind it."""
        if len(self._heap) > 2 * len(self._pending) + 1024:
            self._heap = [(at, i) for i, at in self._pending.items()]
            heapq.heapify(self._heap)


async def held(marks: Watermarks, work: Awaitable[T]) -> T:
    """Await ``work`` (messages received just now, being journaled) under a hold from now."""
    token = marks.hold(time.time())
    try:
        return await work
    finally:
        marks.release(token)


__all__ = ["Watermarks", "held", "iso"]
