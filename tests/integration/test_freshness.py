"""Watermarks end to end: the real app (and a real ``s3sync serve``) against moto.

``events_applied_through`` must be true, not optimistic: while a burst is held
back at a real proxy in front of moto (its GETs held until the test lets them
go, not merely slowed: a slow GET on a busy machine may finish before the test
looks) it stays at the burst's receive time; after a SIGKILL and a journal
replay it starts from the replayed rows' receive times; ``reconciled_through``
ignores a pass the delete guard aborts, and survives a restart over the same
scope. The waits are hang guards only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.daemon import Daemon, MakeDaemon, free_port, notify, run_daemon, serve_toml
from support.eventkit import s3_event, s3_record
from support.proxy import Proxy
from support.s3kit import seed, tree
from support.wait import wait_for

#: The hang guard of every wait here; a test (several waits, restarts) gets the pytest timeout below.
WITHIN = 120
pytestmark = pytest.mark.timeout(600)


def _ts(text: str | None) -> float:
    assert text is not None
    return dt.datetime.fromisoformat(text).timestamp()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _notify(daemon: Daemon, payload: Any) -> dict[str, Any]:
    return await notify(daemon, payload, within=WITHIN)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


class TestEventWatermark:
    async def test_burst_holds_the_watermark_until_applied(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """A burst whose GETs are held keeps the watermark at its receive time; applied, it moves on."""
        objects = {f"burst/{i}.txt": f"body {i}".encode() for i in range(20)}
        seed(s3, bucket, objects)
        async with Proxy(moto_endpoint) as proxy:
            gate = proxy.faults.hold("OBJECT")  # every object GET and HEAD, until the test lets go
            settings = make_settings(bucket, mirror, s3={"endpoint_url": proxy.url})
            async with run_daemon(settings) as d:
                before = await _get(d.http, f"{d.url}/api/v1/freshness")
                assert before == {
                    "events_applied_through": None,
                    "reconciled_through": None,
                    "lag_seconds": 0.0,
                    "pending": 0,
                }
                sent_before = time.time()
                await d.notify(s3_event(*(s3_record(bucket, "ObjectCreated:Put", k) for k in objects)))
                sent_after = time.time()
                seen: list[float] = []

                async def observe() -> dict[str, Any] | None:
                    f = await _get(d.http, f"{d.url}/api/v1/freshness")
                    seen.append(_ts(f["events_applied_through"]))
                    return f if f["pending"] == 0 else None

                during = await _get(d.http, f"{d.url}/api/v1/freshness")
                assert during["pending"] > 0
                through = _ts(during["events_applied_through"])
                # not optimistic: no later than the instant the burst was received
                assert sent_before - 0.01 <= through <= sent_after + 0.01
                stats = await d.stats()
                assert stats["freshness"]["pending"] > 0
                async with d.http.get(f"{d.url}/metrics") as resp:
                    metrics = await resp.text()
                assert _metric(metrics, "s3sync_events_applied_through_timestamp_seconds") <= sent_after
                gate.set()
                after = await wait_for(observe, within=WITHIN, what="burst applied")
                assert tree(mirror) == objects
                assert _ts(after["events_applied_through"]) >= sent_after  # now: nothing pending
                assert after["lag_seconds"] == 0.0
                assert seen == sorted(seen)  # never backwards
                async with d.http.get(f"{d.url}/metrics") as resp:
                    metrics = await resp.text()
                assert _metric(metrics, "s3sync_event_to_file_seconds_count") >= len(objects)
                assert proxy.count("GET", "burst/0.txt") >= 1


class TestReconcileWatermark:
    async def test_guard_aborted_pass_does_not_move_it(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        objects = {f"r/{i}.txt": b"x" * i for i in range(1, 11)}
        seed(s3, bucket, objects)
        settings = make_settings(bucket, mirror, sync={"max_delete": 2})
        async with run_daemon(settings) as d:
            asked = time.time()
            await d.reconcile()
            assert len(tree(mirror)) == 10
            first = await _get(d.http, f"{d.url}/api/v1/freshness")
            t1 = _ts(first["reconciled_through"])
            assert asked - 0.01 <= t1 <= time.time()
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"r/{i}.txt"} for i in range(1, 9)]})
            async with d.http.post(f"{d.url}/api/v1/sync?delete=true") as resp:
                body = await resp.text()
            assert "max_delete" in body or "guard" in body, body
            second = await _get(d.http, f"{d.url}/api/v1/freshness")
            assert second["reconciled_through"] == first["reconciled_through"]
            assert len(tree(mirror)) == 10  # the guard deleted nothing
            async with d.http.get(f"{d.url}/metrics") as resp:
                metrics = await resp.text()
            assert abs(_metric(metrics, "s3sync_reconciled_through_timestamp_seconds") - t1) < 0.001


class TestReconcileWatermarkAcrossRestarts:
    async def test_kept_for_the_same_scope_and_dropped_for_another(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """A restart keeps ``reconciled_through`` (before any pass of its own); a restart whose
        scope changed (here a filter) does not: the earlier pass proves nothing about it."""
        seed(s3, bucket, {"k/1.txt": b"one", "k/2.log": b"two"})
        async with run_daemon(make_settings(bucket, mirror)) as d:
            await d.reconcile()
            first = (await _get(d.http, f"{d.url}/api/v1/freshness"))["reconciled_through"]
        assert first is not None
        async with run_daemon(make_settings(bucket, mirror)) as d:
            again = await _get(d.http, f"{d.url}/api/v1/freshness")
            async with d.http.get(f"{d.url}/metrics") as resp:
                metrics = await resp.text()
        assert again["reconciled_through"] == first
        assert abs(_metric(metrics, "s3sync_reconciled_through_timestamp_seconds") - _ts(first)) < 0.001
        narrower = make_settings(bucket, mirror, sync={"exclude": ["*.log"]})
        async with run_daemon(narrower) as d:
            other = await _get(d.http, f"{d.url}/api/v1/freshness")
            assert other["reconciled_through"] is None
            await d.reconcile(delete=False)
            third = (await _get(d.http, f"{d.url}/api/v1/freshness"))["reconciled_through"]
        assert third is not None and _ts(third) > _ts(first)


class TestReplayWatermark:
    async def test_restart_starts_from_the_replayed_receive_times(
        self,
        s3: Any,
        bucket: str,
        mirror: Path,
        tmp_path: Path,
        moto_endpoint: str,
        config_daemon: MakeDaemon,
    ) -> None:
        """SIGKILL with changes only in the journal: after restart the watermark is their receive time."""
        objects = {"a.txt": b"alpha", "b.txt": b"bravo"}
        seed(s3, bucket, objects)
        port = free_port()
        async with Proxy(moto_endpoint) as proxy, aiohttp.ClientSession() as http:
            gate = proxy.faults.hold("OBJECT")  # nothing is transferred before the kill
            config = tmp_path / "s3sync.toml"
            config.write_text(serve_toml(bucket, proxy.url, mirror, port) + '[log]\nformat = "json"\n')
            daemon = config_daemon(config, port, tmp_path / "serve.log")
            await asyncio.to_thread(daemon.start)
            await _notify(daemon, s3_event(*(s3_record(bucket, "ObjectCreated:Put", k) for k in objects)))
            assert await asyncio.to_thread(daemon.kill) == -signal.SIGKILL
            db = sqlite3.connect(mirror / ".s3sync" / "state.db")
            try:
                received = min(r[0] for r in db.execute("SELECT received_at FROM journal"))
            finally:
                db.close()
            await asyncio.sleep(1.0)  # the restart must not look like "now"
            await asyncio.to_thread(daemon.start)  # the GETs are still held

            async def replayed() -> dict[str, Any] | None:
                got: dict[str, Any] = await _get(http, f"{daemon.url}/api/v1/freshness")
                return got if got["pending"] == 2 else None

            f = await wait_for(replayed, within=WITHIN, what="the journal replayed")
            assert abs(_ts(f["events_applied_through"]) - received) < 0.001
            assert f["lag_seconds"] >= 1.0
            gate.set()

            async def drained() -> dict[str, Any] | None:
                got = await _get(http, f"{daemon.url}/api/v1/freshness")
                return got if got["pending"] == 0 else None

            done = await wait_for(drained, within=WITHIN, what="replayed changes applied")
            assert _ts(done["events_applied_through"]) > received + 1.0
            assert tree(mirror) == objects
            assert await asyncio.to_thread(daemon.terminate) == 0


class TestSqsWatermark:
    async def test_sqs_messages_hold_the_watermark_until_applied(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """An SQS message's change, its GETs held, holds the watermark at its receive time."""
        import uuid

        from support.eventkit import boto

        sqs = boto("sqs", moto_endpoint)
        queue = str(sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}")["QueueUrl"])
        seed(s3, bucket, {"q/1.txt": b"one", "q/2.txt": b"two"})
        async with Proxy(moto_endpoint) as proxy:
            gate = proxy.faults.hold("OBJECT")
            settings = make_settings(
                bucket,
                mirror,
                s3={"endpoint_url": proxy.url},
                sqs={"queue_url": queue, "endpoint_url": moto_endpoint, "wait_time_seconds": 1},
            )
            async with run_daemon(settings) as d:
                sent = time.time()
                body = s3_event(*(s3_record(bucket, "ObjectCreated:Put", k) for k in ("q/1.txt", "q/2.txt")))
                sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))

                async def holding() -> dict[str, Any] | None:
                    f = await _get(d.http, f"{d.url}/api/v1/freshness")
                    return f if f["pending"] == 2 else None

                f = await wait_for(holding, within=WITHIN, what="the SQS message journaled")
                # received after it was sent, and held there while the GETs are slow
                assert sent - 0.01 <= _ts(f["events_applied_through"]) <= time.time()
                assert (await d.stats())["sqs_messages"].get("received", 0) >= 1
                await asyncio.sleep(1.0)
                later = await _get(d.http, f"{d.url}/api/v1/freshness")
                assert later["pending"] == 2  # still held back at the proxy: it has not moved
                assert later["events_applied_through"] == f["events_applied_through"]
                assert later["lag_seconds"] >= 1.0
                gate.set()

                async def applied() -> dict[str, Any] | None:
                    got = await _get(d.http, f"{d.url}/api/v1/freshness")
                    return got if got["pending"] == 0 else None

                done = await wait_for(applied, within=WITHIN, what="SQS changes applied")
                assert _ts(done["events_applied_through"]) >= _ts(f["events_applied_through"])
                assert tree(mirror) == {"q/1.txt": b"one", "q/2.txt": b"two"}
                assert proxy.count("GET", "q/1.txt") >= 1
