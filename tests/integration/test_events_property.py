"""Property: whatever happens to the events, one reconcile makes the mirror equal the bucket.

Hypothesis draws a sequence of puts, overwrites and deletes on a small key set
(a space, a ``+``, unicode), applies it to moto, and derives the S3 events S3
would have sent (with ETags and increasing sequencers, hex case varied). Each
event is then dropped, duplicated or kept, the lot shuffled, and delivered
through the HTTP endpoint (raw or SNS-wrapped) and through SQS (messages sent
with boto3). Once the daemon is idle:

* if no event was dropped, the mirror must already equal the bucket;
* after one ``POST /api/v1/sync?delete=true`` it must, byte for byte, always.

One daemon serves every example of the test (hypothesis and per-test async
fixtures do not mix): it runs on its own event loop in a thread, and the
examples talk to it over HTTP like any client. State carries over from one
example to the next, which only makes the starting points more varied.
``S3SYNC_PROPERTY_EXAMPLES`` sets the number of examples (default 15).

The delete guards are off here (``allow_empty_source``, ``max_delete = -1``):
a lost delete event leaves a file that only the reconcile removes, and when
the examples have emptied the bucket (or lost deletes for most keys) the
guards refuse exactly that pass, by design (their own tests are in
test_local_safety and test_deletes_backup). With the guards on, such an example
failed with "the listing ... came back empty while the mirror holds 1 files",
and since the state carries over, its replay did not: a FlakyFailure.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.daemon import run_daemon
from support.eventkit import boto, s3_event, s3_record, sns_envelope
from support.s3kit import AWS_ENV, tree
from support.wait import poll

EXAMPLES = int(os.environ.get("S3SYNC_PROPERTY_EXAMPLES", "15"))
KEYS = ["a.txt", "dir/with space.txt", "plus+sign.bin", "ünï/çødé ✓.txt"]
CONTENTS = [b"", b"one", b"two two", b"three" * 50]  # few values: same-ETag re-puts happen


class ThreadedDaemon:
    """The real app on its own event loop in a background thread; driven over HTTP."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="daemon", daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with run_daemon(self.settings) as d:
                self.url = d.url
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(run())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(60), "daemon did not start"
        if self._error:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        if self._error:
            raise self._error

    def task_stacks(self) -> str:
        """Where every transfer worker is waiting (for the message of a hang)."""

        async def collect() -> str:
            buf = io.StringIO()
            for task in asyncio.all_tasks():
                if task.get_name().startswith("transfer"):
                    task.print_stack(limit=12, file=buf)
            return buf.getvalue()

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(collect(), self._loop).result(10)

    def request(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())


@dataclass
class World:
    daemon: ThreadedDaemon
    s3: Any
    sqs: Any
    queue_url: str
    bucket: str
    mirror: Path
    sequencer: Iterator[int]


@pytest.fixture(scope="module")
def world(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from s3sync.config import load_settings

    s3, sqs = boto("s3", moto_endpoint), boto("sqs", moto_endpoint)
    bucket = f"prop-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=f"prop-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    mirror = tmp_path_factory.mktemp("property") / "mirror"
    settings_ = load_settings(
        overrides={
            "s3": {"bucket": bucket, "endpoint_url": moto_endpoint},
            "sync": {
                "local_dir": str(mirror),
                "periodic": False,
                "concurrency": 4,
                "allow_empty_source": True,  # see the module docstring
                "max_delete": -1,
            },
            "sqs": {"queue_url": queue_url, "endpoint_url": moto_endpoint, "wait_time_seconds": 1},
        },
        environ=dict(AWS_ENV),
    )
    daemon = ThreadedDaemon(settings_)
    daemon.start()
    try:
        yield World(daemon, s3, sqs, queue_url, bucket, mirror, itertools.count(0x0055AED6DCD90281E5))
    finally:
        daemon.stop()


# --------------------------------------------------------------------------- strategies

ops_strategy = st.lists(
    st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.sampled_from(CONTENTS))),  # None = delete
    min_size=1,
    max_size=10,
)

