"""The SQS consumer against moto's SQS: shapes, delete-after-journal, poison, slow batches, outages.

The daemon is the real app (``[sqs] queue_url`` set) on a loopback port; the
queues live in the same session moto server as the bucket, except in the
outage test, which brings up its own moto server on a port that was closed.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemon import free_port, run_daemon
from support.eventkit import boto, s3_event, s3_record, sns_envelope
from support.proxy import Proxy
from support.s3kit import tree
from support.wait import wait_for


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return boto("sqs", moto_endpoint)


@pytest.fixture
def queue(sqs: Any) -> str:
    """A fresh queue URL for this test."""
    return str(sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}")["QueueUrl"])


def _sqs_settings(queue_url: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    return {"queue_url": queue_url, "endpoint_url": endpoint, "wait_time_seconds": 1, **extra}


def _in_queue(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _sqs_stats(d: Any) -> dict[str, int]:
    return dict(d.app[_stats_key()].sqs_messages)


def _stats_key() -> Any:
    from s3sync.api import keys as K

    return K.STATS


class TestConsume:
    """Messages of every shape become files; each is deleted only once journaled."""

    async def test_raw_and_sns_bodies(
        self, s3: Any, sqs: Any, queue: str, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """Raw S3 events (raw delivery) and SNS envelopes (S3 → SNS → SQS) are both applied, then deleted."""
        s3.put_object(Bucket=bucket, Key="raw one.txt", Body=b"raw")
        s3.put_object(Bucket=bucket, Key="via+sns/ü.txt", Body=b"sns")
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
            s3_event(s3_record(bucket, "ObjectCreated:Put", "raw one.txt"))))
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
            sns_envelope(s3_event(s3_record(bucket, "ObjectCreated:Put", "via+sns/ü.txt")))))
        settings = make_settings(bucket, mirror, sqs=_sqs_settings(queue, moto_endpoint))
        async with run_daemon(settings) as d:
            await wait_for(lambda: len(tree(mirror)) == 2, what="both files")
            await wait_for(lambda: _in_queue(sqs, queue) == 0, what="messages deleted")
            stats = await d.stats()
            assert stats["sqs_messages"]["received"] == 2
            assert stats["sqs_messages"]["deleted"] == 2
            assert stats["synced_by_source"] == {"sqs": 2}
        assert tree(mirror) == {"raw one.txt": b"raw", "via+sns/ü.txt": b"sns"}

    async def test_real_s3_to_sqs_notifications(
        self, s3: Any, sqs: Any, queue: str, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """moto's own S3 → SQS notifications (TestEvent, puts, deletes) drive the mirror."""
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                ]
            },
        )
        settings = make_settings(bucket, mirror, sqs=_sqs_settings(queue, moto_endpoint))
        async with run_daemon(settings) as d:
            s3.put_object(Bucket=bucket, Key="a b+c.txt", Body=b"1")
            s3.put_object(Bucket=bucket, Key="keep.txt", Body=b"2")
            await wait_for(lambda: len(tree(mirror)) == 2, what="files from real notifications")
            s3.delete_object(Bucket=bucket, Key="a b+c.txt")
            await wait_for(lambda: tree(mirror) == {"keep.txt": b"2"}, what="delete applied")
            stats = await d.stats()
            assert stats["test_events"] >= 1


