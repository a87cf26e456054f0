"""A reconcile pass fed by S3 Inventory instead of ``ListObjectsV2``, and its staleness rules.

The report is up to a day (or a week) old when it is read, so it is a hint
about the bucket, as events are, never the whole truth:

* a key the report lists that we do not hold is fetched; if it has gone since,
  the GET's 404 says so and nothing fails (see the apply rules);
* a key we hold whose row was written *after* the report's ``creationTimestamp``
  (an event or a later pass fetched it) is newer than what the report says: it
  is left alone — the events and the next report are its truth;
* a local key absent from the report is deleted only when ``delete`` is on, its
  row predates the report, and a HEAD confirms S3 no longer has it.

The report's own bucket is read through a second :class:`~s3sync.s3.bucket.Bucket`
opened for the pass (same endpoint and credentials, its own region if set);
the source bucket is never listed. Where the reports are and how that bucket is
opened is one :class:`ReportSource`, built from ``[inventory]`` and ``[s3]`` by
the composition root, so the pass is never handed the whole settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from s3sync.config.sections import InventorySettings, S3Settings
from s3sync.model import ObjectMeta
from s3sync.s3.bucket import Bucket
from s3sync.s3.inventory import InventoryReader, Manifest, parse_location
from s3sync.state.store import StateRow, StateStore
from s3sync.stats import SyncStats
from s3sync.sync.reconcile.plan import Fetch

log = structlog.get_logger(__name__)

_CHUNK = 1 << 18
_HEADS = 16  # HEADs in flight while confirming deletes


@dataclass(frozen=True, slots=True)
class ReportInfo:
    """What ``/api/v1/stats`` says about the report the last pass used."""

    location: str
    manifest_key: str
    report: str  # YYYY-MM-DDTHH-MMZ
    created: float  # creationTimestamp, unix seconds

    @classmethod
    def of(cls, location: str, m: Manifest) -> ReportInfo:
        return cls(location, m.key, m.report, m.created)


@dataclass(frozen=True, slots=True)
class ReportSource:
    """Where the inventory reports live and how their bucket is opened (``[inventory]`` + ``[s3]``).

    Built once by the composition root (:meth:`of`); a pass needs nothing else
    of the configuration to read a report.
    """

    location: str  # s3://bucket/prefix/ of the reports ([inventory] location)
    source_bucket: str  # the bucket the reports describe ([s3] bucket)
    tmp_dir: Path | None
    open_bucket: Callable[[], AbstractAsyncContextManager[Bucket]]

    @classmethod
    def of(cls, inv: InventorySettings, s3: S3Settings, timeout: float) -> ReportSource | None:
        """The reports ``[inventory]`` names, or None when passes list the bucket instead."""
        if not inv.location:
            return None
        report_bucket, _ = parse_location(inv.location)
        at = s3.model_copy(update={"bucket": report_bucket, "prefix": "", "region": inv.region or s3.region})
        return cls(
            inv.location, s3.bucket, inv.tmp_dir, lambda: Bucket(at, fast_get=at.fast_get, timeout=timeout)
        )


@asynccontextmanager
async def open_report(
    source: ReportSource, scope: str, accept: Callable[[str], bool]
) -> AsyncIterator[InventoryReader]:
    """The reader of the newest report under ``[inventory] location``, for one pass."""
    async with source.open_bucket() as bucket:

        async def list_keys(_bucket: str, prefix: str) -> AsyncIterator[str]:
            async for meta in bucket.list(prefix):
                yield meta.key

        async def get_object(_bucket: str, key: str) -> AsyncIterator[bytes]:
            res = await bucket.get(key)
            try:
                if res.body is not None:
                    async for chunk in res.body.iter_chunks(_CHUNK):
                        yield chunk
            finally:
                res.close()

        yield InventoryReader(
            source.location,
            list_keys,
            get_object,
            source_bucket=source.source_bucket,
            prefix=scope,
            accept=accept,
            tmpdir=source.tmp_dir,
        )


def newer_than_report(row: StateRow | None, created: float) -> bool:
    """Our copy was written (or last changed in S3) after the report was made: the report is stale."""
    return row is not None and max(row.synced_at, row.last_modified) > created


class InventoryPass:
    """The inventory side of one reconcile pass: its listing, the stale-fetch test, the delete check."""

    def __init__(self, source: ReportSource, large_mb: float, state: StateStore, stats: SyncStats) -> None:
        self.source = source
        self.large = large_mb * 1024 * 1024  # [sync] multipart_threshold_mb: from here a GET describes it
        self.state = state
        self.stats = stats
        self.report: ReportInfo | None = None  # known once the listing has started

    async def listing(self, scope: str, accept: Callable[[str], bool]) -> AsyncIterator[ObjectMeta]:
        """The newest report's objects in key order (those ``accept`` takes); its date first."""
        async with open_report(self.source, scope, accept) as reader:
            manifest = await reader.load_manifest()
            self.report = ReportInfo.of(self.source.location, manifest)
            self.stats.health.inventory_report = self.report
            log.info("reconcile from inventory", report=manifest.key, created=manifest.created_iso)
            async for meta in reader.objects():
                yield meta
            log.info("inventory report read", **reader.stats)

    async def stale_fetch(self, item: Fetch) -> bool:
        """A tracked key the report says changed, but our row is newer than the report."""
        if self.report is None or item.reason != "changed":
            return False
        return newer_than_report(await self.state.get(item.meta.key), self.report.created)

    def fetch_meta(self, meta: ObjectMeta) -> ObjectMeta | None:
        """A large object is fetched as its GET describes it: the report's row may be a day old.

        (A ranged GET pins the ETag it is given; a small one keeps the report's
        meta, and the apply rules record the GET's ETag when the two differ.)
        """
        if meta.size >= self.large:
            return None
        return meta

    async def confirm_gone(self, keys: list[str], bucket: Bucket) -> list[str]:
        """The keys absent from the report that S3 confirms are gone.

        A key whose row postdates the report is kept without asking; every other
        key is HEADed (a few in flight at once) and kept if S3 still has it.
        """
        if self.report is None:
            return []
        created = self.report.created
        sem = asyncio.Semaphore(_HEADS)

        async def gone(key: str) -> bool:
            if newer_than_report(await self.state.get(key), created):
                return False
            async with sem:
                return await bucket.head(key) is None

        verdicts = await asyncio.gather(*(gone(k) for k in keys))
        victims = [k for k, g in zip(keys, verdicts, strict=True) if g]
        if len(victims) < len(keys):
            log.info(
                "keys absent from the inventory report still in S3 (kept)", count=len(keys) - len(victims)
            )
        return victims


__all__ = ["InventoryPass", "ReportInfo", "ReportSource", "newer_than_report", "open_report"]
