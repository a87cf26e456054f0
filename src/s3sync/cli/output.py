"""What ``sync`` and ``verify`` print for a person: per-key lines on stderr, the summary on stdout.

A skipped key (unsafe, archived, ...) is a ``skipped:`` line, not an ``error:`` (the pass
still succeeds); an error that belongs to no key prints without a key; a dry run lists what it
would download (with sizes) and delete. Keys are shown escaped when they hold control
characters, so a hostile key cannot rewrite the terminal.
"""

from __future__ import annotations

import sys
from typing import Any

from s3sync.sync.report import MAX_DETAILS, SyncReport, human_bytes, plural

MAX_LINES = 50


def shown(key: str) -> str:
    return key if key.isprintable() else repr(key)


def print_sync(report: SyncReport) -> None:
    if report.dry_run:
        _print_would(report)
    problems = [e for e in report.errors if not (not e["key"] and e["message"] == report.aborted)]
    for err in problems[:MAX_LINES]:
        if err.get("status") == "skipped":
            print(f"skipped: {shown(err['key'])}: {err['message']} ({err['error']})", file=sys.stderr)
        elif err["key"]:
            print(f"error: {shown(err['key'])}: {err['message']}", file=sys.stderr)
        else:
            print(f"error: {err['message']}", file=sys.stderr)
    if len(problems) > MAX_LINES:
        print(f"... and {len(problems) - MAX_LINES} more", file=sys.stderr)
    missing = report.missing_listed_line()
    if missing:
        print(missing)
    print(report.summary_line())


def _print_would(report: SyncReport) -> None:
    for w in report.would:
        size = human_bytes(w["size"]) if w["size"] is not None else ""
        print(f"would {w['operation']:<8} {size:>11}  {shown(w['key'])}")
    listed = len(report.would)
    total = report.downloaded + report.deleted
    if listed == MAX_DETAILS and total > listed:
        print(f"... and {total - listed} more (--json lists the same first {MAX_DETAILS})")


def print_verify(report: Any) -> None:
    for d in report.drift:
        print(f"{d.kind} {shown(d.key)}")
    word = "identical" if report.identical else plural(len(report.drift), "difference")
    print(f"verified {plural(report.checked, 'object')}: {word}")


__all__ = ["print_sync", "print_verify", "shown"]
