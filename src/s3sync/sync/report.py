"""What one applied change and one reconcile pass report.

:class:`OpResult` is what a worker hands back for one change; :class:`SyncReport`
aggregates a pass for the CLI summary, ``--json``, and the earlier service's
``/sync`` response shape (legacy-service.md), which :meth:`SyncReport.legacy` keeps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

MAX_DETAILS = 1000
MAX_MISSING_SHOWN = 5  # --files-from keys not found: how many are named


def human_bytes(n: int) -> str:
    """``82413285`` → ``78.6 MiB`` (binary units, as ``--bwlimit`` and the size flags read them)."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


@dataclass(frozen=True, slots=True)
class OpResult:
    """The outcome of one applied change."""

    key: str
    operation: str  # download | delete | skip | none
    status: str  # success | failed | skipped | unchanged | dry_run
    message: str = ""
    bytes: int = 0
    error: str | None = None


@dataclass
class SyncReport:
    """Aggregate of one reconcile pass (CLI summary and the legacy /sync response)."""

    dry_run: bool = False
    downloaded: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    unchanged: int = 0
    adopted: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    details: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    aborted: str | None = None
    planned: int = 0
    # a dry run's answer to "what would it do": operation, key and (downloads) size, in order
    would: list[dict[str, Any]] = field(default_factory=list)
    # --files-from keys the bucket does not have (None: no --files-from); see note_missing_listed
    missing_listed: dict[str, Any] | None = None

    def note_missing_listed(self, missing: list[str]) -> None:
        """Record the ``--files-from`` keys in scope that the pass did not find in the bucket."""
        spaced = sum(1 for k in missing if k != k.strip())
        named = missing[:MAX_MISSING_SHOWN]
        self.missing_listed = {"count": len(missing), "keys": named, "whitespace": spaced}

    def missing_listed_line(self) -> str | None:
        """The one-line note on ``--files-from`` keys not found, or None when there are none."""
        m = self.missing_listed
        if not m or not m["count"]:
            return None
        shown = ", ".join(repr(k) for k in m["keys"])
        more = f" and {m['count'] - len(m['keys'])} more" if m["count"] > len(m["keys"]) else ""
        line = f"{plural(m['count'], 'key')} listed in --files-from not found in the bucket: {shown}{more}"
        if m["whitespace"]:
            line += (
                f" ({m['whitespace']} with leading/trailing whitespace:"
                " lines are matched exactly, spaces included)"
            )
        return line

    def add(self, r: OpResult) -> None:
        if r.status == "dry_run" and len(self.would) < MAX_DETAILS:
            size = r.bytes if r.operation == "download" else None
            self.would.append({"operation": r.operation, "key": r.key, "size": size})
        if r.status in ("success", "dry_run"):
            if r.operation == "download":
                self.downloaded += 1
                self.bytes += r.bytes
            elif r.operation == "delete":
                self.deleted += 1
        elif r.status == "failed":
            self.failed += 1
            if len(self.errors) < MAX_DETAILS:
                self.errors.append(
                    {"key": r.key, "error": r.error or "failed", "message": r.message, "status": "failed"}
                )
        elif r.status == "skipped":
            self.skipped += 1
            if r.error and len(self.errors) < MAX_DETAILS:
                # a visible skip (unsafe key, archived, ...): listed, but not a failure of the pass
                self.errors.append(
                    {"key": r.key, "error": r.error, "message": r.message, "status": "skipped"}
                )
        elif r.status == "unchanged":
            self.unchanged += 1
        if r.status != "unchanged" and len(self.details) < MAX_DETAILS:
            self.details.append(
                {"operation": r.operation, "file_key": r.key, "status": r.status, "message": r.message}
            )

    def finish(self) -> SyncReport:
        self.seconds = time.monotonic() - self.started
        return self

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.aborted is None

    def summary_line(self) -> str:
        prefix = "dry run: would have " if self.dry_run else ""
        line = (
            f"{prefix}downloaded {self.downloaded}, deleted {self.deleted}, failed {self.failed}, "
            f"skipped {self.skipped}, unchanged {self.unchanged}, {human_bytes(self.bytes)} "
            f"in {self.seconds:.2f} s"
        )
        if self.aborted:
            line += f" ({self.aborted})"
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "downloaded": self.downloaded,
            "deleted": self.deleted,
            "failed": self.failed,
            "skipped": self.skipped,
            "unchanged": self.unchanged,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "aborted": self.aborted,
            "errors": self.errors,
            **({"would": self.would} if self.dry_run else {}),
            **({"files_from_missing": self.missing_listed} if self.missing_listed is not None else {}),
        }

    def legacy(self) -> dict[str, Any]:
        """The earlier FastAPI service's /sync response shape (plus our extras)."""
        processed = self.downloaded + self.deleted + self.failed + self.skipped + self.unchanged
        ok = self.downloaded + self.deleted + self.unchanged
        if self.aborted or (self.failed and not ok):
            status = "failed"
        elif self.failed:
            status = "partial"
        else:
            status = "success"
        # what happened, not "Synced 7 of 7" when all 7 were already in place
        changed = self.downloaded + self.deleted
        msg = (
            f"Synced {changed} of {processed} files ({self.downloaded} downloaded, {self.deleted} deleted, "
            f"{self.unchanged} unchanged, {self.skipped} skipped, {self.failed} failed) "
            f"in {self.seconds:.2f} seconds"
        )
        if processed and not changed and not self.failed:
            msg = (
                f"Up to date: nothing downloaded or deleted; {plural(processed, 'file')} checked "
                f"({self.unchanged} unchanged, {self.skipped} skipped) in {self.seconds:.2f} seconds"
            )
        if self.dry_run:
            msg = "Dry run: " + msg
        if self.aborted:
            msg += f"; {self.aborted}"
        return {
            "status": status,
            "message": msg,
            "processed_files": processed,
            "successful_operations": ok,
            "failed_operations": self.failed,
            "sync_details": self.details,
            **self.as_json(),
        }


__all__ = ["MAX_DETAILS", "MAX_MISSING_SHOWN", "OpResult", "SyncReport", "human_bytes", "plural"]
