"""The one backoff helper: every retry loop in s3sync waits the same way.

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): the n-th
wait is ``uniform(0, min(cap, base * 2**n))``. It spreads a crowd of clients
that failed together (a throttled bucket, an SQS outage) better than equal or
decorrelated jitter, and it is one formula with two knobs, so every loop reads
the same. Two shapes use it:

- :class:`RetryPolicy` — a bounded number of attempts around one call (a GET,
  a listing page, a HEAD), raising :class:`~s3sync.errors.RetriesExceededError`
  with the last error when they run out;
- :class:`Backoff` — the delay sequence alone, for the loops that retry forever
  and do their own waiting (the SQS consumer, the engine start, the journal
  requeue), with :meth:`Backoff.reset` after a success.

``sleep`` and ``rand`` are injectable so tests run backoff without waiting.

Why not ``tenacity``/``stamina``: both fit, but the call sites need the
classified error (``on_retry`` counts it in the stats) and a per-key attempt
count that outlives one call (the journal requeue); a 60-line helper with an
injectable clock is simpler than adapting either.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from s3sync.errors import (
    IntegrityError,
    PermanentError,
    RetriesExceededError,
    RetryableError,
    S3SyncError,
)

T = TypeVar("T")


def tree_only(exc: BaseException) -> S3SyncError:
    """The classification that knows only the error tree: anything else is permanent.

    The default of :class:`RetryPolicy`: S3's errors reach it classified (``s3/``
    maps every call); a policy whose calls also write the mirror is given
    :func:`s3sync.local.errors.classify_local`, which names the disk's ``OSError``.
    """
    if isinstance(exc, S3SyncError):
        return exc
    return PermanentError(f"{type(exc).__name__}: {exc}")


def full_jitter(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """The wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
    ceiling: float = min(cap, base * float(2 ** min(attempt, 62)))
    return float(rand()) * ceiling


@dataclass(slots=True)
class Backoff:
    """A growing, jittered delay for loops that retry until they succeed."""

    base: float = 0.5
    cap: float = 30.0
    rand: Callable[[], float] = random.random
    attempt: int = 0

    def next_delay(self) -> float:
        delay = full_jitter(self.attempt, self.base, self.cap, self.rand)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass(slots=True)
class RetryPolicy:
    """Bounded attempts with full-jitter backoff between them.

    Retried: :class:`RetryableError` (5xx, throttling, resets, timeouts) and,
    once, :class:`IntegrityError` (bytes damaged on the way). A mismatch that
    repeats on a fresh attempt is not the network's doing: the object cannot be
    verified as it stands, so the second :class:`IntegrityError` is raised as
    itself, a permanent failure (counted as ``integrity``, its journal row
    settled), never a ``retries_exceeded`` that the pool would requeue forever,
    re-downloading the whole object each time. Anything else that is not
    already an :class:`S3SyncError` is classified first, once, here, by ``classify``
    (:func:`tree_only`, or the local boundary's for a download that writes the disk).
    """

    attempts: int = 4
    base: float = 0.2
    cap: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = field(default=random.random)
    classify: Callable[[BaseException], S3SyncError] = tree_only

    def delay(self, attempt: int) -> float:
        return full_jitter(attempt, self.base, self.cap, self.rand)

    async def run(
        self, fn: Callable[[], Awaitable[T]], on_retry: Callable[[S3SyncError], None] | None = None
    ) -> T:
        last: S3SyncError | None = None
        mismatches = 0
        for attempt in range(self.attempts):
            try:
                return await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                mapped = self.classify(exc)
                if not isinstance(mapped, RetryableError | IntegrityError):
                    if mapped is exc:
                        raise
                    raise mapped from exc
                if isinstance(mapped, IntegrityError):
                    mismatches += 1
                    if mismatches > 1 and mapped is exc:  # again on a fresh download: permanent
                        raise
                    if mismatches > 1:
                        raise mapped from exc
                last = mapped
                if on_retry is not None:
                    on_retry(mapped)
                if attempt + 1 < self.attempts:
                    await self.sleep(self.delay(attempt))
        assert last is not None
        raise RetriesExceededError(last, self.attempts) from last


__all__ = ["Backoff", "RetryPolicy", "full_jitter", "tree_only"]