# per event: how many copies to deliver (0 = lost), and which channel/shape
fate_strategy = st.tuples(
    st.sampled_from([0, 1, 1, 1, 2, 3]),
    st.sampled_from(["http", "http-sns", "sqs", "sqs-sns"]),
)


def _bucket_contents(w: World) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for page in w.s3.get_paginator("list_objects_v2").paginate(Bucket=w.bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = w.s3.get_object(Bucket=w.bucket, Key=obj["Key"])["Body"].read()
    return out


def _apply(w: World, ops: list[tuple[str, bytes | None]], upper: list[bool]) -> list[dict[str, Any]]:
    """Run the ops against S3; return the event record each would produce, in order."""
    records = []
    for i, (key, body) in enumerate(ops):
        seq = f"{next(w.sequencer):018X}"
        seq = seq if upper[i % len(upper)] else seq.lower()
        if body is None:
            w.s3.delete_object(Bucket=w.bucket, Key=key)
            records.append(s3_record(w.bucket, "ObjectRemoved:Delete", key, sequencer=seq))
        else:
            etag = w.s3.put_object(Bucket=w.bucket, Key=key, Body=body)["ETag"]
            records.append(s3_record(w.bucket, "ObjectCreated:Put", key, size=len(body), etag=etag,
                                     sequencer=seq))
    return records


def _deliver(w: World, deliveries: list[tuple[dict[str, Any], str]]) -> None:
    for record, channel in deliveries:
        event: dict[str, Any] = s3_event(record)
        if channel.endswith("-sns"):
            event = sns_envelope(event)
        if channel.startswith("http"):
            status, ack = w.daemon.request("POST", "/api/v1/s3-notification", event)
            assert status == 202 and ack["accepted"] == 1, ack
        else:
            w.sqs.send_message(QueueUrl=w.queue_url, MessageBody=json.dumps(event))


def _wait_idle(w: World, within: float = 30.0) -> None:
    """SQS drained (so everything is journaled), then queue, workers and journal empty."""
    last: dict[str, Any] = {}

    def idle() -> bool:
        attrs = w.sqs.get_queue_attributes(
            QueueUrl=w.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        last["sqs"] = in_sqs = sum(int(v) for v in attrs.values())
        _, stats = w.daemon.request("GET", "/api/v1/stats")
        last["stats"] = stats
        return in_sqs == 0 and all(stats[k] == 0 for k in ("queue_depth", "in_flight", "journal_pending"))

    try:
        poll(idle, within=within, what="SQS drained and the daemon idle")
    except AssertionError:
        stacks = w.daemon.task_stacks()
        raise AssertionError(
            f"not idle after {within}s: sqs={last.get('sqs')} stats={last.get('stats')}\n{stacks}"
        ) from None


class TestMirrorConverges:
    """Duplicated, reordered and lost events never leave the mirror wrong after one reconcile."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(ops=ops_strategy, data=st.data())
    def test_any_delivery_then_reconcile(self, world: World, ops: list[tuple[str, bytes | None]],
                                         data: st.DataObject) -> None:
        """Events per op: lost, once or several times, over HTTP or SQS, in any order."""
        upper = data.draw(st.lists(st.booleans(), min_size=1, max_size=4), label="upper-case sequencer")
        records = _apply(world, ops, upper)
        n = len(records)
        fates = data.draw(st.lists(fate_strategy, min_size=n, max_size=n), label="fates")
        deliveries = [(r, channel) for r, (copies, channel) in zip(records, fates, strict=True)
                      for _ in range(copies)]
        deliveries = data.draw(st.permutations(deliveries), label="delivery order")
        _deliver(world, deliveries)
        _wait_idle(world)
        expected = _bucket_contents(world)
        if all(copies for copies, _ in fates):
            assert tree(world.mirror) == expected, "every event delivered, yet the mirror differs"
        status, report = world.daemon.request("POST", "/api/v1/sync?delete=true")
        assert status == 200 and report["failed_operations"] == 0, report
        assert tree(world.mirror) == expected
