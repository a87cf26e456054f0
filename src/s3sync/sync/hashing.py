"""Feeding bytes to the check :mod:`s3sync.sync.integrity` chose: from a stream, or from a temp file.

:class:`BodyCheck` is what a transfer holds while a body arrives: it feeds the
hasher (if the verification has one) and compares at the end.
:class:`RegionHasher` feeds a preallocated temp file region by region, in
order, as the ranged GETs fill it, so the check needs no second read of the
file (the regions are still in the page cache; hashlib and awscrt release the
GIL, so this runs in a worker thread beside the network).
"""

from __future__ import annotations

import os

from s3sync.errors import RetryableError
from s3sync.sync.integrity import Hasher, Verification, check

CHUNK = 1024 * 1024


class BodyCheck:
    """One body's verification in progress: ``update`` with every byte, then ``verify``."""

    __slots__ = ("hasher", "verification")

    def __init__(self, verification: Verification, hasher: Hasher | None) -> None:
        self.verification = verification
        self.hasher = hasher

    @property
    def kind(self) -> str:
        return str(self.verification.algorithm or self.verification.method)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self.hasher is not None:
            self.hasher.update(data)

    def verify(self, key: str) -> None:
        check(key, self.verification, self.hasher)


class RegionHasher:
    """Feeds a file to ``hasher`` in order; ``done`` is how far it got.

    Reads go into one reused 1 MiB buffer (``preadv``): a fresh 8 MiB ``bytes``
    per read was a new mapping each time, page-faulted in and unmapped again —
    a tenth of a 1 GiB download's system time — and a buffer this size stays in
    the CPU cache between the copy and the hash.
    """

    def __init__(self, hasher: Hasher) -> None:
        self.hasher = hasher
        self.done = 0
        self._buf = bytearray(CHUNK)

    def feed(self, fd: int, upto: int) -> None:
        view = memoryview(self._buf)
        while self.done < upto:
            n = os.preadv(fd, [view[: min(CHUNK, upto - self.done)]], self.done)
            if not n:
                raise RetryableError("temp file shorter than written frontier")
            self.hasher.update(view[:n])
            self.done += n
