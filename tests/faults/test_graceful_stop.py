"""SIGTERM: stop intake (503), drain in-flight transfers up to the timeout, keep the rest, exit 0."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from support.eventkit import notification
from support.proxy import Proxy
from support.s3kit import body_for, seed, temp_files, tree
from support.wait import poll

MiB = 1024 * 1024


def journal_rows(mirror: Path) -> int:
    with sqlite3.connect(mirror / ".s3sync" / "state.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])


class TestGracefulStop:
    """What a SIGTERM does while transfers run."""

    def test_drains_in_flight_and_refuses_new_events(
        self, s3: Any, bucket: str, mirror: Path, proxy: Proxy, daemon_factory: Any
    ) -> None:
        """In-flight transfer completes, notifications meanwhile get 503 + Retry-After, exit 0."""
        data = seed(s3, bucket, {"big.bin": body_for("big", 12 * MiB)})
        data |= seed(s3, bucket, {f"s{i}.txt": body_for(f"s{i}", 100 + i) for i in range(3)})
        proxy.faults.add("throttle", op="GET", key_re="^big", bytes_per_second=4 * MiB)  # ~3 s
        d = daemon_factory(bucket=bucket, endpoint=proxy.url, local_dir=mirror,
                           sync__concurrency=1, sync__drain_timeout_seconds=60)
        assert d.post("/api/v1/s3-notification", notification(bucket, "big.bin")).status == 202
        poll(lambda: proxy.bytes_out > MiB, what="big transfer in flight")
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        late = notification(bucket, "s0.txt")
        poll(lambda: d.post("/api/v1/s3-notification", late).status == 503, what="503 while draining")
        r = d.post("/api/v1/s3-notification", notification(bucket, "s1.txt"))
        assert r.status == 503 and r.headers.get("retry-after"), (r.status, r.body)
        assert d.proc.wait(60) == 0, d.log()
        got = tree(mirror)
        assert got.get("big.bin") == data["big.bin"], "the in-flight transfer was drained"
        assert all(data[k] == v for k, v in got.items())  # events accepted before the signal may land too
        assert temp_files(mirror) == []

    def test_drain_timeout_keeps_the_rest_in_the_journal(
        self, s3: Any, bucket: str, mirror: Path, proxy: Proxy, daemon_factory: Any
    ) -> None:
        """A transfer that cannot finish in time is cancelled cleanly; its change replays at restart."""
        data = seed(s3, bucket, {"slow.bin": body_for("slow", 12 * MiB)})
        data |= seed(s3, bucket, {f"q{i}.txt": body_for(f"q{i}", 300 + i) for i in range(5)})
        proxy.faults.add("throttle", op="GET", key_re="^slow", bytes_per_second=256 * 1024)  # ~50 s
        d = daemon_factory(bucket=bucket, endpoint=proxy.url, local_dir=mirror,
                           sync__concurrency=1, sync__drain_timeout_seconds=1)
        assert d.post("/api/v1/s3-notification", notification(bucket, *data)).status == 202
        poll(lambda: proxy.bytes_out > 64 * 1024, what="slow transfer in flight")
        started = time.monotonic()
        assert d.terminate(timeout=30) == 0, d.log()
        assert time.monotonic() - started < 15, "drain must stop at drain_timeout_seconds"
        assert "slow.bin" not in tree(mirror)
        assert temp_files(mirror) == []
        assert journal_rows(mirror) >= 1

        proxy.faults.clear()
        d2 = daemon_factory(bucket=bucket, endpoint=proxy.url, local_dir=mirror)
        poll(lambda: tree(mirror) == data, within=30, what="journal replayed after restart")
        poll(lambda: journal_rows(mirror) == 0, what="journal settled")
        assert d2.terminate() == 0
