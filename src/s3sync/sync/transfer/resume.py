"""The ranged download's side of resuming: open, checkpoint, finish or keep a resumable temp.

:mod:`s3sync.local.sidecars` is the sidecar on disk; this module is what
:meth:`Receiver.take_ranges <s3sync.sync.transfer.receive.Receiver>` calls so the transfer
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
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from s3sync.errors import ChangedDuringTransferError, PermanentError
from s3sync.local.mirror import Mirror, TempFile
from s3sync.local.sidecars import ResumeRecord, ResumeStore
from s3sync.model import ObjectMeta

log = structlog.get_logger(__name__)

CHECKPOINT_SECONDS = 1.0
T = TypeVar("T")


@dataclass(slots=True)
class Opened:
    """A temp being written: which, and what is still missing."""

    temp: TempFile
    missing: list[tuple[int, int]]  # inclusive (lo, hi) ranges to GET
    done_before: int  # bytes already on disk from an earlier attempt
    record: ResumeRecord | None  # None: not resumable (too small, no ETag)

    @property
    def final(self) -> Path:
        return self.temp.final


class Resumer:
    """One per transfer; decides which big downloads are resumable and keeps their sidecars."""

    def __init__(self, mirror: Mirror, bucket: str, *, min_size: int, fsync: bool = True) -> None:
        self.mirror = mirror
        self.min_size = min_size
        self.store = ResumeStore(
            mirror.root, bucket, fsync=fsync, owner=lambda: mirror.owner, may_take=mirror.may_take
        )

    def sweep_keep(self) -> frozenset[str]:
        """At start (blocking): the temp names the mirror's sweep must leave alone."""
        return frozenset(p.name for p in self.store.sweep())

    def resumable(self, meta: ObjectMeta) -> bool:
        return bool(meta.etag) and meta.size > self.min_size

    async def open(self, key: str, meta: ObjectMeta, part_size: int) -> Opened:
        size = meta.size
        resumable = self.resumable(meta)
        if resumable:
            rec, why = await asyncio.to_thread(
                self.store.load, key, etag=meta.etag, size=size, version_id=meta.version_id
            )
            if rec is not None and not self.mirror.may_take(rec.temp_name):
                # another process (same host and shard) is writing it right now: not ours to touch,
                # and a sidecar of our own would fight over the same name; fetch without one
                log.info("partial download belongs to a running process; not resuming", key=key)
                resumable = False
            elif rec is not None:
                try:
                    temp = await asyncio.to_thread(self.mirror.reopen_temp, key, rec.temp_name)
                except Exception:
                    await asyncio.to_thread(self.store.discard, rec)
                else:
                    if temp.name != rec.temp_name:  # adopted: renamed to carry our owner tag
                        rec.temp_name = temp.name
                        try:
                            await asyncio.to_thread(self.store.save, rec)
                        except BaseException:
                            await asyncio.to_thread(self.mirror.release, temp)
                            raise
                    log.info("resuming download", key=key, bytes_on_disk=rec.completed, size=size)
                    return Opened(temp, rec.missing(part_size), rec.completed, rec)
            elif why not in ("none",):
                log.info("partial download not resumable; starting over", key=key, reason=why)
        temp = await asyncio.to_thread(self.mirror.new_temp, key)
        try:
            if size:
                await asyncio.to_thread(temp.run, _preallocate, size)
            record = None
            if resumable:
                assert meta.etag is not None
                record = await asyncio.to_thread(
                    lambda: self.store.begin(
                        key,
                        etag=meta.etag or "",
                        size=size,
                        part_size=part_size,
                        temp=temp.path,
                        version_id=meta.version_id,
                    )
                )
        except BaseException:
            await asyncio.to_thread(self.mirror.discard, temp)
            raise
        ranges = [(o, min(o + part_size, size) - 1) for o in range(0, size, part_size)]
        return Opened(temp, ranges, 0, record)

    async def checkpoint(self, op: Opened, frontier: list[int]) -> None:
        """Record every range written so far (after making it durable).

        The temp's fdatasync runs inside :meth:`TempFile.use`, in a thread this
        coroutine waits for even when cancelled: a checkpoint never outlives the
        temp's fd, and never re-saves a sidecar after the temp was given up.
        """
        rec = op.record
        if rec is None or op.temp.closed:
            return
        for (lo, _), f in zip(op.missing, frontier, strict=True):
            if f > lo:
                rec.add(lo, f)
        await settled(self._sync_and_save, op.temp, rec)

    def _sync_and_save(self, temp: TempFile, rec: ResumeRecord) -> None:
        if self.store.fsync:
            temp.run(os.fdatasync)
        self.store.save(rec)

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
        """After a failure: keep what another attempt can use, discard the rest.

        Safe whatever state the temp is in: a commit that failed has already closed
        and removed it (then only the sidecar goes); a temp still open is ended once,
        after every thread using it has finished (:meth:`TempFile.use`).
        """
        if op.temp.closed:
            if op.record is not None and op.temp.state != "released":
                await asyncio.shield(asyncio.to_thread(self.store.finish, op.record.key))
            return
        keep = (
            op.record is not None
            and not isinstance(exc, ChangedDuringTransferError)
            and not isinstance(exc, PermanentError)
        )
        if keep:
            try:
                await asyncio.shield(self.checkpoint(op, frontier))
            except (OSError, PermanentError, asyncio.CancelledError):
                pass
            await asyncio.shield(asyncio.to_thread(self.mirror.release, op.temp))
            return
        if op.record is not None:
            await asyncio.shield(asyncio.to_thread(self.store.finish, op.record.key))
        await asyncio.shield(asyncio.to_thread(self.mirror.discard, op.temp))


async def settled(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread; if this coroutine is cancelled, it still waits for the thread.

    A thread cannot be stopped. ``asyncio.to_thread`` abandons it on cancellation, so
    the caller goes on to close the file the thread is still writing, and the late
    write lands in whatever file takes that fd number next. Here a cancellation is
    re-raised only once the thread has finished (its result or error is dropped).
    """
    fut = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        while not fut.done():
            try:
                await asyncio.wait({fut})
            except asyncio.CancelledError:
                continue  # cancelled again: still not before the thread is done
        if not fut.cancelled():
            fut.exception()  # retrieved: the cancellation is what the caller sees
        raise


def _preallocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except (OSError, AttributeError):
        os.ftruncate(fd, size)


__all__ = ["CHECKPOINT_SECONDS", "Opened", "Resumer", "settled"]
