"""Reconcile as a sorted merge of the bucket listing against the StateStore.

Both sides arrive in key order (S3 lists in UTF-8 byte order; SQLite's BINARY
collation compares the same bytes; Python compares code points, which orders
UTF-8 identically), so one pass with O(page) memory classifies every key, the
way rclone's ``fs/march`` does. Local files are stat'ed in batches off the
event loop so a file deleted or edited behind our back is repaired too.

Deletions are only *planned* here; the caller applies them after a complete,
error-free listing, bounded by ``max_delete``.

An archived object (GLACIER, DEEP_ARCHIVE) that the listing's ``RestoreStatus``
says is not restored is skipped as ``archived`` here, without the GET that
would only answer 403 ``InvalidObjectState`` every pass (see
:func:`s3sync.s3.listing.archived_unrestored`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from s3sync.errors import UnsafeKeyError
from s3sync.local.keys import NAME_MAX, KeyFilter, check_key, is_directory_marker
from s3sync.local.mirror import LocalStat
from s3sync.model import ObjectMeta
from s3sync.s3.listing import archived_unrestored
from s3sync.state.store import StateRow
from s3sync.sync.filters import Selection
from s3sync.sync.reconcile.conflicts import CaseConflicts, PrefixConflicts, flag_conflicts
from s3sync.sync.reconcile.march import march, only

MTIME_SLACK = 1.0
BATCH = 256
CONFIRMS = 16  # --checksum: HEADs in flight at once to settle ETags that may not be MD5s


@dataclass(frozen=True, slots=True)
class Fetch:
    meta: ObjectMeta
    reason: str  # new | changed | local_missing | local_changed


@dataclass(frozen=True, slots=True)
class Adopt:
    """The local file already matches the listing: record it, download nothing."""

    meta: ObjectMeta


@dataclass(frozen=True, slots=True)
class Unchanged:
    key: str


@dataclass(frozen=True, slots=True)
class Remove:
    key: str


@dataclass(frozen=True, slots=True)
class Skip:
    key: str
    reason: str  # unsafe_key | key_conflict | case_conflict | too_large | filtered | storage_class | archived
    message: str
    tracked: bool = False
    etag: str = ""  # the listed object's (unsafe keys: told once per key and ETag)


PlanItem = Fetch | Adopt | Unchanged | Remove | Skip


def _same_object(meta: ObjectMeta, row: StateRow) -> bool:
    if meta.size != row.size:
        return False
    if meta.etag and row.etag:
        return meta.etag == row.etag
    return abs(meta.last_modified - row.last_modified) < MTIME_SLACK


def _local_matches(meta: ObjectMeta, local: LocalStat | None) -> bool:
    return (
        local is not None
        and local.size == meta.size
        and (meta.last_modified <= 0 or abs(local.mtime - meta.last_modified) < MTIME_SLACK)
    )


def _held_as_recorded(meta: ObjectMeta, local: LocalStat | None, row: StateRow | None) -> bool:
    """The local file is the one we wrote, with the mtime we gave it (rclone's mtime metadata)."""
    return (
        row is not None
        and local is not None
        and local.size == meta.size == row.size
        and abs(local.mtime - row.last_modified) < MTIME_SLACK
    )


async def plan(
    listing: AsyncIterator[ObjectMeta],
    tracked: AsyncIterator[StateRow],
    filt: KeyFilter,
    stat_many: Callable[[list[str]], list[LocalStat | None]],
    *,
    skip_existing: bool = True,
    content_matches: Callable[[ObjectMeta], bool | None] | None = None,
    confirm_content: Callable[[ObjectMeta], Awaitable[bool]] | None = None,
    name_max: int = NAME_MAX,
    case: CaseConflicts | None = None,
    excluded_classes: frozenset[str] = frozenset(),
) -> AsyncIterator[PlanItem]:
    """Classify every key of the listing and of the state.

    The merge runs in key order; what comes out does not: a key that might
    still turn out to be a directory (``x`` before ``x/y``) waits in
    :class:`PrefixConflicts` while every other key flows on, so nothing stalls
    behind it. ``case`` (built when the filesystem folds names) skips every
    spelling but the first of a folded path. ``content_matches`` (the
    ``--checksum`` mode) is called in a worker thread for files whose size and
    mtime match, to compare their bytes with the ETag; when it cannot tell
    (``None``: the ETag may not be an MD5), ``confirm_content`` asks S3 (a HEAD,
    see :mod:`s3sync.sync.content`). ``excluded_classes``
    (``exclude_storage_classes``) skips keys by the listing's StorageClass, no GET.
    """
    batch: list[tuple[ObjectMeta, StateRow | None]] = []

    async def flush() -> AsyncIterator[PlanItem]:
        keys = [m.key for m, _ in batch]
        stats = await asyncio.to_thread(stat_many, keys)
        checks: list[bool] = []
        if content_matches is not None:
            cands = [
                m
                for (m, r), st in zip(batch, stats, strict=True)
                if _local_matches(m, st) or _held_as_recorded(m, st, r)
            ]
            res = await asyncio.to_thread(lambda: {m.key: content_matches(m) for m in cands})
            unsure = [m for m in cands if res[m.key] is None]
            if unsure and confirm_content is not None:
                res.update(
                    zip([m.key for m in unsure], await _confirm_all(confirm_content, unsure), strict=True)
                )
            checks = [bool(res.get(m.key, False)) for m, _ in batch]
        for i, ((meta, r), local) in enumerate(zip(batch, stats, strict=True)):
            ok_local = (_local_matches(meta, local) or _held_as_recorded(meta, local, r)) and (
                content_matches is None or checks[i]
            )
            if r is not None and _same_object(meta, r):
                if ok_local:
                    yield Unchanged(meta.key)
                else:
                    yield Fetch(meta, "local_missing" if local is None else "local_changed")
            elif r is None and ok_local and skip_existing:
                yield Adopt(meta)
            elif (why := archived_unrestored(meta)) is not None:
                yield Skip(meta.key, "archived", why, r is not None)  # a GET would be a 403
            else:
                yield Fetch(meta, "new" if r is None else "changed")
        batch.clear()

    prefixes: PrefixConflicts[tuple[ObjectMeta, StateRow | None]] = PrefixConflicts()

    def settle(meta: ObjectMeta, row: StateRow | None, conflict: bool) -> Skip | None:
        """A decided key: a skip, or None after queueing it for the batched stat."""
        if conflict:
            return Skip(
                meta.key,
                "key_conflict",
                "key collides with a directory of the same name (another key starts with it followed by '/')",
                row is not None,
            )
        if filt.too_large(meta.size):
            return Skip(meta.key, "too_large", f"{meta.size} bytes exceeds max_file_size_mb", row is not None)
        if excluded_classes and (meta.storage_class or "STANDARD").upper() in excluded_classes:
            excluded = f"storage class {meta.storage_class} is excluded (exclude_storage_classes)"
            return Skip(meta.key, "storage_class", excluded, row is not None)
        if isinstance(filt, Selection) and (why := filt.rejects(meta)) is not None:
            # left as it is locally, never deleted for it (s5cmd#815): the row is consumed here
            return Skip(meta.key, "filtered", why, row is not None)
        batch.append((meta, row))
        return None

    listed = only(listing, lambda m: filt.wants(m.key))
    rows = only(tracked, lambda r: filt.wants(r.key))
    async for meta, row in march(listed, rows, lambda m: m.key, lambda r: r.key):
        if meta is None:
            assert row is not None
            yield Remove(row.key)  # tracked, and gone from the bucket
            continue
        key = meta.key
        is_tracked = row is not None
        if is_directory_marker(key):
            if is_tracked:
                yield Remove(key)
            continue
        try:
            check_key(key, name_max)
        except UnsafeKeyError as exc:
            yield Skip(key, "unsafe_key", str(exc), is_tracked, meta.etag or "")
            continue
        if case is not None and (verdict := case.check(key)) is not None:
            yield Skip(key, "case_conflict", verdict.message, is_tracked)
            continue
        for (m, r), conflict in prefixes.push(key, (meta, row)):
            if (skip := settle(m, r, conflict)) is not None:
                yield skip
        if len(batch) >= BATCH:
            async for out in flush():
                yield out
    for (m, r), conflict in prefixes.finish():
        if (skip := settle(m, r, conflict)) is not None:
            yield skip
    if batch:
        async for out in flush():
            yield out


async def _confirm_all(
    confirm: Callable[[ObjectMeta], Awaitable[bool]], metas: list[ObjectMeta]
) -> list[bool]:
    sem = asyncio.Semaphore(CONFIRMS)

    async def one(m: ObjectMeta) -> bool:
        async with sem:
            return await confirm(m)

    return list(await asyncio.gather(*(one(m) for m in metas)))


__all__ = ["Adopt", "Fetch", "PlanItem", "Remove", "Skip", "Unchanged", "flag_conflicts", "plan"]
