"""``--shard K/N``: which keys this host owns when N hosts split one bucket.

N hosts writing into one shared filesystem each take the keys whose hash is
their K, with no coordination service: the split is a pure function of the key.
The hash is fixed by the public contract so every version of s3sync (and any
other tool) agrees on it: the first 8 bytes of SHA-256 of the key's UTF-8,
read big-endian, modulo N. SHA-256 rather than Python's ``hash()`` because that
one is salted per process; 8 bytes because 64 bits modulo any realistic N is
uniform to well under one part in 10¹⁵.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from s3sync.errors import ConfigError

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def shard_of(key: str, count: int) -> int:
    """The shard (0 ≤ result < ``count``) that owns ``key``."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count``; ``Shard(0, 1)`` owns every key."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard must be K/N with 0 <= K < N, got {self.index}/{self.count}")

    @property
    def everything(self) -> bool:
        return self.count == 1

    def owns(self, key: str) -> bool:
        return self.count == 1 or shard_of(key, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ALL = Shard(0, 1)


def parse_shard(spec: str | None) -> Shard:
    """``"K/N"`` → :class:`Shard`; empty or ``None`` means every key (``0/1``).

    Raises :class:`~s3sync.errors.ConfigError` (the CLI exits 2) naming what is wrong.
    """
    if spec is None or not spec.strip():
        return ALL
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise ConfigError(f"shard must look like K/N (e.g. 0/4), got {spec!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise ConfigError(f"shard {spec!r}: N must be at least 1")
    if index >= count:
        raise ConfigError(f"shard {spec!r}: K must be below N (shards are numbered 0 to N-1)")
    return Shard(index, count)
