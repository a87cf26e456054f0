"""Read-your-writes: wait until the mirror holds a key's version, or no longer holds the key.

A producer that has just PUT (or DELETEd) an object asks to be told when the
mirror has caught up. Three rules keep this cheap and independent of S3's
notifications:

- **Woken by the apply step, never by polling the disk.** Every waiter on a key
  parks on one shared future of that key's :class:`_Slot`; the engine calls
  :meth:`KeyWaiters.wake` after every change applied to the key, and each
  waiter then re-checks its own condition once. An idle waiter is a parked
  coroutine and a timer: 10,000 of them cost memory, not CPU.
- **One fetch per key, not per waiter.** If the mirror does not match, the
  first waiter submits a change exactly as an event would (the engine's normal
  path: queue, coalescing, apply rules); the others see that fetch in flight.
  While it still does not match after a fetch (S3 not there yet), the fetch is
  repeated with a growing pause.
- **Nothing left behind.** A waiter that returns, times out or is cancelled
  (its client went away) leaves its slot; the last one out removes the slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from s3sync.model import Change, ChangeKind, ChangeSource, normalize_etag
from s3sync.sync.report import OpResult

REFETCH_FIRST = 0.5  # seconds before fetching again when a fetch did not bring the wanted version
REFETCH_CAP = 5.0


@dataclass(frozen=True, slots=True)
class Held:
    """What the mirror holds for a key right now."""

    key: str
    present: bool
    etag: str | None = None
    size: int | None = None
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class Want:
    """What a waiter waits for: an ETag, a version id, or the key's absence."""

    etag: str | None = None
    version_id: str | None = None
    absent: bool = False

    def met_by(self, held: Held) -> bool:
        if self.absent:
            return not held.present
        if not held.present:
            return False
        if self.version_id is not None:
            return held.version_id == self.version_id
        return normalize_etag(held.etag) == normalize_etag(self.etag)

    def change(self, key: str) -> Change:
        """The change an event announcing this state would carry (a hint; S3 stays the truth)."""
        if self.absent:
            return Change(key, ChangeKind.REMOVE, ChangeSource.MANUAL)
        return Change(
            key,
            ChangeKind.UPSERT,
            ChangeSource.MANUAL,
            etag=normalize_etag(self.etag),
            version_id=self.version_id,
        )


class WaitTimeout(Exception):
    """The deadline passed first; ``held`` is the state the mirror has."""

    def __init__(self, held: Held) -> None:
        super().__init__(f"the mirror does not hold the wanted state of {held.key!r} yet")
        self.held = held


@dataclass(slots=True)
class _Slot:
    woken: asyncio.Future[None]
    users: int = 0
    fetch: asyncio.Future[OpResult] | None = None
    next_fetch: float = 0.0  # monotonic time before which a finished fetch is not repeated
    pause: float = REFETCH_FIRST


class KeyWaiters:
    """The per-key registry; see the module docstring."""

    def __init__(
        self,
        held: Callable[[str], Awaitable[Held]],
        submit: Callable[[Change], asyncio.Future[OpResult]],
    ) -> None:
        self._held = held
        self._submit = submit
        self._slots: dict[str, _Slot] = {}
        self.fetches = 0  # changes submitted on behalf of waiters (one per key at a time)

    @property
    def waiting(self) -> int:
        return sum(s.users for s in self._slots.values())

    @property
    def keys(self) -> int:
        return len(self._slots)

    def wake(self, key: str) -> None:
        """A change to ``key`` was applied: every waiter on it re-checks once."""
        slot = self._slots.get(key)
        if slot is None:
            return
        woken, slot.woken = slot.woken, asyncio.get_running_loop().create_future()
        woken.set_result(None)

    async def wait(self, key: str, want: Want, timeout: float) -> Held:  # noqa: ASYNC109 - a deadline
        """Return what the mirror holds once it meets ``want``; :class:`WaitTimeout` after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(loop.create_future())
        slot.users += 1
        try:
            while True:
                woken = slot.woken  # taken before the check: an apply during the check is not missed
                held = await self._held(key)
                if want.met_by(held):
                    return held
                now = time.monotonic()
                if (slot.fetch is None or slot.fetch.done()) and now >= slot.next_fetch:
                    if slot.fetch is not None:  # the last fetch did not bring it: pause longer
                        slot.pause = min(REFETCH_CAP, slot.pause * 2)
                    slot.fetch = self._submit(want.change(key))
                    slot.next_fetch = now + slot.pause
                    self.fetches += 1
                left = deadline - now
                if left <= 0:
                    raise WaitTimeout(held)
                parked: set[asyncio.Future[object]] = {woken}  # type: ignore[arg-type]
                if slot.fetch is not None and not slot.fetch.done():
                    parked.add(slot.fetch)  # type: ignore[arg-type]
                    nap = left  # its end (applied or not) wakes us
                else:
                    nap = slot.next_fetch - now
                await asyncio.wait(
                    parked, timeout=max(0.0, min(left, nap)), return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            slot.users -= 1
            if slot.users == 0 and self._slots.get(key) is slot:
                del self._slots[key]
                slot.woken.cancel()


__all__ = ["Held", "KeyWaiters", "WaitTimeout", "Want"]
