"""SyncStats: the single source of truth for counters; Prometheus reads it at scrape time.

Nothing increments a prometheus-client metric directly: components update
:class:`SyncStats`, and :class:`StatsCollector` turns a snapshot into metric
families on each scrape (rclone's accounting/stats.go does the same). So
``/api/v1/stats`` and ``/metrics`` can never disagree.

Two kinds of thing live here, held side by side: :class:`SyncStats` counts (what
only grows, and the load gauges the pool samples), :class:`Health` says what the
process is in and why (the last error, S3 and the directory, the delete guard,
failing writes, where the reconcile timeline stands, the hooks' backlog): values
that are set and cleared, which health, the status page and ``s3sync status`` read.
"""

from __future__ import annotations

import bisect
import datetime as dt
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from s3sync.watermarks import Watermarks

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


# Skips that leave a key out of the mirror (docs/troubleshooting.md: each is counted and reported):
# each one sets last_error and counts in s3sync_files_skipped_total{reason=...}.
VISIBLE_SKIPS = ("unsafe_key", "key_conflict", "case_conflict", "symlink", "archived")

RECENT = 20  # latest changes / latest problems kept for the status page
THROUGHPUT_STEP = 10  # seconds per step of the rate history
THROUGHPUT_STEPS = 30  # 5 minutes of history


@dataclass
class Histogram:
    """Cumulative-bucket histogram plus a window of recent samples for p50/p99."""

    buckets: tuple[float, ...] = _BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1
        self.recent.append(value)

    def quantile(self, q: float) -> float | None:
        if not self.recent:
            return None
        data = sorted(self.recent)
        idx = min(len(data) - 1, max(0, round(q * (len(data) - 1))))
        return data[idx]

    def cumulative(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for bound, c in zip(self.buckets, self.counts, strict=False):
            acc += c
            out.append((repr(bound), float(acc)))
        out.append(("+Inf", float(self.n)))
        return out


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


@dataclass
class Health:
    """What the process is in and why: set and cleared, never counted (see the module docstring)."""

    last_error: str | None = None
    last_error_at: float | None = None
    # the latest skips and failures, for the status page
    recent_problems: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))
    s3_reachable: bool | None = None
    s3_error: str | None = None
    directory_writable: bool | None = None
    # the delete guard's refusal while reconciles keep tripping it (health: degraded); cleared by
    # the next pass whose deletes the guard lets through
    delete_guard: str | None = None
    # keys whose last write into the mirror failed (disk full, permissions) -> message; a key
    # leaves when it is next written or deleted. Health reports "degraded" while any remain.
    local_io_failed: dict[str, str] = field(default_factory=dict)
    reconcile_running: bool = False
    last_reconcile_at: float | None = None
    last_reconcile_success_at: float | None = None
    last_reconcile_duration: float | None = None
    next_reconcile_at: float | None = None
    last_reconcile_source: str | None = None  # "listing" | "inventory"
    inventory_report: Any = None  # sync.reconcile.inventory_pass.ReportInfo of the last inventory-driven pass
    hooks_enabled: bool = False
    hook_pending: int = 0  # changes in the outbox not yet acknowledged by the hooks
    hook_last_error: str | None = None
    hook_last_success_at: float | None = None

    def problem(self, kind: str, reason: str, message: str) -> None:
        """A skip that leaves a hole, or a failure: the last error, and one of the latest problems."""
        self.last_error = message
        self.last_error_at = time.time()
        self.recent_problems.append(
            {"at": _iso(self.last_error_at), "kind": kind, "reason": reason, "message": message}
        )

    def note_local_io(self, key: str, message: str) -> None:
        self.local_io_failed.pop(key, None)
        self.local_io_failed[key] = message
        while len(self.local_io_failed) > 1000:  # bounded: the oldest entries go first
            del self.local_io_failed[next(iter(self.local_io_failed))]

    @property
    def local_io_error(self) -> str | None:
        """The most recent local write failure still unresolved, if any."""
        if not self.local_io_failed:
            return None
        key = next(reversed(self.local_io_failed))
        return f"{key}: {self.local_io_failed[key]}"


