"""``s3sync verify``: compare the mirror with the bucket (presence, size, checksum).

A sorted merge of the bucket listing against a sorted walk of the local
directory: both arrive in key order, so memory stays O(page) however large
the bucket. Content is checked against single-part MD5 ETags in worker
threads; multipart ETags are compared by size (and the state's record). An
MD5 mismatch is confirmed with a HEAD: a KMS/DSSE/SSE-C ETag is not an MD5,
and such objects are compared by their full-object checksum, else by size.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from s3sync.errors import UnsafeKeyError
from s3sync.local.keys import KeyFilter, check_key, is_directory_marker
from s3sync.local.mirror import Mirror
from s3sync.model import ObjectMeta
from s3sync.s3.bucket import Bucket
from s3sync.sync.filters import Selection
from s3sync.sync.reconcile.march import march, only
from s3sync.sync.reconcile.plan import flag_conflicts
from s3sync.sync.transfer.integrity import Facts, Method, checksum_hasher, choose


@dataclass
class Drift:
    key: str
    kind: str  # missing | extra | size | checksum
    detail: str = ""


@dataclass
class VerifyReport:
    checked: int = 0
    drift: list[Drift] = field(default_factory=list)
    skipped_unsafe: int = 0

    @property
    def identical(self) -> bool:
        return not self.drift

    def as_json(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "checked": self.checked,
            "skipped_unsafe": self.skipped_unsafe,
            "drift": [{"key": d.key, "kind": d.kind, "detail": d.detail} for d in self.drift],
        }


async def _local_iter(mirror: Mirror, prefix: str) -> AsyncIterator[tuple[str, int, float]]:
    it: Iterator[Any] = mirror.walk_sorted(prefix)
    while True:
        chunk = await asyncio.to_thread(lambda: [x for _, x in zip(range(1000), it, strict=False)])
        for key, st in chunk:
            yield key, st.st_size, st.st_mtime
        if len(chunk) < 1000:
            return


async def _confirm(bucket: Bucket, mirror: Mirror, m: ObjectMeta, digest: str) -> Drift | None:
    """An MD5 that differs from a 32-hex ETag is drift only if that ETag is an MD5.

    A listing does not say how an object is encrypted, and a KMS, DSSE or SSE-C
    ETag looks like an MD5 without being one: a HEAD (checksum mode) tells, and
    the object's full-object checksum, when it has one, is compared instead.
    """
    head = await bucket.head(m.key, version_id=m.version_id)
    if head is None or head.etag != m.etag:
        return Drift(m.key, "checksum", f"md5 {digest} != etag {m.etag}")  # replaced or gone meanwhile
    verification = choose(Facts.from_meta(head))
    if verification.method is Method.MD5:
        return Drift(m.key, "checksum", f"md5 {digest} != etag {m.etag}")
    if verification.method is not Method.CHECKSUM or verification.algorithm is None:
        return None  # the ETag is not an MD5 and there is nothing else whole to compare: size matched

    def run() -> str:
        assert verification.algorithm is not None
        h = checksum_hasher(verification.algorithm)
        with os.fdopen(mirror.open_read(m.key), "rb") as fh:
            for chunk in iter(lambda: fh.read(1024 * 1024), b""):
                h.update(chunk)
        return h.result()

    got = await asyncio.to_thread(run)
    if got != verification.expected:
        return Drift(m.key, "checksum", f"{verification.algorithm} {got} != {verification.expected}")
    return None


async def verify(
    bucket: Bucket,
    mirror: Mirror,
    filt: KeyFilter,
    checksum: bool = True,
    *,
    version_at: float | None = None,
) -> VerifyReport:
    """Merge the listing with the local walk; every difference is one :class:`Drift`.

    With a :class:`Selection`, objects its size/age filters leave out are neither
    checked nor "extra"; ``version_at`` compares against the bucket at that instant.
    """
    report = VerifyReport()
    to_hash: list[ObjectMeta] = []

    async def hash_batch() -> None:
        def run() -> list[tuple[ObjectMeta, str]]:
            out = []
            for m in to_hash:
                h = hashlib.md5(usedforsecurity=False)
                with os.fdopen(mirror.open_read(m.key), "rb") as fh:  # never through a link
                    for chunk in iter(lambda: fh.read(1024 * 1024), b""):
                        h.update(chunk)
                out.append((m, h.hexdigest()))
            return out

        for m, digest in await asyncio.to_thread(run):
            if digest != m.etag and (drift := await _confirm(bucket, mirror, m, digest)) is not None:
                report.drift.append(drift)
        to_hash.clear()

    def skipped(meta: ObjectMeta, conflict: bool) -> bool:
        """A listed key the mirror does not hold by design (counted, never drift either way)."""
        try:
            check_key(meta.key)
        except UnsafeKeyError:
            report.skipped_unsafe += 1
            return True
        if conflict:
            report.skipped_unsafe += 1
            return True
        return filt.too_large(meta.size) or (isinstance(filt, Selection) and filt.rejects(meta) is not None)

    source = bucket.list(filt.prefix) if version_at is None else bucket.list_at(filt.prefix, version_at)
    listed = only(
        flag_conflicts(source),
        lambda item: filt.wants(item[0].key) and not is_directory_marker(item[0].key),
    )
    local = only(_local_iter(mirror, filt.prefix), lambda item: filt.wants(item[0]))
    async for item, held in march(listed, local, lambda i: i[0].key, lambda h: h[0]):
        if item is None:
            assert held is not None
            if isinstance(filt, Selection) and not filt.may_delete_local(*held):
                continue  # outside the size/age filters: not ours to judge
            report.drift.append(Drift(held[0], "extra", "not in bucket"))
            continue
        meta, conflict = item
        if skipped(meta, conflict):
            continue  # a local file of that name is neither checked nor "extra": the bucket has it
        report.checked += 1
        if held is None:
            report.drift.append(Drift(meta.key, "missing", "not in mirror"))
        elif held[1] != meta.size:
            report.drift.append(Drift(meta.key, "size", f"local {held[1]} bytes, bucket {meta.size}"))
        elif checksum and meta.etag and len(meta.etag) == 32:
            to_hash.append(meta)
            if len(to_hash) >= 64:
                await hash_batch()
    if to_hash:
        await hash_batch()
    report.drift.sort(key=lambda d: d.key)
    return report
