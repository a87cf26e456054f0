"""The delete guards of a reconcile pass: decided once, before anything is removed.

A mirror tool's worst failure is a wrong delete, and the classic one is a
listing that is empty or nearly so because the configuration is wrong (a wrong
prefix, a copy-pasted bucket name; rclone#4298). Two guards run on the whole
pass before any delete is applied, and each refuses *all* deletes with one line
the operator can act on:

* **empty source**: the listing held no key in scope while the mirror holds
  files. Nothing is deleted unless ``--allow-empty-source`` says the bucket
  really is empty.
* **max_delete**: a count, or a percentage of the tracked files (default
  ``"50%"``); a pass that would delete more deletes nothing.

What the guards do not decide is whether each single delete is still right when
it is applied: that is re-checked per key by the worker that holds the key
(S3 is asked again, see ``Applier._remove``), so a key re-created since the
listing is kept. :func:`withhold` holds back only the deletes whose key the
pass could not settle; the other helpers here are the local side of a pass
(the untracked-file sweep, the case policy, ``--checksum``), kept out of the
``Reconciler`` class so it stays one flow.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass

import structlog

from s3sync.errors import UnsafeKeyError
from s3sync.local.keys import KeyFilter
from s3sync.local.mirror import Mirror
from s3sync.model import ObjectMeta
from s3sync.state.store import StateStore
from s3sync.stats import SyncStats
from s3sync.sync.reconcile.conflicts import CaseConflicts
from s3sync.sync.report import OpResult, SyncReport

log = structlog.get_logger(__name__)

DEFAULT_MAX_DELETE = "50%"
MAX_DETAILS = 1000


def delete_limit(max_delete: int | str, tracked: int) -> int | None:
    """How many deletions one pass may make, or None for no limit (``-1``)."""
    if isinstance(max_delete, int):
        return None if max_delete < 0 else max_delete
    text = max_delete.strip()
    if text.endswith("%"):
        return int(tracked * float(text[:-1]) / 100.0)
    n = int(text)
    return None if n < 0 else n


@dataclass(frozen=True, slots=True)
class DeletePlan:
    """What a pass found to delete, and what it knew when it decided."""

    victims: int  # deletes the pass would make
    tracked: int  # files the mirror holds in scope (tracked rows + untracked local files)
    listed: int  # keys the listing returned in scope
    scope: str = ""


def refusal(
    plan: DeletePlan, *, max_delete: int | str = DEFAULT_MAX_DELETE, allow_empty_source: bool = False
) -> tuple[str, str] | None:
    """None when the deletes may go ahead, else ``(code, one-line message)``."""
    if plan.victims <= 0:
        return None
    where = f"under prefix {plan.scope!r}" if plan.scope else "of the bucket"
    if plan.listed == 0 and not allow_empty_source:
        return (
            "empty_source",
            f"the listing {where} came back empty while the mirror holds {plan.tracked} files; "
            f"nothing deleted (if the bucket really is empty: --allow-empty-source, "
            f"or sync.allow_empty_source = true)",
        )
    limit = delete_limit(max_delete, plan.tracked)
    if limit is not None and plan.victims > limit:
        shown = max_delete if isinstance(max_delete, str) else str(max_delete)
        return (
            "max_delete",
            f"max_delete guard: would delete {plan.victims} of {plan.tracked} files, "
            f"limit is {limit} (max_delete = {shown}); nothing deleted (if these deletes are "
            f"intended: --max-delete {plan.victims} for one run, or raise sync.max_delete; "
            f"-1 = no limit)",
        )
    return None


def guard(
    report: SyncReport,
    stats: SyncStats,
    plan: DeletePlan,
    *,
    max_delete: int | str = DEFAULT_MAX_DELETE,
    allow_empty_source: bool = False,
) -> bool:
    """Decide the pass's deletes as a whole: True when they may go ahead.

    A refusal fails the pass and stays on ``stats.health.delete_guard`` (health says ``degraded``
    with it) until a later pass gets past the guard.
    """
    refused = refusal(plan, max_delete=max_delete, allow_empty_source=allow_empty_source)
    if refused is None:
        stats.health.delete_guard = None
        return True
    refuse(report, stats, refused, plan.victims)
    stats.health.delete_guard = refused[1]
    return False


def withhold(
    removes: list[str], extras: list[str], uncertain: set[str], case: CaseConflicts | None
) -> tuple[list[str], list[str], list[str]]:
    """Split off the deletes whose key this pass could not settle: (removes, extras, withheld).

    A local file of a listed key that failed or was skipped is not "extra"; on a
    folding filesystem another spelling of a kept key is that key's file.
    """
    withheld = [k for k in extras if k in uncertain]
    extras = [k for k in extras if k not in uncertain]
    if case is not None:
        folded = {k for k in removes + extras if case.owner(k) is not None}
        withheld += sorted(folded)
        removes = [k for k in removes if k not in folded]
        extras = [k for k in extras if k not in folded]
    return removes, extras, withheld


def note_withheld(report: SyncReport, withheld: list[str]) -> None:
    """The operator sees which deletes were held back, and why."""
    for key in withheld[:MAX_DETAILS]:
        why = f"delete withheld: {key!r} was not settled by this pass (failed, skipped or another spelling)"
        report.details.append({"operation": "delete", "file_key": key, "status": "withheld", "message": why})
    if withheld:
        log.warning(
            "deletes withheld for keys whose state is uncertain", count=len(withheld), keys=withheld[:10]
        )


def note_result(report: SyncReport, r: OpResult) -> None:
    """Count a delete's outcome; one found back in S3 when applied is listed as kept, with why."""
    report.add(r)
    if r.operation == "delete" and r.status == "unchanged" and len(report.details) < MAX_DETAILS:
        report.details.append(
            {"operation": "delete", "file_key": r.key, "status": "kept", "message": r.message}
        )


