"""Watermarks: the oldest pending receive time, holds, never backwards (a controlled clock)."""

from __future__ import annotations

import asyncio

from s3sync.watermarks import Watermarks, held


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_null_until_something_arrives_then_now_when_nothing_is_pending() -> None:
    clock = Clock(1000.0)
    w = Watermarks(clock)
    assert w.applied_through() is None
    assert w.snapshot() == {
        "events_applied_through": None,
        "reconciled_through": None,
        "lag_seconds": 0.0,
        "pending": 0,
    }
    w.accepted([1], [990.0])
    w.settled([1])
    assert w.applied_through() == 1000.0
    clock.now = 1005.0
    assert w.applied_through() == 1005.0


def test_oldest_pending_receive_time_in_any_settle_order() -> None:
    clock = Clock(2000.0)
    w = Watermarks(clock)
    w.accepted([1, 2, 3], [1900.0, 1950.0, 1910.0])
    assert (w.applied_through(), w.journaled) == (1900.0, 3)
    assert w.lag_seconds() == 100.0
    w.settled([3])
    assert w.applied_through() == 1900.0  # 1 is still pending
    w.settled([1])
    assert w.applied_through() == 1950.0
    w.settled([2, 2, 99])  # settling twice, or an unknown id, changes nothing
    assert (w.applied_through(), w.journaled, w.lag_seconds()) == (2000.0, 0, 0.0)


def test_never_backwards() -> None:
    clock = Clock(3000.0)
    w = Watermarks(clock)
    w.accepted([1], [2990.0])
    w.settled([1])
    assert w.applied_through() == 3000.0
    # a change received earlier than what was already answered (clock skew between hosts, say)
    w.accepted([2], [2995.0])
    assert w.applied_through() == 3000.0


def test_a_hold_keeps_the_watermark_until_released() -> None:
    clock = Clock(4000.0)
    w = Watermarks(clock)
    token = w.hold(3999.0)
    clock.now = 4010.0
    assert w.applied_through() == 3999.0
    assert w.snapshot()["pending"] == 0  # holds are not accepted changes
    w.accepted([7], [3999.0])  # journaled while held
    w.release(token)
    assert w.applied_through() == 3999.0
    w.settled([7])
    assert w.applied_through() == 4010.0


def test_held_releases_even_when_the_work_fails() -> None:
    w = Watermarks()

    async def boom() -> None:
        assert w.applied_through() is not None
        assert len(w._pending) == 1
        raise RuntimeError("journal failed")

    async def run() -> None:
        try:
            await held(w, boom())
        except RuntimeError:
            pass

    asyncio.run(run())
    assert w._pending == {}


def test_the_heap_stays_bounded_behind_a_stuck_change() -> None:
    w = Watermarks(Clock(10.0))
    w.accepted([1], [1.0])  # stuck: never settles
    for i in range(2, 20_000):
        w.accepted([i], [2.0])
        w.settled([i])
    assert w.applied_through() == 1.0
    assert len(w._heap) <= 2 * len(w._pending) + 1024


def test_reconciled_through_only_moves_forward() -> None:
    w = Watermarks()
    w.reconciled(100.0)
    w.reconciled(50.0)
    assert w.reconciled_through == 100.0
    w.reconciled(150.0)
    assert w.snapshot()["reconciled_through"] == "1970-01-01T00:02:30Z"
