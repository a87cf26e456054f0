"""One download-rate limit for the whole process (``--bwlimit`` / ``[sync] bwlimit``).

The contract (INTERFACE.md, "Operator controls peers have"): downloading B
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
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from s3sync.errors import ConfigError

#: a quantum never exceeds this: keeps the per-call overhead low at high rates
MAX_QUANTUM = 1024 * 1024
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:I?B)?\s*$", re.IGNORECASE)


class UnitParseError(ConfigError, ValueError):
    """A size/rate/duration flag that does not parse.

    A :class:`ConfigError` so the CLI exits 2 with the message, and a
    :class:`ValueError` so a pydantic validator turns it into a field error.
    """


def parse_bytes(value: str | int | float, flag: str) -> int:
    """``"10M"`` → 10485760: a number with an optional K, M or G suffix (powers of 1024).

    A trailing ``B``/``iB`` is tolerated (``10MB``, ``10MiB`` are the same
    1024-based value). ``flag`` names the option in the error message.
    """
    if isinstance(value, bool):
        raise UnitParseError(f"{flag}: expected a size like 10M, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise UnitParseError(f"{flag}: must not be negative (got {value!r})")
        return int(value)
    m = _SIZE_RE.match(value)
    if m is None:
        raise UnitParseError(
            f"{flag}: {value!r} is not a size (a number with an optional K, M or G suffix, e.g. 10M)"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def parse_rate(value: str | int | float, flag: str = "--bwlimit") -> int:
    """Bytes per second for ``--bwlimit``; 0 means no limit."""
    return parse_bytes(value, flag)


def format_rate(rate: int) -> str:
    """The inverse of :func:`parse_rate` for messages (``10485760`` → ``"10M"``)."""
    if rate <= 0:
        return "0"
    for suffix in ("G", "M", "K"):
        unit = _UNITS[suffix]
        if rate % unit == 0:
            return f"{rate // unit}{suffix}"
    return str(rate)


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


__all__ = [
    "Throttle",
    "UnitParseError",
    "format_rate",
    "parse_bytes",
    "parse_rate",
    "throttled_chunks",
]