def refuse(report: SyncReport, stats: SyncStats, refused: tuple[str, str], victims: int) -> None:
    """Record a tripped guard: the pass fails (exit 1) with the one-line reason."""
    code, report.aborted = refused
    report.failed += 1
    report.errors.append({"key": "", "error": code, "message": report.aborted})
    stats.error(code, report.aborted)
    # a warning: the pass's report, health ("degraded") and the sync summary carry it too
    log.warning("delete guard tripped", guard=code, would_delete=victims, message=report.aborted)


async def untracked_local_files(mirror: Mirror, state: StateStore, scope: str, filt: KeyFilter) -> list[str]:
    """Local files in scope that are not tracked (candidates for the extra-file sweep)."""

    def walk() -> list[str]:
        return [k for k, _ in mirror.walk_sorted(scope) if filt.wants(k)]

    local = await asyncio.to_thread(walk)
    if not local:
        return []
    known = await state.contains_many(local)
    return [k for k in local if k not in known]


def case_policy(mirror: Mirror) -> CaseConflicts | None:
    """Built only when the start-up probe says the filesystem folds case or Unicode forms."""
    probe = mirror.case
    return CaseConflicts(case_sensitive=probe.case_sensitive) if probe.folds else None


def content_matches(mirror: Mirror, meta: ObjectMeta) -> bool | None:
    """--checksum: compare local bytes with a single-part MD5 ETag (blocking; worker thread).

    None when they differ: the ETag may not be an MD5 (KMS, SSE-C), which only S3
    can say (:func:`s3sync.sync.content.confirm_content`).
    """
    etag = meta.etag or ""
    if len(etag) != 32:
        return True  # multipart/unknown ETag: size+mtime is all we can compare cheaply
    h = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(mirror.open_read(meta.key), "rb") as fh:  # never through a link
            for chunk in iter(lambda: fh.read(1024 * 1024), b""):
                h.update(chunk)
    except (OSError, UnsafeKeyError):
        return False
    return True if h.hexdigest() == etag else None


__all__ = [
    "DEFAULT_MAX_DELETE",
    "DeletePlan",
    "case_policy",
    "content_matches",
    "delete_limit",
    "guard",
    "note_result",
    "note_withheld",
    "refusal",
    "refuse",
    "untracked_local_files",
    "withhold",
]
