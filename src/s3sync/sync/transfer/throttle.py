"""One download-rate limit for the whole process (``--bwlimit`` / ``[sync] bwlimit``).

The contract (README, "Operator controls", ``--bwlimit``): downloading B
bytes takes at least ``B / (1.1 * RATE)`` seconds, and after the first second
no 5-second window carries more than ``5.5 * RATE`` bytes. Every body byte of
every GET (both GET paths, every ranged part, every worker) is paid for here,
so one :class:`Throttle` instance is shared by everything that downloads.

The algorithm is GCRA (the "virtual scheduling" form of a token bucket): the
bucket keeps one number, the *theoretical arrival time* ``tat`` at which all
bytes granted so far are paid for. A request for ``n`` bytes moves ``tat`` by
``n / RATE`` and waits until ``tat`` is reached. Because the reservation is
made synchronously before the wait, concurrent callers are served in the order
they asked (no starvation, no thundering herd), and no loop-bound primitive is
needed, so the instance is safe to create before the event loop runs.

Why the numbers below hold the contract:

* The bucket starts *empty* (``tat = now``), so from start-up B bytes take at
  least ``B / RATE`` seconds: the first bound holds for every B.
* The burst (idle credit) is capped at ``RATE / 16`` and requests are split into
  quanta of at most ``RATE / 16``; in any window of ``w`` seconds at most
  ``RATE*w + max(burst, quantum)`` bytes are granted, so a 5-second window
  carries at most ``5.0625 * RATE`` (< 5.5). After an idle spell the first
  bound still holds for anything lasting more than about 0.7 s.

Callers pay *after* bytes arrive and before they hand them on
(:meth:`Throttle.consume`, :func:`throttled_chunks`): the socket read is the
only place bytes come from, and pausing the reader is what pushes back on the
sender through TCP flow control.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from s3sync.config.units import UnitParseError, format_rate, parse_bytes, parse_rate
from s3sync.s3.result import Body, GetResult

#: a quantum never exceeds this: keeps the per-call overhead low at high rates
MAX_QUANTUM = 1024 * 1024


class Throttle:
    """A process-wide token bucket for download bytes; ``rate == 0`` means unlimited.

    ``clock`` and ``sleep`` are injectable so tests can drive time by hand.
    """

    def __init__(
        self,
        rate: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self.quantum = max(1, min(MAX_QUANTUM, rate // 16)) if rate else MAX_QUANTUM
        self.burst = self.quantum
        self._tat = clock()
        #: bytes paid for, and seconds callers spent waiting (for metrics)
        self.bytes_total = 0
        self.wait_seconds_total = 0.0

    @property
    def limited(self) -> bool:
        return self.rate > 0

    def _reserve(self, n: int) -> float:
        """Book ``n`` bytes now; return how long the caller must wait for them."""
        now = self._clock()
        # idle time earns at most `burst` bytes of credit
        self._tat = max(self._tat, now - self.burst / self.rate) + n / self.rate
        return self._tat - now

    async def consume(self, n: int) -> None:
        """Pay for ``n`` bytes, waiting as long as the limit requires.

        Large amounts are booked one quantum at a time, awaiting between them,
        so a 16 MiB part does not jump ahead of every small object behind it.
        """
        if n <= 0:
            return
        self.bytes_total += n
        if not self.rate:
            return
        while n > 0:
            step = min(n, self.quantum)
            n -= step
            wait = self._reserve(step)
            if wait > 0:
                self.wait_seconds_total += wait
                await self._sleep(wait)


async def throttled_chunks(chunks: AsyncIterator[bytes], throttle: Throttle) -> AsyncIterator[bytes]:
    """Yield ``chunks`` as they are paid for, sliced to the throttle's quantum.

    Slicing means a consumer never receives more than one quantum before
    paying for it, which is what bounds any window to ``RATE*w + quantum``.
    Without a limit the chunks pass through untouched.
    """
    if not throttle.limited:
        async for chunk in chunks:
            throttle.bytes_total += len(chunk)
            yield chunk
        return
    q = throttle.quantum
    async for chunk in chunks:
        if len(chunk) <= q:
            await throttle.consume(len(chunk))
            yield chunk
            continue
        view = memoryview(chunk)
        for off in range(0, len(chunk), q):
            piece = view[off : off + q]
            await throttle.consume(len(piece))
            yield bytes(piece)


class ThrottledBody:
    """A GET body (either path) whose bytes are paid for before the reader sees them."""

    def __init__(self, body: Body, throttle: Throttle) -> None:
        self._body = body
        self._throttle = throttle

    def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        return throttled_chunks(self._body.iter_chunks(size), self._throttle)

    async def read(self) -> bytes:
        data = await self._body.read()
        await self._throttle.consume(len(data))
        return data

    def close(self) -> None:
        self._body.close()


def throttle_result(res: GetResult, throttle: Throttle | None) -> GetResult:
    """Wrap ``res``'s body so reading it goes through ``throttle`` (no-op without a limit)."""
    if throttle is None or not throttle.limited or res.body is None:
        return res
    return GetResult(res.status, res.headers, ThrottledBody(res.body, throttle), res.meta)


__all__ = [
    "Throttle",
    "ThrottledBody",
    "UnitParseError",
    "format_rate",
    "parse_bytes",
    "parse_rate",
    "throttle_result",
    "throttled_chunks",
]
