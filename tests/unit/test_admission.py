"""The concurrency policy: weights by size, and a FIFO byte budget that bounds memory in flight."""

from __future__ import annotations

import asyncio

import pytest

from s3sync.model import Change, ChangeKind, ChangeSource, ObjectMeta
from s3sync.sync.transfer.admission import LARGE_WEIGHT, UNKNOWN_WEIGHT, ByteBudget, weight


def _up(size: int | None) -> Change:
    meta = None if size is None else ObjectMeta("k", size, "e", 0.0)
    return Change("k", ChangeKind.UPSERT, ChangeSource.RECONCILE, meta=meta)


class TestWeight:
    """Small objects weigh their size, streamed ones a fixed amount, removes nothing."""

    def test_small_object_weighs_its_size(self) -> None:
        assert weight(_up(4096)) == 4096

    def test_streamed_object_weighs_the_large_weight(self) -> None:
        assert weight(_up(1 << 30)) == LARGE_WEIGHT

    def test_unknown_size_weighs_the_default(self) -> None:
        assert weight(_up(None)) == UNKNOWN_WEIGHT

    def test_remove_weighs_nothing(self) -> None:
        assert weight(Change("k", ChangeKind.REMOVE, ChangeSource.RECONCILE)) == 0


class TestByteBudget:
    """Admits while weights fit, one oversized at a time, first come first served."""

    async def test_admits_up_to_the_limit_then_waits(self) -> None:
        b = ByteBudget(100)
        await b.acquire(60)
        await b.acquire(40)
        waiter = asyncio.ensure_future(b.acquire(1))
        await asyncio.sleep(0)
        assert not waiter.done()
        b.release(40)
        await asyncio.wait_for(waiter, 5)
        assert b.used == 61

    async def test_oversized_request_runs_alone(self) -> None:
        b = ByteBudget(100)
        await b.acquire(500)  # empty budget: admitted, or it would wait forever
        waiter = asyncio.ensure_future(b.acquire(1))
        await asyncio.sleep(0)
        assert not waiter.done()
        b.release(500)
        await asyncio.wait_for(waiter, 5)

    async def test_fifo_a_large_waiter_is_not_overtaken(self) -> None:
        b = ByteBudget(100)
        await b.acquire(90)
        big = asyncio.ensure_future(b.acquire(50))
        await asyncio.sleep(0)
        small = asyncio.ensure_future(b.acquire(5))  # would fit now, but the big one is first
        await asyncio.sleep(0)
        assert not big.done() and not small.done()
        b.release(90)
        await asyncio.wait_for(asyncio.gather(big, small), 5)
        assert b.used == 55

    async def test_cancelled_waiter_leaves_no_debt(self) -> None:
        b = ByteBudget(100)
        await b.acquire(100)
        waiter = asyncio.ensure_future(b.acquire(30))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        b.release(100)
        assert b.used == 0
        async with b.hold(100):
            assert b.used == 100
        assert b.used == 0
