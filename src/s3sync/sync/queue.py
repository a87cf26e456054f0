"""KeyedCoalescingQueue: one pending change per key, never two operations on a key at once.

A burst of N events on one key costs at most two transfers: the one in flight
and one pending. Waiters and journal rows of a folded change move to the one
kept, so everybody learns the final outcome and no accepted change is settled
by something that does not do its job.

Which change is kept is :data:`COALESCE`, a table (pending by incoming → kept).
When both carry S3 sequencers the order is proven and the newer one is kept.
Otherwise the table decides, on one rule: a remove is never replaced by a change
that cannot prove it is newer, and a remove never replaces an upsert it cannot
prove newer than. When unsure, the kept change is a hint upsert (``CHECK``):
applied, it reads S3 *then* and both outcomes are right, 200 fetches the current
object and 404 deletes our copy (:mod:`s3sync.sync.apply`). A listed upsert must
not simply replace an event's remove: it treats a 404 as "gone since it was
listed" and keeps the file, so with ``delete = false`` the remove would be lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from s3sync.model import Change, ChangeKind, compare_sequencers


class Role(enum.Enum):
    """What a change does when applied (read from its fields, never from its source)."""

    REMOVE = "remove"  # an event's remove: S3 (a HEAD) or a newer sequencer confirms it; deletes
    LISTED_REMOVE = "listed_remove"  # absent from a listing (only with delete on): confirmed with a HEAD
    HINT = "hint"  # an event's upsert: GETs what S3 holds now; a 404 deletes our copy
    LISTED = "listed"  # a listing's upsert: GETs the listed object; a 404 skips, deletes nothing


class Keep(enum.Enum):
    """Which change survives a fold."""

    PENDING = "pending"
    INCOMING = "incoming"
    CHECK = "check"  # a hint upsert for the key: S3, read when applied, decides (200 fetch, 404 delete)


_R, _LR, _H, _L = Role.REMOVE, Role.LISTED_REMOVE, Role.HINT, Role.LISTED
#: (pending, incoming) → kept, when neither change can prove it is the newer one
#: (both with sequencers: the newer is kept, the older dropped, whatever they are).
COALESCE: dict[tuple[Role, Role], Keep] = {
    # a remove pending: only another remove or a hint (404 deletes) may take its place
    (_R, _R): Keep.INCOMING,
    (_R, _LR): Keep.PENDING,  # both delete; the event's remove keeps its sequencer proof
    (_R, _H): Keep.INCOMING,  # the hint reads S3: 404 deletes as the remove would
    (_R, _L): Keep.CHECK,  # a listed upsert would take a 404 as "gone since listed" and keep the file
    (_LR, _R): Keep.INCOMING,
    (_LR, _LR): Keep.INCOMING,
    (_LR, _H): Keep.INCOMING,
    (_LR, _L): Keep.CHECK,  # listings disagree: S3 now decides
    # an upsert pending: a remove that cannot prove it is newer must not delete on a sequencer
    (_H, _R): Keep.CHECK,
    (_H, _LR): Keep.CHECK,
    (_H, _H): Keep.INCOMING,
    (_H, _L): Keep.PENDING,  # the hint already reads S3 now and keeps its event's sequencer
    (_L, _R): Keep.CHECK,
    (_L, _LR): Keep.CHECK,
    (_L, _H): Keep.INCOMING,
    (_L, _L): Keep.INCOMING,
}


def role(change: Change) -> Role:
    if change.kind is ChangeKind.REMOVE:
        return Role.LISTED_REMOVE if change.listed else Role.REMOVE
    return Role.LISTED if change.listed else Role.HINT


def fold(pending: Change, incoming: Change) -> Change:
    """The change to keep when ``incoming`` meets ``pending`` for the same key (see :data:`COALESCE`).

    Only a fold proven by sequencers keeps one: after a fold the table decided, the
    survivor carries none, since it can no longer prove it is newer than what it
    stands for (a later remove would otherwise "prove" itself newer than a listed
    upsert it never saw, and delete without asking S3).
    """
    if pending.sequencer and incoming.sequencer:
        order = compare_sequencers(incoming.sequencer, pending.sequencer)
        if order or pending.kind is incoming.kind:  # the same sequencer twice: a duplicate
            return incoming if order >= 0 else pending
    keep = COALESCE[role(pending), role(incoming)]
    if keep is Keep.CHECK:
        return Change(
            incoming.key,
            ChangeKind.UPSERT,
            incoming.source,
            received_at=min(pending.received_at, incoming.received_at),
        )
    kept = pending if keep is Keep.PENDING else incoming
    return dataclasses.replace(kept, sequencer=None) if kept.sequencer else kept


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
            work.change = fold(work.change, change)
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
