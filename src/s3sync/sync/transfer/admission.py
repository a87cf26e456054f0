"""The concurrency policy: many small GETs in flight, few large ones, bytes in flight bounded.

Real S3 answers a small GET in 10-30 ms, and then the number of requests in
flight, not CPU, decides how fast a bucket of small objects syncs: 5,000 GETs at
20 ms take 3.1 s with 32 in flight and 0.8 s with 128. So the pool runs many
workers (``sync.concurrency``, default 128). What must not grow with the worker
count is memory: a small body (up to ``SMALL_BODY``) is held in memory until it
is written, and a large object streams through parallel ranged GETs, each with
its own buffers. So every change is *admitted* against a byte budget before its
worker starts it:

* weight = the object's size when the listing told us (small objects), capped at
  ``LARGE_WEIGHT`` for objects that are streamed (their memory is bounded by flow
  control and write batches, not by their size); an event without a size weighs
  ``UNKNOWN_WEIGHT``; a remove weighs nothing;
* the budget (``BUDGET_BYTES``) admits changes while their weights fit; a change
  heavier than the whole budget is admitted alone, so nothing waits forever;
* waiters are served first come, first served, so a large object is not starved
  by a stream of small ones (and small ones queue behind it only while it waits).

With the defaults, 128 workers of 4 KiB objects run 128 GETs at once; 8 MiB
objects run 8 at once (64 MiB); at most two large objects stream at once.
Listing pages are fetched one page ahead of the merge (``s3.bucket``), which is
enough to keep 128 workers fed at 20 ms per request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from s3sync.model import Change, ChangeKind

BUDGET_BYTES = 64 * 1024 * 1024
LARGE_WEIGHT = 32 * 1024 * 1024  # a streamed object: 8 ranged parts x (2 MiB batch + 2 MiB buffer)
UNKNOWN_WEIGHT = 64 * 1024
STREAM_FROM = 8 * 1024 * 1024  # sync.transfer.receive.SMALL_BODY: larger bodies are streamed, not held


def weight(change: Change) -> int:
    """Bytes of memory ``change`` may hold while it runs (see the module docstring)."""
    if change.kind is not ChangeKind.UPSERT:
        return 0
    if change.meta is None or change.meta.size < 0:
        return UNKNOWN_WEIGHT
    size = change.meta.size
    return LARGE_WEIGHT if size > STREAM_FROM else size


class ByteBudget:
    """A FIFO counting budget of bytes (``asyncio``; one event loop)."""

    def __init__(self, limit: int = BUDGET_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _fits(self, n: int) -> bool:
        return self.used == 0 or self.used + n <= self.limit

    async def acquire(self, n: int) -> None:
        if not self._waiters and self._fits(n):
            self.used += n
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release(n)  # granted just as we were cancelled: give it back
            else:
                self._waiters.remove(entry)
                self._wake()
            raise

    def release(self, n: int) -> None:
        self.used -= n
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            n, fut = self._waiters.popleft()
            if fut.done():
                continue
            self.used += n
            fut.set_result(None)

    @asynccontextmanager
    async def hold(self, n: int) -> AsyncIterator[None]:
        if n <= 0:
            yield
            return
        await self.acquire(n)
        try:
            yield
        finally:
            self.release(n)


__all__ = ["BUDGET_BYTES", "ByteBudget", "weight"]
