"""The few value types every layer shares.

Every source of work (HTTP notifications, SQS, the reconcile merge, a manual
sync) produces the same :class:`Change`; nothing downstream needs to know where
a change came from except for logging and metrics.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


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
    # what AWS says beyond the basics (GET/HEAD headers, listing fields); see sync/integrity.py
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
