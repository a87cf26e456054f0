"""``s3sync status`` for a person: a few lines that answer "is it working, and how current?".

The raw counters follow (as before), and ``--json`` still prints only the
daemon's stats object; this module only turns the API's answers into prose
with units: health and its reason, bucket → directory, the watermarks and lag,
last and next reconcile, files and bytes with the recent rate, queue, hooks.
Health (a public endpoint) and the configuration are fetched here; a daemon
that does not answer them leaves those lines out rather than failing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from s3sync.cli.wait import daemon_get
from s3sync.config import Settings


def size(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.1f} {units[i]}" if i else f"{int(n)} B"


def ago(iso: str | None, now: dt.datetime | None = None) -> str:
    """``2026-12-05 21:59:43Z (2 min ago)``; ``never`` for None."""
    if not iso:
        return "never"
    t = dt.datetime.fromisoformat(iso)
    now = now or dt.datetime.now(dt.UTC)
    s = (now - t).total_seconds()
    a = abs(s)
    span = f"{a:.0f} s" if a < 90 else f"{a / 60:.0f} min" if a < 5400 else f"{a / 3600:.1f} h"
    stamp = t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{stamp} ({span} ago)" if s >= 0 else f"{stamp} (in {span})"


def render(stats: dict[str, Any], health: dict[str, Any] | None, config: dict[str, Any] | None) -> str:
    lines: list[str] = []
    if health is not None:
        status = str(health.get("status", "unknown"))
        reason = health.get("reason")
        lines.append(f"s3sync is {status}" + (f": {reason}" if reason and status != "healthy" else ""))
    if config is not None:
        s3, sync = config.get("s3", {}), config.get("sync", {})
        where = f"s3://{s3.get('bucket')}/{s3.get('prefix') or ''}"
        lines.append(f"  mirror      {where} -> {sync.get('local_dir')}")
    f = stats.get("freshness") or {}
    if f:
        through = f.get("events_applied_through")
        events = f"events applied through {ago(through)}" if through else "no events received yet"
        lag = f"lag {f.get('lag_seconds', 0):.1f} s, {f.get('pending', 0)} pending"
        lines.append(f"  freshness   {events}; {lag}")
        lines.append(f"              reconciled through {ago(f.get('reconciled_through'))}")
    took = stats.get("last_reconcile_duration_seconds")
    last = ago(stats.get("last_reconcile")) + (f", took {took:.1f} s" if took is not None else "")
    nxt = stats.get("next_reconcile")
    lines.append(f"  reconcile   last {last}; next {ago(nxt) if nxt else 'not scheduled'}")
    if stats.get("reconcile_running"):
        lines.append("              a pass is running now")
    recent = (stats.get("throughput") or [])[-6:]
    rate = ""
    if recent:
        fps = sum(p["files_per_second"] for p in recent) / len(recent)
        bps = sum(p["bytes_per_second"] for p in recent) / len(recent)
        rate = f" (last minute: {fps:.2f} files/s, {size(bps)}/s)"
    lines.append(
        f"  synced      {stats.get('files_synced', 0)} files, {size(stats.get('bytes_downloaded', 0))}{rate}"
    )
    lines.append(
        f"              {stats.get('files_deleted', 0)} deleted, {stats.get('files_failed', 0)} failed, "
        f"{stats.get('files_skipped', 0)} skipped, {stats.get('files_unchanged', 0)} unchanged"
    )
    lines.append(
        f"  queue       {stats.get('queue_depth', 0)} queued, {stats.get('in_flight', 0)} in flight, "
        f"{stats.get('journal_pending', 0)} journaled"
    )
    hooks = stats.get("hooks") or {}
    if hooks.get("enabled"):
        failing = hooks.get("last_error") and hooks.get("pending")
        err = f"; last error: {hooks['last_error']}" if failing else ""
        lines.append(f"  hooks       {hooks.get('pending', 0)} changes not yet acknowledged{err}")
    if stats.get("last_error"):
        lines.append(f"  last error  {stats['last_error']} ({ago(stats.get('last_error_at'))})")
    return "\n".join(lines)


def summary(settings: Settings, base: str, stats: dict[str, Any]) -> str:
    """The summary for the daemon at ``base`` whose stats are ``stats``."""
    extra: list[dict[str, Any] | None] = []
    for path in ("/api/v1/health", "/api/v1/config"):
        try:
            _, body = daemon_get(settings, base + path, 5)
        except (OSError, ValueError):
            body = None
        extra.append(body if body is not None and "error" not in body else None)
    return render(stats, extra[0], extra[1])


__all__ = ["ago", "render", "size", "summary"]
