"""The ranged download's side of resuming: open, checkpoint, finish or keep a resumable temp.

:mod:`s3sync.sync.resume` is the sidecar on disk; this module is what
:meth:`Transfer._ranged <s3sync.sync.transfer.Transfer>` calls so the transfer
itself only learns "these ranges are still missing" and "checkpoint now".

* :meth:`Resumer.open` reopens the temp of a valid sidecar whose ETag (size,
  version) still matches, or creates and preallocates a fresh one with a new
  sidecar; either way it returns the ranges still to fetch.
* :meth:`Resumer.checkpoint` snapshots every part's written frontier,
  ``fdatasync``\\s the temp and only then saves the sidecar, so the sidecar
  never claims bytes that a power cut could lose. The transfer calls it about
  once a second while parts run (parts progress in parallel, so whole-part
  granularity would lose up to ``part_concurrency`` parts of work).
* :meth:`Resumer.close` after a failure keeps the temp (closed, with a last
  checkpoint) when trying again can use it, and discards it when the bytes are
  suspect (an integrity failure) or the object is not the same any more.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from s3sync.errors import ChangedDuringTransferError, PermanentError
from s3sync.local.mirror import Mirror
from s3sync.model import ObjectMeta
from s3sync.sync.resume import ResumeRecord, ResumeStore, sync_and_save

log = structlog.get_logger("s3sync.sync.resumable")

CHECKPOINT_SECONDS = 1.0


@dataclass(slots=True)
class Opened:
    """A temp being written: where, through which fd, and what is still missing."""

    final: Path
    temp: Path
    fd: int
    missing: list[tuple[int, int]]  # inclusive (lo, hi) ranges to GET
    done_before: int  # bytes already on disk from an earlier attempt
    record: ResumeRecord | None  # None: not resumable (too small, no ETag)


class Resumer:
    """One per transfer; decides which big downloads are resumable and keeps their sidecars."""

    def __init__(self, mirror: Mirror, bucket: str, *, min_size: int, fsync: bool = True) -> None:
        self.mirror = mirror
        self.min_size = min_size
        self.store = ResumeStore(mirror.root, bucket, fsync=fsync)

    def sweep_keep(self) -> frozenset[str]:
        """At start (blocking): the temp names the mirror's sweep must leave alone."""
        return frozenset(p.name for p in self.store.sweep())

    def resumable(self, meta: ObjectMeta) -> bool:
        return bool(meta.etag) and meta.size > self.min_size

    async def open(self, key: str, meta: ObjectMeta, part_size: int) -> Opened:
        size = meta.size
        if self.resumable(meta):
            rec, why = await asyncio.to_thread(
                self.store.load, key, etag=meta.etag, size=size, version_id=meta.version_id
            )
            if rec is not None:
                try:
                    final, temp, fd = await asyncio.to_thread(self.mirror.reopen_temp, key, rec.temp_name)
                except Exception:
                    await asyncio.to_thread(self.store.discard, rec)
                else:
                    log.info("resuming download", key=key, bytes_on_disk=rec.completed, size=size)
                    return Opened(final, temp, fd, rec.missing(part_size), rec.completed, rec)
            elif why not in ("none",):
                log.info("partial download not resumable; starting over", key=key, reason=why)
        final, temp, fd = await asyncio.to_thread(self.mirror.new_temp, key)
        try:
            if size:
                await asyncio.to_thread(_preallocate, fd, size)
            record = None
            if self.resumable(meta):
                assert meta.etag is not None
                record = await asyncio.to_thread(
                    lambda: self.store.begin(
                        key,
                        etag=meta.etag or "",
                        size=size,
                        part_size=part_size,
                        temp=temp,
                        version_id=meta.version_id,
                    )
                )
        except BaseException:
            await asyncio.to_thread(self.mirror.discard, fd, temp)
            raise
        ranges = [(o, min(o + part_size, size) - 1) for o in range(0, size, part_size)]
        return Opened(final, temp, fd, ranges, 0, record)

    async def checkpoint(self, op: Opened, frontier: list[int]) -> None:
        """Record every range written so far (after making it durable)."""
        rec = op.record
        if rec is None or op.fd < 0:
            return
        for (lo, _), f in zip(op.missing, frontier, strict=True):
            if f > lo:
                rec.add(lo, f)
        await asyncio.to_thread(sync_and_save, self.store, rec, op.fd)

    async def watch(self, op: Opened, frontier: list[int]) -> None:
        """Checkpoint every :data:`CHECKPOINT_SECONDS` until cancelled."""
        if op.record is None:
            return
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            await self.checkpoint(op, frontier)

    async def finished(self, op: Opened) -> None:
        """The temp was committed into place: its sidecar goes."""
        if op.record is not None:
            await asyncio.to_thread(self.store.finish, op.record.key)

    async def close(self, op: Opened, frontier: list[int], exc: BaseException) -> None:
        """After a failure: keep what another attempt can use, discard the rest."""
        keep = (
            op.record is not None
            and not isinstance(exc, ChangedDuringTransferError)
            and not isinstance(exc, PermanentError)
        )
        if keep:
            try:
                await asyncio.shield(self.checkpoint(op, frontier))
            except (OSError, asyncio.CancelledError):
                pass
            await asyncio.shield(asyncio.to_thread(self.mirror.release, op.fd, op.temp))
            return
        if op.record is not None:
            await asyncio.to_thread(self.store.finish, op.record.key)
        await asyncio.to_thread(self.mirror.discard, op.fd, op.temp)


def _preallocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except (OSError, AttributeError):
        os.ftruncate(fd, size)


__all__ = ["CHECKPOINT_SECONDS", "Opened", "Resumer"]
