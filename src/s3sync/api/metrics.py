"""Prometheus exposition of :class:`~s3sync.stats.SyncStats`, read at scrape time.

Its own module so that ``prometheus_client`` (~25 ms of start-up) is imported
only by what serves ``/metrics`` (the daemon's API), never by a one-shot
``sync``, whose run time is mostly start-up (W2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from s3sync import __version__
from s3sync.stats import SyncStats


class StatsCollector(Collector):
    """Exposes a :class:`SyncStats` in Prometheus format at scrape time."""

    def __init__(self, stats: SyncStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        health = s.health

        def counter(name: str, doc: str, label: str | None, data: Any) -> Metric:
            fam = CounterMetricFamily(name, doc, labels=[label] if label else None)
            if label:
                for k, v in sorted(data.items()):
                    fam.add_metric([k], v)
            else:
                fam.add_metric([], data)
            return fam

        yield counter("s3sync_files_synced", "Files downloaded into the mirror.", "source", s.synced)
        yield counter("s3sync_files_deleted", "Files deleted from the mirror.", "source", s.deleted)
        yield counter("s3sync_files_failed", "Failed operations by reason.", "reason", s.failed)
        yield counter("s3sync_files_skipped", "Skipped keys by reason.", "reason", s.skipped)
        yield counter("s3sync_files_unchanged", "Keys checked and already in place.", None, s.unchanged)
        yield counter("s3sync_bytes_downloaded", "Bytes written into the mirror.", None, s.bytes_downloaded)
        ev = CounterMetricFamily(
            "s3sync_events_received",
            "Event notifications by source and outcome.",
            labels=["source", "outcome"],
        )
        for (src, outcome), v in sorted(s.events.items()):
            ev.add_metric([src, outcome], v)
        yield ev
        yield counter("s3sync_events_coalesced", "Changes merged into a pending change.", None, s.coalesced)
        yield counter("s3sync_retries", "Transfer attempts retried.", None, s.retries)
        yield counter("s3sync_reconcile_runs", "Reconcile passes by outcome.", "outcome", s.reconcile_runs)
        yield counter("s3sync_auth_failures", "Rejected API authentications.", None, s.auth_failures)
        yield counter("s3sync_sqs_messages", "SQS messages by outcome.", "outcome", s.sqs_messages)
        yield counter(
            "s3sync_changes_other_shard",
            "Changes ignored: another shard (--shard K/N) owns the key.",
            None,
            s.other_shard,
        )

        def gauge(name: str, doc: str, value: float | None) -> Metric:
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(value) if value is not None else float("nan"))
            return g

        fresh = s.freshness
        yield gauge(
            "s3sync_events_applied_through_timestamp_seconds",
            "Every event received before this unix time has been applied (NaN until one arrived).",
            fresh.applied_through(),
        )
        yield gauge(
            "s3sync_reconciled_through_timestamp_seconds",
            "Start of the last complete, error-free reconcile pass (NaN until one finished).",
            fresh.reconciled_through,
        )
        yield counter("s3sync_hook_calls", "Change hook calls by outcome.", "outcome", s.hook_calls)
        yield gauge(
            "s3sync_hook_pending", "Applied changes the hooks have not acknowledged yet.", health.hook_pending
        )
        yield gauge("s3sync_queue_depth", "Changes waiting for a worker.", s.queue_depth)
        yield gauge("s3sync_transfers_in_flight", "Operations running now.", s.in_flight)
        yield gauge("s3sync_journal_pending", "Accepted changes not yet applied.", s.journal_pending)
        yield gauge(
            "s3sync_last_reconcile_success_timestamp_seconds",
            "Unix time of the last reconcile that finished without errors.",
            health.last_reconcile_success_at or 0,
        )
        yield gauge(
            "s3sync_inventory_report_created_timestamp_seconds",
            "creationTimestamp of the S3 Inventory report the last inventory-driven pass read (0 = none).",
            health.inventory_report.created if health.inventory_report is not None else 0,
        )
        yield gauge(
            "s3sync_last_reconcile_duration_seconds",
            "Duration of the last reconcile.",
            health.last_reconcile_duration,
        )
        yield gauge(
            "s3sync_s3_reachable", "1 when the last S3 check succeeded.", 1 if health.s3_reachable else 0
        )
        yield gauge(
            "s3sync_directory_writable",
            "1 when the mirror directory is writable.",
            1 if health.directory_writable else 0,
        )
        yield gauge(
            "s3sync_bwlimit_bytes_per_second",
            "The download rate limit (sync.bwlimit) for the whole process; 0 = no limit.",
            s.bwlimit,
        )
        info = GaugeMetricFamily("s3sync_info", "Build information.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        for name, doc, h in (
            ("s3sync_transfer_duration_seconds", "Time to download one object.", s.transfer_seconds),
            (
                "s3sync_event_to_file_seconds",
                "Event accepted to file durable in the mirror.",
                s.event_to_file_seconds,
            ),
        ):
            fam = HistogramMetricFamily(name, doc)
            fam.add_metric([], h.cumulative(), sum_value=h.total)
            yield fam


def make_registry(stats: SyncStats) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats))
    return registry