class TestPoisonMessages:
    """Unparseable messages are counted and left to the queue's redrive policy."""

    async def test_poison_goes_to_dead_letter_queue(
        self, s3: Any, sqs: Any, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """A non-event body is never deleted by us; after maxReceiveCount SQS moves it to the DLQ."""
        name = uuid.uuid4().hex[:10]
        dlq = sqs.create_queue(QueueName=f"dlq-{name}")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
        dlq_arn = attrs["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
        queue = sqs.create_queue(QueueName=f"q-{name}", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
        s3.put_object(Bucket=bucket, Key="good.txt", Body=b"ok")
        sqs.send_message(QueueUrl=queue, MessageBody="this is not an event {")
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
            s3_event(s3_record(bucket, "ObjectCreated:Put", "good.txt"))))
        sqs_cfg = _sqs_settings(queue, moto_endpoint, visibility_timeout_seconds=1)
        settings = make_settings(bucket, mirror, sqs=sqs_cfg)
        async with run_daemon(settings) as d:
            await wait_for(lambda: (mirror / "good.txt").is_file(), what="the good message applied")
            await wait_for(lambda: _in_queue(sqs, dlq) == 1, within=20, what="poison message in the DLQ")
            counts = _sqs_stats(d)
        assert counts["poison"] >= 1
        assert counts["deleted"] == 1
        body = sqs.receive_message(QueueUrl=dlq)["Messages"][0]["Body"]
        assert body == "this is not an event {"


class TestSlowBatches:
    """A batch that takes longer than the visibility timeout stays invisible to other consumers."""

    async def test_visibility_extended_while_journal_is_locked(
        self, s3: Any, sqs: Any, queue: str, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """With the state DB locked, intake stalls; the heartbeat extends visibility; no redelivery."""
        s3.put_object(Bucket=bucket, Key="slow.txt", Body=b"s")
        sqs_cfg = _sqs_settings(queue, moto_endpoint, visibility_timeout_seconds=1)
        settings = make_settings(bucket, mirror, sqs=sqs_cfg)
        async with run_daemon(settings) as d:
            stats = d.app[_stats_key()]
            db = sqlite3.connect(settings.sync.resolved_state_path, timeout=5, check_same_thread=False)
            db.execute("BEGIN EXCLUSIVE")  # a real lock: the journal append must wait for it
            try:
                sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
                    s3_event(s3_record(bucket, "ObjectCreated:Put", "slow.txt"))))
                await wait_for(lambda: stats.sqs_messages["extended"] >= 2, what="visibility extended")
                assert stats.sqs_messages["received"] == 1  # never redelivered meanwhile
                assert _in_queue(sqs, queue) == 1  # not deleted before it is journaled
            finally:
                db.execute("ROLLBACK")
                db.close()
            await wait_for(lambda: (mirror / "slow.txt").is_file(), what="file after the lock is released")
            await wait_for(lambda: _in_queue(sqs, queue) == 0, what="message deleted")
            assert stats.sqs_messages["received"] == 1


class TestBackpressure:
    """While the journal is over its high-water mark, nothing more is received."""

    async def test_receive_pauses_at_high_water(
        self, s3: Any, sqs: Any, queue: str, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """journal_high_water=1 and a slow S3: the second message waits in SQS until the first is applied."""
        for k in ("one.txt", "two.txt"):
            s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
        async with Proxy(moto_endpoint) as proxy:
            proxy.faults.add("latency", op="OBJECT", seconds=1.5)
            settings = make_settings(
                bucket, mirror, s3={"endpoint_url": proxy.url}, sync={"journal_high_water": 1},
                sqs=_sqs_settings(queue, moto_endpoint),
            )
            async with run_daemon(settings) as d:
                sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
                    s3_event(s3_record(bucket, "ObjectCreated:Put", "one.txt"))))
                await wait_for(lambda: proxy.active["one.txt"] == 1, what="first download in flight")
                sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
                    s3_event(s3_record(bucket, "ObjectCreated:Put", "two.txt"))))
                await wait_for(lambda: _sqs_stats(d).get("paused", 0) >= 1, what="receive paused")
                assert not (mirror / "one.txt").exists()
                assert _sqs_stats(d)["received"] == 1
                await wait_for(lambda: len(tree(mirror)) == 2, within=20, what="both files in the end")


@pytest.fixture
def outage_port() -> Iterator[int]:
    """A loopback port with nothing listening (yet)."""
    yield free_port()


class TestReconnect:
    """When SQS is unreachable the consumer backs off and reconnects by itself."""

    async def test_sqs_comes_up_later(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, outage_port: int
    ) -> None:
        """Connection refused at first; once a server listens on the port, messages flow."""
        from moto.server import ThreadedMotoServer

        endpoint = f"http://127.0.0.1:{outage_port}"
        queue_url = f"{endpoint}/123456789012/late-queue"
        s3.put_object(Bucket=bucket, Key="late.txt", Body=b"late")
        settings = make_settings(bucket, mirror, sqs=_sqs_settings(queue_url, endpoint))
        async with run_daemon(settings) as d:
            await wait_for(lambda: _sqs_stats(d).get("receive_errors", 0) >= 2, what="failed attempts")
            assert d.services.sqs.connected is False
            async with d.http.get(f"{d.url}/api/v1/health") as health:
                assert health.status == 200  # SQS being down does not make the mirror unhealthy
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=outage_port, verbose=False)
            server.start()
            try:
                sqs = boto("sqs", endpoint)
                url = sqs.create_queue(QueueName="late-queue")["QueueUrl"]
                assert url.endswith("/late-queue")
                sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(
                    s3_event(s3_record(bucket, "ObjectCreated:Put", "late.txt"))))
                await wait_for(lambda: (mirror / "late.txt").is_file(), within=30, what="reconnected")
                assert d.services.sqs.connected is True
            finally:
                server.stop()
