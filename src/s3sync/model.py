"""The few value types every layer shares.

Every source of work (HTTP notifications, SQS, the reconcile merge, a manual
sync) produces the same :class:`Change`; nothing downstream needs to know where
a change came from except for logging and metrics.

:class:`Shard` (``--shard K/N``) is here because it is parsed once, by the
configuration, and then read by the engine, the filters, the SQS consumer and the
API: a value of the ground floor, not of any one of them.
"""

from __future__ import annotations

import enum
import hashlib
import re
import time
from dataclasses import dataclass, field

from s3sync.errors import ConfigError


class ChangeKind(enum.StrEnum):
    """What a change asks the mirror to do with a key."""

    UPSERT = "upsert"
    REMOVE = "remove"


class ChangeSource(enum.StrEnum):
    """Where a change came from (for logs and metrics only)."""

    NOTIFICATION = "notification"
    SQS = "sqs"
    RECONCILE = "reconcile"
    JOURNAL = "journal"
    MANUAL = "manual"


def normalize_etag(etag: str | None) -> str | None:
    """Strip the quotes S3 puts around ETags (rclone serve s3 omits them)."""
    if etag is None:
        return None
    etag = etag.strip().strip('"')
    return etag or None


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """One object as the bucket listing (or a HEAD) describes it."""

    key: str
    size: int
    etag: str | None
    last_modified: float  # unix seconds
    version_id: str | None = None
    checksum_algorithm: str | None = None
    # what AWS says beyond the basics (GET/HEAD headers, listing fields); see sync/transfer/integrity.py
    storage_class: str | None = None  # listing StorageClass / x-amz-storage-class (None: STANDARD)
    encryption: str | None = None  # x-amz-server-side-encryption: AES256, aws:kms, aws:kms:dsse
    sse_customer: bool = False  # SSE-C: the ETag is not an MD5 of the body
    checksum_value: str | None = None  # x-amz-checksum-<algorithm> (base64; "-N" when composite)
    checksum_type: str | None = None  # FULL_OBJECT | COMPOSITE
    restore: str | None = None  # x-amz-restore, as sent


@dataclass(frozen=True, slots=True)
class Change:
    """A hint that ``key`` may have changed; S3 stays the source of truth.

    ``etag``/``size`` are what the source believed at the time (listing or
    event); ``sequencer`` orders events for one key the way S3 defines it.
    ``meta`` is set when the change comes from a listing, so the transfer can
    skip a HEAD and verify against the listed size and ETag.

    ``listed`` says what the apply rules may take as proven: True when the
    change comes from a complete listing of the bucket (a remove then means
    "absent from that listing"), False for a hint (an event: a remove is
    confirmed with S3 or a newer sequencer first). The rules read this field,
    never ``source``, which is for logs and metrics only.
    """

    key: str
    kind: ChangeKind
    source: ChangeSource
    etag: str | None = None
    size: int | None = None
    sequencer: str | None = None
    version_id: str | None = None
    delete_marker: bool = False
    received_at: float = field(default_factory=time.time)
    meta: ObjectMeta | None = None
    listed: bool = False


def compare_sequencers(a: str, b: str) -> int:
    """Compare two S3 event sequencers the way AWS documents it.

    Right-pad the shorter hex string with zeros, normalise case, compare as
    numbers. Returns -1, 0 or 1.
    """
    a_n, b_n = a.strip().upper(), b.strip().upper()
    width = max(len(a_n), len(b_n))
    a_n, b_n = a_n.ljust(width, "0"), b_n.ljust(width, "0")
    return (a_n > b_n) - (a_n < b_n)


# --shard K/N: which keys this host owns when N hosts split one bucket.
#
# N hosts writing into one shared filesystem each take the keys whose hash is
# their K, with no coordination service: the split is a pure function of the key.
# The hash is fixed by the public contract so every version of s3sync (and any
# other tool) agrees on it: the first 8 bytes of SHA-256 of the key's UTF-8,
# read big-endian, modulo N. SHA-256 rather than Python's ``hash()`` because that
# one is salted per process; 8 bytes because 64 bits modulo any realistic N is
# uniform to well under one part in 10^15.

_SHARD_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def shard_of(key: str, count: int) -> int:
    """The shard (0 <= result < ``count``) that owns ``key``."""
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

    @property
    def spec(self) -> str:
        """How the configuration spells it: ``"K/N"``, or ``""`` for every key."""
        return "" if self.everything else str(self)

    def owns(self, key: str) -> bool:
        return self.count == 1 or shard_of(key, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ALL_KEYS = Shard(0, 1)


def parse_shard(spec: str | None) -> Shard:
    """``"K/N"`` → :class:`Shard`; empty or ``None`` means every key (``0/1``).

    Raises :class:`~s3sync.errors.ConfigError` (the CLI exits 2) naming what is wrong.
    """
    if spec is None or not spec.strip():
        return ALL_KEYS
    m = _SHARD_SPEC.fullmatch(spec)
    if m is None:
        raise ConfigError(f"shard must look like K/N (e.g. 0/4), got {spec!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise ConfigError(f"shard {spec!r}: N must be at least 1")
    if index >= count:
        raise ConfigError(f"shard {spec!r}: K must be below N (shards are numbered 0 to N-1)")
    return Shard(index, count)