@dataclass
class SyncStats:
    """Counters and gauges of one daemon (or one CLI run); its state is :attr:`health`."""

    started_at: float = field(default_factory=time.time)
    synced: Counter[str] = field(default_factory=Counter)  # by source
    deleted: Counter[str] = field(default_factory=Counter)  # by source
    failed: Counter[str] = field(default_factory=Counter)  # by reason
    skipped: Counter[str] = field(default_factory=Counter)  # by reason; "unchanged" is not a skip
    unchanged: int = 0  # keys checked and found already in place (s3sync_files_unchanged_total)
    events: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, outcome)
    bytes_downloaded: int = 0
    retries: int = 0
    auth_failures: int = 0
    reconcile_runs: Counter[str] = field(default_factory=Counter)
    test_events: int = 0
    sqs_messages: Counter[str] = field(default_factory=Counter)
    queue_depth: int = 0
    in_flight: int = 0
    coalesced: int = 0
    journal_pending: int = 0
    other_shard: int = 0  # changes for keys another shard (--shard K/N) owns: ignored, counted
    bwlimit: int = 0  # --bwlimit / sync.bwlimit in bytes per second; 0 = no limit
    transfer_seconds: Histogram = field(default_factory=Histogram)
    event_to_file_seconds: Histogram = field(default_factory=Histogram)
    freshness: Watermarks = field(default_factory=Watermarks)
    # what the status page shows: the latest applied changes, and files/bytes per
    # THROUGHPUT_STEP-second step over the last minutes (the latest problems: health)
    recent_changes: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT))
    throughput: deque[list[float]] = field(default_factory=lambda: deque(maxlen=THROUGHPUT_STEPS))
    hook_calls: Counter[str] = field(default_factory=Counter)  # by outcome
    health: Health = field(default_factory=Health)

    def __post_init__(self) -> None:
        # Known label values start at 0 so every series exists from the first scrape.
        for src in ("notification", "sqs", "reconcile", "journal", "manual"):
            self.synced[src] += 0
            self.deleted[src] += 0
        for reason in ("failed", "retries_exceeded", "integrity", "local_io", "fatal", "not_found"):
            self.failed[reason] += 0
        for reason in ("filtered", "dry_run", "too_large", *VISIBLE_SKIPS):
            self.skipped[reason] += 0
        for outcome in ("success", "failed", "aborted"):
            self.reconcile_runs[outcome] += 0
        for outcome in ("success", "failed", "timeout"):
            self.hook_calls[outcome] += 0

    def skip(self, reason: str, key: str, message: str) -> None:
        """Count a skipped key; the reasons that leave a hole in the mirror are also a health problem."""
        self.skipped[reason] += 1
        if reason in VISIBLE_SKIPS:
            self.health.problem("skipped", reason, f"{key!r} skipped ({reason}): {message}")

    def error(self, reason: str, message: str) -> None:
        self.failed[reason] += 1
        self.health.problem("failed", reason, message)

    def applied(self, key: str, op: str, source: str, size: int | None, nbytes: int) -> None:
        """One change took effect in the mirror (the status page's latest changes and rate)."""
        now = time.time()
        self.recent_changes.append({"at": _iso(now), "key": key, "op": op, "source": source, "size": size})
        step = now - now % THROUGHPUT_STEP
        if not self.throughput or self.throughput[-1][0] != step:
            self.throughput.append([step, 0.0, 0.0])
        self.throughput[-1][1] += 1
        self.throughput[-1][2] += nbytes

    def rates(self) -> list[dict[str, float]]:
        """Files and bytes per second for each step of the last minutes, oldest first, gaps as 0."""
        now = time.time()
        last = now - now % THROUGHPUT_STEP
        steps = {int(t): (f, b) for t, f, b in self.throughput}
        out = []
        for i in range(THROUGHPUT_STEPS - 1, -1, -1):
            t = int(last - i * THROUGHPUT_STEP)
            f, b = steps.get(t, (0.0, 0.0))
            out.append(
                {"at": t, "files_per_second": f / THROUGHPUT_STEP, "bytes_per_second": b / THROUGHPUT_STEP}
            )
        return out

    def snapshot(self) -> dict[str, Any]:
        """The JSON shape of ``GET /api/v1/stats`` (counters and health, in one document)."""
        lat = self.event_to_file_seconds
        tr = self.transfer_seconds
        h = self.health
        return {
            "files_synced": sum(self.synced.values()),
            "files_deleted": sum(self.deleted.values()),
            "files_failed": sum(self.failed.values()),
            "files_skipped": sum(self.skipped.values()),
            "files_unchanged": self.unchanged,
            "unsafe_keys": self.skipped.get("unsafe_key", 0) + self.skipped.get("key_conflict", 0),
            "bytes_downloaded": self.bytes_downloaded,
            "queue_depth": self.queue_depth,
            "in_flight": self.in_flight,
            "coalesced": self.coalesced,
            "journal_pending": self.journal_pending,
            "retries": self.retries,
            "events_received": sum(v for (_, o), v in self.events.items() if o == "accepted"),
            "events_ignored": sum(v for (_, o), v in self.events.items() if o == "ignored"),
            "events_rejected": sum(v for (_, o), v in self.events.items() if o == "rejected"),
            "test_events": self.test_events,
            "sqs_messages": dict(self.sqs_messages),
            "auth_failures": self.auth_failures,
            "failed_by_reason": {k: v for k, v in self.failed.items() if v},
            "skipped_by_reason": {k: v for k, v in self.skipped.items() if v},
            "synced_by_source": {k: v for k, v in self.synced.items() if v},
            "last_reconcile": _iso(h.last_reconcile_at),
            "last_successful_reconcile": _iso(h.last_reconcile_success_at),
            "last_reconcile_duration_seconds": h.last_reconcile_duration,
            "next_reconcile": _iso(h.next_reconcile_at),
            "last_reconcile_source": h.last_reconcile_source,
            "inventory_report": None
            if h.inventory_report is None
            else {
                "location": h.inventory_report.location,
                "manifest": h.inventory_report.manifest_key,
                "date": h.inventory_report.report,
                "created": _iso(h.inventory_report.created),
            },
            "changes_other_shard": self.other_shard,
            "reconcile_running": h.reconcile_running,
            "last_error": h.last_error,
            "last_error_at": _iso(h.last_error_at),
            "s3_reachable": h.s3_reachable,
            "local_io_error": h.local_io_error,
            "local_io_failures": len(h.local_io_failed),
            "event_latency_seconds": {
                "count": lat.n,
                "p50": lat.quantile(0.5),
                "p99": lat.quantile(0.99),
            },
            "transfer_seconds": {"count": tr.n, "p50": tr.quantile(0.5), "p99": tr.quantile(0.99)},
            "freshness": self.freshness.snapshot(),
            "hooks": {
                "enabled": h.hooks_enabled,
                "pending": h.hook_pending,
                "calls": dict(self.hook_calls),
                "last_error": h.hook_last_error,
                "last_success": _iso(h.hook_last_success_at),
            },
            "recent_changes": list(self.recent_changes),
            "recent_problems": list(h.recent_problems),
            "throughput": self.rates(),
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }
