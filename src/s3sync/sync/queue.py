"""KeyedCoalescingQueue: one pending change per key, never two operations on a key at once.

A burst of N events on one key costs at most two transfers: the one in flight
and one pending (the newest hint replaces older ones). Waiters of a replaced
change are moved to its replacement, so everybody learns the final outcome.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from s3sync.model import Change, compare_sequencers


@dataclass(slots=True)
class Work:
    """A change to apply, plus whoever waits for it and the journal rows it settles."""

    change: Change
    waiters: list[asyncio.Future[Any]] = field(default_factory=list)
    journal_ids: list[int] = field(default_factory=list)
    coalesced: int = 0


class KeyedCoalescingQueue:
    """FIFO over keys; latest change per key wins; in-flight keys are held back."""

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._pending: dict[str, Work] = {}
        self._ready: deque[str] = deque()
        self._in_flight: set[str] = set()
        self._has_ready = asyncio.Event()
        self._has_space = asyncio.Event()
        self.coalesced_total = 0

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def put_nowait(
        self,
        change: Change,
        waiter: asyncio.Future[Any] | None = None,
        journal_ids: list[int] | None = None,
    ) -> bool:
        """Enqueue; returns True when it coalesced with a pending change for the key."""
        work = self._pending.get(change.key)
        ids = journal_ids or []
        if work is not None:
            self.coalesced_total += 1
            work.coalesced += 1
            if not _older(change, work.change):
                work.change = change
            if waiter is not None:
                work.waiters.append(waiter)
            work.journal_ids.extend(ids)
            return True
        work = Work(change, [waiter] if waiter is not None else [], list(ids))
        self._pending[change.key] = work
        if change.key not in self._in_flight:
            self._ready.append(change.key)
            self._has_ready.set()
        return False

    async def put(self, change: Change, waiter: asyncio.Future[Any] | None = None) -> bool:
        """Like :meth:`put_nowait` but waits while the queue is full (reconcile backpressure)."""
        while self.maxsize and len(self._pending) >= self.maxsize and change.key not in self._pending:
            self._has_space.clear()
            await self._has_space.wait()
        return self.put_nowait(change, waiter)

    async def get(self) -> Work:
        """Next work whose key is not in flight; marks the key in flight."""
        while not self._ready:
            self._has_ready.clear()
            await self._has_ready.wait()
        key = self._ready.popleft()
        work = self._pending.pop(key)
        self._in_flight.add(key)
        self._has_space.set()
        return work

    def done(self, key: str) -> None:
        """The operation on ``key`` finished; release a change that arrived meanwhile."""
        self._in_flight.discard(key)
        if key in self._pending:
            self._ready.append(key)
            self._has_ready.set()

    def drain_pending(self) -> list[Work]:
        """Remove and return everything not yet started (shutdown)."""
        items = list(self._pending.values())
        self._pending.clear()
        self._ready.clear()
        return items


def _older(new: Change, old: Change) -> bool:
    """True when ``new`` is provably older than ``old`` (both carry sequencers)."""
    if new.sequencer and old.sequencer:
        return compare_sequencers(new.sequencer, old.sequencer) < 0
    return False
