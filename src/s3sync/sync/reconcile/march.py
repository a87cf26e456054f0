"""The sorted merge both reconcile and verify stand on (rclone's ``fs/march``).

Two streams arrive in key order — the bucket listing (S3 orders keys by UTF-8
bytes) and the state rows or the local walk (SQLite's BINARY collation and our
sorted walk compare the same bytes; Python's ``str`` order of code points is
the same order for valid UTF-8) — and one pass pairs them up: ``(a, None)`` a
key only the first side has, ``(None, b)`` only the second, ``(a, b)`` both.
Memory is one item per side, however large the bucket.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")


async def _next(it: AsyncIterator[A]) -> A | None:
    async for item in it:
        return item
    return None


async def march(
    left: AsyncIterable[A],
    right: AsyncIterable[B],
    left_key: Callable[[A], str],
    right_key: Callable[[B], str],
) -> AsyncIterator[tuple[A | None, B | None]]:
    """Pair two key-ordered streams; each key appears once, in order.

    Both sides must be strictly increasing; the caller filters them (the
    merge itself knows nothing about prefixes, filters or what a match means).
    """
    lit, rit = left.__aiter__(), right.__aiter__()
    a, b = await _next(lit), await _next(rit)
    while a is not None or b is not None:
        if b is None or (a is not None and left_key(a) < right_key(b)):
            yield a, None
            a = await _next(lit)
        elif a is None or right_key(b) < left_key(a):
            yield None, b
            b = await _next(rit)
        else:
            yield a, b
            a, b = await _next(lit), await _next(rit)


async def only(items: AsyncIterable[A], wanted: Callable[[A], bool]) -> AsyncIterator[A]:
    """The items ``wanted`` keeps, in order (filters both sides before the merge)."""
    async for item in items:
        if wanted(item):
            yield item


__all__ = ["march", "only"]
