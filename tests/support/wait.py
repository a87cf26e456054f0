"""The one way tests wait: poll a probe until it holds, fail with a message at a generous deadline.

Tests never judge speed, so a deadline here is only a hang guard: it fails a
test that would otherwise block forever, and says what it was waiting for and
what the probe last returned. :func:`wait_for` is for tests on an event loop
(the probe may be sync or async); :func:`poll` is its twin for plain threads
(subprocess daemons, PTYs), which must not block a loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _Deadline:
    """The shared bookkeeping: when to give up, and the message to give up with."""

    def __init__(self, within: float, what: str) -> None:
        self.within = within
        self.what = what
        self.end = time.monotonic() + within

    def check(self, last: Any) -> None:
        if time.monotonic() > self.end:
            raise AssertionError(f"timed out after {self.within}s waiting for {self.what} (last={last!r})")


async def wait_for(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    within: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``probe`` (sync or async) until it returns something truthy, and return that."""
    deadline = _Deadline(within, what)
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        deadline.check(result)
        await asyncio.sleep(interval)


def poll(
    probe: Callable[[], T], *, within: float = 20.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """:func:`wait_for` for code not on an event loop: sleeps the thread between probes."""
    deadline = _Deadline(within, what)
    while True:
        result = probe()
        if result:
            return result
        deadline.check(result)
        time.sleep(interval)
